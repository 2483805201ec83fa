package sqlite

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// TestWALCheckpointedOffTheCommitPath: with the writer's own checkpoint
// pushed back to its backstop, the pages the appends commit still reach
// the database file, copied by the checkpointer after them.
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
	// 400 appends write a few hundred pages: far below the backstop, so
	// only the checkpointer can have copied them.
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
	if st.Runs > 400 {
		t.Errorf("%d checkpoints for 400 commits: runs are not spaced by %v", st.Runs, checkpointInterval)
	}
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
	s.ckpt.committed()
	s.ckpt.committed()
}
