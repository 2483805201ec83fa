package bench

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/store/sqlite"
)

// TestJournalFloor: while journaled (perRun with a journal), the gateway's appends are written and
// synced to the journal and numbered 1, 2, … as the store would number
// them, none reaches the real store, each is timed once; afterwards
// appends go to the store again, and close removes the journal.
func TestJournalFloor(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "gateway.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	j, err := openJournalFloor(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.close() })
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
				if rec.GetSeq() != seq || rec.GetVersion() != audit.FormatVersion {
					t.Errorf("record after its append: seq %d version %d, want %d and %d", rec.GetSeq(), rec.GetVersion(), seq, audit.FormatVersion)
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
	// Samples kept before the run are not its.
	a.mu.Lock()
	a.on = true
	a.mu.Unlock()
	a.add(1 << 40)
	a.perRun(j, exchanges, &p99s)(ctx)
	if len(p99s) != 1 || p99s[0] <= 0 || p99s[0] > 1e5 {
		t.Errorf("p99s %v, want one from this run's appends", p99s)
	}
	for i := uint64(1); i <= n; i++ {
		if !seqs[i] {
			t.Errorf("no append got seq %d; got %v", i, seqs)
		}
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

	// Journaling off: the store appends, and nothing is timed since the
	// run handed its samples over and stopped recording.
	if _, err := a.AppendAudit(ctx, freshAudit(tmpl)); err != nil {
		t.Fatal(err)
	}
	if size, err := st.AuditTreeSize(ctx); err != nil || size != 1 {
		t.Errorf("the real store holds %d records (%v) after journaling, want 1", size, err)
	}
	if got := a.stop(); len(got) != 0 {
		t.Errorf("%d samples kept after the run", len(got))
	}

	if err := j.close(); err != nil {
		t.Fatal(err)
	}
	if _, err := j.append(freshAudit(tmpl)); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("append after close: %v, want closed", err)
	}
	if _, err := os.Stat(j.path); !os.IsNotExist(err) {
		t.Errorf("%s left behind (%v)", j.path, err)
	}
}

// TestJournalFloorWraps: a record that would run past the end of the
// file goes to its beginning, and one larger than the file fails instead
// of writing past it; the file keeps its size.
func TestJournalFloorWraps(t *testing.T) {
	j, err := openJournalFloor(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.close() })
	for _, tc := range []struct {
		n        int
		at, next int64
	}{
		{10, 0, 10},
		{20, 10, 30},
		{journalBytes - 40, 30, journalBytes - 10},
		{11, 0, 11}, // would end past the file
		{journalBytes - 11, 11, journalBytes},
		{1, 0, 1},
	} {
		at, err := j.reserve(tc.n)
		if err != nil || at != tc.at || j.offset != tc.next {
			t.Errorf("reserve(%d) = %d, %v, next %d; want %d, nil, next %d", tc.n, at, err, j.offset, tc.at, tc.next)
		}
	}
	if _, err := j.reserve(journalBytes + 1); err == nil {
		t.Error("a record larger than the journal got room")
	}
	tmpl, err := typicalAuditRecord(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rec := freshAudit(tmpl)
	enc, err := proto.MarshalOptions{Deterministic: true}.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	j.offset = journalBytes - int64(len(enc)) + 1
	if _, err := j.append(rec); err != nil {
		t.Fatal(err)
	}
	journal, err := os.ReadFile(j.path)
	if err != nil {
		t.Fatal(err)
	}
	if len(journal) != journalBytes || !bytes.HasPrefix(journal, enc) {
		t.Errorf("journal of %d bytes, record at its start: %v; want %d bytes and the wrapped record first", len(journal), bytes.HasPrefix(journal, enc), journalBytes)
	}
}
