package audit_test

import (
	"bytes"
	"errors"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/borderlink/borderlink/internal/audit"
)

// seqLeaf is the leaf of fixedRecord at index i.
func seqLeaf(t testing.TB, i int64) []byte {
	t.Helper()
	rec := fixedRecord()
	rec.Seq = uint64(i + 1)
	leaf, err := audit.Leaf(rec)
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

// TestLogVerifierRoots: the right edge alone gives the same root as the
// whole tree (itself checked against RFC 6962's vectors) at every size,
// across every shape of the edge up to 2^9+1 leaves.
func TestLogVerifierRoots(t *testing.T) {
	_, v := key(t, origin)
	lv, err := audit.NewLogVerifier(v, nil)
	if err != nil {
		t.Fatal(err)
	}
	var tree audit.Tree
	for i := range int64(513) {
		leaf := seqLeaf(t, i)
		if _, err := tree.Add(i, leaf, nil); err != nil {
			t.Fatal(err)
		}
		if err := lv.Add(i, leaf, nil); err != nil {
			t.Fatal(err)
		}
		got, err := lv.Root()
		if err != nil {
			t.Fatalf("size %d: %v", i+1, err)
		}
		if want, _ := tree.Root(i + 1); got != want {
			t.Fatalf("size %d: streaming root %s, whole tree %s", i+1, got, want)
		}
	}
}

// TestLogVerifierOrder: a checkpoint can be compared only while the
// stream is at or before its size.
func TestLogVerifierOrder(t *testing.T) {
	s, v := key(t, origin)
	in := makeLog(t, s, 10, 4)
	lv, _ := audit.NewLogVerifier(v, nil)
	for i := range 6 {
		if err := lv.Add(int64(i), in.Leaves[i], nil); err != nil {
			t.Fatal(err)
		}
	}
	err := lv.Checkpoint(in.Checkpoints[0])
	if err == nil || errors.Is(err, audit.ErrVerify) || !strings.Contains(err.Error(), "given after 6 leaves") {
		t.Errorf("late checkpoint: %v, want a usage error", err)
	}
	if err := lv.Add(7, in.Leaves[7], nil); !errors.Is(err, audit.ErrVerify) || !strings.Contains(err.Error(), "expected index 6") {
		t.Errorf("skipped leaf: %v, want ErrVerify naming index 6", err)
	}
}

// writeExport writes in as audit export does: leaves, then checkpoints.
func writeExport(t *testing.T, in audit.LogInput) []byte {
	t.Helper()
	var b bytes.Buffer
	ex := audit.NewExporter(&b)
	for i, leaf := range in.Leaves {
		h := tlog.RecordHash(leaf)
		if in.LeafHashes != nil {
			h = in.LeafHashes[i]
		}
		if err := ex.Leaf(int64(i), leaf, h); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range in.Checkpoints {
		if err := ex.Checkpoint(0, fixedRecord().GetTime().AsTime(), c); err != nil {
			t.Fatal(err)
		}
	}
	if err := ex.Flush(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestVerifyExport runs the tampering cases through the two-pass
// streaming verifier of exports.
func TestVerifyExport(t *testing.T) {
	s, v := key(t, origin)
	good := makeLog(t, s, 10, 4, 10)
	res, err := audit.VerifyExport(bytes.NewReader(writeExport(t, good)), v, nil)
	if err != nil || res.Size != 10 || res.Checkpoints != 2 || res.Latest.Size != 10 {
		t.Fatalf("VerifyExport = %+v, %v", res, err)
	}
	saved := res.LatestNote
	if _, err := audit.VerifyExport(bytes.NewReader(writeExport(t, good)), v, saved); err != nil {
		t.Errorf("against its own saved checkpoint: %v", err)
	}
	// A log rewritten from index 6 and signed again: only the saved
	// checkpoint of the original exposes it.
	rewritten := makeLog(t, s, 12, 12)
	for i := 6; i < 12; i++ {
		rec := fixedRecord()
		rec.Seq, rec.RequestId = uint64(i+1), "ffffffffffffffffffffffffffffffff"
		rewritten.Leaves[i], _ = audit.Leaf(rec)
		rewritten.LeafHashes[i] = tlog.RecordHash(rewritten.Leaves[i])
	}
	var tree audit.Tree
	for i, l := range rewritten.Leaves {
		tree.Add(int64(i), l, nil)
	}
	root, _ := tree.Root(12)
	msg, _ := audit.SignCheckpoint(s, audit.Checkpoint{Origin: origin, Size: 12, Hash: root})
	rewritten.Checkpoints = [][]byte{msg}

	tests := []struct {
		name   string
		in     func() audit.LogInput
		saved  []byte
		want   string
		verify bool // wraps ErrVerify
	}{
		{"byte changed", func() audit.LogInput {
			in := makeLog(t, s, 10, 4, 10)
			in.Leaves[6] = bytes.Replace(in.Leaves[6], []byte("NL-1"), []byte("NL-9"), 1)
			return in
		}, nil, "index 6: record hashes to", true},
		{"byte and stored hash changed", func() audit.LogInput {
			in := makeLog(t, s, 10, 4, 10)
			in.Leaves[6] = bytes.Replace(in.Leaves[6], []byte("NL-1"), []byte("NL-9"), 1)
			in.LeafHashes[6] = tlog.RecordHash(in.Leaves[6])
			return in
		}, nil, "checkpoint at size 10 does not match the log: a record between index 4 and 9", true},
		{"deleted", func() audit.LogInput {
			in := makeLog(t, s, 10, 4, 10)
			in.Leaves = append(in.Leaves[:3], in.Leaves[4:]...)
			in.LeafHashes = append(in.LeafHashes[:3], in.LeafHashes[4:]...)
			return in
		}, nil, "index 3: record says seq 5", true},
		{"truncated", func() audit.LogInput {
			in := makeLog(t, s, 10, 4, 10)
			in.Leaves, in.LeafHashes = in.Leaves[:8], in.LeafHashes[:8]
			return in
		}, nil, "checkpoint at size 10 but the log has only 8 records", true},
		{"key replaced", func() audit.LogInput {
			other, _ := key(t, origin)
			return makeLog(t, other, 10, 10)
		}, nil, "checkpoint #1: checkpoint signature", true},
		{"rewritten, against saved state", func() audit.LogInput { return rewritten }, saved, "not consistent with the saved checkpoint at size 10", true},
		{"rewritten, no state", func() audit.LogInput { return rewritten }, nil, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := audit.VerifyExport(bytes.NewReader(writeExport(t, tt.in())), v, tt.saved)
			if tt.want == "" {
				if err != nil {
					t.Errorf("VerifyExport = %v, want success", err)
				}
				return
			}
			if errors.Is(err, audit.ErrVerify) != tt.verify || err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("VerifyExport = %v, want an error containing %q (ErrVerify: %v)", err, tt.want, tt.verify)
			}
		})
	}
}

// liveHeap is the heap in use after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestLogVerifierMemory streams a log of a million leaves, generated on
// the fly, past four checkpoints, and bounds the live heap the verifier
// grows to by 8 bytes a leaf (8 MB). Holding every tree hash (the whole
// Tree: about 2n stored hashes of 32 bytes, 64 MB) fails it by a factor
// of eight; the right edge is 20 hashes. Under the race detector, ten
// times slower, the log is 2^16 leaves and the bound 512 KB.
func TestLogVerifierMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("streams a million leaves")
	}
	n := int64(1_000_000)
	if raceEnabled {
		n = 1 << 16
	}
	bound := 8 * n
	s, v := key(t, origin)
	sizes := []int64{1, 4096, n/2 + 1, n}

	// First pass: the roots to sign, computed by a verifier given no
	// checkpoints.
	roots := map[int64]tlog.Hash{}
	lv, _ := audit.NewLogVerifier(v, nil)
	for i := range n {
		if err := lv.Add(i, seqLeaf(t, i), nil); err != nil {
			t.Fatal(err)
		}
		for _, size := range sizes {
			if size == i+1 {
				roots[size], _ = lv.Root()
			}
		}
	}

	lv, _ = audit.NewLogVerifier(v, nil)
	for _, size := range sizes {
		msg, err := audit.SignCheckpoint(s, audit.Checkpoint{Origin: origin, Size: size, Hash: roots[size]})
		if err != nil {
			t.Fatal(err)
		}
		if err := lv.Checkpoint(msg); err != nil {
			t.Fatal(err)
		}
	}
	base := liveHeap()
	var peak uint64
	for i := range n {
		if err := lv.Add(i, seqLeaf(t, i), nil); err != nil {
			t.Fatal(err)
		}
		if (i+1)%(n/4) == 0 {
			peak = max(peak, liveHeap())
		}
	}
	res, err := lv.Finish()
	if err != nil || res.Size != n || res.Checkpoints != len(sizes) || res.Latest.Size != n {
		t.Fatalf("Finish = %+v, %v", res, err)
	}
	runtime.KeepAlive(lv)
	grew := int64(peak) - int64(base)
	t.Logf("live heap grew by %d bytes verifying %d leaves", grew, n)
	if grew > bound {
		t.Errorf("live heap grew by %d bytes verifying %d leaves, want under %d", grew, n, bound)
	}
}

// BenchmarkLogVerifier measures streaming verification per record (parse,
// canonical check, leaf hash, right edge) and its allocations: garbage
// per record, nothing retained (TestLogVerifierMemory bounds that). The
// leaves are made beforehand; every 4096 the stream starts over.
func BenchmarkLogVerifier(b *testing.B) {
	_, v := key(b, origin)
	leaves := make([][]byte, 4096)
	for i := range leaves {
		leaves[i] = seqLeaf(b, int64(i))
	}
	var lv *audit.LogVerifier
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		j := i % len(leaves)
		if j == 0 {
			lv, _ = audit.NewLogVerifier(v, nil)
		}
		if err := lv.Add(int64(j), leaves[j], nil); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Minutes(), "records/min")
}
