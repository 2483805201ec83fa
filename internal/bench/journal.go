package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/borderlink/borderlink/internal/store/sqlite"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// journalFloor is the least a durable audit append can do, put where the
// gateway's append is: the exchange hands its record to one writer
// goroutine, which takes every record waiting (group commit), writes their
// encodings in one write into a preallocated plain file next to the
// gateway's database and fdatasyncs it, then wakes them. No SQLite, no
// Merkle tree, no index. Timed from the exchange's call to its wake-up,
// it is what any in-process durable append waits for under the gateway's
// load: the line behind the sync in progress, its own sync, and the
// processor the writer and then the exchange need after each.
//
// So that the exchange goes on as with the real store (a seq, a signed
// receipt), each record is then appended to index, a store on tmpfs, whose
// fsyncs write nothing to a device; its time is not counted, but its CPU is
// there as the real store's is.
type journalFloor struct {
	path  string
	file  *os.File
	off   int64 // where the next write goes; writer only
	reqs  chan *journalReq
	quit  chan struct{}
	done  chan struct{}
	index *sqlite.Store
	dir   string // index's directory, removed by close
}

type journalReq struct {
	body []byte
	done chan error // buffered
}

// journalBytes is the journal file's size; writes go round it, so that
// every sync overwrites blocks the file already has, as the WAL's do.
const journalBytes = 4 << 20

// tmpfsMagic is the statfs type of tmpfs (linux/magic.h).
const tmpfsMagic = 0x01021994

// shmDir is where the index goes: tmpfs on Linux.
const shmDir = "/dev/shm"

// openJournalFloor creates the journal in dir and its index in a new
// directory under shm. It fails when shm is not tmpfs: an index on a
// device would sync too and load the disk the floor is measured on.
func openJournalFloor(ctx context.Context, dir, shm string) (_ *journalFloor, err error) {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(shm, &fs); err != nil {
		return nil, fmt.Errorf("bench: journal floor: no tmpfs for its index: %w", err)
	}
	if uint64(fs.Type) != tmpfsMagic {
		return nil, fmt.Errorf("bench: journal floor: %s is not tmpfs (file system type %#x), so its index would sync to a device", shm, fs.Type)
	}
	path, err := filepath.Abs(filepath.Join(dir, "journal-floor.bin"))
	if err != nil {
		return nil, fmt.Errorf("bench: journal floor: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("bench: journal floor: %w", err)
	}
	j := &journalFloor{path: path, file: f, reqs: make(chan *journalReq), quit: make(chan struct{}), done: make(chan struct{})}
	defer func() {
		if err != nil {
			err = errors.Join(err, j.release())
		}
	}()
	// Written and synced once, as the raw fsync floor's file is.
	if _, err := f.Write(make([]byte, journalBytes)); err != nil {
		return nil, fmt.Errorf("bench: journal floor: preallocate %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("bench: journal floor: preallocate %s: %w", path, err)
	}
	if j.dir, err = os.MkdirTemp(shm, "borderlink-bench-"); err != nil {
		return nil, fmt.Errorf("bench: journal floor: index: %w", err)
	}
	if j.index, err = sqlite.Open(ctx, filepath.Join(j.dir, "index.db")); err != nil {
		return nil, fmt.Errorf("bench: journal floor: index: %w", err)
	}
	go j.writer()
	return j, nil
}

// append returns once rec's encoding is written and fdatasynced.
func (j *journalFloor) append(ctx context.Context, rec *blv1.AuditRecord) error {
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(rec)
	if err != nil {
		return fmt.Errorf("bench: journal floor: encode: %w", err)
	}
	r := &journalReq{body: body, done: make(chan error, 1)}
	select {
	case j.reqs <- r:
	case <-j.quit:
		return errors.New("bench: journal floor: closed")
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-r.done
}

func (j *journalFloor) writer() {
	defer close(j.done)
	var buf []byte
	for {
		var batch []*journalReq
		select {
		case r := <-j.reqs:
			batch = append(batch, r)
		case <-j.quit:
			return
		}
	fill:
		for {
			select {
			case r := <-j.reqs:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		buf = buf[:0]
		for _, r := range batch {
			buf = append(buf, r.body...)
		}
		err := j.write(buf)
		for _, r := range batch {
			r.done <- err
		}
	}
}

func (j *journalFloor) write(b []byte) error {
	if len(b) > journalBytes {
		return fmt.Errorf("bench: journal floor: a batch of %d bytes does not fit in %s", len(b), j.path)
	}
	if j.off+int64(len(b)) > journalBytes {
		j.off = 0
	}
	if _, err := j.file.WriteAt(b, j.off); err != nil {
		return fmt.Errorf("bench: journal floor: write %s: %w", j.path, err)
	}
	j.off += int64(len(b))
	if err := syscall.Fdatasync(int(j.file.Fd())); err != nil {
		return fmt.Errorf("bench: journal floor: fdatasync %s: %w", j.path, err)
	}
	return nil
}

// close stops the writer (appends not yet taken fail), closes the index
// and removes both files.
func (j *journalFloor) close() error {
	close(j.quit)
	<-j.done
	return j.release()
}

func (j *journalFloor) release() error {
	var errs []error
	if j.index != nil {
		errs = append(errs, j.index.Close())
	}
	if j.dir != "" {
		errs = append(errs, os.RemoveAll(j.dir))
	}
	errs = append(errs, j.file.Close(), os.Remove(j.path))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bench: journal floor: close: %w", err)
	}
	return nil
}

// journaled wraps loop, an open loop of the gateway's exchanges, to run
// with the gateway's audit appends made durable by j instead of the store,
// and appends each run's p99 of those appends' waits (ms; 0 without any)
// to *p99s.
func (a *appendTimer) journaled(j *journalFloor, loop func(context.Context) sample, p99s *[]float64) func(context.Context) sample {
	return func(ctx context.Context) sample {
		a.mu.Lock()
		a.floor, a.on, a.samples = j, true, nil
		a.mu.Unlock()
		s := loop(ctx)
		a.mu.Lock()
		a.floor = nil
		a.mu.Unlock()
		var p99 float64
		if ds := a.stop(); len(ds) > 0 {
			p99 = p99ms(ds)
		}
		*p99s = append(*p99s, p99)
		return s
	}
}

// appendJournaled is AppendAudit while a.floor is set: the record's wait is
// j's durable write, then j's index gives it its seq.
func (a *appendTimer) appendJournaled(ctx context.Context, j *journalFloor, rec *blv1.AuditRecord) (uint64, error) {
	start := time.Now()
	if err := j.append(ctx, rec); err != nil {
		return 0, err
	}
	a.add(time.Since(start))
	return j.index.AppendAudit(ctx, rec)
}
