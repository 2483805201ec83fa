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

	"golang.org/x/mod/sumdb/tlog"

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

// TestCheckpointerRefusesAForkedTree: someone who can write the file
// rewrites an early leaf hash and every stored hash above it, so that the
// stored tree is a well-formed tree of another history. The gateway's next
// checkpoint would sign that fork; the checkpointer refuses, naming the
// checkpoint it does not extend: the stored one, or, when the stored
// checkpoints were deleted too, the one it signed itself before. The
// untouched log signs on.
func TestCheckpointerRefusesAForkedTree(t *testing.T) {
	for _, tc := range []struct {
		name string
		// forge rewrites the tree; dropCheckpoints deletes the stored
		// checkpoints as well; sameCheckpointer keeps the Checkpointer
		// that signed before (a running gateway) instead of a new one.
		forge, dropCheckpoints, sameCheckpointer bool
		// restarted: the kept Checkpointer is a new one that found the
		// checkpoint stored (a gateway restarted on a quiet log) rather
		// than the one that signed it.
		restarted bool
		want      string
	}{
		{name: "untouched"},
		{name: "untouched, same checkpointer", sameCheckpointer: true},
		{name: "forged", forge: true, want: "does not extend the checkpoint of size 10"},
		{name: "forged, same checkpointer", forge: true, sameCheckpointer: true, want: "does not extend the checkpoint of size 10"},
		{name: "forged, checkpoints deleted, same checkpointer", forge: true, dropCheckpoints: true, sameCheckpointer: true, want: "does not extend the checkpoint of size 10"},
		{name: "forged, checkpoints deleted, restarted on a quiet log", forge: true, dropCheckpoints: true, sameCheckpointer: true, restarted: true, want: "does not extend the checkpoint of size 10"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			path := filepath.Join(t.TempDir(), "borderlink.db")
			k := audittest.NewKey(t, testOrigin)
			appendN := func(s *sqlite.Store, from, n int) {
				for i := from; i < from+n; i++ {
					if _, err := s.AppendAudit(ctx, storetest.AuditRecord(fmt.Sprint(i), 0)); err != nil {
						t.Fatal(err)
					}
				}
			}
			s, err := sqlite.Open(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			appendN(s, 0, 10)
			// The Checkpointer reads the store through ls, so that a kept
			// one reads the reopened store.
			ls := &swappable{Store: s}
			cp, err := audit.NewCheckpointer(ls, k.Signer, testOrigin, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cp.Sign(ctx); err != nil {
				t.Fatal(err)
			}
			if tc.restarted {
				if cp, err = audit.NewCheckpointer(ls, k.Signer, testOrigin, nil); err != nil {
					t.Fatal(err)
				}
				// Nothing to sign: it returns the stored checkpoint.
				if msg, err := cp.Sign(ctx); err != nil {
					t.Fatal(err)
				} else if c, err := audit.OpenCheckpoint(msg, k.Verifier); err != nil || c.Size != 10 {
					t.Fatalf("Sign on a quiet log = %+v, %v; want the stored checkpoint of size 10", c, err)
				}
			}
			leaves := make([]int64, 10)
			for i := range leaves {
				leaves[i] = tlog.StoredHashIndex(0, int64(i))
			}
			hashes, err := s.ReadAuditHashes(ctx, leaves)
			if err != nil {
				t.Fatal(err)
			}
			s.Close()

			db := rawDB(t, path)
			if tc.forge {
				hashes[3][0] ^= 1
				var stored []tlog.Hash
				hr := tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) {
					out := make([]tlog.Hash, len(ix))
					for i, x := range ix {
						out[i] = stored[x]
					}
					return out, nil
				})
				for i, h := range hashes {
					more, err := tlog.StoredHashesForRecordHash(int64(i), h, hr)
					if err != nil {
						t.Fatal(err)
					}
					stored = append(stored, more...)
				}
				if _, err := db.Exec("DROP TRIGGER audit_hashes_no_update"); err != nil {
					t.Fatal(err)
				}
				for id, h := range stored {
					if _, err := db.Exec("UPDATE audit_hashes SET hash = ? WHERE id = ?", h[:], id); err != nil {
						t.Fatal(err)
					}
				}
			}
			if tc.dropCheckpoints {
				for _, stmt := range []string{"DROP TRIGGER audit_checkpoints_no_delete", "DELETE FROM audit_checkpoints"} {
					if _, err := db.Exec(stmt); err != nil {
						t.Fatal(err)
					}
				}
			}
			db.Close()

			s = openTemp(t, path)
			ls.Store = s
			appendN(s, 10, 3)
			if !tc.sameCheckpointer {
				if cp, err = audit.NewCheckpointer(ls, k.Signer, testOrigin, nil); err != nil {
					t.Fatal(err)
				}
			}
			msg, err := cp.Sign(ctx)
			if tc.want == "" {
				if c, err := audit.OpenCheckpoint(msg, k.Verifier); err != nil || c.Size != 13 {
					t.Fatalf("checkpoint after more appends = %+v, %v; want size 13", c, err)
				}
				return
			}
			if !errors.Is(err, audit.ErrVerify) || !strings.Contains(err.Error(), tc.want) ||
				!strings.Contains(err.Error(), "modified outside Borderlink") {
				t.Fatalf("Sign over a forked tree = %q, %v; want ErrVerify saying %q", msg, err, tc.want)
			}
			if size, _, err := s.LatestAuditCheckpoint(ctx); tc.dropCheckpoints && !errors.Is(err, audit.ErrNoCheckpoint) || !tc.dropCheckpoints && (err != nil || size != 10) {
				t.Errorf("latest checkpoint size %d, %v; want none signed since", size, err)
			}
		})
	}
}

