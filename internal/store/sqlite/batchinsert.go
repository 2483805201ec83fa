package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// rowInsert is a multi-row INSERT: its table and columns.
type rowInsert struct {
	table   string
	columns []string
}

var (
	auditRecordsInsert = rowInsert{"audit_records", []string{"seq", "time", "request_id", "side", "decision", "caller_id", "action", "agreement_id", "record", "partner"}}
	auditHashesInsert  = rowInsert{"audit_hashes", []string{"id", "hash"}}
)

// insertSizes are the row counts an INSERT statement is prepared for,
// largest first; any number of rows is written greedily with them, so
// every power of two keeps a batch to one execution per set bit (each
// execution has a fixed cost: 8-10% of an append at 16 appenders with
// only 64, 16, 4 and 1). 64 rows of 10 columns stay far below SQLite's
// limit of 32766 variables.
var insertSizes = []int{64, 32, 16, 8, 4, 2, 1}

// insertStmts are the multi-row INSERTs of the audit tables, prepared once
// on the writer connection when the store opens: preparing inside a batch's
// transaction would wait for the connection that transaction holds, and
// preparing per batch cost as much as the inserts. A transaction uses them
// through Tx.StmtContext, which reuses a statement already prepared on its
// connection.
type insertStmts struct {
	m map[string]*sql.Stmt // by table/rows
	// nextSeq reads the seq the next audit record gets.
	nextSeq *sql.Stmt
}

func prepareInserts(ctx context.Context, db *sql.DB) (*insertStmts, error) {
	c := &insertStmts{m: map[string]*sql.Stmt{}}
	var err error
	if c.nextSeq, err = db.PrepareContext(ctx, "SELECT COALESCE(MAX(seq), 0) + 1 FROM audit_records"); err != nil {
		return nil, fmt.Errorf("prepare next seq: %w", err)
	}
	for _, ins := range []rowInsert{auditRecordsInsert, auditHashesInsert} {
		row := "(?" + strings.Repeat(",?", len(ins.columns)-1) + ")"
		for _, n := range insertSizes {
			q := "INSERT INTO " + ins.table + " (" + strings.Join(ins.columns, ", ") + ") VALUES " + row + strings.Repeat(","+row, n-1)
			st, err := db.PrepareContext(ctx, q)
			if err != nil {
				c.close()
				return nil, fmt.Errorf("prepare insert of %d rows into %s: %w", n, ins.table, err)
			}
			c.m[insertKey(ins, n)] = st
		}
	}
	return c, nil
}

func insertKey(ins rowInsert, rows int) string { return fmt.Sprintf("%s/%d", ins.table, rows) }

// insert writes args, len(ins.columns) values per row in column order.
func (c *insertStmts) insert(ctx context.Context, tx *sql.Tx, ins rowInsert, args []any) error {
	width := len(ins.columns)
	if len(args)%width != 0 {
		return fmt.Errorf("%s: %d values for %d columns", ins.table, len(args), width)
	}
	for _, n := range insertSizes {
		for len(args) >= n*width {
			if _, err := tx.StmtContext(ctx, c.m[insertKey(ins, n)]).ExecContext(ctx, args[:n*width]...); err != nil {
				return fmt.Errorf("insert into %s: %w", ins.table, err)
			}
			args = args[n*width:]
		}
	}
	return nil
}

// close closes every prepared statement.
func (c *insertStmts) close() {
	if c.nextSeq != nil {
		c.nextSeq.Close()
	}
	for _, st := range c.m {
		st.Close()
	}
}
