package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"time"

	"github.com/borderlink/borderlink/internal/store"
)

// WAL checkpoints copy committed pages from the WAL into the database
// file and sync it, so that the WAL can start over. SQLite runs one by
// default inside the COMMIT that takes the WAL past 1,000 pages: at 500
// audit appends a second that was every few hundred commits, and each such
// commit waited for the copy and a second sync on top of its own, in the
// tail of the audit wait. The store runs them on a connection of their
// own instead, after commits and at most every checkpointInterval,
// PASSIVE (never waiting for a lock, so never holding up a commit or a
// read); the writer's own checkpoint is left as a backstop for a WAL that
// grows past backstopPages anyway (a large import between two runs, or a
// checkpointer that keeps failing).
const (
	checkpointInterval = 200 * time.Millisecond
	backstopPages      = 10000 // 40 MB at SQLite's default page size
)

// walCheckpointer runs PASSIVE WAL checkpoints on its own connection
// after the commits that kick it.
type walCheckpointer struct {
	db   *sql.DB
	kick chan struct{} // buffered (1): a kick while one is pending is merged into it
	stop context.CancelFunc
	done chan struct{}

	mu    sync.Mutex
	stats store.WALCheckpointStats
}

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

// startCheckpointer opens the checkpointer's connection to the file at abs
// and starts it.
func startCheckpointer(abs string) (*walCheckpointer, error) {
	db, err := sql.Open("sqlite", dsn(abs, "", fmt.Sprintf("busy_timeout(%d)", busyTimeoutMillis)))
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	ctx, cancel := context.WithCancel(context.Background())
	c := &walCheckpointer{db: db, kick: make(chan struct{}, 1), stop: cancel, done: make(chan struct{})}
	go c.loop(ctx)
	return c, nil
}

// committed tells the checkpointer that a commit added to the WAL. It
// never blocks.
func (c *walCheckpointer) committed() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *walCheckpointer) loop(ctx context.Context) {
	defer close(c.done)
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		}
		if wait := checkpointInterval - time.Since(last); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		last = time.Now()
		c.run(ctx)
	}
}

// run makes one PASSIVE checkpoint. SQLite reports a checkpoint it could
// not finish (a reader still on older frames) as busy, not as an error:
// the next run continues it.
func (c *walCheckpointer) run(ctx context.Context) {
	var busy, log, copied int64
	err := c.db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &log, &copied)
	if ctx.Err() != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stats.Runs++
	c.stats.LastError = nil
	switch {
	case err != nil:
		c.stats.Failed++
		c.stats.LastError = fmt.Errorf("store: WAL checkpoint: %w", err)
	case busy != 0 || copied < log:
		c.stats.Partial++
	}
}

// close stops the checkpointer and closes its connection; the writer,
// closing last, checkpoints what is left.
func (c *walCheckpointer) close() error {
	c.stop()
	<-c.done
	return c.db.Close()
}
