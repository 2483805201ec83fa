package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
)

// The driver parses a statement's SQL every time database/sql hands it
// one: the store runs the same few dozen statements over and over, and
// parsing them was ~10% of a delivered alert's CPU. The connections here
// wrap the driver's and keep each statement they prepared, by its SQL
// text, for the life of the connection:
//
//   - they do not implement ExecerContext/QueryerContext, so database/sql
//     prepares every statement (PrepareContext), runs it and closes it;
//   - PrepareContext returns the kept statement when it is not in use: a
//     statement is in use from its prepare until both its Close and the
//     Close of every rows it produced (database/sql closes a Tx's or
//     Conn's statement at once, even with its rows still open);
//   - Close of a kept statement does not finalize it;
//   - a statement in use (the same SQL run again while its rows are still
//     being read, or held by a long-lived sql.Stmt) gets a fresh, unkept
//     one; so does SQL with more than maxKeptParams parameters (the
//     store's IN lists and multi-row inserts, whose every length is new
//     text; the inserts are long-lived sql.Stmts anyway);
//   - at maxKeptStmts a connection finalizes a kept statement not in use
//     to make room, so new SQL is not parsed on every run forever;
//   - closing the connection finalizes them all.
//
// database/sql uses a connection from one goroutine at a time, so a
// connection's statements need no lock.

// maxKeptStmts bounds the statements one connection keeps, maxKeptParams
// the parameters of a statement worth keeping.
const (
	maxKeptStmts  = 128
	maxKeptParams = 16
)

// openCached opens dsn with the registered "sqlite" driver, through
// connections that keep their prepared statements.
func openCached(dsn string, stats *stmtStats) (*sql.DB, error) {
	probe, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	drv := probe.Driver()
	if err := probe.Close(); err != nil {
		return nil, err
	}
	return sql.OpenDB(stmtConnector{drv: drv, dsn: dsn, stats: stats}), nil
}

// stmtStats counts statement preparations, for tests and benchmarks.
type stmtStats struct {
	parsed atomic.Int64 // statements the driver prepared (parsed)
	reused atomic.Int64 // prepares answered with a kept statement
}

type stmtConnector struct {
	drv   driver.Driver
	dsn   string
	stats *stmtStats
}

func (c stmtConnector) Connect(context.Context) (driver.Conn, error) {
	conn, err := c.drv.Open(c.dsn)
	if err != nil {
		return nil, err
	}
	inner, ok := conn.(stmtDriverConn)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("sqlite driver connection %T lacks context methods", conn)
	}
	return &stmtConn{inner: inner, kept: map[string]*keptStmt{}, stats: c.stats}, nil
}

func (c stmtConnector) Driver() driver.Driver { return c.drv }

// stmtDriverConn is what the wrapper needs of the driver's connection.
type stmtDriverConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
}

type stmtConn struct {
	inner stmtDriverConn
	kept  map[string]*keptStmt
	stats *stmtStats
}

var (
	_ driver.Conn               = (*stmtConn)(nil)
	_ driver.ConnBeginTx        = (*stmtConn)(nil)
	_ driver.ConnPrepareContext = (*stmtConn)(nil)
	_ driver.Pinger             = (*stmtConn)(nil)
	_ driver.SessionResetter    = (*stmtConn)(nil)
	_ driver.Validator          = (*stmtConn)(nil)
)

func (c *stmtConn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

func (c *stmtConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	if k, ok := c.kept[query]; ok && k.free() {
		k.held = true
		c.stats.reused.Add(1)
		return k, nil
	}
	st, err := c.inner.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.stats.parsed.Add(1)
	if _, ok := c.kept[query]; ok || strings.Count(query, "?") > maxKeptParams || !c.makeRoom() {
		return st, nil // used once, closed by database/sql
	}
	k := &keptStmt{Stmt: st, held: true}
	c.kept[query] = k
	return k, nil
}

// makeRoom finalizes a kept statement not in use when the connection
// keeps maxKeptStmts; false if all are in use.
func (c *stmtConn) makeRoom() bool {
	if len(c.kept) < maxKeptStmts {
		return true
	}
	for q, k := range c.kept {
		if k.free() {
			delete(c.kept, q)
			k.Stmt.Close() // a finalize error says nothing about the next statement
			return true
		}
	}
	return false
}

func (c *stmtConn) Close() error {
	var errs []error
	for q, k := range c.kept {
		errs = append(errs, k.Stmt.Close())
		delete(c.kept, q)
	}
	errs = append(errs, c.inner.Close())
	return errors.Join(errs...)
}

func (c *stmtConn) Begin() (driver.Tx, error) {
	return c.inner.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *stmtConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	return c.inner.BeginTx(ctx, opts)
}

func (c *stmtConn) Ping(ctx context.Context) error { return c.inner.Ping(ctx) }

func (c *stmtConn) ResetSession(ctx context.Context) error { return c.inner.ResetSession(ctx) }

func (c *stmtConn) IsValid() bool { return c.inner.IsValid() }

// keptStmt is a prepared statement its connection keeps; Close frees it
// for the next use instead of finalizing it. database/sql calls its
// methods, and those of its rows, with the connection locked.
type keptStmt struct {
	driver.Stmt
	held bool // prepared and not closed yet
	rows int  // rows produced and not closed yet
}

func (k *keptStmt) free() bool { return !k.held && k.rows == 0 }

func (k *keptStmt) Close() error {
	k.held = false
	return nil
}

func (k *keptStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	return k.Stmt.(driver.StmtExecContext).ExecContext(ctx, args)
}

func (k *keptStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	r, err := k.Stmt.(driver.StmtQueryContext).QueryContext(ctx, args)
	if err != nil {
		return nil, err
	}
	k.rows++
	return &keptRows{Rows: r, k: k}, nil
}

// keptRows releases its statement when closed.
type keptRows struct {
	driver.Rows
	k      *keptStmt
	closed bool
}

func (r *keptRows) Close() error {
	if !r.closed {
		r.closed = true
		r.k.rows--
	}
	return r.Rows.Close()
}

var (
	_ driver.StmtExecContext  = (*keptStmt)(nil)
	_ driver.StmtQueryContext = (*keptStmt)(nil)
)
