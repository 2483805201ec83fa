package bench

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// rawFsync is the device's floor for a durable append: each op overwrites
// one page of a preallocated plain file, in turn through it as SQLite
// writes its WAL, and fdatasyncs it. One goroutine writes, taking the ops
// in arrival order; the time of each op's write and sync alone (its
// service time, without the wait in line) is kept.
type rawFsync struct {
	path string
	file *os.File
	row  []byte
	seq  int64
	reqs chan chan error
	done chan struct{}

	mu    sync.Mutex
	timed []time.Duration // per op: the write and fdatasync
}

// rawFsyncPages is the plain file's size in pages: about the size a WAL
// reaches at SQLite's default automatic checkpoint (1,000 pages), the
// store's writer's; at 500 appends/s the store checkpoints at about half
// that (store/sqlite walcheckpoint.go).
const rawFsyncPages = 1024

// rawFsyncPage is one page, the unit SQLite writes its WAL in.
const rawFsyncPage = 4096

// openRawFsync creates the plain file name in dir (see rawFsync); close
// removes it.
func openRawFsync(dir, name string) (*rawFsync, error) {
	path, err := filepath.Abs(filepath.Join(dir, name))
	if err != nil {
		return nil, fmt.Errorf("bench: raw fsync baseline: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("bench: raw fsync baseline: %w", err)
	}
	// Written and synced once, so that the ops only overwrite blocks the
	// file already has: their sync, like the WAL's, commits no new size.
	if _, err := f.Write(make([]byte, rawFsyncPages*rawFsyncPage)); err != nil {
		return nil, fmt.Errorf("bench: raw fsync baseline: preallocate %s: %w", path, errors.Join(err, f.Close(), os.Remove(path)))
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("bench: raw fsync baseline: preallocate %s: %w", path, errors.Join(err, f.Close(), os.Remove(path)))
	}
	d := &rawFsync{path: path, file: f, row: make([]byte, rawFsyncPage), reqs: make(chan chan error, maxOutstanding), done: make(chan struct{})}
	rand.Read(d.row)
	go d.writer()
	return d, nil
}

// timedP99 is the p99 of the ops' kept times (see rawFsync) since
// the last call, in ms (0 without ops), and forgets them.
func (d *rawFsync) timedP99() float64 {
	d.mu.Lock()
	s := d.timed
	d.timed = nil
	d.mu.Unlock()
	if len(s) == 0 {
		return 0
	}
	slices.Sort(s)
	return p99ms(s)
}

// perRun wraps loop, an open loop of d's ops, to append after each run
// the p99 of that run's kept times (timedP99; 0 if none) to *p99s.
func (d *rawFsync) perRun(loop func(context.Context) sample, p99s *[]float64) func(context.Context) sample {
	return func(ctx context.Context) sample {
		d.timedP99() // forget any op before this run
		s := loop(ctx)
		// One value per run, 0 without ops, so that runs pair by round.
		*p99s = append(*p99s, d.timedP99())
		return s
	}
}

// beside runs other alongside main and returns main's sample, which is then
// what main measures with other's load on the machine; other's sample goes
// to seen (if set), so that the caller can check the load was what it
// meant. Both should be open loops of the same length.
func beside(main, other func(context.Context) sample, seen func(sample)) func(context.Context) sample {
	return func(ctx context.Context) sample {
		var wg sync.WaitGroup
		wg.Go(func() {
			if s := other(ctx); seen != nil {
				seen(s)
			}
		})
		s := main(ctx)
		wg.Wait()
		return s
	}
}

// addWaitRatio adds auditWaits / floors (p99s in ms, one per run): run by
// run when every round has both, else the ratio of the medians of the
// values there are; nothing when either has none. A value ≤ 0 is a run
// that timed nothing.
func addWaitRatio(sc *Scenario, name string, auditWaits, floors []float64) {
	if len(auditWaits) == len(floors) {
		var ratios []float64
		for i := range floors {
			if auditWaits[i] > 0 && floors[i] > 0 {
				ratios = append(ratios, auditWaits[i]/floors[i])
			}
		}
		if len(ratios) == len(floors) && len(ratios) > 0 {
			md, spread := medianSpread(ratios)
			sc.addRatio(name, md, spread, "", 0, "")
			return
		}
	}
	waits, fl := positive(auditWaits), positive(floors)
	if len(waits) == 0 || len(fl) == 0 {
		return
	}
	wait, ws := medianSpread(waits)
	floor, fs := medianSpread(fl)
	sc.addRatio(name, wait/floor, ws+fs, "", 0, "")
}

// positive is v without its values ≤ 0 (runs that timed nothing) or NaN.
func positive(v []float64) []float64 {
	var out []float64
	for _, x := range v {
		if x > 0 {
			out = append(out, x)
		}
	}
	return out
}

// noteBesideLoad says what load the gateway served beside the raw sync:
// calls done and failed per run, against the rate offered for d.
func noteBesideLoad(sc *Scenario, payload string, rate float64, d time.Duration, runs []sample) {
	if len(runs) == 0 {
		return
	}
	var done []string
	var failed int64
	for _, s := range runs {
		done = append(done, fmt.Sprint(s.ops))
		failed += s.errs
	}
	sc.note("%s: the gateway beside the raw sync completed %s calls in its runs (%.0f offered in each), %d failed.", payload, strings.Join(done, ", "), rate*d.Seconds(), failed)
}

// p99ms is the 99th percentile of sorted, in ms, taken at index
// ⌊0.99·n⌋ (one rank above measure's nearest rank); sorted must not be
// empty.
func p99ms(sorted []time.Duration) float64 {
	return float64(sorted[min(len(sorted)-1, int(0.99*float64(len(sorted))))].Microseconds()) / 1000
}

// writer runs the ops one at a time, in the order they were asked for.
func (d *rawFsync) writer() {
	defer close(d.done)
	for req := range d.reqs {
		req <- d.syncOne()
	}
}

func (d *rawFsync) syncOne() error {
	d.seq++
	start := time.Now()
	if _, err := d.file.WriteAt(d.row, (d.seq%rawFsyncPages)*rawFsyncPage); err != nil {
		return fmt.Errorf("bench: raw fsync baseline: write %s: %w", d.path, err)
	}
	if err := fdatasync(d.file); err != nil {
		return fmt.Errorf("bench: raw fsync baseline: fdatasync %s: %w", d.path, err)
	}
	took := time.Since(start)
	d.mu.Lock()
	d.timed = append(d.timed, took)
	d.mu.Unlock()
	return nil
}

// op returns once its page is written and synced.
func (d *rawFsync) op(ctx context.Context) error {
	done := make(chan error, 1)
	select {
	case d.reqs <- done:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close stops the writer (after the ops already asked for), closes the
// file and removes it. No op may be asked for after it.
func (d *rawFsync) close() error {
	close(d.reqs)
	<-d.done
	err := d.file.Close()
	if err != nil {
		err = fmt.Errorf("bench: raw fsync baseline: close %s: %w", d.path, err)
	}
	if rerr := os.Remove(d.path); rerr != nil {
		err = errors.Join(err, fmt.Errorf("bench: raw fsync baseline: %w", rerr))
	}
	return err
}

// diskFloors are the floors measured in the rounds of the audit-wait runs
// (see the note addFloors adds), each as one p99 (ms) per run: a raw page
// sync's service time with the gateway idle (raw) and beside the gateway
// serving the same rate (besideGateway: its load on the cores), and the
// gateway's appends made durable by a minimal plain-file journal instead of
// the store, timed from their call (journal; see journalFloor).
type diskFloors struct {
	raw, besideGateway, journal []float64
}

// addFloors adds, next to the audit wait of payload, the floors it has
// (medians over runs) and the audit wait's ratio to the sync beside the
// gateway and to the journal floor, run by run where every round measured
// both (else the ratio of the medians).
func addFloors(sc *Scenario, payload string, auditWaits []float64, fl diskFloors) {
	if len(positive(fl.raw)) == 0 && len(positive(fl.besideGateway)) == 0 && len(positive(fl.journal)) == 0 {
		sc.note("%s: no floor was measured, so the audit wait has nothing to compare with.", payload)
		return
	}
	for _, row := range []struct {
		p99s []float64
		what string
	}{
		{fl.raw, "raw fsync at %.0f/s, one page overwritten and fdatasynced: p99 of its service time, ms (absolute; the device: a durable append waits for at least one such sync)"},
		{fl.besideGateway, "raw fsync at %.0f/s beside the gateway serving the same rate: p99 of its service time, ms (absolute; one sync under the gateway's load: its CPU, garbage collection and own syncs, and the in-process load generator)"},
		{fl.journal, "minimal durable append in the gateway's own exchanges at %.0f req/s (each writes its record to a plain file and fdatasyncs it; no SQLite, no Merkle tree): p99 from its call, ms (absolute; the least an in-process durable audit append waits under this load, timed as the audit wait is)"},
	} {
		if p99s := positive(row.p99s); len(p99s) > 0 {
			md, spread := medianSpread(p99s)
			sc.addRatio(payload+": "+fmt.Sprintf(row.what, auditGoalLoad), md, spread, "", 0, "")
		}
	}
	addWaitRatio(sc, fmt.Sprintf("%s: audit wait p99 / raw fsync p99 beside the gateway at %.0f req/s, median of per-run ratios (1 = an append costs one bare sync under the same load)", payload, auditGoalLoad), auditWaits, fl.besideGateway)
	addWaitRatio(sc, fmt.Sprintf("%s: audit wait p99 / minimal durable append p99 in the gateway at %.0f req/s, median of per-run ratios (1 = the audit log waits no longer than a bare journal would in its place)", payload, auditGoalLoad), auditWaits, fl.journal)
	const why = "Floors, timed in the rounds of the audit-wait runs at the same rate: (1) a single writer overwrites one 4 KB page of a preallocated 4 MiB plain file next to the gateway's database, page after page as SQLite writes its WAL, and fdatasyncs it, with the gateway idle; its headline is the p99 of the write and sync alone (service time, without the wait in line; the table row is timed from the intended start, with the open loop's own lateness). It is what the device takes for one sync. (2) The same, with the gateway serving the audit goal's rate beside it for the whole run: what one sync, with no SQLite and no audit code, takes under the gateway's load on these cores (its CPU, garbage collection and own syncs, and the in-process load generator); only the raw stream's figures are kept from those runs. (3) The gateway serving the same rate with its audit appends made durable by a minimal journal instead of the store: the exchange encodes its record (deterministic protobuf), writes it at the next free offset of a preallocated 4 MiB plain file next to the gateway's database and fdatasyncs the file itself, on its own goroutine (no hand-off to a writer; concurrent syncs of the file are merged by the file system), then takes its seq from a counter, so the exchange goes on with its receipt. These runs come right after the gateway's in each round. Timed from the call to the sync's return, as the audit wait is, it is what any durable append made inside this process waits under this load (its write, the sync, the processor after it), with none of SQLite's or the Merkle tree's work: an audit wait near (3) is the machine's, not the audit log's. Its table row is the gateway's exchange latency in those runs."
	if !slices.Contains(sc.Notes, why) {
		sc.note("%s", why)
	}
}
