package audit_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
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
		checkEvidence(t, name, err, v, audit.DetectedDirect, st[origin][len(st[origin])-1], 12, tc.size)
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

// TestWitnessUnproven: a larger checkpoint the log does not prove
// consistent is not accepted and wraps ErrWitnessUnproven; RetryWitness
// asks about it again against whatever was accepted since.
func TestWitnessUnproven(t *testing.T) {
	ctx := context.Background()
	s, v := key(t, origin)
	honest := history(t, 20, 20, "")
	forked := history(t, 20, 8, "fork-")
	sign := func(tree *audit.Tree, size int64) []byte {
		t.Helper()
		msg, err := (&fakeLog{signer: s, tree: tree, size: size}).Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return msg
	}
	st := memWitness{origin: {sign(honest, 5)}}
	refusing := &proofRefusingLog{fakeLog{signer: s, tree: honest, size: 12}}
	w, err := audit.Witness(ctx, refusing, v, st, time.Now())
	if !errors.Is(err, audit.ErrWitnessUnproven) || errors.Is(err, audit.ErrVerify) || w.New || w.Size != 12 || w.Accepted.Size != 5 || !strings.Contains(err.Error(), "5->12") {
		t.Fatalf("Witness with the proof refused = %+v, %v; want ErrWitnessUnproven without ErrVerify, size 12, accepted 5", w, err)
	}
	if len(st[origin]) != 1 {
		t.Fatalf("an unproven checkpoint was recorded")
	}
	// Still refused on retry.
	if w, err := audit.RetryWitness(ctx, refusing, v, st, w.Note, time.Now()); !errors.Is(err, audit.ErrWitnessUnproven) || w.New {
		t.Errorf("RetryWitness with the proof refused = %+v, %v", w, err)
	}
	// Proven: recorded.
	if w, err := audit.RetryWitness(ctx, &refusing.fakeLog, v, st, w.Note, time.Now()); err != nil || !w.New || len(st[origin]) != 2 {
		t.Errorf("RetryWitness with the proof = %+v, %v (%d recorded)", w, err, len(st[origin]))
	}

	for _, tt := range []struct {
		name     string
		accepted []byte
		kept     []byte
		src      audit.WitnessSource
		want     string // "" nil, "unproven", else ErrSplitView containing it
		recorded bool
	}{
		{"larger, consistent", sign(honest, 8), sign(honest, 12), &fakeLog{signer: s, tree: honest, size: 12}, "", true},
		{"larger, forked", sign(honest, 10), sign(forked, 12), &fakeLog{signer: s, tree: forked, size: 12}, "does not extend", false},
		{"smaller, accepted grew past it", sign(honest, 15), sign(honest, 12), &fakeLog{signer: s, tree: honest, size: 15}, "", false},
		{"smaller, forked", sign(honest, 15), sign(forked, 12), &fakeLog{signer: s, tree: honest, size: 15}, "not consistent", false},
		{"smaller, refused", sign(honest, 15), sign(forked, 12), refusingLog{}, "unproven", false},
		{"same size, other root", sign(honest, 12), sign(forked, 12), refusingLog{}, "two different roots", false},
		{"already accepted", sign(honest, 12), sign(honest, 12), refusingLog{}, "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st := memWitness{origin: {tt.accepted}}
			w, err := audit.RetryWitness(ctx, tt.src, v, st, tt.kept, time.Now())
			switch tt.want {
			case "":
				if err != nil {
					t.Errorf("RetryWitness = %v, want nil", err)
				}
			case "unproven":
				if !errors.Is(err, audit.ErrWitnessUnproven) || errors.Is(err, audit.ErrSplitView) {
					t.Errorf("RetryWitness = %v, want ErrWitnessUnproven", err)
				}
			default:
				if !errors.Is(err, audit.ErrSplitView) || !errors.Is(err, audit.ErrVerify) || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("RetryWitness = %v, want ErrSplitView containing %q", err, tt.want)
				}
				a, _ := audit.OpenCheckpoint(tt.accepted, v)
				k, _ := audit.OpenCheckpoint(tt.kept, v)
				checkEvidence(t, tt.name, err, v, audit.DetectedDirect, tt.accepted, a.Size, k.Size)
			}
			if w.New != tt.recorded || (len(st[origin]) == 2) != tt.recorded {
				t.Errorf("recorded: New %v, %d checkpoints; want %v", w.New, len(st[origin]), tt.recorded)
			}
		})
	}
	// Not signed with the log's key: a verification failure only.
	other, _ := key(t, origin)
	foreign, _ := audit.SignCheckpoint(other, audit.Checkpoint{Origin: origin, Size: 15, Hash: tlog.RecordHash([]byte("x"))})
	if _, err := audit.RetryWitness(ctx, refusingLog{}, v, memWitness{origin: {sign(honest, 12)}}, foreign, time.Now()); !errors.Is(err, audit.ErrVerify) || errors.Is(err, audit.ErrSplitView) || errors.Is(err, audit.ErrWitnessUnproven) {
		t.Errorf("RetryWitness of a foreign checkpoint: %v, want ErrVerify only", err)
	}
}

