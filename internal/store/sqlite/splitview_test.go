package sqlite_test

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/store"
	"github.com/borderlink/borderlink/internal/store/sqlite"
)

// splitViewOf signs two checkpoints of origin (sizes and roots made up:
// the store does not verify them) as a forking log would.
func splitViewOf(t *testing.T, s note.Signer, origin string, aSize, cSize int64, cRoot string) audit.SplitView {
	t.Helper()
	sign := func(c audit.Checkpoint) []byte {
		msg, err := audit.SignCheckpoint(s, c)
		if err != nil {
			t.Fatal(err)
		}
		return msg
	}
	a := audit.Checkpoint{Origin: origin, Size: aSize, Hash: tlog.RecordHash([]byte("honest"))}
	c := audit.Checkpoint{Origin: origin, Size: cSize, Hash: tlog.RecordHash([]byte(cRoot))}
	return audit.SplitView{Origin: origin, Accepted: a, AcceptedNote: sign(a), Conflicting: c, ConflictingNote: sign(c),
		Reason: "two different roots for one size", Detection: audit.DetectedDirect}
}

func signerFor(t *testing.T, origin string) note.Signer {
	t.Helper()
	sk, _, err := audit.GenerateKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(sk)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSplitViewKeptOnce: the same pair of trees seen again, even with
// other cosignature lines on the notes, is one row whose count and last
// sighting grow; its first notes are kept. Other pairs are rows of their
// own, and everything survives a reopen.
func TestSplitViewKeptOnce(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "borderlink.db")
	s := openTemp(t, path)
	const nl, cn = "nl.customs.example/borderlink/audit", "cn.customs.example/borderlink/audit"
	nlSigner, cnSigner := signerFor(t, nl), signerFor(t, cn)
	t0 := time.Date(2026, 11, 30, 5, 0, 0, 0, time.UTC)

	first := splitViewOf(t, nlSigner, nl, 8, 8, "forked")
	again := first
	again.ConflictingNote = append(bytes.Clone(first.ConflictingNote), "— sg.customs.example/borderlink/witness AAAAAA==\n"...)
	gossip := splitViewOf(t, nlSigner, nl, 8, 10, "forked")
	gossip.Detection, gossip.Witness, gossip.Reason = audit.DetectedGossip, "cn.customs.example", "the two checkpoints are not consistent"
	other := splitViewOf(t, cnSigner, cn, 3, 3, "forked")

	steps := []struct {
		sv      audit.SplitView
		at      time.Time
		wantNew bool
	}{
		{first, t0, true},
		{again, t0.Add(time.Minute), false},
		{first, t0.Add(30 * time.Second), false}, // an older sighting does not move last_seen back
		{gossip, t0.Add(2 * time.Minute), true},
		{other, t0.Add(3 * time.Minute), true},
	}
	for i, st := range steps {
		isNew, err := s.PutSplitView(ctx, st.sv, st.at)
		if err != nil || isNew != st.wantNew {
			t.Fatalf("step %d: PutSplitView = %v, %v; want %v, nil", i, isNew, err, st.wantNew)
		}
	}

	for round := range 2 {
		if round == 1 {
			s = reopen(t, s, path)
		}
		all, err := s.SplitViews(ctx, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 3 {
			t.Fatalf("%d rows, want 3: %+v", len(all), all)
		}
		got := all[0]
		if got.Count != 3 || !got.FirstSeen.Equal(t0) || !got.LastSeen.Equal(t0.Add(time.Minute)) {
			t.Errorf("re-detected row: count %d, first %v, last %v; want 3, %v, %v", got.Count, got.FirstSeen, got.LastSeen, t0, t0.Add(time.Minute))
		}
		if !bytes.Equal(got.AcceptedNote, first.AcceptedNote) || !bytes.Equal(got.ConflictingNote, first.ConflictingNote) {
			t.Errorf("re-detected row's notes are not those first seen:\n%s\n%s", got.AcceptedNote, got.ConflictingNote)
		}
		if got.Accepted != first.Accepted || got.Conflicting != first.Conflicting || got.Detection != audit.DetectedDirect || got.Witness != "" || got.Reason != first.Reason {
			t.Errorf("re-detected row = %+v, want %+v", got.SplitView, first)
		}
		if g := all[1]; g.Detection != audit.DetectedGossip || g.Witness != "cn.customs.example" || g.Count != 1 || g.Conflicting.Size != 10 {
			t.Errorf("gossip row = %+v", g)
		}

		for _, tc := range []struct {
			origin  string
			limit   int
			wantIDs []int64
		}{
			{"", 0, []int64{all[0].ID, all[1].ID, all[2].ID}},
			{"", 2, []int64{all[0].ID, all[1].ID}},
			{nl, 0, []int64{all[0].ID, all[1].ID}},
			{cn, 0, []int64{all[2].ID}},
			{"sg.customs.example/borderlink/audit", 0, nil},
		} {
			views, err := s.SplitViews(ctx, tc.origin, tc.limit)
			var ids []int64
			for _, v := range views {
				ids = append(ids, v.ID)
			}
			if err != nil || !equalIDs(ids, tc.wantIDs) {
				t.Errorf("SplitViews(%q, %d) = %v, %v; want %v", tc.origin, tc.limit, ids, err, tc.wantIDs)
			}
		}
		if views, err := s.SplitViewsAfter(ctx, nl, all[0].ID, 1); err != nil || len(views) != 1 || views[0].ID != all[1].ID {
			t.Errorf("SplitViewsAfter(%q, %d, 1) = %+v, %v; want row %d", nl, all[0].ID, views, err, all[1].ID)
		}
		counts, err := s.SplitViewCounts(ctx)
		if err != nil || len(counts) != 2 || counts[nl] != 2 || counts[cn] != 1 {
			t.Errorf("SplitViewCounts = %v, %v; want %s: 2, %s: 1", counts, err, nl, cn)
		}
	}
}

func reopen(t *testing.T, s *sqlite.Store, path string) *sqlite.Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return openTemp(t, path)
}

