package bench

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestAddFloors runs the raw fsync floor briefly (the smoke run's rates
// do not include the audit goal's, so it would not run there) and checks
// the rows the floors add to the report.
func TestAddFloors(t *testing.T) {
	service := rawFsyncRuns(t)
	sc := &Scenario{}
	// Fixed floors where the run-by-run ratio's median differs from the
	// ratio of the medians.
	fl := diskFloors{raw: service, besideGateway: []float64{3, 2}, journal: []float64{4, 2}}
	addFloors(sc, "1KB", []float64{1, 2}, fl)
	if len(sc.Ratios) != 5 {
		t.Fatalf("got ratios %+v, want the three floors, audit wait / sync beside the gateway and audit wait / journal floor", sc.Ratios)
	}
	for i, row := range []struct {
		name  string
		value float64
	}{
		{"raw fsync at 500/s, one page", mustMedian(service)},
		{"beside the gateway serving the same rate", 2.5},
		{"minimal durable append in the gateway's own exchanges", 3},
		{"audit wait p99 / raw fsync p99 beside the gateway", (1.0/3 + 2.0/2) / 2},
		{"audit wait p99 / minimal durable append p99", (1.0/4 + 2.0/2) / 2},
	} {
		if got := sc.Ratios[i]; !strings.Contains(got.Name, row.name) || math.Abs(got.Value-row.value) > 1e-9 {
			t.Errorf("row %d = %q %v, want %q with %v", i, got.Name, got.Value, row.name, row.value)
		}
	}
	if len(sc.Notes) != 1 {
		t.Errorf("notes %q, want one explaining the floors", sc.Notes)
	}
	before := len(sc.Notes)
	noteBesideLoad(sc, "1KB", 500, 2*time.Second, []sample{{ops: 1000}, {ops: 998, errs: 2}})
	if len(sc.Notes) != before+1 || !strings.Contains(sc.Notes[before], "completed 1000, 998 calls in its runs (1000 offered in each), 2 failed") {
		t.Errorf("load note: %q", sc.Notes[before:])
	}
	// Mismatched rounds: the ratio of the medians; the explanation once.
	addFloors(sc, "10KB", []float64{3}, diskFloors{journal: []float64{0.5, 1, 4}})
	if len(sc.Ratios) != 7 || sc.Ratios[5].Value != 1 || sc.Ratios[6].Value != 3 {
		t.Errorf("got ratios %+v after a second payload, want the journal floor (median 1) and 3 / median 1", sc.Ratios)
	}
	if len(sc.Notes) != before+1 {
		t.Errorf("notes %q after a second payload, want no more", sc.Notes[before:])
	}
	addFloors(sc, "100KB", []float64{1}, diskFloors{})
	if len(sc.Ratios) != 7 || len(sc.Notes) != before+2 || !strings.Contains(sc.Notes[before+1], "no floor was measured") {
		t.Errorf("without floors: ratios %d, notes %q; want no rows and a note", len(sc.Ratios), sc.Notes[before:])
	}
}

// TestAddWaitRatio: run by run only when every round has both values,
// else the ratio of the medians of the values there are.
func TestAddWaitRatio(t *testing.T) {
	for _, tc := range []struct {
		name          string
		waits, floors []float64
		want          float64 // 0: no row
	}{
		{"paired", []float64{1, 2}, []float64{0.5, 2}, (2.0 + 1) / 2},
		{"a round without appends", []float64{1, 0}, []float64{0.5, 2}, 1 / 1.25},
		{"a round without floor", []float64{1, 3}, []float64{0, 2}, 2.0 / 2},
		{"rounds missing", []float64{1}, []float64{0.5, 1, 4}, 1},
		{"no floor", []float64{1, 2}, []float64{0, 0}, 0},
		{"no waits", nil, []float64{1}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := &Scenario{}
			addWaitRatio(sc, "r", tc.waits, tc.floors)
			switch {
			case tc.want == 0 && len(sc.Ratios) != 0:
				t.Errorf("got %+v, want no row", sc.Ratios)
			case tc.want != 0 && (len(sc.Ratios) != 1 || math.Abs(sc.Ratios[0].Value-tc.want) > 1e-9):
				t.Errorf("got %+v, want one row of %v", sc.Ratios, tc.want)
			}
		})
	}
}