// proofRefusingLog serves its checkpoint but refuses consistency proofs.
type proofRefusingLog struct{ fakeLog }

func (*proofRefusingLog) ConsistencyProof(context.Context, int64, int64) (tlog.TreeProof, error) {
	return nil, errors.New("refused")
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

// TestCosignatureKeyRing: after a witness rotates its key, cosignatures it
// made with the retired key still verify with a ring holding both keys,
// and a ring lacking the key that made a cosignature rejects it.
func TestCosignatureKeyRing(t *testing.T) {
	const witness = "sg.customs.example"
	name := audit.WitnessName(witness)
	gen := func() (string, string) {
		t.Helper()
		sk, vk, err := audit.GenerateKey(audit.Origin(witness))
		if err != nil {
			t.Fatal(err)
		}
		return sk, vk
	}
	oldSK, oldVK := gen()
	newSK, newVK := gen()
	_, strangerVK := gen()
	logSigner, _ := key(t, origin)
	cp, _ := audit.SignCheckpoint(logSigner, audit.Checkpoint{Origin: origin, Size: 3, Hash: tlog.RecordHash([]byte("r"))})
	body, _ := audit.CheckpointText(cp)
	cosigned := func(sk string) ([]byte, string) {
		t.Helper()
		cs, err := audit.NewCosigner(sk, name, nil)
		if err != nil {
			t.Fatal(err)
		}
		line, err := audit.Cosign(cs, body)
		if err != nil {
			t.Fatal(err)
		}
		return append(append([]byte{}, cp...), line...), line
	}
	byOld, oldLine := cosigned(oldSK)
	byNew, newLine := cosigned(newSK)

	tests := []struct {
		name     string
		ring     []string
		msg      []byte
		wantLine string // "" means rejected
	}{
		{"retired key, ring with both", []string{oldVK, newVK}, byOld, oldLine},
		{"current key, ring with both", []string{oldVK, newVK}, byNew, newLine},
		{"retired key, current key only", []string{newVK}, byOld, ""},
		{"current key, retired key only", []string{oldVK}, byNew, ""},
		{"retired key, unrelated keys", []string{strangerVK, newVK}, byOld, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ring, err := audit.NewCosignatureKeyRing(name, tt.ring)
			if err != nil {
				t.Fatal(err)
			}
			if ring.Name() != name {
				t.Fatalf("ring named %q, want %q", ring.Name(), name)
			}
			gotBody, gotLine, err := audit.OpenCosigned(tt.msg, ring)
			if tt.wantLine == "" {
				if !errors.Is(err, audit.ErrVerify) {
					t.Errorf("OpenCosigned = %v, want ErrVerify", err)
				}
				return
			}
			if err != nil || gotBody != body || gotLine != tt.wantLine {
				t.Errorf("OpenCosigned = %q %q %v, want the body and line %q", gotBody, gotLine, err, tt.wantLine)
			}
		})
	}
	// A cosignature is bound to its witness name: a ring of the same keys
	// under another witness's name rejects it.
	other, _ := audit.NewCosignatureKeyRing(audit.WitnessName("cn.customs.example"), []string{oldVK, newVK})
	if _, _, err := audit.OpenCosigned(byOld, other); !errors.Is(err, audit.ErrVerify) {
		t.Errorf("cosignature under another witness name: %v, want ErrVerify", err)
	}
	if _, err := audit.NewCosignatureKeyRing(name, nil); err == nil {
		t.Error("empty ring accepted")
	}
}