func equalIDs(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestPutSplitViewInvalid(t *testing.T) {
	ctx := t.Context()
	s := openTemp(t, filepath.Join(t.TempDir(), "borderlink.db"))
	const nl = "nl.customs.example/borderlink/audit"
	good := splitViewOf(t, signerFor(t, nl), nl, 8, 8, "forked")
	tests := []struct {
		name   string
		change func(*audit.SplitView)
	}{
		{"no origin", func(sv *audit.SplitView) { sv.Origin = "" }},
		{"no accepted note", func(sv *audit.SplitView) { sv.AcceptedNote = nil }},
		{"no conflicting note", func(sv *audit.SplitView) { sv.ConflictingNote = nil }},
		{"unknown detection", func(sv *audit.SplitView) { sv.Detection = "rumour" }},
		{"direct with a witness", func(sv *audit.SplitView) { sv.Witness = "sg.customs.example" }},
		{"gossip without a witness", func(sv *audit.SplitView) { sv.Detection = audit.DetectedGossip }},
		{"one tree twice", func(sv *audit.SplitView) { sv.Conflicting = sv.Accepted }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sv := good
			tt.change(&sv)
			if _, err := s.PutSplitView(ctx, sv, time.Now()); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("PutSplitView = %v, want ErrInvalid", err)
			}
		})
	}
	if _, err := s.SplitViews(ctx, "", -1); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("SplitViews with limit -1 = %v, want ErrInvalid", err)
	}
	if views, err := s.SplitViews(ctx, "", 0); err != nil || len(views) != 0 {
		t.Errorf("after invalid puts: %d rows, %v; want none", len(views), err)
	}
}

// TestSplitViewEvidenceIsKept: another writer of the file (a bug, an
// operator with the sqlite3 shell) can neither rewrite nor delete kept
// evidence.
func TestSplitViewEvidenceIsKept(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "borderlink.db")
	s := openTemp(t, path)
	const nl = "nl.customs.example/borderlink/audit"
	if _, err := s.PutSplitView(ctx, splitViewOf(t, signerFor(t, nl), nl, 8, 8, "forked"), time.Now()); err != nil {
		t.Fatal(err)
	}
	db := rawDB(t, path)
	for _, stmt := range []string{
		"UPDATE audit_split_views SET conflicting_note = x'00'",
		"UPDATE audit_split_views SET conflicting_root = accepted_root",
		"UPDATE audit_split_views SET first_seen = 0",
		"DELETE FROM audit_split_views",
	} {
		if _, err := db.ExecContext(ctx, stmt); err == nil {
			t.Errorf("%s: succeeded, want the trigger to refuse it", stmt)
		}
	}
	if _, err := db.ExecContext(ctx, "UPDATE audit_split_views SET count = count + 1"); err != nil {
		t.Errorf("bumping the count: %v", err)
	}
}
