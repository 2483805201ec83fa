package sqlite

import (
	"context"
	"fmt"
	"math"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/borderlink/borderlink/internal/store"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// auditFormatVersion is the AuditRecord version this binary writes and reads
// (see audit.proto: readers refuse versions they do not know).
const auditFormatVersion = 1

// AppendAudit appends rec to the audit trail and returns its sequence number.
// Sequence numbers start at 1 and are gapless in commit order. AppendAudit
// returns only after the record is committed and fsynced.
//
// rec.Seq must be zero (the store assigns it), rec.Version zero or 1 (zero is
// stored as 1) and rec.Time set; otherwise the error wraps store.ErrInvalid.
// On success rec.Seq and rec.Version are set to the stored values, so rec
// then marshals (deterministically) to the stored bytes; on error rec is
// unchanged. rec must not be used by other goroutines during the call.
func (s *Store) AppendAudit(ctx context.Context, rec *blv1.AuditRecord) (uint64, error) {
	if rec == nil {
		return 0, fmt.Errorf("store: append audit: nil record: %w", store.ErrInvalid)
	}
	if rec.GetSeq() != 0 {
		// Most likely the same record appended twice.
		return 0, fmt.Errorf("store: append audit (request %q): seq is %d, want 0: %w", rec.GetRequestId(), rec.GetSeq(), store.ErrInvalid)
	}
	if v := rec.GetVersion(); v != 0 && v != auditFormatVersion {
		return 0, fmt.Errorf("store: append audit (request %q): version %d, this binary writes %d: %w", rec.GetRequestId(), v, auditFormatVersion, store.ErrInvalid)
	}
	if err := rec.GetTime().CheckValid(); err != nil {
		return 0, fmt.Errorf("store: append audit (request %q): time: %v: %w", rec.GetRequestId(), err, store.ErrInvalid)
	}
	at, err := nanos(rec.GetTime().AsTime())
	if err != nil {
		return 0, fmt.Errorf("store: append audit (request %q): %w", rec.GetRequestId(), err)
	}

	stored := proto.CloneOf(rec)
	stored.Version = auditFormatVersion

	// The writer pool has one connection and BEGIN IMMEDIATE takes the write
	// lock before reading MAX(seq), so no other append can commit between
	// the read and the insert: seqs follow commit order without gaps, and a
	// rolled-back append leaves no hole.
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("store: append audit (request %q): begin: %w", rec.GetRequestId(), err)
	}
	defer tx.Rollback()

	var next int64
	if err := tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(seq), 0) + 1 FROM audit_records").Scan(&next); err != nil {
		return 0, fmt.Errorf("store: append audit (request %q): next seq: %w", rec.GetRequestId(), err)
	}
	stored.Seq = uint64(next)
	b, err := marshal.Marshal(stored)
	if err != nil {
		return 0, fmt.Errorf("store: append audit seq %d: marshal: %w", next, err)
	}
	if _, err := tx.ExecContext(ctx, `
		INSERT INTO audit_records (seq, time, request_id, side, decision, caller_id, action, agreement_id, record)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		next, at, stored.GetRequestId(), int64(stored.GetSide()), int64(stored.GetDecision()),
		stored.GetCallerId(), stored.GetAction(), stored.GetAgreementId(), b); err != nil {
		return 0, fmt.Errorf("store: append audit seq %d: %w", next, err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("store: append audit seq %d: commit: %w", next, err)
	}
	rec.Seq, rec.Version = stored.Seq, stored.Version
	return stored.Seq, nil
}

// ListAudit returns audit records matching q in ascending seq order, at most
// q.Limit (store.DefaultAuditLimit if 0). To page, repeat with AfterSeq set
// to the last seq returned. A record of an unknown format version is an
// error, never silently skipped.
func (s *Store) ListAudit(ctx context.Context, q store.AuditQuery) ([]*blv1.AuditRecord, error) {
	limit := q.Limit
	switch {
	case limit < 0:
		return nil, fmt.Errorf("store: list audit: limit %d is negative: %w", limit, store.ErrInvalid)
	case limit == 0:
		limit = store.DefaultAuditLimit
	}
	if q.AfterSeq >= math.MaxInt64 {
		return nil, nil // SQLite seqs are int64; nothing can follow
	}

	conds := []string{"seq > ?"}
	args := []any{int64(q.AfterSeq)}
	if q.RequestID != "" {
		conds = append(conds, "request_id = ?")
		args = append(args, q.RequestID)
	}
	if !q.Since.IsZero() {
		conds = append(conds, "time >= ?")
		args = append(args, boundNanos(q.Since))
	}
	if !q.Until.IsZero() {
		conds = append(conds, "time < ?")
		args = append(args, boundNanos(q.Until))
	}
	args = append(args, limit)
	query := "SELECT seq, record FROM audit_records WHERE " + strings.Join(conds, " AND ") + " ORDER BY seq LIMIT ?"

	rows, err := s.reader.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list audit: %w", err)
	}
	defer rows.Close()
	var out []*blv1.AuditRecord
	for rows.Next() {
		var (
			seq int64
			b   []byte
		)
		if err := rows.Scan(&seq, &b); err != nil {
			return nil, fmt.Errorf("store: list audit: %w", err)
		}
		rec := new(blv1.AuditRecord)
		if err := proto.Unmarshal(b, rec); err != nil {
			return nil, fmt.Errorf("store: list audit: seq %d: unmarshal: %w", seq, err)
		}
		if rec.GetVersion() != auditFormatVersion {
			return nil, fmt.Errorf("store: list audit: seq %d: unknown record version %d", seq, rec.GetVersion())
		}
		if rec.GetSeq() != uint64(seq) {
			return nil, fmt.Errorf("store: list audit: seq %d: record says seq %d", seq, rec.GetSeq())
		}
		out = append(out, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list audit: %w", err)
	}
	return out, nil
}
