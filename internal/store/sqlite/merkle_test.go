package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/audit/audittest"
	"github.com/borderlink/borderlink/internal/store"
	"github.com/borderlink/borderlink/internal/store/sqlite"
	"github.com/borderlink/borderlink/internal/store/storetest"
)

const testOrigin = "nl.customs.example/borderlink/audit"

func TestAuditGroupCommitBuildsTheTree(t *testing.T) {
	path := filepath.Join(t.TempDir(), "borderlink.db")
	s := openTemp(t, path)
	ctx := t.Context()
	const workers, each = 32, 25
	var wg sync.WaitGroup
	seqs := make(chan uint64, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				rec := storetest.AuditRecord(fmt.Sprintf("w%d-%d", w, i), time.Duration(i)*time.Second)
				seq, err := s.AppendAudit(ctx, rec)
				if err != nil {
					t.Errorf("AppendAudit: %v", err)
					return
				}
				// The record returned is exactly the stored leaf.
				leaves, err := s.AuditLeaves(ctx, int64(seq)-1, 1)
				if err != nil || len(leaves) != 1 {
					t.Errorf("leaf of seq %d: %v", seq, err)
					return
				}
				want, _ := audit.Leaf(rec)
				if string(leaves[0]) != string(want) {
					t.Errorf("seq %d: stored leaf differs from the acknowledged record", seq)
				}
				seqs <- seq
			}
		})
	}
	wg.Wait()
	close(seqs)
	seen := map[uint64]bool{}
	for q := range seqs {
		if seen[q] {
			t.Fatalf("seq %d returned twice", q)
		}
		seen[q] = true
	}
	if n := sqlite.CheckTree(t, s); n != workers*each || len(seen) != workers*each {
		t.Fatalf("tree size %d, %d seqs, want %d", n, len(seen), workers*each)
	}

	// Reopen: the tree is intact and appends continue it.
	s.Close()
	s = openTemp(t, path)
	if _, err := s.AppendAudit(ctx, storetest.AuditRecord("after-reopen", 0)); err != nil {
		t.Fatal(err)
	}
	if n := sqlite.CheckTree(t, s); n != workers*each+1 {
		t.Fatalf("tree size after reopen %d", n)
	}
}

