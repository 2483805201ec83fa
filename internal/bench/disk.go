package bench

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/store/sqlite"
)

// durableRowBytes is the size of the BLOB each bare durable insert writes:
// about one audit record.
const durableRowBytes = 1024

// durableInsert is SQLite's floor for a durable append: one INSERT of
// a ~1 KB row per autocommit transaction into a fresh SQLite file, opened
// as the store's writer is (sqlite.OpenDurableDB: WAL, synchronous=FULL, so
// every commit fsyncs the WAL). Each row also carries a request id as the
// gateway makes them (audit.NewRequestID, time-ordered) under an index,
// like the audit log's. There is no group commit and no Merkle tree: what
// it costs is SQLite's commit path and the fsync.
//
// One goroutine writes, taking the inserts in arrival order (FIFO), as the
// store's single writer connection does; an open loop's latency then
// includes the wait behind a slow fsync. Each committed insert's time
// from its call to its return (the wait behind the inserts queued before
// it, then its commit) is kept, timed as the gateway's audit wait is,
// without the open loop's own lateness.
//
// With file set instead of db (openRawFsync) it is the device's floor
// below SQLite: each op writes one page into a preallocated plain file, in
// turn through it as SQLite writes its WAL, and fdatasyncs it; the time of
// that write and sync alone (its service time, without the wait in line)
// is kept for each op.
type durableInsert struct {
	path string
	db   *sql.DB
	file *os.File
	row  []byte
	seq  int64
	reqs chan chan error
	done chan struct{}

	mu    sync.Mutex
	timed []time.Duration // per op: the call to its return, or in plain-file mode the write and fdatasync
}

// rawFsyncPages is the plain file's size in pages: about the WAL's size
// at SQLite's default automatic checkpoint (1,000 pages).
const rawFsyncPages = 1024

// rawFsyncPage is one page, the unit SQLite writes its WAL in.
const rawFsyncPage = 4096

const durableInsertSchema = `CREATE TABLE rows (
    seq        INTEGER NOT NULL PRIMARY KEY,
    time       INTEGER NOT NULL,
    request_id TEXT    NOT NULL,
    record     BLOB    NOT NULL
) STRICT;
CREATE INDEX rows_by_request ON rows (request_id, seq);`

// openDurableInsert creates a fresh database named name in dir (which must
// exist; a leftover file of that name is replaced). The caller must close
// it, which also removes the file.
func openDurableInsert(ctx context.Context, dir, name string) (_ *durableInsert, err error) {
	path, err := filepath.Abs(filepath.Join(dir, name))
	if err != nil {
		return nil, fmt.Errorf("bench: durable insert baseline: %w", err)
	}
	d := &durableInsert{path: path, row: make([]byte, durableRowBytes)}
	if err := d.remove(); err != nil {
		return nil, err
	}
	rand.Read(d.row)
	db, err := sqlite.OpenDurableDB(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("bench: durable insert baseline: %w", errors.Join(err, d.remove()))
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, db.Close(), d.remove())
		}
	}()
	if _, err := db.ExecContext(ctx, durableInsertSchema); err != nil {
		return nil, fmt.Errorf("bench: durable insert baseline: create table in %s: %w", path, err)
	}
	d.db = db
	d.start()
	return d, nil
}

// openRawFsync creates the plain file name in dir for the raw fsync floor
// (see durableInsert); close removes it.
func openRawFsync(dir, name string) (*durableInsert, error) {
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
	d := &durableInsert{path: path, file: f, row: make([]byte, rawFsyncPage)}
	rand.Read(d.row)
	d.start()
	return d, nil
}