// TestCheckGossip: this witness accepted size 12 of a history that forks
// at index 8; another witness gossips what the same log showed it.
func TestCheckGossip(t *testing.T) {
	ctx := context.Background()
	s, v := key(t, origin)
	honest := history(t, 20, 20, "")
	forked := history(t, 20, 8, "fork-")
	sign := func(tree *audit.Tree, size int64) []byte {
		t.Helper()
		msg, err := (&fakeLog{signer: s, tree: tree, size: size}).Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return msg
	}
	st := memWitness{origin: {sign(forked, 12)}}
	ours := &fakeLog{signer: s, tree: forked, size: 12} // the log as it shows itself to us
	other, _ := key(t, origin)
	foreign, _ := audit.SignCheckpoint(other, audit.Checkpoint{Origin: origin, Size: 12, Hash: tlog.RecordHash([]byte("x"))})

	tests := []struct {
		name   string
		gossip []byte
		src    audit.WitnessSource
		st     memWitness
		want   string // "" no error; else ErrSplitView containing it
	}{
		{"same checkpoint", sign(forked, 12), ours, st, ""},
		{"other root at the same size", sign(honest, 12), ours, st, "two different roots"},
		{"other root at the same size, log unreachable", sign(honest, 12), nil, st, "two different roots"},
		{"larger, from the other history", sign(honest, 15), ours, st, "not consistent"},
		{"smaller, after the fork", sign(honest, 10), ours, st, "not consistent"},
		{"smaller, before the fork", sign(honest, 6), ours, st, ""},
		{"larger, same history", sign(forked, 18), ours, st, ""},
		{"larger, log unreachable", sign(honest, 15), nil, st, "unproven"},
		{"larger, log refuses the proof", sign(honest, 15), refusingLog{}, st, "unproven"},
		{"smaller, log refuses the proof", sign(forked, 6), refusingLog{}, st, "unproven"},
		{"nothing of our own yet", sign(honest, 12), ours, memWitness{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := audit.CheckGossip(ctx, tt.src, v, tt.st, tt.gossip)
			if tt.want == "" {
				if err != nil {
					t.Errorf("CheckGossip = %v, want nil", err)
				}
				return
			}
			if tt.want == "unproven" {
				if !errors.Is(err, audit.ErrGossipUnproven) || errors.Is(err, audit.ErrVerify) {
					t.Errorf("CheckGossip = %v, want ErrGossipUnproven without ErrVerify", err)
				}
				return
			}
			if !errors.Is(err, audit.ErrSplitView) || !errors.Is(err, audit.ErrVerify) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("CheckGossip = %v, want ErrSplitView containing %q", err, tt.want)
			}
			gc, _ := audit.OpenCheckpoint(tt.gossip, v)
			checkEvidence(t, tt.name, err, v, audit.DetectedGossip, tt.st[origin][len(tt.st[origin])-1], 12, gc.Size)
			var sv *audit.SplitViewError
			if errors.As(err, &sv) && !bytes.Equal(sv.ConflictingNote, tt.gossip) {
				t.Errorf("conflicting note is not the gossip as received:\n%s\nwant\n%s", sv.ConflictingNote, tt.gossip)
			}
		})
	}
	// Gossip the log did not sign is no evidence against it.
	err := audit.CheckGossip(ctx, ours, v, st, foreign)
	if !errors.Is(err, audit.ErrVerify) || errors.Is(err, audit.ErrSplitView) {
		t.Errorf("gossip signed by another key: %v, want ErrVerify without ErrSplitView", err)
	}
}

// checkEvidence checks that err carries a split view's evidence: the
// accepted note as stored, and two checkpoints signed by the log.
func checkEvidence(t *testing.T, name string, err error, v note.Verifier, detection string, accepted []byte, acceptedSize, conflictingSize int64) {
	t.Helper()
	var sv *audit.SplitViewError
	if !errors.As(err, &sv) {
		t.Errorf("%s: %v is not a *SplitViewError", name, err)
		return
	}
	if sv.Detection != detection || sv.Origin != v.Name() || sv.Reason == "" {
		t.Errorf("%s: detection %q origin %q reason %q, want %q %q and a reason", name, sv.Detection, sv.Origin, sv.Reason, detection, v.Name())
	}
	if !bytes.Equal(sv.AcceptedNote, accepted) {
		t.Errorf("%s: accepted note is not the one stored:\n%s", name, sv.AcceptedNote)
	}
	for _, c := range []struct {
		note []byte
		want audit.Checkpoint
		size int64
	}{{sv.AcceptedNote, sv.Accepted, acceptedSize}, {sv.ConflictingNote, sv.Conflicting, conflictingSize}} {
		got, err := audit.OpenCheckpoint(c.note, v)
		if err != nil || got != c.want || got.Size != c.size {
			t.Errorf("%s: evidence note opens to %+v, %v; want %+v of size %d", name, got, err, c.want, c.size)
		}
	}
	if sv.Accepted == sv.Conflicting {
		t.Errorf("%s: both checkpoints of the evidence are %+v", name, sv.Accepted)
	}
}