func TestAuditCheckpoints(t *testing.T) {
	s := openTemp(t, filepath.Join(t.TempDir(), "borderlink.db"))
	ctx := t.Context()
	k := audittest.NewKey(t, testOrigin)
	signer, v := k.Signer, k.Verifier
	cp, err := audit.NewCheckpointer(s, signer, testOrigin, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cp.Sign(ctx); !errors.Is(err, audit.ErrNoCheckpoint) {
		t.Fatalf("Sign of an empty log = %v, want ErrNoCheckpoint", err)
	}
	if _, _, err := s.LatestAuditCheckpoint(ctx); !errors.Is(err, audit.ErrNoCheckpoint) {
		t.Fatalf("LatestAuditCheckpoint = %v, want ErrNoCheckpoint", err)
	}
	for i := range 5 {
		if _, err := s.AppendAudit(ctx, storetest.AuditRecord(fmt.Sprint(i), 0)); err != nil {
			t.Fatal(err)
		}
	}
	msg, err := cp.Sign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c, err := audit.OpenCheckpoint(msg, v)
	if err != nil || c.Size != 5 {
		t.Fatalf("checkpoint = %+v, %v", c, err)
	}
	again, err := cp.Sign(ctx)
	if err != nil || string(again) != string(msg) {
		t.Errorf("Sign without new leaves made a new checkpoint: %v", err)
	}
	if err := s.PutAuditCheckpoint(ctx, 5, msg, time.Now()); err == nil || !strings.Contains(err.Error(), "size must grow") {
		t.Errorf("second checkpoint of size 5 = %v, want refusal", err)
	}
	// The periodic signer covers new leaves.
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { cp.Run(rctx, 10*time.Millisecond); close(done) }()
	if _, err := s.AppendAudit(ctx, storetest.AuditRecord("late", 0)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		size, _, err := s.LatestAuditCheckpoint(ctx)
		if err == nil && size == 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint of size 6 after 5s (latest %d, %v)", size, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	all, err := s.AuditCheckpoints(ctx)
	if err != nil || len(all) != 2 || all[0].Size != 5 || all[1].Size != 6 {
		t.Fatalf("AuditCheckpoints = %v, %v", all, err)
	}
}

func TestAuditAppendAfterClose(t *testing.T) {
	s := openTemp(t, filepath.Join(t.TempDir(), "borderlink.db"))
	s.Close()
	if _, err := s.AppendAudit(t.Context(), storetest.AuditRecord("x", 0)); err == nil {
		t.Fatal("AppendAudit after Close succeeded")
	}
}

// TestAuditHashesCheckedAtOpen: the tree hashes have no per-row gapless
// trigger (migration 0006); a hash added by another writer of the file,
// with a gap or at the end, stops Open with an error naming the cause,
// and rewriting or deleting hashes stays refused.
func TestAuditHashesCheckedAtOpen(t *testing.T) {
	for _, tc := range []struct {
		name, stmt, want string
	}{
		{"hash after a gap", "INSERT INTO audit_hashes (id, hash) VALUES ((SELECT MAX(id) + 3 FROM audit_hashes), zeroblob(32))", "tree hash ids are not 0.."},
		{"extra hash at the end", "INSERT INTO audit_hashes (id, hash) VALUES ((SELECT MAX(id) + 1 FROM audit_hashes), zeroblob(32))", "tree hashes for 10 records"},
		{"hash rewritten", "UPDATE audit_hashes SET hash = zeroblob(32) WHERE id = 3", ""},
		{"hash deleted", "DELETE FROM audit_hashes WHERE id = (SELECT MAX(id) FROM audit_hashes)", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "borderlink.db")
			s := openTemp(t, path)
			for i := range 10 {
				if _, err := s.AppendAudit(t.Context(), storetest.AuditRecord(fmt.Sprintf("r%d", i), 0)); err != nil {
					t.Fatal(err)
				}
			}
			s.Close()
			_, err := rawDB(t, path).Exec(tc.stmt)
			if tc.want == "" {
				if err == nil || !strings.Contains(err.Error(), "append-only") {
					t.Fatalf("%s by another writer: %v, want refused as append-only", tc.stmt, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			s2, err := sqlite.Open(t.Context(), path)
			if err == nil {
				s2.Close()
				t.Fatalf("Open after %q succeeded", tc.stmt)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "modified outside Borderlink") {
				t.Errorf("Open: %v; want it to say %q and that the file was modified outside Borderlink", err, tc.want)
			}
		})
	}
}

// TestAppendStats: the group commit counters count every commit and append
// once, sort batches by size, and subtract.
func TestAppendStats(t *testing.T) {
	s := openTemp(t, filepath.Join(t.TempDir(), "borderlink.db"))
	for i := range 3 {
		if _, err := s.AppendAudit(t.Context(), storetest.AuditRecord(fmt.Sprintf("s%d", i), 0)); err != nil {
			t.Fatal(err)
		}
	}
	first := s.AppendStats()
	if first.Commits != 3 || first.Appends != 3 || first.BatchSizes[0] != 3 {
		t.Fatalf("after 3 appends one by one: %+v; want 3 commits of 1", first)
	}
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Go(func() {
			if _, err := s.AppendAudit(t.Context(), storetest.AuditRecord(fmt.Sprintf("c%d", i), 0)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	total := s.AppendStats()
	d := total.Sub(first)
	// Add undoes Sub (sums up to rounding).
	back := first.Add(d)
	if math.Abs(back.Sync.Sum-total.Sync.Sum) > 1e-9 {
		t.Errorf("first.Add(total.Sub(first)) has sync sum %v, total %v", back.Sync.Sum, total.Sync.Sum)
	}
	for _, l := range []*store.Latencies{&back.Queue, &back.Build, &back.Sync, &total.Queue, &total.Build, &total.Sync} {
		l.Sum = 0
	}
	if back != total {
		t.Errorf("first.Add(total.Sub(first)) = %+v, want %+v", back, total)
	}
	var commits, appendsAtMost uint64
	for i, n := range d.BatchSizes {
		commits += n
		appendsAtMost += n * uint64(store.BatchSizeBounds[i])
	}
	if d.Appends != 64 || d.Commits != commits || d.Commits < 1 || d.Commits > 64 || appendsAtMost < 64 {
		t.Errorf("after 64 concurrent appends: %+v; want 64 appends in 1..64 commits, each counted in one size bucket", d)
	}
	if mean := d.MeanBatch(); mean != 64/float64(d.Commits) {
		t.Errorf("MeanBatch = %v, want %v", mean, 64/float64(d.Commits))
	}
	// Every committed append has its queue time, every commit its build
	// and sync time; a commit that fsyncs takes some time.
	if d.Queue.Count() != d.Appends || d.Build.Count() != d.Commits || d.Sync.Count() != d.Commits || d.Sync.Sum <= 0 {
		t.Errorf("after 64 concurrent appends: queue %d, build %d, sync %d timings (sync sum %vs); want %d, %d, %d and a positive sum",
			d.Queue.Count(), d.Build.Count(), d.Sync.Count(), d.Sync.Sum, d.Appends, d.Commits, d.Commits)
	}
}
