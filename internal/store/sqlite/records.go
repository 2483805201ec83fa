package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/borderlink/borderlink/internal/store"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// marshal is deterministic so that equal records give equal bytes (and
// digests) across runs and gateways.
var marshal = proto.MarshalOptions{Deterministic: true}

// searchPageSize is how many declarations a search reads per query. Between
// pages no connection or snapshot is held, so a slow callback (a partner
// reading a stream) neither pins a reader connection nor stops WAL
// checkpoints.
const searchPageSize = 128

// PutRecords upserts declarations and risk assessments by id in one
// transaction: either all are stored or none. A declaration needs an id and
// a valid acceptance_time (the search order depends on it); a risk assessment
// needs an id. Invalid input wraps store.ErrInvalid.
func (s *Store) PutRecords(ctx context.Context, decls []*blv1.Declaration, risks []*blv1.RiskAssessment) error {
	if len(decls) == 0 && len(risks) == 0 {
		return nil
	}
	return s.PutRecordsQueued(ctx, decls, risks, nil)
}

// putDeclarations validates as it writes rather than up front: a bad record
// late in the batch then exercises the rollback, which is the guarantee.
func putDeclarations(ctx context.Context, tx *sql.Tx, decls []*blv1.Declaration) error {
	if len(decls) == 0 {
		return nil
	}
	upsert, err := tx.PrepareContext(ctx, `
		INSERT INTO declarations (id, acceptance_time, export_country, destination_country, record)
		VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET
			acceptance_time     = excluded.acceptance_time,
			export_country      = excluded.export_country,
			destination_country = excluded.destination_country,
			record              = excluded.record`)
	if err != nil {
		return fmt.Errorf("store: put records: prepare: %w", err)
	}
	defer upsert.Close()
	clearChapters, err := tx.PrepareContext(ctx, "DELETE FROM declaration_hs_chapters WHERE declaration_id = ?")
	if err != nil {
		return fmt.Errorf("store: put records: prepare: %w", err)
	}
	defer clearChapters.Close()
	addChapter, err := tx.PrepareContext(ctx,
		"INSERT OR IGNORE INTO declaration_hs_chapters (declaration_id, chapter) VALUES (?, ?)")
	if err != nil {
		return fmt.Errorf("store: put records: prepare: %w", err)
	}
	defer addChapter.Close()

	changed, err := prepareChange(ctx, tx)
	if err != nil {
		return err
	}
	defer changed.Close()

	for i, d := range decls {
		if d == nil {
			return fmt.Errorf("store: put records: declaration %d is nil: %w", i, store.ErrInvalid)
		}
		if d.GetId() == "" {
			return fmt.Errorf("store: put records: declaration %d has no id: %w", i, store.ErrInvalid)
		}
		at, err := declarationTime(d)
		if err != nil {
			return fmt.Errorf("store: put declaration %q: %w", d.GetId(), err)
		}
		b, err := marshal.Marshal(d)
		if err != nil {
			return fmt.Errorf("store: put declaration %q: marshal: %w", d.GetId(), err)
		}
		if _, err := upsert.ExecContext(ctx, d.GetId(), at, d.GetExportCountry(), d.GetDestinationCountry(), b); err != nil {
			return fmt.Errorf("store: put declaration %q: %w", d.GetId(), err)
		}
		if _, err := changed.ExecContext(ctx, "declaration", d.GetId()); err != nil {
			return fmt.Errorf("store: put declaration %q: record change: %w", d.GetId(), err)
		}
		if _, err := clearChapters.ExecContext(ctx, d.GetId()); err != nil {
			return fmt.Errorf("store: put declaration %q: clear chapters: %w", d.GetId(), err)
		}
		for _, g := range d.GetGoodsItems() {
			ch, ok := chapterOf(g.GetHsCode())
			if !ok {
				continue // too short to have a chapter; cannot match a chapter filter
			}
			if _, err := addChapter.ExecContext(ctx, d.GetId(), ch); err != nil {
				return fmt.Errorf("store: put declaration %q: add chapter %q: %w", d.GetId(), ch, err)
			}
		}
	}
	return nil
}

func putRiskAssessments(ctx context.Context, tx *sql.Tx, risks []*blv1.RiskAssessment) error {
	if len(risks) == 0 {
		return nil
	}
	upsert, err := tx.PrepareContext(ctx, `
		INSERT INTO risk_assessments (id, declaration_id, record) VALUES (?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET
			declaration_id = excluded.declaration_id,
			record         = excluded.record`)
	if err != nil {
		return fmt.Errorf("store: put records: prepare: %w", err)
	}
	defer upsert.Close()
	changed, err := prepareChange(ctx, tx)
	if err != nil {
		return err
	}
	defer changed.Close()
	for i, r := range risks {
		if r == nil {
			return fmt.Errorf("store: put records: risk assessment %d is nil: %w", i, store.ErrInvalid)
		}
		if r.GetId() == "" {
			return fmt.Errorf("store: put records: risk assessment %d has no id: %w", i, store.ErrInvalid)
		}
		b, err := marshal.Marshal(r)
		if err != nil {
			return fmt.Errorf("store: put risk assessment %q: marshal: %w", r.GetId(), err)
		}
		if _, err := upsert.ExecContext(ctx, r.GetId(), r.GetDeclarationId(), b); err != nil {
			return fmt.Errorf("store: put risk assessment %q: %w", r.GetId(), err)
		}
		if _, err := changed.ExecContext(ctx, "risk_assessment", r.GetId()); err != nil {
			return fmt.Errorf("store: put risk assessment %q: record change: %w", r.GetId(), err)
		}
	}
	return nil
}

