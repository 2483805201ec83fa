package audit_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/borderlink/borderlink/internal/audit"
)

// fakeLog is a log that can show any of several histories.
type fakeLog struct {
	t      *testing.T
	signer audit.Signer
	tree   *audit.Tree
	size   int64
}

func (f *fakeLog) Checkpoint(context.Context) ([]byte, error) {
	root, err := f.tree.Root(f.size)
	if err != nil {
		return nil, err
	}
	return audit.SignCheckpoint(f.signer, audit.Checkpoint{Origin: origin, Size: f.size, Hash: root})
}

func (f *fakeLog) ConsistencyProof(_ context.Context, old, n int64) (tlog.TreeProof, error) {
	return tlog.ProveTree(n, old, f.tree)
}

// history builds a tree of n records whose request ids start with prefix
// from index fork on.
func history(t *testing.T, n, fork int, prefix string) *audit.Tree {
	t.Helper()
	var tree audit.Tree
	for i := range n {
		rec := fixedRecord()
		rec.Seq = uint64(i + 1)
		if i >= fork {
			rec.RequestId = fmt.Sprintf("%s%d", prefix, i)
		}
		leaf, _ := audit.Leaf(rec)
		if _, err := tree.Add(int64(i), leaf, nil); err != nil {
			t.Fatal(err)
		}
	}
	return &tree
}

type memWitness map[string][][]byte

func (m memWitness) LastWitnessed(_ context.Context, o string) ([]byte, error) {
	if len(m[o]) == 0 {
		return nil, audit.ErrNoCheckpoint
	}
	return m[o][len(m[o])-1], nil
}

func (m memWitness) PutWitnessed(_ context.Context, o string, _ int64, note []byte, _ time.Time) error {
	m[o] = append(m[o], note)
	return nil
}

func TestWitness(t *testing.T) {
	ctx := context.Background()
	s, v := key(t, origin)
	honest := history(t, 20, 20, "")
	forked := history(t, 20, 8, "fork-")
	st := memWitness{}
	src := &fakeLog{t: t, signer: s, tree: honest, size: 5}

	step := func(size int64, tree *audit.Tree) (bool, error) {
		src.size, src.tree = size, tree
		w, err := audit.Witness(ctx, src, v, st, time.Now())
		return w.New, err
	}
	if isNew, err := step(5, honest); err != nil || !isNew {
		t.Fatalf("first checkpoint: %v %v", isNew, err)
	}
	if isNew, err := step(12, honest); err != nil || !isNew {
		t.Fatalf("grown checkpoint: %v %v", isNew, err)
	}
	if isNew, err := step(12, honest); err != nil || isNew {
		t.Fatalf("same checkpoint again: %v %v", isNew, err)
	}
	for name, tc := range map[string]struct {
		size int64
		tree *audit.Tree
		want string
	}{
		"fork after the accepted size": {15, forked, "does not extend"},
		"other root at the same size":  {12, forked, "two different roots"},
		"rolled back":                  {10, honest, "shrank"},
	} {
		_, err := step(tc.size, tc.tree)
		if !errors.Is(err, audit.ErrSplitView) || !errors.Is(err, audit.ErrVerify) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrSplitView containing %q", name, err, tc.want)
		}
	}
	if len(st[origin]) != 2 {
		t.Errorf("%d checkpoints recorded, want 2 (rejected ones are not recorded)", len(st[origin]))
	}
	// Signed by another key: not a split view, but not accepted.
	other, _ := key(t, origin)
	src.signer = other
	if _, err := step(20, honest); !errors.Is(err, audit.ErrVerify) || errors.Is(err, audit.ErrSplitView) {
		t.Errorf("foreign signature: %v", err)
	}
}

func TestCosignature(t *testing.T) {
	sk, vk, _ := audit.GenerateKey("sg.customs.example/borderlink/audit")
	name := audit.WitnessName("sg.customs.example")
	at := time.Unix(1_790_000_000, 0)
	cs, err := audit.NewCosigner(sk, name, func() time.Time { return at })
	if err != nil {
		t.Fatal(err)
	}
	cv, err := audit.NewCosignatureVerifier(vk, name)
	if err != nil {
		t.Fatal(err)
	}
	if cs.KeyHash() != cv.KeyHash() {
		t.Fatal("cosigner and verifier key IDs differ")
	}
	logSigner, logV := key(t, origin)
	cp, _ := audit.SignCheckpoint(logSigner, audit.Checkpoint{Origin: origin, Size: 3, Hash: tlog.RecordHash([]byte("r"))})
	body, _ := audit.CheckpointText(cp)
	line, err := audit.Cosign(cs, body)
	if err != nil || !strings.HasPrefix(line, "— "+name+" ") {
		t.Fatalf("Cosign = %q, %v", line, err)
	}
	cosigned := append(append([]byte{}, cp...), line...)
	gotBody, gotLine, err := audit.OpenCosigned(cosigned, cv)
	if err != nil || gotBody != body || gotLine != line {
		t.Fatalf("OpenCosigned = %q %q %v", gotBody, gotLine, err)
	}
	// The log's own signature still verifies on the cosigned note.
	if _, err := audit.OpenCheckpoint(cosigned, logV); err != nil {
		t.Errorf("log signature on the cosigned note: %v", err)
	}
	// A cosignature over another checkpoint does not verify.
	other, _ := audit.SignCheckpoint(logSigner, audit.Checkpoint{Origin: origin, Size: 4, Hash: tlog.RecordHash([]byte("r"))})
	if _, _, err := audit.OpenCosigned(append(append([]byte{}, other...), line...), cv); !errors.Is(err, audit.ErrVerify) {
		t.Errorf("cosignature moved to another checkpoint: %v", err)
	}
	// The log key is not a cosignature key.
	if _, _, err := audit.OpenCosigned(cp, cv); !errors.Is(err, audit.ErrVerify) {
		t.Errorf("checkpoint without cosignature: %v", err)
	}
}
