// Package sqlite is Borderlink's embedded storage backend: declarations, risk
// assessments and the audit trail in one SQLite file (modernc.org/sqlite, no
// cgo).
//
// Guarantees, beyond the contract of package store:
//   - A write method returns nil only after its transaction is committed and
//     fsynced (WAL, synchronous=FULL). In particular AppendAudit never
//     acknowledges an audit record that a power loss could take back.
//   - Writes are serialised in Go over a single connection and begin with
//     BEGIN IMMEDIATE, so they neither interleave nor fail with SQLITE_BUSY
//     on lock upgrade; other processes writing the same file wait up to
//     busy_timeout. Only this Store appends to the audit log: a record
//     another process adds makes every later AppendAudit fail.
//   - Reads use a separate pool of query_only connections and never take the
//     write lock; WAL lets them run while a write commits.
//   - Under light load WAL checkpoints run on a connection of their own,
//     not inside a commit (walcheckpoint.go).
//   - Open applies the embedded migrations and refuses a file whose schema is
//     newer than this binary knows (store.ErrSchemaTooNew).
//
// A Store is safe for concurrent use.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	msqlite "modernc.org/sqlite" // also registers the "sqlite" database/sql driver

	"github.com/borderlink/borderlink/internal/store"
)

// busyTimeoutMillis bounds how long a connection waits for a lock held by
// another process before failing with SQLITE_BUSY.
const busyTimeoutMillis = 10000

// Store is a SQLite-backed store. Create it with Open.
type Store struct {
	// writer has exactly one connection: SQLite admits one writer at a time,
	// and queueing in database/sql is cheaper and fairer than SQLITE_BUSY
	// retries inside SQLite's busy handler.
	writer *sql.DB
	// reader is a pool of query_only connections for lookups and searches.
	reader *sql.DB
	// seq sequences audit appends (group commit, see AppendAudit).
	seq *sequencer
	// stmts counts statements parsed and reused by both pools'
	// connections (stmtcache.go).
	stmts *stmtStats
	// ckpt checkpoints the WAL off the commit path (walcheckpoint.go).
	ckpt *walCheckpointer

	closeOnce sync.Once
	closeErr  error
}

// Option changes how Open sets up the store.
type Option func(*options)

type options struct {
	log *slog.Logger
}

// WithLogger has the store log what happens off the caller's path (its
// WAL checkpoints failing and recovering); by default, or with nil, it
// logs nothing.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.log = l
		}
	}
}

