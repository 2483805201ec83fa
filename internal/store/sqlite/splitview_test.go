package sqlite_test

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
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
// the store does not verify them) as a forking log would; the accepted one
// has the root "honest".
func splitViewOf(t *testing.T, s note.Signer, origin string, aSize, cSize int64, cRoot string) audit.SplitView {
	t.Helper()
	return pairOf(t, s, origin, aSize, "honest", cSize, cRoot)
}

// pairOf is splitViewOf with the accepted root named too.
func pairOf(t *testing.T, s note.Signer, origin string, aSize int64, aRoot string, cSize int64, cRoot string) audit.SplitView {
	t.Helper()
	sign := func(c audit.Checkpoint) []byte {
		msg, err := audit.SignCheckpoint(s, c)
		if err != nil {
			t.Fatal(err)
		}
		return msg
	}
	a := audit.Checkpoint{Origin: origin, Size: aSize, Hash: tlog.RecordHash([]byte(aRoot))}
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

// samePair reports whether got is want's pair: checkpoints, notes byte
// for byte, reason, and the incident's origin, detection and witness.
func samePair(got, want audit.SplitView) bool {
	return got.Origin == want.Origin && got.Detection == want.Detection && got.Witness == want.Witness && got.Reason == want.Reason &&
		got.Accepted == want.Accepted && got.Conflicting == want.Conflicting &&
		bytes.Equal(got.AcceptedNote, want.AcceptedNote) && bytes.Equal(got.ConflictingNote, want.ConflictingNote)
}

// TestSplitViewOneRowPerIncident: a fork is one row per origin, detection
// and witness however long it lasts. In direct detection the accepted
// checkpoint stays while the partner's conflicting one grows every round;
// in gossip detection both branches grow; notes arrive with other
// cosignature lines. Each detection bumps the count and records its pair
// as the latest; the first pair stays as first seen. Gossip through
// another witness, and another partner's fork, are incidents of their
// own, and everything survives a reopen.
func TestSplitViewOneRowPerIncident(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "borderlink.db")
	s := openTemp(t, path)
	const nl, cn = "nl.customs.example/borderlink/audit", "cn.customs.example/borderlink/audit"
	nlSigner, cnSigner := signerFor(t, nl), signerFor(t, cn)
	t0 := time.Date(2026, 11, 30, 5, 0, 0, 0, time.UTC)
	const round = 10 * time.Second

	// Direct: sg accepted size 8; nl shows it a forked branch that grows.
	var direct []audit.SplitView
	for i := range 5 {
		sv := splitViewOf(t, nlSigner, nl, 8, 8+int64(i), fmt.Sprintf("forked at %d", 8+i))
		if i > 0 {
			sv.Reason = "the new checkpoint does not extend the accepted one"
		}
		direct = append(direct, sv)
	}
	// The last one again, with a witness's cosignature line: still the
	// same incident, and the latest notes are those of this detection.
	cosigned := direct[len(direct)-1]
	cosigned.ConflictingNote = append(bytes.Clone(cosigned.ConflictingNote), "— sg.customs.example/borderlink/witness AAAAAA==\n"...)
	direct = append(direct, cosigned)

	// Gossip: both branches grow, gossiped by two witnesses.
	gossip := func(witness string, i int) audit.SplitView {
		sv := pairOf(t, nlSigner, nl, 10+int64(i), fmt.Sprintf("shown to sg at %d", 10+i), 12+int64(2*i), fmt.Sprintf("shown to %s at %d", witness, 12+2*i))
		sv.Detection, sv.Witness, sv.Reason = audit.DetectedGossip, witness, "the two checkpoints are not consistent"
		return sv
	}
	const cnWitness, ukWitness = "cn.customs.example", "uk.customs.example"
	other := splitViewOf(t, cnSigner, cn, 3, 3, "forked")

	type step struct {
		sv      audit.SplitView
		at      time.Time
		wantNew bool
	}
	var steps []step
	at := t0
	for i, sv := range direct {
		steps = append(steps, step{sv, at, i == 0})
		if i == 1 {
			// Interleaved: the first gossip of each witness.
			steps = append(steps, step{gossip(cnWitness, 0), at, true}, step{gossip(ukWitness, 0), at, true})
		}
		at = at.Add(round)
	}
	for i := 1; i < 4; i++ {
		steps = append(steps, step{gossip(cnWitness, i), t0.Add(time.Duration(i) * round), false})
	}
	steps = append(steps, step{other, t0.Add(time.Hour), true})
	directLast := t0.Add(time.Duration(len(direct)-1) * round)
	// An older sighting (a slow write) counts, but moves neither last_seen
	// nor the latest pair back.
	stale := direct[2]
	steps = append(steps, step{stale, t0.Add(round / 2), false})

	for i, st := range steps {
		isNew, err := s.PutSplitView(ctx, st.sv, st.at)
		if err != nil || isNew != st.wantNew {
			t.Fatalf("step %d: PutSplitView = %v, %v; want %v, nil", i, isNew, err, st.wantNew)
		}
	}

	for pass := range 2 {
		if pass == 1 {
			s = reopen(t, s, path)
		}
		all, err := s.SplitViews(ctx, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 4 {
			t.Fatalf("%d rows, want 4 (direct, gossip through cn, gossip through uk, cn's fork): %+v", len(all), all)
		}
		d := all[0]
		if d.Count != int64(len(direct))+1 || !d.FirstSeen.Equal(t0) || !d.LastSeen.Equal(directLast) {
			t.Errorf("direct incident: count %d, first %v, last %v; want %d, %v, %v", d.Count, d.FirstSeen, d.LastSeen, len(direct)+1, t0, directLast)
		}
		if !samePair(d.SplitView, direct[0]) {
			t.Errorf("direct incident's first pair is not the first detection's:\n got %+v\nwant %+v", d.SplitView, direct[0])
		}
		if !samePair(d.Latest, cosigned) {
			t.Errorf("direct incident's latest pair is not the last detection's:\n got %+v\nwant %+v", d.Latest, cosigned)
		}

		g := all[1]
		if g.Detection != audit.DetectedGossip || g.Witness != cnWitness || g.Count != 4 ||
			!g.FirstSeen.Equal(t0.Add(round)) || !g.LastSeen.Equal(t0.Add(3*round)) {
			t.Errorf("gossip through cn: %s %q, count %d, first %v, last %v", g.Detection, g.Witness, g.Count, g.FirstSeen, g.LastSeen)
		}
		if !samePair(g.SplitView, gossip(cnWitness, 0)) || !samePair(g.Latest, gossip(cnWitness, 3)) {
			t.Errorf("gossip through cn: first %+v, latest %+v; want sizes 10/12, then 13/18", g.SplitView, g.Latest)
		}
		if u := all[2]; u.Witness != ukWitness || u.Count != 1 || !samePair(u.SplitView, gossip(ukWitness, 0)) || !samePair(u.Latest, u.SplitView) {
			t.Errorf("gossip through uk, seen once: %+v", u)
		}
		if o := all[3]; o.Origin != cn || o.Count != 1 || !samePair(o.Latest, other) {
			t.Errorf("cn's incident: %+v", o)
		}

		for _, tc := range []struct {
			origin  string
			limit   int
			wantIDs []int64
		}{
			{"", 0, []int64{all[0].ID, all[1].ID, all[2].ID, all[3].ID}},
			{"", 2, []int64{all[0].ID, all[1].ID}},
			{nl, 0, []int64{all[0].ID, all[1].ID, all[2].ID}},
			{cn, 0, []int64{all[3].ID}},
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
		// Every sighting is a detection, the stale one included; only
		// "other" is about cn's log.
		counts, err := s.SplitViewCounts(ctx)
		want := map[string]audit.SplitViewTally{nl: {Incidents: 3, Detections: int64(len(steps) - 1)}, cn: {Incidents: 1, Detections: 1}}
		if err != nil || !maps.Equal(counts, want) {
			t.Errorf("SplitViewCounts = %v, %v; want %v", counts, err, want)
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
		{"negative size", func(sv *audit.SplitView) { sv.Conflicting.Size = -1 }},
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
// operator with the sqlite3 shell) can neither rewrite nor delete the
// first evidence of an incident, nor take back detections; only the
// count, the last sighting and the latest pair move.
func TestSplitViewEvidenceIsKept(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "borderlink.db")
	s := openTemp(t, path)
	const nl = "nl.customs.example/borderlink/audit"
	first := splitViewOf(t, signerFor(t, nl), nl, 8, 8, "forked")
	if _, err := s.PutSplitView(ctx, first, time.Now()); err != nil {
		t.Fatal(err)
	}
	db := rawDB(t, path)
	for _, stmt := range []string{
		"UPDATE audit_split_views SET conflicting_note = x'00'",
		"UPDATE audit_split_views SET accepted_note = latest_accepted_note",
		"UPDATE audit_split_views SET conflicting_root = accepted_root",
		"UPDATE audit_split_views SET conflicting_size = 9",
		"UPDATE audit_split_views SET reason = 'none'",
		"UPDATE audit_split_views SET first_seen = 0",
		"UPDATE audit_split_views SET detection = 'gossip', witness = 'cn.customs.example'",
		"UPDATE audit_split_views SET origin = 'cn.customs.example/borderlink/audit'",
		"UPDATE audit_split_views SET count = count - 1",
		"UPDATE audit_split_views SET last_seen = last_seen - 1",
		"UPDATE audit_split_views SET latest_conflicting_root = latest_accepted_root", // one tree twice
		"DELETE FROM audit_split_views",
	} {
		if _, err := db.ExecContext(ctx, stmt); err == nil {
			t.Errorf("%s: succeeded, want it refused", stmt)
		}
	}
	for _, stmt := range []string{
		"UPDATE audit_split_views SET count = count + 1, last_seen = last_seen + 1",
		"UPDATE audit_split_views SET latest_conflicting_note = x'00', latest_conflicting_size = 9, latest_reason = 'later'",
	} {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			t.Errorf("%s: %v", stmt, err)
		}
	}
	views, err := s.SplitViews(ctx, "", 0)
	if err != nil || len(views) != 1 {
		t.Fatalf("SplitViews = %+v, %v", views, err)
	}
	if v := views[0]; !samePair(v.SplitView, first) || v.Count != 2 || v.Latest.Conflicting.Size != 9 || v.Latest.Reason != "later" {
		t.Errorf("after the updates: %+v", v)
	}
}
