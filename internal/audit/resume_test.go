package audit_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/borderlink/borderlink/internal/audit"
)

// TestResumeLogVerifier: a verifier resumed from the edge saved at size k
// reads only the leaves from k on, offline and leaf by leaf, and reaches
// the same roots as one that read everything; for every k up to 40 (every
// shape of the edge up to 2^5+8).
func TestResumeLogVerifier(t *testing.T) {
	s, v := key(t, origin)
	const n = 40
	full := makeLog(t, s, n, 5, 13, 32, n)
	exp := writeExport(t, full)
	for k := 0; k <= n; k++ {
		in := makeLog(t, s, k, k)
		in.Verifier = v
		first, err := audit.VerifyLog(in)
		if err != nil {
			t.Fatalf("k=%d: %v", k, err)
		}
		if first.Latest.Size != int64(k) || len(first.Edge) != bitsSet(k) || first.From != 0 || first.Verified != int64(k) {
			t.Fatalf("k=%d: result %+v", k, first)
		}
		lv, err := audit.ResumeLogVerifier(v, first.LatestNote, int64(k), first.Edge)
		if err != nil {
			t.Fatalf("k=%d: resume: %v", k, err)
		}
		res, err := audit.VerifyExportWith(bytes.NewReader(exp), lv)
		if err != nil {
			t.Fatalf("k=%d: %v", k, err)
		}
		if res.Size != n || res.From != int64(k) || res.Verified != int64(n-k) || res.HashedBelow != int64(k) || res.Checkpoints != 4 || len(res.Edge) != bitsSet(n) {
			t.Fatalf("k=%d: result %+v", k, res)
		}
		// The same, online style: leaves from k on, only the
		// checkpoints from k on (an online run sees the latest).
		latest := makeLog(t, s, n, n).Checkpoints
		lv, _ = audit.ResumeLogVerifier(v, first.LatestNote, int64(k), first.Edge)
		for _, c := range latest {
			if err := lv.Checkpoint(c); err != nil {
				t.Fatalf("k=%d: %v", k, err)
			}
		}
		for i := int64(k); i < n; i++ {
			if err := lv.Add(i, full.Leaves[i], nil); err != nil {
				t.Fatalf("k=%d: %v", k, err)
			}
		}
		if res2, err := lv.Finish(); err != nil || res2.Edge == nil || !slicesEqual(res2.Edge, res.Edge) || res2.HashedBelow != 0 {
			t.Fatalf("k=%d: Finish = %+v, %v", k, res2, err)
		}
		// An older checkpoint given without the leaf hashes below k
		// cannot be compared: it is refused, not accepted on its
		// signature.
		if k/2 > 0 {
			lv, _ = audit.ResumeLogVerifier(v, first.LatestNote, int64(k), first.Edge)
			for _, c := range append(makeLog(t, s, n, k/2).Checkpoints, latest...) {
				if err := lv.Checkpoint(c); err != nil {
					t.Fatalf("k=%d: %v", k, err)
				}
			}
			for i := int64(k); i < n; i++ {
				if err := lv.Add(i, full.Leaves[i], nil); err != nil {
					t.Fatalf("k=%d: %v", k, err)
				}
			}
			if _, err := lv.Finish(); !errors.Is(err, audit.ErrVerify) || !strings.Contains(err.Error(), "cannot be checked") {
				t.Fatalf("k=%d: unchecked checkpoint at size %d: Finish = %v", k, k/2, err)
			}
		}
	}
}

func bitsSet(n int) int {
	c := 0
	for ; n > 0; n >>= 1 {
		c += n & 1
	}
	return c
}

