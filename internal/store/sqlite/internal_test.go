package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/borderlink/borderlink/internal/store"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

func openInternal(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "borderlink.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

// TestPragmas checks that the DSN settings really reach the connections the
// guarantees depend on (a misspelt DSN key would be silently ignored).
func TestPragmas(t *testing.T) {
	s, _ := openInternal(t)
	tests := []struct {
		pool   string
		db     *sql.DB
		pragma string
		want   string
	}{
		{"writer", s.writer, "journal_mode", "wal"},
		{"writer", s.writer, "synchronous", "2"},
		{"writer", s.writer, "foreign_keys", "1"},
		{"writer", s.writer, "busy_timeout", "10000"},
		{"writer", s.writer, "query_only", "0"},
		{"writer", s.writer, "temp_store", "2"},
		{"writer", s.writer, "wal_autocheckpoint", strconv.Itoa(writerCheckpointPages)},
		{"reader", s.reader, "journal_mode", "wal"},
		{"reader", s.reader, "foreign_keys", "1"},
		{"reader", s.reader, "busy_timeout", "10000"},
		{"reader", s.reader, "query_only", "1"},
	}
	for _, tc := range tests {
		var got string
		if err := tc.db.QueryRowContext(t.Context(), "PRAGMA "+tc.pragma).Scan(&got); err != nil {
			t.Fatalf("%s: PRAGMA %s: %v", tc.pool, tc.pragma, err)
		}
		if !strings.EqualFold(got, tc.want) {
			t.Errorf("%s: PRAGMA %s = %q, want %q", tc.pool, tc.pragma, got, tc.want)
		}
	}
}

// TestWriterBeginsImmediate checks _txlock=immediate: a writer transaction
// holds the write lock from BEGIN, before any statement, so it cannot fail
// later when upgrading a read lock.
func TestWriterBeginsImmediate(t *testing.T) {
	s, path := openInternal(t)
	tx, err := s.writer.BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatalf("BeginTx: %v", err)
	}
	defer tx.Rollback()

	other, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(0)")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.ExecContext(t.Context(), "BEGIN IMMEDIATE"); err == nil {
		other.ExecContext(t.Context(), "ROLLBACK")
		t.Fatal("another connection took the write lock during a writer transaction; BEGIN is not IMMEDIATE")
	}
	// Readers are not blocked by the writer (WAL).
	var n int
	if err := s.reader.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM declarations").Scan(&n); err != nil {
		t.Errorf("read during a write transaction: %v", err)
	}
}

func TestReaderCannotWrite(t *testing.T) {
	s, _ := openInternal(t)
	_, err := s.reader.ExecContext(t.Context(),
		"INSERT INTO risk_assessments (id, declaration_id, record) VALUES ('x', 'y', x'')")
	if err == nil {
		t.Fatal("write through the reader pool succeeded, want query_only to refuse it")
	}
}