// prepareChange moves a record to the end of the commit order: REPLACE
// deletes its old position and gives it a new, larger seq.
func prepareChange(ctx context.Context, tx *sql.Tx) (*sql.Stmt, error) {
	st, err := tx.PrepareContext(ctx, "INSERT OR REPLACE INTO record_changes (record_type, record_id) VALUES (?, ?)")
	if err != nil {
		return nil, fmt.Errorf("store: put records: prepare: %w", err)
	}
	return st, nil
}

// declarationTime returns the acceptance time as unix nanoseconds.
func declarationTime(d *blv1.Declaration) (int64, error) {
	ts := d.GetAcceptanceTime()
	if ts == nil {
		return 0, fmt.Errorf("acceptance_time is required: %w", store.ErrInvalid)
	}
	if err := ts.CheckValid(); err != nil {
		return 0, fmt.Errorf("acceptance_time: %v: %w", err, store.ErrInvalid)
	}
	return nanos(ts.AsTime())
}

var (
	minNanoTime = time.Unix(0, math.MinInt64)
	maxNanoTime = time.Unix(0, math.MaxInt64)
)

// nanos converts a stored time to unix nanoseconds, refusing times int64
// nanoseconds cannot hold (before 1677 or after 2262) instead of wrapping.
func nanos(t time.Time) (int64, error) {
	if t.Before(minNanoTime) || t.After(maxNanoTime) {
		return 0, fmt.Errorf("time %s out of range: %w", t.Format(time.RFC3339), store.ErrInvalid)
	}
	return t.UnixNano(), nil
}