// Open opens the database at path, creating the file if needed, and applies
// pending migrations. The directory must exist. The caller must Close the
// Store.
func Open(ctx context.Context, path string, opts ...Option) (*Store, error) {
	o := options{log: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") {
		// The store opens two pools on one file; an in-memory database or a
		// caller-built URI would give each pool a different database or
		// override the pragmas the guarantees rest on.
		return nil, fmt.Errorf("store: open %q: want a file path: %w", path, store.ErrInvalid)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("store: open %q: %w", path, err)
	}

	stats := &stmtStats{}
	writer, err := openWriter(ctx, abs, stats)
	if err != nil {
		return nil, fmt.Errorf("store: open %q: %w", path, err)
	}
	s := &Store{writer: writer, stmts: stats}
	if err := migrate(ctx, writer); err != nil {
		writer.Close()
		return nil, fmt.Errorf("store: open %q: %w", path, err)
	}
	records, err := backfillAuditHashes(ctx, writer)
	if err != nil {
		writer.Close()
		return nil, fmt.Errorf("store: open %q: %w", path, err)
	}

	// Readers are opened after the writer has put the file in WAL mode (a
	// persistent property of the file), so they need not set it themselves.
	reader, err := openCached(dsn(abs, "",
		fmt.Sprintf("busy_timeout(%d)", busyTimeoutMillis),
		"foreign_keys(1)",
		"query_only(1)",
	), stats)
	if err != nil {
		writer.Close()
		return nil, fmt.Errorf("store: open %q: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	reader.SetMaxOpenConns(n)
	reader.SetMaxIdleConns(n)
	s.reader = reader
	if err := reader.PingContext(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("store: open %q: %w", path, err)
	}
	if s.ckpt, err = startCheckpointer(ctx, abs, checkpointDelay, o.log); err != nil {
		s.Close()
		return nil, fmt.Errorf("store: open %q: %w", path, err)
	}
	inserts, err := prepareInserts(ctx, writer)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("store: open %q: %w", path, err)
	}
	s.startSequencer(inserts, records)
	return s, nil
}

// openWriter opens the writer pool on the file at abs: one connection,
// BEGIN IMMEDIATE, and the pragmas AppendAudit's durability rests on,
// checked (checkDurable).
func openWriter(ctx context.Context, abs string, stats *stmtStats) (*sql.DB, error) {
	// Commit with fdatasync(2), as SQLite's own builds do wherever their
	// configure script finds it (every Linux distribution's): it syncs the
	// data and the metadata needed to read it back, size included, and
	// skips the timestamps fsync(2) also pushes through the file system's
	// journal, so a commit is as durable and its sync shorter. modernc's
	// transpiled library keeps the source default, fsync, unless told; the
	// switch is process-wide. Where fdatasync does not exist (macOS,
	// Windows) the error is ignored and commits keep fsync.
	_, _ = msqlite.Fdatasync(true)
	writer, err := openCached(dsn(abs, "immediate",
		// busy_timeout first so that switching to WAL waits for other
		// processes instead of failing.
		fmt.Sprintf("busy_timeout(%d)", busyTimeoutMillis),
		"journal_mode(WAL)",
		// In WAL mode synchronous=NORMAL may lose the last commits on power
		// loss (the WAL is fsynced only at checkpoints). FULL fsyncs the WAL
		// on every commit, which AppendAudit's contract needs: an audit
		// record we acknowledged, and for which we may have signed a
		// receipt, must survive a crash.
		"synchronous(FULL)",
		// Under light load checkpoints run off the commit path before the
		// writer's own threshold (walcheckpoint.go).
		fmt.Sprintf("wal_autocheckpoint(%d)", writerCheckpointPages),
		"foreign_keys(1)",
		// Statement journals (a multi-row INSERT inside the audit batch's
		// transaction needs one) in memory, not in a temporary file: they
		// only undo a failed statement and were a third of the
		// sequencer's write syscalls. Durability is the WAL's.
		"temp_store(MEMORY)",
	), stats)
	if err != nil {
		return nil, err
	}
	if err := keepOneDurable(ctx, writer); err != nil {
		writer.Close()
		return nil, err
	}
	return writer, nil
}

// keepOneDurable makes db a pool of one connection, kept open for good,
// and checks that it commits durably (checkDurable).
func keepOneDurable(ctx context.Context, db *sql.DB) error {
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	return checkDurable(ctx, db)
}

// dsn builds a modernc.org/sqlite DSN. The path is percent-encoded in a
// file: URI so that '?', '#' or '%' in a directory name cannot be mistaken
// for the start of the parameters. Pragmas run in the order given on every
// new connection; txlock ("immediate") sets how BEGIN starts a transaction.
func dsn(absPath, txlock string, pragmas ...string) string {
	q := url.Values{"_pragma": pragmas}
	if txlock != "" {
		q.Set("_txlock", txlock)
	}
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(absPath), RawQuery: q.Encode()}
	return u.String()
}

// checkDurable fails unless db's connection is in WAL mode with
// synchronous=FULL, what AppendAudit's durability rests on: journal_mode
// silently stays "delete" (or "memory") on file systems without shared
// memory support.
func checkDurable(ctx context.Context, db *sql.DB) error {
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("read journal_mode: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal_mode is %q, want wal", mode)
	}
	var sync int
	if err := db.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil {
		return fmt.Errorf("read synchronous: %w", err)
	}
	if sync < 2 {
		return fmt.Errorf("synchronous is %d, want 2 (FULL) or more", sync)
	}
	return nil
}

// Close closes the database. It is safe to call more than once; later calls
// return the first call's result. Methods called after Close fail.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.stopSequencer()
		var rerr error
		if s.ckpt != nil {
			rerr = s.ckpt.close()
		}
		if s.reader != nil {
			rerr = errors.Join(rerr, s.reader.Close())
		}
		// The writer closes last: the last connection to close checkpoints
		// the WAL into the main file.
		s.closeErr = errors.Join(rerr, s.writer.Close())
		if s.closeErr != nil {
			s.closeErr = fmt.Errorf("store: close: %w", s.closeErr)
		}
	})
	return s.closeErr
}

// Ping checks that both the writer and the reader connections are usable.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.writer.PingContext(ctx); err != nil {
		return fmt.Errorf("store: ping writer: %w", err)
	}
	if err := s.reader.PingContext(ctx); err != nil {
		return fmt.Errorf("store: ping reader: %w", err)
	}
	return nil
}
