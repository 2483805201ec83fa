package sqlite

import (
	"fmt"
	"testing"

	"github.com/borderlink/borderlink/internal/store/storetest"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// TestStatementsKept: a store doing the same work again parses no new
// statements; the prepares are answered by the connections' kept ones.
func TestStatementsKept(t *testing.T) {
	s, _ := openInternal(t)
	ctx := t.Context()
	work := func(i int) {
		d := storetest.Declaration(fmt.Sprintf("NL-2026-%06d", i), 0, "NL", "SG", "851712")
		if err := s.PutRecords(ctx, []*blv1.Declaration{d}, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetDeclaration(ctx, d.GetId()); err != nil {
			t.Fatal(err)
		}
		if _, err := s.AppendAudit(ctx, storetest.AuditRecord(fmt.Sprintf("r%d", i), 0)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		work(i)
	}
	parsed, reused := s.stmts.parsed.Load(), s.stmts.reused.Load()
	for i := 20; i < 120; i++ {
		work(i)
	}
	// The reader pool may open a connection it had not needed yet, which
	// parses its statements once.
	if more := s.stmts.parsed.Load() - parsed; more > 10 {
		t.Errorf("100 more rounds of the same work parsed %d statements; want them kept", more)
	}
	if more := s.stmts.reused.Load() - reused; more < 300 {
		t.Errorf("100 more rounds reused %d kept statements; want at least 3 per round", more)
	}
}

// TestKeptStatementInUse: the same SQL run again on one connection while
// the first run's rows are still open gets a statement of its own, and
// both read their own rows.
func TestKeptStatementInUse(t *testing.T) {
	s, _ := openInternal(t)
	ctx := t.Context()
	for i := range 3 {
		if _, err := s.AppendAudit(ctx, storetest.AuditRecord(fmt.Sprintf("r%d", i), 0)); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := s.reader.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const q = "SELECT seq FROM audit_records WHERE seq >= ? ORDER BY seq"
	outer, err := conn.QueryContext(ctx, q, 1)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for outer.Next() {
		var a int64
		if err := outer.Scan(&a); err != nil {
			t.Fatal(err)
		}
		inner, err := conn.QueryContext(ctx, q, a)
		if err != nil {
			t.Fatal(err)
		}
		for inner.Next() {
			var b int64
			if err := inner.Scan(&b); err != nil {
				t.Fatal(err)
			}
			got = append(got, fmt.Sprintf("%d-%d", a, b))
		}
		if err := inner.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := outer.Err(); err != nil {
		t.Fatal(err)
	}
	outer.Close()
	if want := "[1-1 1-2 1-3 2-2 2-3 3-3]"; fmt.Sprint(got) != want {
		t.Errorf("nested runs of one statement read %v, want %s", got, want)
	}
}