// refusingLog is a log that will not prove its consistency.
type refusingLog struct{}

func (refusingLog) Checkpoint(context.Context) ([]byte, error) { return nil, errors.New("refused") }
func (refusingLog) ConsistencyProof(context.Context, int64, int64) (tlog.TreeProof, error) {
	return nil, errors.New("refused")
}

// rotatedKey is a log key rotated once: the retired signer and the ring
// (retired, current) a witness of the log holds.
func rotatedKey(t *testing.T) (retired, current audit.Signer, retiredVK string, ring *audit.KeyRing) {
	t.Helper()
	rsk, rvk, err := audit.GenerateKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	csk, cvk, err := audit.GenerateKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	retired, _ = note.NewSigner(rsk)
	current, _ = note.NewSigner(csk)
	ring, err = audit.NewKeyRing(origin, []string{rvk, cvk})
	if err != nil {
		t.Fatal(err)
	}
	return retired, current, rvk, ring
}

// TestWitnessRetiredKey: after the log rotated its key, a checkpoint
// signed with the retired key is not accepted (whoever holds a leaked
// retired key could sign any tree), while the checkpoint accepted before
// the rotation, signed with the retired key, still opens for comparison.
func TestWitnessRetiredKey(t *testing.T) {
	ctx := context.Background()
	retired, current, retiredVK, ring := rotatedKey(t)
	tree := history(t, 20, 20, "")
	st := memWitness{}
	src := &fakeLog{t: t, signer: retired, tree: tree, size: 5}
	// Accepted before the rotation, while the retired key was current.
	oldRing, _ := audit.NewKeyRing(origin, []string{retiredVK})
	if w, err := audit.Witness(ctx, src, oldRing, st, time.Now()); err != nil || !w.New {
		t.Fatalf("before the rotation: %+v, %v", w, err)
	}
	// The retired key signs a larger checkpoint: refused, not recorded.
	src.size = 8
	_, err := audit.Witness(ctx, src, ring, st, time.Now())
	if !errors.Is(err, audit.ErrVerify) || errors.Is(err, audit.ErrSplitView) {
		t.Errorf("checkpoint signed with the retired key: %v, want ErrVerify, no split view", err)
	}
	if len(st[origin]) != 1 {
		t.Errorf("%d checkpoints recorded, want 1: the retired key's was accepted", len(st[origin]))
	}
	// The current key's checkpoint extends the one accepted under the
	// retired key.
	src.signer, src.size = current, 12
	if w, err := audit.Witness(ctx, src, ring, st, time.Now()); err != nil || !w.New {
		t.Errorf("checkpoint signed with the current key: %+v, %v", w, err)
	}
}

// TestCheckGossipRetiredKey: gossip signed with the log's retired key —
// which anyone holding that possibly leaked key could forge — is a
// verification error, never a split view; the same with the current key
// is one.
func TestCheckGossipRetiredKey(t *testing.T) {
	ctx := context.Background()
	retired, current, _, ring := rotatedKey(t)
	honest := history(t, 20, 20, "")
	forked := history(t, 20, 8, "fork-")
	accepted, err := (&fakeLog{signer: current, tree: honest, size: 12}).Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st := memWitness{origin: {accepted}}
	ours := &fakeLog{signer: current, tree: honest, size: 12}
	for _, tt := range []struct {
		name  string
		s     audit.Signer
		split bool
	}{{"retired key", retired, false}, {"current key", current, true}} {
		for _, size := range []int64{12, 15} {
			gossip, err := (&fakeLog{signer: tt.s, tree: forked, size: size}).Checkpoint(ctx)
			if err != nil {
				t.Fatal(err)
			}
			err = audit.CheckGossip(ctx, ours, ring, st, gossip)
			if tt.split != errors.Is(err, audit.ErrSplitView) || !errors.Is(err, audit.ErrVerify) {
				t.Errorf("%s, size %d: %v; want ErrVerify, split view %v", tt.name, size, err, tt.split)
			}
			var sv *audit.SplitViewError
			if !tt.split && errors.As(err, &sv) {
				t.Errorf("%s, size %d: evidence %+v", tt.name, size, sv.SplitView)
			}
		}
	}
}