// TestCheckpointerRefusesATruncatedLog: a log cut back below its latest
// checkpoint, or to nothing, is refused, not taken for one the checkpoint
// covers or for a new empty log.
func TestCheckpointerRefusesATruncatedLog(t *testing.T) {
	for _, to := range []int64{8, 0} {
		t.Run(fmt.Sprintf("to %d records", to), func(t *testing.T) {
			ctx := t.Context()
			path := filepath.Join(t.TempDir(), "borderlink.db")
			k := audittest.NewKey(t, testOrigin)
			s, err := sqlite.Open(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 10 {
				if _, err := s.AppendAudit(ctx, storetest.AuditRecord(fmt.Sprint(i), 0)); err != nil {
					t.Fatal(err)
				}
			}
			cp, err := audit.NewCheckpointer(s, k.Signer, testOrigin, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cp.Sign(ctx); err != nil {
				t.Fatal(err)
			}
			s.Close()
			db := rawDB(t, path)
			for _, stmt := range []string{
				"DROP TRIGGER audit_records_no_delete", "DROP TRIGGER audit_hashes_no_delete",
				fmt.Sprintf("DELETE FROM audit_records WHERE seq > %d", to),
				fmt.Sprintf("DELETE FROM audit_hashes WHERE id >= %d", tlog.StoredHashCount(to)),
			} {
				if _, err := db.Exec(stmt); err != nil {
					t.Fatalf("%s: %v", stmt, err)
				}
			}
			db.Close()
			s = openTemp(t, path)
			if cp, err = audit.NewCheckpointer(s, k.Signer, testOrigin, nil); err != nil {
				t.Fatal(err)
			}
			msg, err := cp.Sign(ctx)
			if !errors.Is(err, audit.ErrVerify) || !strings.Contains(err.Error(), fmt.Sprintf("the log has %d records, fewer than the checkpoint of size 10", to)) {
				t.Fatalf("Sign over a log truncated to %d = %q, %v; want ErrVerify naming the checkpoint of size 10", to, msg, err)
			}
		})
	}
}

// swappable is a *sqlite.Store that a test can replace under a
// Checkpointer, as a restart of the store beneath a running gateway.
type swappable struct{ *sqlite.Store }

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
