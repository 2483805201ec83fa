package bench

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDurableInsert runs the disk-floor baseline briefly (the smoke run's
// rates do not include the audit goal's, so it would not run there) and
// checks that it commits its rows, adds its rows to the report and removes
// its files. It asserts nothing about timing.
func TestDurableInsert(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d, err := openDurableInsert(ctx, dir, "floor.db")
	if err != nil {
		t.Fatal(err)
	}
	r := &Result{ID: "pull/1KB/durable-insert/open@500", Mode: "open", Rate: auditGoalLoad, Primary: "p99_us"}
	loop := openLoop(auditGoalLoad, 40*time.Millisecond, d.insert)
	for range 2 {
		r.Runs = append(r.Runs, measure(ctx, loop))
	}
	r.summarize()
	var n int64
	if err := d.db.QueryRowContext(ctx, "SELECT count(*) FROM rows WHERE length(request_id) = 32 AND length(record) = ?", durableRowBytes).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if want := r.Runs[0].Ops + r.Runs[1].Ops; n != want || n == 0 {
		t.Errorf("%d rows committed, want %d (> 0)", n, want)
	}
	if err := d.close(); err != nil {
		t.Fatal(err)
	}
	left, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range left {
		t.Errorf("left behind: %s", e.Name())
	}

	service := rawFsyncRuns(t)
	sc := &Scenario{}
	addDurableFloor(sc, "1KB", []float64{1, 2}, r, service)
	if len(sc.Ratios) != 3 {
		t.Fatalf("got ratios %+v, want the two floors and audit wait / floor", sc.Ratios)
	}
	if want, _ := medianSpread(service); !strings.Contains(sc.Ratios[1].Name, "raw fsync") || sc.Ratios[1].Value != want {
		t.Errorf("raw fsync row %+v, want the median service p99 %v ms", sc.Ratios[1], want)
	}
	if !strings.Contains(sc.Ratios[2].Name, "audit wait p99 / bare durable insert p99") || sc.Ratios[2].Value <= 0 {
		t.Errorf("ratio row %+v", sc.Ratios[2])
	}
	if len(sc.Notes) == 0 {
		t.Error("no note explaining the baseline")
	}
	addDurableFloor(sc, "10KB", []float64{1}, r, nil) // mismatched rounds: ratio of medians; no raw floor
	if len(sc.Ratios) != 5 || sc.Ratios[4].Value <= 0 {
		t.Errorf("got ratios %+v after a second payload", sc.Ratios)
	}
	if got := len(sc.Notes); got > 1 && r.Median.Errors == 0 {
		t.Errorf("explanation repeated: %d notes", got)
	}
}

// rawFsyncRuns runs the raw fsync floor briefly and checks that it keeps
// a service time per op, overwrites its preallocated file without growing
// it, and removes it; it returns the runs' service-time p99s.
func rawFsyncRuns(t *testing.T) []float64 {
	t.Helper()
	dir := t.TempDir()
	d, err := openRawFsync(dir, "raw.bin")
	if err != nil {
		t.Fatal(err)
	}
	var p99s []float64
	loop := openLoop(auditGoalLoad, 40*time.Millisecond, d.insert)
	for range 2 {
		s := measure(context.Background(), loop)
		d.mu.Lock()
		kept := len(d.service)
		d.mu.Unlock()
		if int64(kept) != s.Ops || kept == 0 {
			t.Errorf("%d service times kept for %d ops (> 0)", kept, s.Ops)
		}
		p := d.serviceP99()
		if p <= 0 {
			t.Errorf("service p99 %v ms, want > 0", p)
		}
		p99s = append(p99s, p)
	}
	if p := d.serviceP99(); p != 0 {
		t.Errorf("service p99 after it was read = %v, want 0 (forgotten)", p)
	}
	fi, err := os.Stat(d.path)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(rawFsyncPages * rawFsyncPage); fi.Size() != want {
		t.Errorf("raw fsync file holds %d bytes, want %d (preallocated, overwritten in place)", fi.Size(), want)
	}
	if err := d.close(); err != nil {
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