// TestSearchPlansAvoidSorting checks that common searches walk an index in
// result order instead of sorting all matches in a temporary B-tree, which
// would make every page cost a full scan.
func TestSearchPlansAvoidSorting(t *testing.T) {
	s, _ := openInternal(t)
	queries := []store.DeclarationQuery{
		{},
		{HSChapters: []string{"85", "84"}},
		{ExportCountry: "NL"},
		{DestinationCountry: "SG"},
		{ExportCountry: "NL", HSChapters: []string{"85"}, AcceptedAfter: time.Unix(1, 0)},
	}
	for _, q := range queries {
		conds, args, err := declarationFilter(q)
		if err != nil {
			t.Fatal(err)
		}
		conds = append(conds, keysetCond)
		args = append(args, 0, 0, "")
		query := "EXPLAIN QUERY PLAN SELECT d.id, d.acceptance_time, d.record FROM declarations d WHERE " +
			strings.Join(conds, " AND ") + " ORDER BY d.acceptance_time DESC, d.id ASC LIMIT 128"
		rows, err := s.reader.QueryContext(t.Context(), query, args...)
		if err != nil {
			t.Fatalf("%+v: %v", q, err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		p := strings.Join(plan, "; ")
		if strings.Contains(p, "TEMP B-TREE") {
			t.Errorf("query %+v sorts in a temp B-tree: %s", q, p)
		}
		if !strings.Contains(p, "acceptance_time<") {
			t.Errorf("query %+v does not seek to the page start: %s", q, p)
		}
	}
}

func TestLoadMigrations(t *testing.T) {
	ms, err := loadMigrations(migrationFiles)
	if err != nil {
		t.Fatalf("embedded migrations: %v", err)
	}
	if ms[0].version != 1 || ms[0].name != "init" {
		t.Errorf("first migration = %d %q, want 1 \"init\"", ms[0].version, ms[0].name)
	}
	tests := []struct {
		name  string
		files []string
	}{
		{"gap", []string{"0001_a.sql", "0003_c.sql"}},
		{"starts at 2", []string{"0002_b.sql"}},
		{"bad name", []string{"0001_a.sql", "2_b.sql"}},
		{"duplicate version", []string{"0001_a.sql", "0001_b.sql"}},
		{"none", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fsys := fstest.MapFS{"migrations": &fstest.MapFile{Mode: fs.ModeDir | 0o755}}
			for _, f := range tc.files {
				fsys["migrations/"+f] = &fstest.MapFile{Data: []byte("SELECT 1;")}
			}
			if _, err := loadMigrations(fsys); err == nil {
				t.Errorf("loadMigrations(%q) succeeded, want an error", tc.files)
			}
		})
	}
}

// TestSequencerPanicFailsClosed: a panic inside a group commit must not
// hang its callers or let later appends write on top of a transaction in
// an unknown state. Every waiter of the batch gets an error, every later
// append is refused, and after a restart the log holds exactly what was
// committed before and still verifies.
func TestSequencerPanicFailsClosed(t *testing.T) {
	s, path := openInternal(t)
	ctx := t.Context()
	rec := func(id string) *blv1.AuditRecord {
		return &blv1.AuditRecord{Time: timestamppb.Now(), Side: blv1.AuditSide_AUDIT_SIDE_PROVIDER, RequestId: id,
			CallerId: "spiffe://sg.customs.example/gateway", Action: "declaration.get", Decision: blv1.AuditDecision_AUDIT_DECISION_ALLOW}
	}
	if _, err := s.AppendAudit(ctx, rec("before")); err != nil {
		t.Fatal(err)
	}
	_, err := s.appendWith(ctx, rec("boom"), func(context.Context, *sql.Tx, uint64) error { panic("injected") })
	if !errors.Is(err, errSequencerPanic) {
		t.Fatalf("append whose commit panicked: %v, want errSequencerPanic", err)
	}
	done := make(chan error, 1)
	go func() { _, err := s.AppendAudit(ctx, rec("after")); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, errSequencerPanic) {
			t.Fatalf("append after the panic: %v, want errSequencerPanic (fail closed)", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("append after the panic hangs")
	}
	if err := s.Close(); err != nil {
		t.Logf("close after panic: %v", err)
	}
	s2, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if n := CheckTree(t, s2); n != 1 {
		t.Errorf("after restart the log holds %d records, want the 1 committed before the panic", n)
	}
	if _, err := s2.AppendAudit(ctx, rec("restarted")); err != nil {
		t.Errorf("append after restart: %v", err)
	}
}

// queued waits until n appends are queued behind the leader.
func queued(t *testing.T, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.seq.mu.Lock()
		got := len(s.seq.queue)
		s.seq.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d appends queued, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// leaderInBegin starts an append that becomes the leader, with a batch of
// itself, and keeps it in BEGIN by holding the only writer connection;
// closing conn lets it commit, and first then receives its error. The
// connection is also closed at cleanup, so that a test failing before it
// lets go does not leave Close waiting for the leader.
func leaderInBegin(t *testing.T, s *Store) (conn *sql.Conn, first <-chan error) {
	t.Helper()
	conn, err := s.writer.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	done := make(chan error, 1)
	go func() { _, err := s.AppendAudit(t.Context(), internalRec("leader")); done <- err }()
	// Leading is set, and the leader's batch taken from the queue, under
	// one hold of the lock.
	deadline := time.Now().Add(10 * time.Second)
	for !func() bool { s.seq.mu.Lock(); defer s.seq.mu.Unlock(); return s.seq.leading }() {
		if time.Now().After(deadline) {
			t.Fatal("the first append did not start leading")
		}
		time.Sleep(time.Millisecond)
	}
	return conn, done
}

func internalRec(id string) *blv1.AuditRecord {
	return &blv1.AuditRecord{Time: timestamppb.Now(), Side: blv1.AuditSide_AUDIT_SIDE_PROVIDER, RequestId: id,
		CallerId: "spiffe://sg.customs.example/gateway", Action: "declaration.get", Decision: blv1.AuditDecision_AUDIT_DECISION_ALLOW}
}

// TestSequencerHandsTheLeadOn: appends that arrive while a batch commits
// queue behind it; when it is done, the first of them commits all of them
// in one batch, in arrival order, and the next append finds no leader and
// commits alone.
func TestSequencerHandsTheLeadOn(t *testing.T) {
	s, _ := openInternal(t)
	ctx := t.Context()
	conn, first := leaderInBegin(t, s)
	const n = 20
	seqs := make([]chan uint64, n)
	for i := range n {
		seqs[i] = make(chan uint64, 1)
		go func() {
			seq, err := s.AppendAudit(ctx, internalRec(fmt.Sprintf("follower-%02d", i)))
			if err != nil {
				t.Error(err)
			}
			seqs[i] <- seq
		}()
		queued(t, s, i+1) // one at a time, so arrival order is i
	}
	conn.Close()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if seq := <-seqs[i]; seq != uint64(i+2) {
			t.Errorf("follower %d got seq %d, want %d (arrival order after the leader's 1)", i, seq, i+2)
		}
	}
	if seq, err := s.AppendAudit(ctx, internalRec("alone")); err != nil || seq != n+2 {
		t.Errorf("append after the batches: %d, %v; want %d", seq, err, n+2)
	}
	st := s.AppendStats()
	// Batches of 1 (the leader), 20 (the followers, bucket ≤ 32), 1.
	if st.Commits != 3 || st.Appends != n+2 || st.BatchSizes[0] != 2 || st.BatchSizes[5] != 1 {
		t.Errorf("stats: %d commits of %d appends, sizes %v; want 3 of %d: two of 1, one of %d", st.Commits, st.Appends, st.BatchSizes, n+2, n)
	}
	s.seq.mu.Lock()
	defer s.seq.mu.Unlock()
	if s.seq.leading || len(s.seq.queue) != 0 {
		t.Errorf("after the appends: leading %v, %d queued; want an idle sequencer", s.seq.leading, len(s.seq.queue))
	}
}

// TestCloseFailsQueuedAppends: Close waits for the batch being committed,
// which lands; the appends queued behind it fail with errClosed instead of
// hanging, and so does every append after Close.
func TestCloseFailsQueuedAppends(t *testing.T) {
	s, path := openInternal(t)
	ctx := t.Context()
	conn, first := leaderInBegin(t, s)
	const n = 5
	queuedErrs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := s.AppendAudit(ctx, internalRec(fmt.Sprintf("queued-%d", i)))
			queuedErrs <- err
		}()
	}
	queued(t, s, n)
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	for !func() bool { s.seq.mu.Lock(); defer s.seq.mu.Unlock(); return s.seq.closed }() {
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a batch was being committed", err)
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := s.AppendAudit(ctx, internalRec("late")); !errors.Is(err, errClosed) {
		t.Errorf("append after Close began: %v, want errClosed", err)
	}
	conn.Close()
	if err := <-first; err != nil {
		t.Errorf("the batch in progress at Close: %v, want committed", err)
	}
	for range n {
		if err := <-queuedErrs; !errors.Is(err, errClosed) {
			t.Errorf("append queued at Close: %v, want errClosed", err)
		}
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	s2, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if n := CheckTree(t, s2); n != 1 {
		t.Errorf("after Close the log holds %d records, want the leader's 1", n)
	}
}

// TestLeadAfterClose: when Close begins after the lead was handed to an
// append but before that append's goroutine took the lock, the append
// and those queued behind it fail with errClosed instead of committing a
// new batch, and the store is left idle for Close.
func TestLeadAfterClose(t *testing.T) {
	s, q := byHand(t)
	mk := func(id string) *appendReq {
		r, err := newAppendReq(internalRec(id), nil)
		if err != nil {
			t.Fatal(err)
		}
		r.done = make(chan appendResult, 1)
		return r
	}
	self, behind := mk("handed-the-lead"), mk("queued-behind")
	// The state submit leaves when the lead reached self: queued, leading,
	// and (here) Close already begun.
	q.mu.Lock()
	q.queue = []*appendReq{self, behind}
	q.leading, q.closed = true, true
	res := s.lead(self) // releases q.mu
	if !errors.Is(res.err, errClosed) {
		t.Errorf("the append handed the lead: %+v, want errClosed", res)
	}
	if r, ok := received(behind); !ok {
		t.Error("the append queued behind it got no result")
	} else if !errors.Is(r.err, errClosed) {
		t.Errorf("the append queued behind it: %+v, want errClosed", r)
	}
	q.mu.Lock()
	leading, queued := q.leading, len(q.queue)
	q.mu.Unlock()
	if leading || queued != 0 {
		t.Errorf("after: leading %v, %d queued; want idle and empty", leading, queued)
	}
	if n := CheckTree(t, s); n != 0 {
		t.Errorf("the log holds %d records, want none", n)
	}
}

// TestQueuedAppendLeavesOnCancel: an append waiting behind the commit in
// progress fails with its ctx's error when the ctx ends, is not appended,
// and the appends queued with it commit as before.
func TestQueuedAppendLeavesOnCancel(t *testing.T) {
	s, _ := openInternal(t)
	conn, first := leaderInBegin(t, s)
	ctx, cancel := context.WithCancel(t.Context())
	givesUp := make(chan error, 1)
	go func() { _, err := s.AppendAudit(ctx, internalRec("gives-up")); givesUp <- err }()
	queued(t, s, 1)
	type result struct {
		seq uint64
		err error
	}
	stays := make(chan result, 1)
	go func() { seq, err := s.AppendAudit(t.Context(), internalRec("stays")); stays <- result{seq, err} }()
	queued(t, s, 2)
	cancel()
	select {
	case err := <-givesUp:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the append whose ctx ended: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the append whose ctx ended still waits for the commit in progress")
	}
	queued(t, s, 1)
	conn.Close()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if r := <-stays; r.err != nil || r.seq != 2 {
		t.Errorf("the append queued with it: seq %d, %v; want 2", r.seq, r.err)
	}
	if n := CheckTree(t, s); n != 2 {
		t.Errorf("the log holds %d records, want 2 (the leader's and the one that stayed)", n)
	}
}

// TestLeaveHandedTheLead: an append that gives up just after the lead was
// handed to it passes the lead on, or leaves the store idle when nothing
// else is queued; one taken into a batch cannot leave.
func TestLeaveHandedTheLead(t *testing.T) {
	s, q := byHand(t)
	mk := func() *appendReq { return &appendReq{done: make(chan appendResult, 1)} }
	handed, next := mk(), mk()
	q.mu.Lock()
	q.queue, q.leading = []*appendReq{handed, next}, true
	handed.done <- appendResult{lead: true}
	q.mu.Unlock()
	if !s.leave(handed) {
		t.Fatal("a queued append could not leave")
	}
	if r, ok := received(next); !ok {
		t.Error("the lead was not passed on")
	} else if !r.lead {
		t.Errorf("the next append got %+v, want the lead", r)
	}
	q.mu.Lock()
	leading, queue := q.leading, slices.Clone(q.queue)
	q.mu.Unlock()
	if !leading || len(queue) != 1 || queue[0] != next {
		t.Errorf("after passing the lead: leading %v, queue %v; want leading, the next append at the front", leading, queue)
	}

	q.mu.Lock()
	next.done <- appendResult{lead: true} // as if handed again, with nothing behind it
	q.mu.Unlock()
	if !s.leave(next) {
		t.Fatal("a queued append could not leave")
	}
	q.mu.Lock()
	leading, n := q.leading, len(q.queue)
	q.mu.Unlock()
	if leading || n != 0 {
		t.Errorf("after the last queued append left with the lead: leading %v, %d queued; want idle", leading, n)
	}
	if s.leave(mk()) {
		t.Error("an append not queued (taken into a batch) left")
	}

	// Close began: the lead is not passed on, the appends behind fail.
	handed, behind := mk(), mk()
	q.mu.Lock()
	q.queue, q.leading, q.closed = []*appendReq{handed, behind}, true, true
	handed.done <- appendResult{lead: true}
	q.mu.Unlock()
	if !s.leave(handed) {
		t.Fatal("a queued append could not leave")
	}
	if r, ok := received(behind); !ok {
		t.Error("the append behind it got nothing after Close began")
	} else if !errors.Is(r.err, errClosed) {
		t.Errorf("the append behind it after Close began: %+v, want errClosed", r)
	}
	q.mu.Lock()
	leading = q.leading
	q.mu.Unlock()
	if leading {
		t.Error("after Close began and the lead holder left, the store is still leading")
	}
}

// byHand opens a store for a test that sets its group commit's state by
// hand, and leaves that state idle before the store's Close (cleanups run
// last first): if the test fails with the store still leading, Close would
// otherwise wait for ever instead of the test reporting.
func byHand(t *testing.T) (*Store, *sequencer) {
	s, _ := openInternal(t)
	q := s.seq
	t.Cleanup(func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		q.queue, q.leading = nil, false
		q.idle.Broadcast()
	})
	return s, q
}

// received is the message waiting for r, if any, without waiting for one.
func received(r *appendReq) (appendResult, bool) {
	select {
	case res := <-r.done:
		return res, true
	default:
		return appendResult{}, false
	}
}