func slicesEqual(a, b []tlog.Hash) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestResumeLogVerifierRefuses: an edge that is not the saved
// checkpoint's, and a log rewritten below the saved size, are caught.
func TestResumeLogVerifierRefuses(t *testing.T) {
	s, v := key(t, origin)
	in := makeLog(t, s, 20, 10, 20)
	in.Verifier = v
	first, err := audit.VerifyLog(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Edge) != 2 { // 20 = 16 + 4
		t.Fatalf("edge at 20: %d hashes", len(first.Edge))
	}
	altered := append([]tlog.Hash(nil), first.Edge...)
	altered[1][0] ^= 1
	in = makeLog(t, s, 21, 21)
	in.Verifier = v
	other, err := audit.VerifyLog(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		size int64
		edge []tlog.Hash
		want string
	}{
		{"hash altered", 20, altered, "saved right edge at size 20 hashes to"},
		{"hash missing", 20, first.Edge[:1], "saved right edge at size 20 has 1 hashes, want 2"},
		{"size differs", 21, other.Edge, "saved right edge is for size 21, the saved checkpoint is at size 20"},
	} {
		if _, err := audit.ResumeLogVerifier(v, first.LatestNote, tt.size, tt.edge); !errors.Is(err, audit.ErrVerify) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want ErrVerify naming %q", tt.name, err, tt.want)
		}
	}

	// The log cut back to 12 leaves and re-appended to 22, freshly
	// signed: checkpoint 22 is not the saved tree extended.
	rewritten := makeLog(t, s, 22)
	for i := 12; i < 22; i++ {
		rewritten.Leaves[i] = bytes.Replace(rewritten.Leaves[i], []byte("NL-1"), []byte("NL-9"), 1)
		rewritten.LeafHashes[i] = tlog.RecordHash(rewritten.Leaves[i])
	}
	var tree audit.Tree
	for i, l := range rewritten.Leaves {
		if _, err := tree.Add(int64(i), l, nil); err != nil {
			t.Fatal(err)
		}
	}
	root, _ := tree.Root(22)
	msg, _ := audit.SignCheckpoint(s, audit.Checkpoint{Origin: origin, Size: 22, Hash: root})
	rewritten.Checkpoints = [][]byte{msg}
	lv, err := audit.ResumeLogVerifier(v, first.LatestNote, 20, first.Edge)
	if err != nil {
		t.Fatal(err)
	}
	// An export carries the leaf hashes below 20: they miss the saved root.
	_, err = audit.VerifyExportWith(bytes.NewReader(writeExport(t, rewritten)), lv)
	if !errors.Is(err, audit.ErrVerify) || !strings.Contains(err.Error(), "saved checkpoint at size 20 (--state): the log's stored leaf hashes below index 20") {
		t.Errorf("rewritten export: %v", err)
	}
	// Online, only the leaves from 20 on: checkpoint 22 fails.
	lv, _ = audit.ResumeLogVerifier(v, first.LatestNote, 20, first.Edge)
	err = lv.Checkpoint(msg)
	for i := int64(20); err == nil && i < 22; i++ {
		err = lv.Add(i, rewritten.Leaves[i], nil)
	}
	if !errors.Is(err, audit.ErrVerify) || !strings.Contains(err.Error(), "checkpoint at size 22 is not consistent with the saved checkpoint at size 20") {
		t.Errorf("rewritten online: %v", err)
	}

	// An export shorter than the saved size, and one with a garbled
	// line below it (not hashed, still parsed).
	for _, tt := range []struct {
		name string
		exp  []byte
		want string
	}{
		{"truncated", writeExport(t, makeLog(t, s, 15, 15)), "export has 15 leaves, fewer than the 20 already verified"},
		{"garbled leaf", bytes.Replace(writeExport(t, makeLog(t, s, 22, 22)), []byte(`"index":3,"leaf_hash":"`), []byte(`"index":3,"leaf_hash":"!`), 1), "export line 4 (index 3): leaf_hash"},
		{"out of order", bytes.Replace(writeExport(t, makeLog(t, s, 22, 22)), []byte(`"index":3,`), []byte(`"index":4,`), 1), "index 4, expected index 3"},
	} {
		lv, _ := audit.ResumeLogVerifier(v, first.LatestNote, 20, first.Edge)
		if _, err := audit.VerifyExportWith(bytes.NewReader(tt.exp), lv); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}

// TestResumeChecksCheckpointsBelowSaved: resumed at the saved size S, an
// export's checkpoints below S are compared with the tree of its
// "leaf_hash" values below S, which must reach the saved root at S. A
// validly signed checkpoint at an older size with another root (a
// forked history) fails, naming it; so does a leaf_hash altered below S;
// an export without the lines below S is refused.
func TestResumeChecksCheckpointsBelowSaved(t *testing.T) {
	s, v := key(t, origin)
	const n = 40
	in := makeLog(t, s, 20, 20)
	in.Verifier = v
	first, err := audit.VerifyLog(in)
	if err != nil {
		t.Fatal(err)
	}
	resume := func() *audit.LogVerifier {
		lv, err := audit.ResumeLogVerifier(v, first.LatestNote, 20, first.Edge)
		if err != nil {
			t.Fatal(err)
		}
		return lv
	}

	// Normal resume, with checkpoints below, at and above S.
	good := makeLog(t, s, n, 10, 20, 30, n)
	res, err := audit.VerifyExportWith(bytes.NewReader(writeExport(t, good)), resume())
	if err != nil || res.From != 20 || res.Verified != 20 || res.HashedBelow != 20 || res.Checkpoints != 4 {
		t.Fatalf("good: %+v, %v", res, err)
	}

	// The reviewer's case: a checkpoint at size 10 with a made-up root,
	// signed by the log's key.
	fork := makeLog(t, s, n, n)
	msg, err := audit.SignCheckpoint(s, audit.Checkpoint{Origin: origin, Size: 10, Hash: tlog.RecordHash([]byte("another history"))})
	if err != nil {
		t.Fatal(err)
	}
	fork.Checkpoints = append(fork.Checkpoints, msg)
	_, err = audit.VerifyExportWith(bytes.NewReader(writeExport(t, fork)), resume())
	if !errors.Is(err, audit.ErrVerify) || !strings.Contains(err.Error(), "checkpoint at size 10 does not match the log") {
		t.Errorf("forked checkpoint below the saved size: %v, want a failure naming the checkpoint at size 10", err)
	}

	// A leaf_hash altered below S: with no checkpoint below S, the tree
	// of leaf hashes misses the saved root at S; with one, that
	// checkpoint fails first.
	for _, tt := range []struct {
		sizes []int
		want  string
	}{
		{[]int{n}, "saved checkpoint at size 20 (--state): the log's stored leaf hashes below index 20 give root"},
		{[]int{10, n}, "checkpoint at size 10 does not match the log"},
	} {
		alt := makeLog(t, s, n, tt.sizes...)
		alt.LeafHashes[3][0] ^= 1
		_, err = audit.VerifyExportWith(bytes.NewReader(writeExport(t, alt)), resume())
		if !errors.Is(err, audit.ErrVerify) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("leaf_hash altered below S, checkpoints %v: %v, want %q", tt.sizes, err, tt.want)
		}
	}

	// The lines below S missing (an export made with --since): the
	// checkpoints below S cannot be checked.
	var cut bytes.Buffer
	for i, line := range bytes.SplitAfter(writeExport(t, good), []byte("\n")) {
		if i >= 5 {
			cut.Write(line)
		}
	}
	_, err = audit.VerifyExportWith(bytes.NewReader(cut.Bytes()), resume())
	if !errors.Is(err, audit.ErrVerify) || !strings.Contains(err.Error(), "export made with --since cannot be verified") {
		t.Errorf("lines below S missing: %v", err)
	}
}