// boundNanos converts a query bound, clamping out-of-range times: a bound
// beyond what can be stored still means "everything on that side".
func boundNanos(t time.Time) int64 {
	switch {
	case t.Before(minNanoTime):
		return math.MinInt64
	case t.After(maxNanoTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// chapterOf returns the HS chapter (first two characters) of an hs_code.
func chapterOf(hsCode string) (string, bool) {
	if len(hsCode) < 2 {
		return "", false
	}
	return hsCode[:2], true
}

// GetDeclaration returns the declaration with the given id, or an error
// wrapping store.ErrNotFound.
func (s *Store) GetDeclaration(ctx context.Context, id string) (*blv1.Declaration, error) {
	d := new(blv1.Declaration)
	if err := s.getRecord(ctx, "SELECT record FROM declarations WHERE id = ?", id, d); err != nil {
		return nil, fmt.Errorf("store: get declaration %q: %w", id, err)
	}
	return d, nil
}

// GetRiskAssessment returns the risk assessment with the given id, or an
// error wrapping store.ErrNotFound.
func (s *Store) GetRiskAssessment(ctx context.Context, id string) (*blv1.RiskAssessment, error) {
	r := new(blv1.RiskAssessment)
	if err := s.getRecord(ctx, "SELECT record FROM risk_assessments WHERE id = ?", id, r); err != nil {
		return nil, fmt.Errorf("store: get risk assessment %q: %w", id, err)
	}
	return r, nil
}

// getRecord decodes the one record query selects for id into m. The
// encoded record is decoded from the buffer the driver returned
// (sql.RawBytes) before the row is closed: scanning into a []byte would
// copy it once more, and it can be tens of kilobytes on every exchange.
func (s *Store) getRecord(ctx context.Context, query, id string, m proto.Message) error {
	rows, err := s.reader.QueryContext(ctx, query, id)
	if err != nil {
		return err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return err
		}
		return store.ErrNotFound
	}
	var b sql.RawBytes
	if err := rows.Scan(&b); err != nil {
		return err
	}
	if err := proto.Unmarshal(b, m); err != nil {
		return fmt.Errorf("unmarshal: %w", err)
	}
	return rows.Close()
}

// SearchDeclarations calls fn for each declaration matching q, ordered by
// acceptance time (newest first) then id (byte order), until fn returns an
// error. If that error is store.ErrStop, SearchDeclarations returns nil;
// any other error from fn is returned unchanged.
//
// Matches are read in pages; no connection or lock is held while fn runs, so
// fn may call back into the Store, including its write methods. The result is
// therefore not one snapshot: a declaration upserted during the search with a
// different acceptance time may be seen twice or not at all.
//
// HS chapters must be two digits; a malformed filter wraps store.ErrInvalid.
func (s *Store) SearchDeclarations(ctx context.Context, q store.DeclarationQuery, fn func(*blv1.Declaration) error) error {
	where, args, err := declarationFilter(q)
	if err != nil {
		return fmt.Errorf("store: search declarations: %w", err)
	}
	base := "SELECT d.id, d.acceptance_time, d.record FROM declarations d"
	var (
		afterTime int64
		afterID   string
		started   bool
	)
	for {
		conds, cargs := where, args
		if started {
			// Keyset pagination in (acceptance_time DESC, id ASC) order:
			// after (T, I) means t < T OR (t = T AND id > I), written with a
			// separate t <= T so SQLite seeks the index to the page start
			// instead of rescanning every earlier page.
			conds = append(slices.Clip(conds), keysetCond)
			cargs = append(slices.Clip(cargs), afterTime, afterTime, afterID)
		}
		query := base
		if len(conds) > 0 {
			query += " WHERE " + strings.Join(conds, " AND ")
		}
		query += " ORDER BY d.acceptance_time DESC, d.id ASC LIMIT ?"
		cargs = append(slices.Clip(cargs), searchPageSize)

		page, err := s.searchPage(ctx, query, cargs)
		if err != nil {
			return err
		}
		for _, m := range page {
			if err := fn(m.decl); err != nil {
				if errors.Is(err, store.ErrStop) {
					return nil
				}
				return err
			}
		}
		if len(page) < searchPageSize {
			return nil
		}
		last := page[len(page)-1]
		afterTime, afterID, started = last.at, last.decl.GetId(), true
	}
}

const keysetCond = "d.acceptance_time <= ? AND (d.acceptance_time < ? OR d.id > ?)"

type searchMatch struct {
	at   int64
	decl *blv1.Declaration
}

func (s *Store) searchPage(ctx context.Context, query string, args []any) ([]searchMatch, error) {
	rows, err := s.reader.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: search declarations: %w", err)
	}
	defer rows.Close()
	var page []searchMatch
	for rows.Next() {
		var (
			id string
			at int64
			b  []byte
		)
		if err := rows.Scan(&id, &at, &b); err != nil {
			return nil, fmt.Errorf("store: search declarations: %w", err)
		}
		d := new(blv1.Declaration)
		if err := proto.Unmarshal(b, d); err != nil {
			return nil, fmt.Errorf("store: search declarations: declaration %q: unmarshal: %w", id, err)
		}
		page = append(page, searchMatch{at: at, decl: d})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: search declarations: %w", err)
	}
	return page, nil
}

// declarationFilter turns q into SQL conditions on alias d.
func declarationFilter(q store.DeclarationQuery) ([]string, []any, error) {
	var (
		conds []string
		args  []any
	)
	if len(q.HSChapters) > 0 {
		var chapters []string
		for _, ch := range q.HSChapters {
			if !isChapter(ch) {
				return nil, nil, fmt.Errorf("HS chapter %q: want two digits: %w", ch, store.ErrInvalid)
			}
			if !slices.Contains(chapters, ch) {
				chapters = append(chapters, ch)
			}
		}
		marks := strings.TrimSuffix(strings.Repeat("?,", len(chapters)), ",")
		conds = append(conds, "EXISTS (SELECT 1 FROM declaration_hs_chapters c WHERE c.declaration_id = d.id AND c.chapter IN ("+marks+"))")
		for _, ch := range chapters {
			args = append(args, ch)
		}
	}
	if q.ExportCountry != "" {
		conds = append(conds, "d.export_country = ?")
		args = append(args, q.ExportCountry)
	}
	if q.DestinationCountry != "" {
		conds = append(conds, "d.destination_country = ?")
		args = append(args, q.DestinationCountry)
	}
	if !q.AcceptedAfter.IsZero() {
		conds = append(conds, "d.acceptance_time >= ?")
		args = append(args, boundNanos(q.AcceptedAfter))
	}
	if !q.AcceptedBefore.IsZero() {
		conds = append(conds, "d.acceptance_time < ?")
		args = append(args, boundNanos(q.AcceptedBefore))
	}
	return conds, args, nil
}

func isChapter(s string) bool {
	return len(s) == 2 && '0' <= s[0] && s[0] <= '9' && '0' <= s[1] && s[1] <= '9'
}

// CountRecords returns the number of stored declarations and risk
// assessments, read from one snapshot.
func (s *Store) CountRecords(ctx context.Context) (decls, risks int64, err error) {
	tx, err := s.reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return 0, 0, fmt.Errorf("store: count records: begin: %w", err)
	}
	defer tx.Rollback()
	if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM declarations").Scan(&decls); err != nil {
		return 0, 0, fmt.Errorf("store: count records: declarations: %w", err)
	}
	if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM risk_assessments").Scan(&risks); err != nil {
		return 0, 0, fmt.Errorf("store: count records: risk assessments: %w", err)
	}
	return decls, risks, nil
}
