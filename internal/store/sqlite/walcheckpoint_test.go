package sqlite

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// TestWALCheckpointedOffTheCommitPath: under light load (one record per
// commit) the pages the appends commit reach the database file through
// the checkpointer.
func TestWALCheckpointedOffTheCommitPath(t *testing.T) {
	s, path := openInternal(t)
	size := func() int64 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	before := size()
	for i := range 400 {
		if _, err := s.AppendAudit(t.Context(), internalRec(fmt.Sprintf("%032x", i))); err != nil {
			t.Fatal(err)
		}
	}
	// 400 appends of one record each write about 2,000 WAL pages: the
	// checkpointer copies them before the writer's threshold (1,000) is
	// reached.
	const grown = 64 << 10
	deadline := time.Now().Add(10 * time.Second)
	for size() < before+grown {
		if time.Now().After(deadline) {
			t.Fatalf("database file %d bytes after the appends (%d before), want %d more: the WAL was not checkpointed; stats %+v",
				size(), before, grown, s.WALCheckpoints())
		}
		time.Sleep(20 * time.Millisecond)
	}
	st := s.WALCheckpoints()
	if st.Runs == 0 || st.Failed != 0 || st.LastError != nil {
		t.Errorf("WALCheckpoints() = %+v, want runs and no failure", st)
	}
	if limit := uint64(400/checkpointCommits + 2); st.Runs > limit {
		t.Errorf("%d checkpoints for 400 commits, want at most %d: one per %d commits", st.Runs, limit, checkpointCommits)
	}
}

// TestPartialCheckpointIsRunAgain: a reader on an old snapshot keeps a
// checkpoint from copying the frames after it; the checkpointer keeps
// trying and, once the reader is done, finishes the copy with no commit to
// start it.
func TestPartialCheckpointIsRunAgain(t *testing.T) {
	s, path := openInternal(t)
	ctx := t.Context()
	if _, err := s.AppendAudit(ctx, internalRec(fmt.Sprintf("%032x", 0))); err != nil {
		t.Fatal(err)
	}
	tx, err := s.reader.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM audit_records").Scan(&n); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 400; i++ {
		if _, err := s.AppendAudit(ctx, internalRec(fmt.Sprintf("%032x", i))); err != nil {
			t.Fatal(err)
		}
	}
	// The 400 commits start two or three checkpoints; more can only be
	// runs again of a partial one.
	waitFor(t, "partial checkpoints run again", func() bool { return s.WALCheckpoints().Partial >= 5 })
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the rest of the WAL in the database file", func() bool {
		now, err := os.Stat(path)
		return err == nil && now.Size() >= fi.Size()+64<<10
	})
	if st := s.WALCheckpoints(); st.Failed != 0 {
		t.Errorf("WALCheckpoints() = %+v, want no failure", st)
	}
}

func waitFor(t *testing.T, what string, done func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !done() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 10s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHeavyCommitsLeaveTheCheckpointToTheWriter: commits that carry
// batches start no checkpoint beside the commits; commits of one append
// each do.
func TestHeavyCommitsLeaveTheCheckpointToTheWriter(t *testing.T) {
	s, _ := openInternal(t)
	for range 3 * checkpointCommits {
		s.ckpt.committed(lightBatch + 1)
	}
	time.Sleep(checkpointDelay + 300*time.Millisecond)
	if st := s.WALCheckpoints(); st.Runs != 0 {
		t.Fatalf("WALCheckpoints() = %+v after batched commits, want no run", st)
	}
	for range checkpointCommits {
		s.ckpt.committed(1)
	}
	waitFor(t, "checkpoint after light commits", func() bool { return s.WALCheckpoints().Runs > 0 })
}

// TestCloseStopsTheCheckpointer: Close ends the checkpointer's goroutine,
// and a commit that still kicks it afterwards neither blocks nor panics.
func TestCloseStopsTheCheckpointer(t *testing.T) {
	s, _ := openInternal(t)
	if _, err := s.AppendAudit(t.Context(), internalRec("00000000000000000000000000000001")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.ckpt.done:
	case <-time.After(5 * time.Second):
		t.Fatal("checkpointer still running after Close")
	}
	s.ckpt.committed(1)
	s.ckpt.committed(1)
}
