package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/borderlink/borderlink/internal/ctxwait"
	"github.com/borderlink/borderlink/internal/store"
)

// WAL checkpoints copy committed pages from the WAL into the database
// file and sync it, so that the WAL can start over. SQLite runs one by
// default inside the COMMIT that takes the WAL past 1,000 pages: at 500
// audit appends a second, one commit in a few hundred waited for the copy
// and a second sync on top of its own, in the tail of the audit wait.
//
// Under light load (commits of one or two appends) the store runs them on
// a connection of its own instead, after every checkpointCommits commits,
// PASSIVE (never waiting for a lock, so never holding up a commit or a
// read), before the WAL reaches the writer's own threshold. Under heavy
// load (batched commits) it leaves them to the writer: a checkpoint beside
// the commits slowed every commit's sync (at 20,000 appends/s the p99
// doubled), while one between two commits only makes the next batch
// larger. Commits are counted in windows (see take); a window short of
// checkpointCommits ends checkpointDelay after its first commit, so that
// a quiet log is checkpointed too. See ADR 0016.
const (
	// checkpointCommits commits start a checkpoint when they carried at
	// most lightBatch appends each on average: at one small record per
	// commit they write about 500 WAL pages, so the writer's own
	// checkpoint (at writerCheckpointPages) is not reached. Heavier
	// commits leave the checkpoint to the writer (see above).
	checkpointCommits = 100
	lightBatch        = 2
	// checkpointDelay after its first commit, a window of fewer commits
	// ends too, so that a quiet log's WAL is copied as well.
	checkpointDelay = time.Second
	// checkpointRetry is the wait before running again a checkpoint that a
	// reader kept from finishing.
	checkpointRetry = 200 * time.Millisecond
	// maxCheckpointBackoff bounds the wait, doubling from checkpointRetry,
	// before retrying a failed checkpoint.
	maxCheckpointBackoff = 5 * time.Second
	// writerCheckpointPages is the writer's automatic checkpoint, SQLite's
	// default.
	writerCheckpointPages = 1000
)

// walCheckpointer runs PASSIVE WAL checkpoints on its own connection
// after the commits that kick it.
type walCheckpointer struct {
	db    *sql.DB
	log   *slog.Logger
	delay time.Duration // checkpointDelay; tests that count runs set a longer one
	kick  chan struct{} // buffered (1): a kick while one is pending is merged into it
	stop  context.CancelFunc
	done  chan struct{}

	mu    sync.Mutex
	win   window // the commits since the last window ended, with a checkpoint or (heavy) without
	stats store.WALCheckpointStats
	// failing counts the runs failed in a row: the first is logged, and
	// the success that ends them.
	failing uint64
}

// window counts commits and the appends they carried.
type window struct {
	commits, appends int
	since            time.Time // its first commit
}

// heavy reports whether the window's commits carried batches: more than
// lightBatch appends each on average.
func (w window) heavy() bool { return w.appends > lightBatch*w.commits }

// WALCheckpoints reads the counters of the WAL checkpoints run off the
// commit path.
func (s *Store) WALCheckpoints() store.WALCheckpointStats {
	if s.ckpt == nil {
		return store.WALCheckpointStats{}
	}
	s.ckpt.mu.Lock()
	defer s.ckpt.mu.Unlock()
	return s.ckpt.stats
}

// startCheckpointer opens the checkpointer's connection to the file at abs,
// checks it, and starts it; delay is checkpointDelay but in tests.
func startCheckpointer(ctx context.Context, abs string, delay time.Duration, log *slog.Logger) (*walCheckpointer, error) {
	// synchronous=FULL as on the writer: a checkpoint syncs the database
	// file before it lets the WAL be overwritten, and that sync follows
	// the setting of the connection that runs it.
	db, err := sql.Open("sqlite", dsn(abs, "", fmt.Sprintf("busy_timeout(%d)", busyTimeoutMillis), "synchronous(FULL)"))
	if err != nil {
		return nil, err
	}
	if err := keepOneDurable(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("WAL checkpointer: %w", err)
	}
	run, cancel := context.WithCancel(context.Background())
	c := &walCheckpointer{db: db, log: log, delay: delay, kick: make(chan struct{}, 1), stop: cancel, done: make(chan struct{})}
	go c.loop(run)
	return c, nil
}

