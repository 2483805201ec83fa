package sqlite

import (
	"bytes"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestWALCheckpointedOffTheCommitPath: a store's appends of one record
// each are checkpointed by its checkpointer.
func TestWALCheckpointedOffTheCommitPath(t *testing.T) {
	s, _ := openInternal(t)
	for i := range 2 * checkpointCommits {
		if _, err := s.AppendAudit(t.Context(), internalRec(fmt.Sprintf("%032x", i))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "a checkpoint", func() bool { return s.WALCheckpoints().Runs > 0 })
	if st := s.WALCheckpoints(); st.Failed != 0 || st.LastError != nil {
		t.Errorf("WALCheckpoints() = %+v, want no failure", st)
	}
}

// TestWhenACheckpointIsDue: a window of checkpointCommits light commits
// starts a checkpoint at once, a window of heavy ones none, and so does the
// delay's end (light) or not (heavy). The checkpointers here run beside a
// store, on its file, and are told of commits by hand.
func TestWhenACheckpointIsDue(t *testing.T) {
	_, path := openInternal(t)
	runs := func(c *walCheckpointer) uint64 {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.stats.Runs
	}
	// settle is long enough for a checkpoint that was started to be
	// counted on an idle machine; a run seen after it is a wrong one.
	const settle = 300 * time.Millisecond
	light := slices.Repeat([]int{1}, checkpointCommits)
	heavy := slices.Repeat([]int{lightBatch + 1}, checkpointCommits)
	for _, tc := range []struct {
		name     string
		delay    time.Duration
		phases   [][]int // appends per commit; each phase waits for the window the one before ended
		wantRuns uint64
	}{
		{"light window, full", time.Hour, [][]int{light}, 1},
		{"light window, not full", time.Hour, [][]int{light[1:]}, 0},
		{"heavy window, full", time.Hour, [][]int{heavy}, 0},
		{"heavy, then light window", time.Hour, [][]int{heavy, light}, 1},
		{"light, delay over", 50 * time.Millisecond, [][]int{{1}}, 1},
		{"heavy, delay over", 50 * time.Millisecond, [][]int{{lightBatch + 1}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := startCheckpointer(t.Context(), path, tc.delay, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			defer c.close()
			for i, phase := range tc.phases {
				if i > 0 {
					waitFor(t, "the window to end", func() bool {
						c.mu.Lock()
						defer c.mu.Unlock()
						return c.win.commits == 0
					})
				}
				for _, a := range phase {
					c.committed(a)
				}
			}
			if tc.wantRuns > 0 {
				waitFor(t, "the checkpoint", func() bool { return runs(c) >= tc.wantRuns })
			}
			time.Sleep(settle)
			if got := runs(c); got != tc.wantRuns {
				t.Errorf("%d checkpoints, want %d", got, tc.wantRuns)
			}
		})
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
	// The 400 commits start four checkpoints, or five with the delay's
	// end; more can only be runs again of a partial one.
	waitFor(t, "partial checkpoints run again", func() bool { return s.WALCheckpoints().Partial >= 7 })
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

// TestFailingCheckpointIsLogged: the first of a run of failed checkpoints
// is logged with its error, and so is the success that ends them; the
// failures between are only counted.
func TestFailingCheckpointIsLogged(t *testing.T) {
	_, path := openInternal(t)
	var logs bytes.Buffer
	// An hour's delay and no commit: the loop never runs a checkpoint, so
	// the test's own runs are the only ones and the buffer needs no lock.
	c, err := startCheckpointer(t.Context(), path, time.Hour, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	good := c.db
	closed, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()

	c.db = closed
	for range 3 {
		if again, failed := c.run(t.Context()); !again || !failed {
			t.Fatalf("run on a closed connection = again %v, failed %v; want both", again, failed)
		}
	}
	c.db = good
	for range 2 {
		if _, failed := c.run(t.Context()); failed {
			t.Fatalf("run failed: %v", c.stats.LastError)
		}
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 ||
		!strings.Contains(lines[0], "level=WARN") || !strings.Contains(lines[0], "database is closed") ||
		!strings.Contains(lines[1], "level=INFO") || !strings.Contains(lines[1], "failed_runs=3") {
		t.Errorf("log =\n%s\nwant one warning naming the error, then one recovery after 3 failed runs", logs.String())
	}
	if st := c.stats; st.Runs != 5 || st.Failed != 3 || st.LastError != nil {
		t.Errorf("stats = %+v; want 5 runs, 3 failed, no last error", st)
	}
}
