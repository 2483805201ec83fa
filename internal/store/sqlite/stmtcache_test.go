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

// TestKeptStatementClosedBeforeItsRows: database/sql closes a statement
// prepared on a Tx at once, even while its rows are open; the kept
// statement stays in use until the rows are closed too, so the same SQL
// run again meanwhile gets a statement of its own.
func TestKeptStatementClosedBeforeItsRows(t *testing.T) {
	s, _ := openInternal(t)
	ctx := t.Context()
	for i := range 3 {
		if _, err := s.AppendAudit(ctx, storetest.AuditRecord(fmt.Sprintf("r%d", i), 0)); err != nil {
			t.Fatal(err)
		}
	}
	tx, err := s.reader.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	const q = "SELECT seq FROM audit_records WHERE seq >= ? ORDER BY seq"
	st, err := tx.PrepareContext(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := st.QueryContext(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	var got []int64
	for rows.Next() {
		var a, b int64
		if err := rows.Scan(&a); err != nil {
			t.Fatal(err)
		}
		if err := tx.QueryRowContext(ctx, q, 3).Scan(&b); err != nil {
			t.Fatalf("the same SQL while the closed statement's rows are open: %v", err)
		}
		got = append(got, a, b)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[1 3 2 3 3 3]" {
		t.Errorf("read %v, want [1 3 2 3 3 3]", got)
	}
}

// TestKeptStatementsMakeRoom: past maxKeptStmts distinct statements a
// connection still keeps new SQL (it finalizes one not in use), so new SQL
// is not parsed on every run.
func TestKeptStatementsMakeRoom(t *testing.T) {
	s, _ := openInternal(t)
	ctx := t.Context()
	conn, err := s.reader.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var n int64
	for i := range maxKeptStmts + 50 {
		if err := conn.QueryRowContext(ctx, fmt.Sprintf("SELECT ? + %d", i), 1).Scan(&n); err != nil {
			t.Fatal(err)
		}
	}
	before := s.stmts.parsed.Load()
	for range 20 {
		if err := conn.QueryRowContext(ctx, "SELECT ? * 2", 21).Scan(&n); err != nil || n != 42 {
			t.Fatalf("SELECT ? * 2 = %d, %v", n, err)
		}
	}
	if parsed := s.stmts.parsed.Load() - before; parsed != 1 {
		t.Errorf("20 runs of a new statement on a full connection parsed it %d times, want once", parsed)
	}
}
