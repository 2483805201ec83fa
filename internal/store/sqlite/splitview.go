package sqlite

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/store"
)

// PutSplitView keeps the evidence of a split view, once per pair of trees
// (origin, sizes and roots of both checkpoints): a split view seen again,
// even with other cosignature lines on its notes, bumps the count and the
// last sighting of the existing row and keeps its notes. isNew reports
// whether the row was created. The notes are stored as given; PutSplitView
// does not verify them (the witness did, with the partner's key).
func (s *Store) PutSplitView(ctx context.Context, sv audit.SplitView, at time.Time) (isNew bool, err error) {
	switch {
	case sv.Origin == "":
		return false, fmt.Errorf("store: put split view: empty origin: %w", store.ErrInvalid)
	case len(sv.AcceptedNote) == 0 || len(sv.ConflictingNote) == 0:
		return false, fmt.Errorf("store: put split view of %s: both signed notes are required: %w", sv.Origin, store.ErrInvalid)
	case sv.Detection != audit.DetectedDirect && sv.Detection != audit.DetectedGossip:
		return false, fmt.Errorf("store: put split view of %s: detection %q, want %q or %q: %w",
			sv.Origin, sv.Detection, audit.DetectedDirect, audit.DetectedGossip, store.ErrInvalid)
	case (sv.Detection == audit.DetectedGossip) != (sv.Witness != ""):
		return false, fmt.Errorf("store: put split view of %s: a witness is named for gossip, and only for gossip: %w", sv.Origin, store.ErrInvalid)
	case sv.Accepted.Size == sv.Conflicting.Size && sv.Accepted.Hash == sv.Conflicting.Hash:
		return false, fmt.Errorf("store: put split view of %s: both checkpoints are size %d root %s: %w",
			sv.Origin, sv.Accepted.Size, sv.Accepted.Hash, store.ErrInvalid)
	}
	var count int64
	err = s.writer.QueryRowContext(ctx, `INSERT INTO audit_split_views
		(origin, accepted_size, accepted_root, accepted_note, conflicting_size, conflicting_root, conflicting_note,
		 reason, detection, witness, first_seen, last_seen)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (origin, accepted_size, accepted_root, conflicting_size, conflicting_root)
		DO UPDATE SET count = count + 1, last_seen = max(last_seen, excluded.last_seen)
		RETURNING count`,
		sv.Origin, sv.Accepted.Size, sv.Accepted.Hash[:], sv.AcceptedNote, sv.Conflicting.Size, sv.Conflicting.Hash[:], sv.ConflictingNote,
		sv.Reason, sv.Detection, sv.Witness, at.UnixNano(), at.UnixNano()).Scan(&count)
	if err != nil {
		return false, fmt.Errorf("store: put split view of %s (sizes %d and %d): %w", sv.Origin, sv.Accepted.Size, sv.Conflicting.Size, err)
	}
	return count == 1, nil
}

// SplitViews returns the kept split-view evidence, first seen first: of
// origin only, or of every origin if it is empty; at most limit rows, or
// all if limit is 0.
func (s *Store) SplitViews(ctx context.Context, origin string, limit int) ([]audit.KeptSplitView, error) {
	return s.SplitViewsAfter(ctx, origin, 0, limit)
}

// SplitViewsAfter is SplitViews from the row after afterID on, for paging.
func (s *Store) SplitViewsAfter(ctx context.Context, origin string, afterID int64, limit int) ([]audit.KeptSplitView, error) {
	if limit < 0 || afterID < 0 {
		return nil, fmt.Errorf("store: split views: limit %d, after id %d: %w", limit, afterID, store.ErrInvalid)
	}
	q := `SELECT id, origin, accepted_size, accepted_root, accepted_note, conflicting_size, conflicting_root, conflicting_note,
		reason, detection, witness, first_seen, last_seen, count
		FROM audit_split_views WHERE (? = '' OR origin = ?) AND id > ? ORDER BY id`
	args := []any{origin, origin, afterID}
	if limit > 0 {
		q += " LIMIT ?"
		args = append(args, limit)
	}
	rows, err := s.reader.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: split views: %w", err)
	}
	defer rows.Close()
	var out []audit.KeptSplitView
	for rows.Next() {
		var v audit.KeptSplitView
		var aRoot, cRoot []byte
		var first, last int64
		if err := rows.Scan(&v.ID, &v.Origin, &v.Accepted.Size, &aRoot, &v.AcceptedNote, &v.Conflicting.Size, &cRoot, &v.ConflictingNote,
			&v.Reason, &v.Detection, &v.Witness, &first, &last, &v.Count); err != nil {
			return nil, fmt.Errorf("store: split views: %w", err)
		}
		if len(aRoot) != tlog.HashSize || len(cRoot) != tlog.HashSize {
			return nil, fmt.Errorf("store: split view %d: stored roots of %d and %d bytes, want %d", v.ID, len(aRoot), len(cRoot), tlog.HashSize)
		}
		copy(v.Accepted.Hash[:], aRoot)
		copy(v.Conflicting.Hash[:], cRoot)
		v.Accepted.Origin, v.Conflicting.Origin = v.Origin, v.Origin
		v.FirstSeen, v.LastSeen = time.Unix(0, first).UTC(), time.Unix(0, last).UTC()
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: split views: %w", err)
	}
	return out, nil
}

// SplitViewCounts returns how many split views are kept per origin
// (origins without any are absent).
func (s *Store) SplitViewCounts(ctx context.Context) (map[string]int64, error) {
	rows, err := s.reader.QueryContext(ctx, "SELECT origin, COUNT(*) FROM audit_split_views GROUP BY origin")
	if err != nil {
		return nil, fmt.Errorf("store: split view counts: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var origin string
		var n int64
		if err := rows.Scan(&origin, &n); err != nil {
			return nil, fmt.Errorf("store: split view counts: %w", err)
		}
		out[origin] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: split view counts: %w", err)
	}
	return out, nil
}