// committed tells the checkpointer that a commit carrying appends appends
// added to the WAL: the first of a window arms its delay, the
// checkpointCommits-th ends it. It never blocks.
func (c *walCheckpointer) committed(appends int) {
	c.mu.Lock()
	if c.win.commits == 0 {
		c.win.since = time.Now()
	}
	c.win.commits++
	c.win.appends += appends
	n := c.win.commits
	c.mu.Unlock()
	if n == 1 || n == checkpointCommits {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
}

// take reports whether a checkpoint is due now: the window is full
// (checkpointCommits commits) or its delay is over, and its commits were
// light. It starts a new window when it starts a checkpoint, and when it
// ends a heavy one without: the writer's own checkpoint, between two
// commits, holds up fewer appends than one beside the commits would slow
// down.
func (c *walCheckpointer) take(delayOver bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.win
	if w.commits == 0 || w.commits < checkpointCommits && !delayOver {
		return false
	}
	c.win = window{}
	return !w.heavy()
}

// retryNow reports whether a checkpoint left unfinished should be run
// again now: not while the commits since show heavy load.
func (c *walCheckpointer) retryNow() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.win.heavy()
}

// loop runs a checkpoint when take says one is due. A checkpoint that
// could not finish is run again without waiting for commits, unless they
// show heavy load: after checkpointRetry when a reader held it up, after a
// backoff doubling up to maxCheckpointBackoff when it failed.
func (c *walCheckpointer) loop(ctx context.Context) {
	defer close(c.done)
	var (
		wait  time.Duration // before the next run, when again
		again bool
	)
	for {
		if again {
			if !ctxwait.Sleep(ctx, wait) {
				return
			}
			again = c.retryNow()
		}
		if !again && !c.due(ctx) {
			return
		}
		var failed bool
		again, failed = c.run(ctx)
		switch {
		case failed:
			wait = min(max(2*wait, checkpointRetry), maxCheckpointBackoff)
		case again:
			wait = checkpointRetry
		default:
			wait = 0
		}
	}
}

// due waits until take says a checkpoint is due; false when ctx ended.
func (c *walCheckpointer) due(ctx context.Context) bool {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if timer == nil {
			c.mu.Lock()
			w := c.win
			c.mu.Unlock()
			if w.commits > 0 {
				timer = time.NewTimer(c.delay - time.Since(w.since))
			}
		}
		var timeout <-chan time.Time
		if timer != nil {
			timeout = timer.C
		}
		select {
		case <-ctx.Done():
			return false
		case <-timeout:
			timer = nil
			if c.take(true) {
				return true
			}
		case <-c.kick:
			if c.take(false) {
				return true
			}
			// take may have started a new window: time it afresh.
			if timer != nil {
				timer.Stop()
				timer = nil
			}
		}
	}
}

// run makes one PASSIVE checkpoint and reports whether it left work to
// do (again) and whether it failed. SQLite reports busy when another
// checkpoint (the writer's own) held the lock, and copies fewer
// frames than the WAL holds when a reader still uses older ones; neither
// is an error.
func (c *walCheckpointer) run(ctx context.Context) (again, failed bool) {
	var busy, log, copied int64
	err := c.db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &log, &copied)
	if ctx.Err() != nil {
		return false, false
	}
	partial := err == nil && (busy != 0 || copied < log)
	// Logged after count released the lock: committed takes it on the
	// commit path, which must not wait for a slow log writer.
	switch failing := c.count(err, partial); {
	case err != nil && failing == 1:
		// Nothing is lost: the writer's own checkpoint still runs inside
		// the commit that takes the WAL past its threshold.
		c.log.Warn("WAL checkpoint failing; retrying with backoff, commits checkpoint meanwhile",
			"error", err, "retry_max", maxCheckpointBackoff)
	case err == nil && failing > 0:
		c.log.Info("WAL checkpoint recovered", "failed_runs", failing)
	}
	return err != nil || partial, err != nil
}

// count adds a run that ended with err (partial: it could not copy the
// whole WAL) to the stats. It returns the runs failed in a row: with this
// one when err is set, else those this success ended.
func (c *walCheckpointer) count(err error, partial bool) (failing uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stats.Runs++
	c.stats.LastError = nil
	switch {
	case err != nil:
		c.stats.Failed++
		c.stats.LastError = fmt.Errorf("store: WAL checkpoint: %w", err)
		c.failing++
		return c.failing
	case partial:
		c.stats.Partial++
	}
	failing, c.failing = c.failing, 0
	return failing
}

// close stops the checkpointer and closes its connection; the writer,
// closing last, checkpoints what is left.
func (c *walCheckpointer) close() error {
	c.stop()
	<-c.done
	return c.db.Close()
}
