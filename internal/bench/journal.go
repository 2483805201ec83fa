package bench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/borderlink/borderlink/internal/audit"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// journalFloor is the least a durable audit append can do, put where the
// gateway's append is: the exchange encodes its record, writes it at the
// next free offset of a preallocated plain file next to the gateway's
// database and fdatasyncs the file itself, on its own goroutine, and takes
// the next number from a counter. No SQLite, no Merkle tree, no index, and
// no other goroutine to wake or be woken by; concurrent syncs of the one
// file are merged by the file system, the group commit the kernel gives
// for nothing. (A writer goroutine taking every record waiting, as a
// user-space group commit does, measured slower here: each of its two
// hand-offs waits for a processor when the exchanges keep the cores busy.)
// Timed from the call to the sync's return, it is what any in-process
// durable append waits for under the gateway's load: its write, the sync
// (with any in progress), and the processor after it.
type journalFloor struct {
	path string
	seq  atomic.Uint64

	mu     sync.RWMutex // held for reading by appends, so close waits for them
	file   *os.File     // nil once closed
	offMu  sync.Mutex
	offset int64 // where the next record goes; under offMu
}

// journalBytes is the journal file's size; writes go round it, so that
// every sync overwrites blocks the file already has, as the WAL's do.
const journalBytes = 4 << 20

// openJournalFloor creates the journal in dir; close removes it.
func openJournalFloor(dir string) (*journalFloor, error) {
	path, err := filepath.Abs(filepath.Join(dir, "journal-floor.bin"))
	if err != nil {
		return nil, fmt.Errorf("bench: journal floor: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("bench: journal floor: %w", err)
	}
	// Written and synced once, as the raw fsync floor's file is.
	if _, err := f.Write(make([]byte, journalBytes)); err != nil {
		return nil, fmt.Errorf("bench: journal floor: preallocate %s: %w", path, errors.Join(err, f.Close(), os.Remove(path)))
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("bench: journal floor: preallocate %s: %w", path, errors.Join(err, f.Close(), os.Remove(path)))
	}
	return &journalFloor{path: path, file: f}, nil
}

// append makes rec durable in the journal and numbers it as the store
// would: on success rec.Seq and rec.Version are set, so the gateway's
// receipt covers the same leaf.
func (j *journalFloor) append(rec *blv1.AuditRecord) (uint64, error) {
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(rec)
	if err != nil {
		return 0, fmt.Errorf("bench: journal floor: encode: %w", err)
	}
	off, err := j.reserve(len(body))
	if err != nil {
		return 0, err
	}
	j.mu.RLock()
	defer j.mu.RUnlock()
	if j.file == nil {
		return 0, errors.New("bench: journal floor: closed")
	}
	if _, err := j.file.WriteAt(body, off); err != nil {
		return 0, fmt.Errorf("bench: journal floor: write %s: %w", j.path, err)
	}
	if err := fdatasync(j.file); err != nil {
		return 0, fmt.Errorf("bench: journal floor: fdatasync %s: %w", j.path, err)
	}
	seq := j.seq.Add(1)
	rec.Seq, rec.Version = seq, audit.FormatVersion
	return seq, nil
}

// reserve returns where a record of n bytes goes: after the last one, or
// at the start of the file when it would run past the end.
func (j *journalFloor) reserve(n int) (int64, error) {
	if n > journalBytes {
		return 0, fmt.Errorf("bench: journal floor: a record of %d bytes does not fit in %s", n, j.path)
	}
	j.offMu.Lock()
	defer j.offMu.Unlock()
	if j.offset+int64(n) > journalBytes {
		j.offset = 0
	}
	off := j.offset
	j.offset += int64(n)
	return off, nil
}

// close waits for the appends in progress, closes the file and removes
// it; appends after it fail.
func (j *journalFloor) close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.file == nil {
		return nil
	}
	err := errors.Join(j.file.Close(), os.Remove(j.path))
	j.file = nil
	if err != nil {
		return fmt.Errorf("bench: journal floor: close: %w", err)
	}
	return nil
}

// appendJournaled is AppendAudit while a.floor is set.
func (a *appendTimer) appendJournaled(j *journalFloor, rec *blv1.AuditRecord) (uint64, error) {
	start := time.Now()
	seq, err := j.append(rec)
	a.add(time.Since(start))
	return seq, err
}
