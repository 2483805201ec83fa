package sqlite

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/store"
)

// PutSplitView keeps the evidence of a split view, one row per incident:
// origin, detection and witness (docs/audit.md, Split-view evidence). The
// first detection of an incident creates its row, whose pair of
// checkpoints, notes and reason are never rewritten; each later one bumps
// the count and records its own pair as the latest (unless at is older
// than the last sighting, which then only counts). isNew reports whether
// the row was created. The notes are stored as given; PutSplitView does
// not verify them (the witness did, with the partner's key).
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
	case sv.Accepted.Size < 0 || sv.Conflicting.Size < 0:
		return false, fmt.Errorf("store: put split view of %s: sizes %d and %d: %w", sv.Origin, sv.Accepted.Size, sv.Conflicting.Size, store.ErrInvalid)
	case sv.Accepted.Size == sv.Conflicting.Size && sv.Accepted.Hash == sv.Conflicting.Hash:
		return false, fmt.Errorf("store: put split view of %s: both checkpoints are size %d root %s: %w",
			sv.Origin, sv.Accepted.Size, sv.Accepted.Hash, store.ErrInvalid)
	}
	// In an UPDATE every right-hand side reads the row as it was, so the
	// latest pair is replaced exactly when last_seen may move.
	var count int64
	err = s.writer.QueryRowContext(ctx, `INSERT INTO audit_split_views
		(origin, detection, witness,
		 accepted_size, accepted_root, accepted_note, conflicting_size, conflicting_root, conflicting_note, reason,
		 latest_accepted_size, latest_accepted_root, latest_accepted_note,
		 latest_conflicting_size, latest_conflicting_root, latest_conflicting_note, latest_reason,
		 first_seen, last_seen)
		VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)
		ON CONFLICT (origin, detection, witness) DO UPDATE SET
			count = count + 1,
			latest_accepted_size    = iif(excluded.last_seen >= last_seen, excluded.accepted_size, latest_accepted_size),
			latest_accepted_root    = iif(excluded.last_seen >= last_seen, excluded.accepted_root, latest_accepted_root),
			latest_accepted_note    = iif(excluded.last_seen >= last_seen, excluded.accepted_note, latest_accepted_note),
			latest_conflicting_size = iif(excluded.last_seen >= last_seen, excluded.conflicting_size, latest_conflicting_size),
			latest_conflicting_root = iif(excluded.last_seen >= last_seen, excluded.conflicting_root, latest_conflicting_root),
			latest_conflicting_note = iif(excluded.last_seen >= last_seen, excluded.conflicting_note, latest_conflicting_note),
			latest_reason           = iif(excluded.last_seen >= last_seen, excluded.reason, latest_reason),
			last_seen = max(last_seen, excluded.last_seen)
		RETURNING count`,
		sv.Origin, sv.Detection, sv.Witness,
		sv.Accepted.Size, sv.Accepted.Hash[:], sv.AcceptedNote, sv.Conflicting.Size, sv.Conflicting.Hash[:], sv.ConflictingNote, sv.Reason,
		at.UnixNano()).Scan(&count)
	if err != nil {
		return false, fmt.Errorf("store: put split view of %s (%s, sizes %d and %d): %w", sv.Origin, sv.Detection, sv.Accepted.Size, sv.Conflicting.Size, err)
	}
	return count == 1, nil
}

// SplitViews returns the kept split-view incidents, first seen first: of
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
	q := `SELECT id, origin, detection, witness,
		accepted_size, accepted_root, accepted_note, conflicting_size, conflicting_root, conflicting_note, reason,
		latest_accepted_size, latest_accepted_root, latest_accepted_note,
		latest_conflicting_size, latest_conflicting_root, latest_conflicting_note, latest_reason,
		first_seen, last_seen, count
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
		var aRoot, cRoot, laRoot, lcRoot []byte
		var first, last int64
		if err := rows.Scan(&v.ID, &v.Origin, &v.Detection, &v.Witness,
			&v.Accepted.Size, &aRoot, &v.AcceptedNote, &v.Conflicting.Size, &cRoot, &v.ConflictingNote, &v.Reason,
			&v.Latest.Accepted.Size, &laRoot, &v.Latest.AcceptedNote,
			&v.Latest.Conflicting.Size, &lcRoot, &v.Latest.ConflictingNote, &v.Latest.Reason,
			&first, &last, &v.Count); err != nil {
			return nil, fmt.Errorf("store: split views: %w", err)
		}
		for _, r := range []struct {
			dst  *tlog.Hash
			root []byte
		}{{&v.Accepted.Hash, aRoot}, {&v.Conflicting.Hash, cRoot}, {&v.Latest.Accepted.Hash, laRoot}, {&v.Latest.Conflicting.Hash, lcRoot}} {
			if len(r.root) != tlog.HashSize {
				return nil, fmt.Errorf("store: split view %d: a stored root of %d bytes, want %d", v.ID, len(r.root), tlog.HashSize)
			}
			copy(r.dst[:], r.root)
		}
		v.Accepted.Origin, v.Conflicting.Origin = v.Origin, v.Origin
		v.Latest.Origin, v.Latest.Detection, v.Latest.Witness = v.Origin, v.Detection, v.Witness
		v.Latest.Accepted.Origin, v.Latest.Conflicting.Origin = v.Origin, v.Origin
		v.FirstSeen, v.LastSeen = time.Unix(0, first).UTC(), time.Unix(0, last).UTC()
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: split views: %w", err)
	}
	return out, nil
}

// SplitViewCounts returns, per origin with evidence (others are absent),
// how many split-view incidents are kept (rows: a fork that lasts counts
// once per detection path, direct or gossip per witness) and how many
// times split views were detected in all (the sum of the incidents'
// counts, which moves with every detection, so an alert on its increase
// fires for a fork seen again as well as for a new one).
func (s *Store) SplitViewCounts(ctx context.Context) (map[string]audit.SplitViewTally, error) {
	rows, err := s.reader.QueryContext(ctx, "SELECT origin, COUNT(*), SUM(count) FROM audit_split_views GROUP BY origin")
	if err != nil {
		return nil, fmt.Errorf("store: split view counts: %w", err)
	}
	defer rows.Close()
	out := map[string]audit.SplitViewTally{}
	for rows.Next() {
		var origin string
		var t audit.SplitViewTally
		if err := rows.Scan(&origin, &t.Incidents, &t.Detections); err != nil {
			return nil, fmt.Errorf("store: split view counts: %w", err)
		}
		out[origin] = t
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: split view counts: %w", err)
	}
	return out, nil
}