// timedP99 is the p99 of the ops' kept times (see durableInsert) since
// the last call, in ms (0 without ops), and forgets them.
func (d *durableInsert) timedP99() float64 {
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
func (d *durableInsert) perRun(loop func(context.Context) sample, p99s *[]float64) func(context.Context) sample {
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

func (d *durableInsert) start() {
	d.reqs = make(chan chan error, maxOutstanding)
	d.done = make(chan struct{})
	go d.writer()
}

// writer runs the inserts one at a time, in the order they were asked for.
func (d *durableInsert) writer() {
	defer close(d.done)
	for req := range d.reqs {
		req <- d.insertOne()
	}
}

func (d *durableInsert) insertOne() error {
	d.seq++
	if d.file != nil {
		start := time.Now()
		if _, err := d.file.WriteAt(d.row, (d.seq%rawFsyncPages)*rawFsyncPage); err != nil {
			return fmt.Errorf("bench: raw fsync baseline: write %s: %w", d.path, err)
		}
		if err := syscall.Fdatasync(int(d.file.Fd())); err != nil {
			return fmt.Errorf("bench: raw fsync baseline: fdatasync %s: %w", d.path, err)
		}
		d.keep(time.Since(start))
		return nil
	}
	// Not the caller's context: an insert the writer has started runs to
	// its commit, as the store's sequencer does.
	if _, err := d.db.Exec(`INSERT INTO rows (seq, time, request_id, record) VALUES (?, ?, ?, ?)`,
		d.seq, time.Now().UnixNano(), audit.NewRequestID(time.Now()), d.row); err != nil {
		return fmt.Errorf("bench: durable insert baseline: insert %d into %s: %w", d.seq, d.path, err)
	}
	return nil
}

// insert is an op: it returns once its row is committed and fsynced.
func (d *durableInsert) insert(ctx context.Context) error {
	start := time.Now()
	done := make(chan error, 1)
	select {
	case d.reqs <- done:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		if err == nil && d.db != nil {
			d.keep(time.Since(start))
		}
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *durableInsert) keep(took time.Duration) {
	d.mu.Lock()
	d.timed = append(d.timed, took)
	d.mu.Unlock()
}

// close stops the writer (after the inserts already asked for), closes the
// database and removes its files. No insert may be called after it.
func (d *durableInsert) close() error {
	close(d.reqs)
	<-d.done
	if d.file != nil {
		err := d.file.Close()
		if err != nil {
			err = fmt.Errorf("bench: raw fsync baseline: close %s: %w", d.path, err)
		}
		return errors.Join(err, d.remove())
	}
	err := d.db.Close()
	if err != nil {
		err = fmt.Errorf("bench: durable insert baseline: close %s: %w", d.path, err)
	}
	return errors.Join(err, d.remove())
}

// remove deletes the database and its WAL and shared-memory files.
func (d *durableInsert) remove() error {
	var errs []error
	for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
		if err := os.Remove(d.path + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("bench: disk floor baseline: %w", err))
		}
	}
	return errors.Join(errs...)
}

// diskFloors are the floors measured in the rounds of the audit-wait runs
// (see the note addDurableFloor adds): the bare durable insert's result
// and, per run, the p99 (ms) of its inserts timed from their call (insert);
// and per run the p99 (ms) of a raw page sync's service time with the
// gateway idle (raw), beside a second stream of such syncs on another file
// (besideSync: the device's own contention) and beside the gateway serving
// the same rate (besideGateway: its load on the cores); and per run the
// p99 (ms) of the gateway's appends made durable by a minimal plain-file
// journal instead of the store, timed from their call (journal; see
// journalFloor).
type diskFloors struct {
	durable                                         *Result
	insert, raw, besideSync, besideGateway, journal []float64
}

// addDurableFloor adds, next to the audit wait of payload, the floors it
// has (medians over runs) and the audit wait's ratio to the bare durable
// insert's and to the sync beside the gateway, run by run where every
// round measured both (else the ratio of the medians).
func addDurableFloor(sc *Scenario, payload string, auditWaits []float64, fl diskFloors) {
	durable := fl.durable
	if durable == nil || len(positive(fl.insert)) == 0 {
		sc.note("%s: the bare durable SQLite insert was not measured, so the audit wait has no disk floor to compare with.", payload)
		return
	}
	for _, row := range []struct {
		p99s []float64
		what string
	}{
		{fl.insert, "bare durable SQLite insert of a 1 KB row at %.0f/s: p99 from its call to its commit, ms (absolute; SQLite's floor for a durable append on this disk, timed as the audit wait is)"},
		{fl.raw, "raw fsync at %.0f/s, one page overwritten and fdatasynced: p99 of its service time, ms (absolute; the device: a durable append waits for at least one such sync)"},
		{fl.besideSync, "raw fsync at %.0f/s beside a second raw fsync stream at the same rate: p99 of its service time, ms (absolute; control: the device's own contention)"},
		{fl.besideGateway, "raw fsync at %.0f/s beside the gateway serving the same rate: p99 of its service time, ms (absolute; one sync under the gateway's load: its CPU, garbage collection and own syncs, and the in-process load generator)"},
		{fl.journal, "minimal durable append in the gateway's own exchanges at %.0f req/s (group commit to a plain file, fdatasync; no SQLite, no Merkle tree): p99 from its call, ms (absolute; the least an in-process durable audit append waits under this load, timed as the audit wait is)"},
	} {
		if p99s := positive(row.p99s); len(p99s) > 0 {
			md, spread := medianSpread(p99s)
			sc.addRatio(payload+": "+fmt.Sprintf(row.what, durable.Rate), md, spread, "", 0, "")
		}
	}
	addWaitRatio(sc, fmt.Sprintf("%s: audit wait p99 / bare durable insert p99 at %.0f req/s, median of per-run ratios (1 = audit adds nothing beyond SQLite's durable insert)", payload, durable.Rate), auditWaits, fl.insert)
	addWaitRatio(sc, fmt.Sprintf("%s: audit wait p99 / raw fsync p99 beside the gateway at %.0f req/s, median of per-run ratios (1 = an append costs one bare sync under the same load)", payload, durable.Rate), auditWaits, fl.besideGateway)
	addWaitRatio(sc, fmt.Sprintf("%s: audit wait p99 / minimal durable append p99 in the gateway at %.0f req/s, median of per-run ratios (1 = the audit log waits no longer than a bare journal would in its place)", payload, durable.Rate), auditWaits, fl.journal)
	if durable.Median.Errors > 0 {
		sc.note("%s: the bare durable insert lost a median of %d of its %.0f/s arrivals per run (failed, or dropped beyond %d in flight); its p99 is over the inserts that committed.", payload, durable.Median.Errors, durable.Rate, maxOutstanding)
	}
	const why = "Disk floors: in the rounds of the audit-wait runs, with the gateway idle, (1) a single writer commits one ~1 KB row (plus an indexed request id made as the gateway makes them, time-ordered) per transaction into a fresh SQLite file next to the gateway's, with the store's settings (WAL, synchronous=FULL: an fsync per commit), one writer taking them in turn as the store's does; its headline is timed as the audit wait is, from each insert's call to its commit (the wait behind the inserts queued before it included; the table row is timed from the intended start, with the open loop's own lateness); (2) a single writer overwrites one 4 KB page of a preallocated 4 MiB plain file next to it, page after page as SQLite writes its WAL, and fdatasyncs it, on the same open-loop schedule; its headline is the p99 of the write and sync alone (service time, without the wait in line; the table row is timed from the intended start like the others). (2) is what the device takes for one sync: a durable append waits for at least one sync that starts after it arrives, so an audit wait p99 near (2) is the disk's. (1) adds SQLite's commit path (WAL frames, index pages, the occasional automatic checkpoint); an audit wait near it is the disk's and SQLite's, not the audit layer's, and group commit can come in under it only by sharing one fsync among several records. (2) is also timed, in the same rounds, with a load beside it for the whole run: a second such stream on another file, arrivals at the same instants (a control: what the device loses to a second writer), and the gateway serving the audit goal's rate (what one sync, with no SQLite and no audit code, takes under the gateway's CPU load on these cores; the gateway's own appends share the disk, and the control bounds what that costs). Only the raw stream's figures are kept from those runs. (3) The gateway also serves the same rate with its audit appends made durable by a minimal journal instead of the store: the exchange hands its record (deterministic protobuf) to one writer goroutine that takes every record waiting, writes them in one write into a preallocated 4 MiB plain file next to the gateway's database and fdatasyncs it, then wakes them; the record then gets its seq from a store on tmpfs (no device sync; its time not counted, its CPU there as the real store's is), so the exchange goes on with its receipt. Timed from the call to the wake-up, as the audit wait is, it is what any durable append made inside this process waits under this load (the sync in progress, its own sync, the processor after each), with none of SQLite's or the Merkle tree's work; its table row is the gateway's exchange latency in those runs."
	if !slices.Contains(sc.Notes, why) {
		sc.note("%s", why)
	}
}
