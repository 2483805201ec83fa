package bench

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/borderlink/borderlink/internal/store/sqlite"
)

// TestJournalFloor: while journaled, the gateway's appends are written and
// synced to the journal and numbered by its tmpfs index, none reaches the
// real store, each is timed; afterwards appends go to the store again, and
// close removes the journal and the index.
func TestJournalFloor(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "gateway.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	j, err := openJournalFloor(ctx, dir, shmDir)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := typicalAuditRecord(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a := &appendTimer{Store: st}
	const n = 64
	var (
		mu   sync.Mutex
		encs [][]byte
		seqs = map[uint64]bool{}
	)
	exchanges := func(ctx context.Context) sample {
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				rec := freshAudit(tmpl)
				enc, err := proto.MarshalOptions{Deterministic: true}.Marshal(rec)
				if err != nil {
					t.Error(err)
					return
				}
				seq, err := a.AppendAudit(ctx, rec)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				encs, seqs[seq] = append(encs, enc), true
				mu.Unlock()
			})
		}
		wg.Wait()
		return sample{ops: n}
	}
	var p99s []float64
	a.journaled(j, exchanges, &p99s)(ctx)
	if len(p99s) != 1 || p99s[0] <= 0 {
		t.Errorf("p99s %v, want one positive", p99s)
	}
	if len(seqs) != n || !seqs[1] || !seqs[n] {
		t.Errorf("seqs %v, want 1 to %d from the index", seqs, n)
	}
	if size, err := j.index.AuditTreeSize(ctx); err != nil || size != n {
		t.Errorf("index holds %d records (%v), want %d", size, err, n)
	}
	if size, err := st.AuditTreeSize(ctx); err != nil || size != 0 {
		t.Errorf("the real store holds %d records (%v) after journaled appends, want 0", size, err)
	}
	journal, err := os.ReadFile(j.path)
	if err != nil {
		t.Fatal(err)
	}
	for i, enc := range encs {
		if !bytes.Contains(journal, enc) {
			t.Errorf("record %d is not in the journal", i)
		}
	}

	// Journaling off: the store appends, nothing is timed unless recording.
	if _, err := a.AppendAudit(ctx, freshAudit(tmpl)); err != nil {
		t.Fatal(err)
	}
	if size, err := st.AuditTreeSize(ctx); err != nil || size != 1 {
		t.Errorf("the real store holds %d records (%v) after journaling, want 1", size, err)
	}
	if got := a.stop(); len(got) != 0 {
		t.Errorf("%d samples kept while not recording", len(got))
	}

	if err := j.close(); err != nil {
		t.Fatal(err)
	}
	if err := j.append(ctx, freshAudit(tmpl)); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("append after close: %v, want closed", err)
	}
	for _, p := range []string{j.path, j.dir} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left behind (%v)", p, err)
		}
	}
}

// TestJournalFloorWraps: a write that would run past the end of the file
// starts again at its beginning, and a batch larger than the file fails
// instead of writing past it.
func TestJournalFloorWraps(t *testing.T) {
	j, err := openJournalFloor(context.Background(), t.TempDir(), shmDir)
	if err != nil {
		t.Fatal(err)
	}
	defer j.close()
	j.off = journalBytes - 2
	if err := j.write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	if j.off != 3 {
		t.Errorf("after a wrapped write the next goes at %d, want 3", j.off)
	}
	if err := j.write(make([]byte, journalBytes+1)); err == nil {
		t.Error("a batch larger than the journal was written")
	}
	if st, err := os.Stat(j.path); err != nil || st.Size() != journalBytes {
		t.Errorf("journal size %v (%v), want %d", st.Size(), err, journalBytes)
	}
}

// TestJournalFloorNeedsTmpfs: the index must go to tmpfs, or the floor
// would carry its syncs.
func TestJournalFloorNeedsTmpfs(t *testing.T) {
	disk := t.TempDir()
	var fs syscall.Statfs_t
	if err := syscall.Statfs(disk, &fs); err != nil {
		t.Fatal(err)
	}
	diskIsTmpfs := uint64(fs.Type) == tmpfsMagic
	for _, tc := range []struct {
		name, shm string
		ok        bool
	}{
		{"missing", filepath.Join(disk, "nope"), false},
		{"temp dir", disk, diskIsTmpfs},
		{"shm", shmDir, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j, err := openJournalFloor(context.Background(), t.TempDir(), tc.shm)
			if j != nil {
				defer j.close()
			}
			if (err == nil) != tc.ok {
				t.Errorf("open with the index under %s: %v, want ok=%v", tc.shm, err, tc.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "tmpfs") {
				t.Errorf("error %q does not say tmpfs is needed", err)
			}
		})
	}
}