// keptPerOp wraps loop, an open loop of d's ops, to check after each run
// that d kept exactly one time per op that succeeded.
func keptPerOp(t *testing.T, d *rawFsync, loop func(context.Context) sample) func(context.Context) sample {
	return func(ctx context.Context) sample {
		s := loop(ctx)
		d.mu.Lock()
		kept := len(d.timed)
		d.mu.Unlock()
		if int64(kept) != s.ops {
			t.Errorf("%d times kept for %d ops", kept, s.ops)
		}
		return s
	}
}

func mustMedian(v []float64) float64 {
	md, _ := medianSpread(v)
	return md
}

// rawFsyncRuns runs the raw fsync floor briefly, alone and then beside a
// second stream, and checks that it keeps a service time per op (the p99
// of each run's, once), that both streams run, that it overwrites its
// preallocated file without growing it, and that it removes it; it returns
// the runs' service-time p99s.
func rawFsyncRuns(t *testing.T) []float64 {
	t.Helper()
	dir := t.TempDir()
	d, err := openRawFsync(dir, "raw.bin")
	if err != nil {
		t.Fatal(err)
	}
	other, err := openRawFsync(dir, "raw-2.bin")
	if err != nil {
		d.close()
		t.Fatal(err)
	}
	d.op(context.Background()) // an op before the runs: not theirs
	// Whether a main op ran while the other stream had started and not
	// yet finished: beside must overlap the two, not run them in turn.
	var otherStarted, otherDone, overlapped atomic.Bool
	mainOp := func(ctx context.Context) error {
		if otherStarted.Load() && !otherDone.Load() {
			overlapped.Store(true)
		}
		return d.op(ctx)
	}
	otherOp := func(ctx context.Context) error {
		otherStarted.Store(true)
		return other.op(ctx)
	}
	var p99s []float64
	var seen []sample
	loop := keptPerOp(t, d, openLoop(auditGoalLoad, 40*time.Millisecond, mainOp))
	runs := []func(context.Context) sample{
		d.perRun(loop, &p99s),
		d.perRun(beside(loop, openLoop(auditGoalLoad, 40*time.Millisecond, otherOp), func(s sample) {
			otherDone.Store(true)
			seen = append(seen, s)
		}), &p99s),
	}
	for i, run := range runs {
		s := measure(context.Background(), run)
		if s.Ops == 0 || len(p99s) != i+1 || p99s[i] <= 0 {
			t.Errorf("run %d: %d ops, service p99s %v: want one more, > 0", i, s.Ops, p99s)
		}
	}
	if !overlapped.Load() {
		t.Error("beside ran the two streams one after the other")
	}
	if len(seen) != 1 || seen[0].ops != 20 {
		t.Errorf("samples of the stream beside: %+v, want one of 20 ops", seen)
	}
	if got, want := d.seq, int64(1+2*20); got != want {
		t.Errorf("%d ops in all, want %d (one before, 20 per run)", got, want)
	}
	if other.seq != 20 {
		t.Errorf("the stream beside ran %d ops, want 20", other.seq)
	}
	if p := d.timedP99(); p != 0 {
		t.Errorf("service p99 after the runs = %v, want 0 (each run's read and forgotten)", p)
	}
	fi, err := os.Stat(d.path)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(rawFsyncPages * rawFsyncPage); fi.Size() != want {
		t.Errorf("raw fsync file holds %d bytes, want %d (preallocated, overwritten in place)", fi.Size(), want)
	}
	if err := errors.Join(d.close(), other.close()); err != nil {
		t.Fatal(err)
	}
	if left, err := os.ReadDir(dir); err != nil || len(left) > 0 {
		t.Errorf("left behind: %v, %v", left, err)
	}
	if _, err := openRawFsync(filepath.Join(dir, "missing"), "raw.bin"); err == nil {
		t.Error("openRawFsync in a missing directory succeeded")
	}
	return p99s
}
