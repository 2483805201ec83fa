package audit

import (
	"fmt"
	"sort"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// Tree rebuilds a log's Merkle tree from its leaves, in memory, checking
// each leaf as it is added. The zero Tree is an empty log.
type Tree struct {
	hashes []tlog.Hash // stored hashes, by tlog stored-hash index
	size   int64
}

// Size is the number of leaves added.
func (t *Tree) Size() int64 { return t.size }

// ReadHashes implements tlog.HashReader over the leaves added so far.
func (t *Tree) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(t.hashes)) {
			return nil, fmt.Errorf("hash %d not in a tree of %d leaves", x, t.size)
		}
		out[i] = t.hashes[x]
	}
	return out, nil
}

// Add checks the leaf at index (which must be Size()) and appends it. If
// want is not nil it is the leaf hash the log claims for it, and a leaf
// that hashes differently is an altered record. Errors wrap ErrVerify.
func (t *Tree) Add(index int64, leaf []byte, want *tlog.Hash) (*blv1.AuditRecord, error) {
	if index != t.size {
		return nil, fmt.Errorf("index %d: expected index %d next (leaves missing or out of order): %w", index, t.size, ErrVerify)
	}
	rec, err := ParseLeaf(index, leaf)
	if err != nil {
		return nil, err
	}
	h := tlog.RecordHash(leaf)
	if want != nil && *want != h {
		return nil, fmt.Errorf("index %d: record hashes to %s, the log stored %s (record altered): %w", index, h, want, ErrVerify)
	}
	hs, err := tlog.StoredHashesForRecordHash(t.size, h, t)
	if err != nil {
		return nil, fmt.Errorf("index %d: %w", index, err)
	}
	t.hashes = append(t.hashes, hs...)
	t.size++
	return rec, nil
}

// Root is the tree hash of the first n leaves.
func (t *Tree) Root(n int64) (tlog.Hash, error) {
	if n < 0 || n > t.size {
		return tlog.Hash{}, fmt.Errorf("tree of %d leaves has no root at size %d", t.size, n)
	}
	return tlog.TreeHash(n, t)
}

// LogInput is a whole log to verify.
type LogInput struct {
	// Leaves are the leaf data, index 0 first.
	Leaves [][]byte
	// LeafHashes, if not nil, are the leaf hashes the gateway stored, one
	// per leaf; they let a changed record be named by its index even when
	// no checkpoint has covered it yet.
	LeafHashes []tlog.Hash
	// Checkpoints are signed checkpoint notes, in any order.
	Checkpoints [][]byte
	// Verifier checks checkpoint signatures; its name is the origin.
	Verifier note.Verifier
	// Saved is a checkpoint seen earlier (audit verify --state), or nil.
	Saved []byte
}

// LogResult describes a log that verified.
type LogResult struct {
	Size        int64      // leaves checked
	Checkpoints int        // checkpoints checked
	Latest      Checkpoint // largest checkpoint (zero if none)
	LatestNote  []byte     // its signed note
	Uncovered   int64      // leaves after the latest checkpoint
}

// VerifyLog recomputes every leaf hash and the tree, checks every
// checkpoint's signature and root, and checks that the log extends the
// saved checkpoint. At least one checkpoint must verify. The error names
// the first bad index or the failing checkpoint and wraps ErrVerify.
func VerifyLog(in LogInput) (LogResult, error) {
	type cp struct {
		c   Checkpoint
		msg []byte
	}
	var cps []cp
	for i, msg := range in.Checkpoints {
		c, err := OpenCheckpoint(msg, in.Verifier)
		if err != nil {
			return LogResult{}, fmt.Errorf("checkpoint #%d: %w", i+1, err)
		}
		cps = append(cps, cp{c, msg})
	}
	sort.SliceStable(cps, func(i, j int) bool { return cps[i].c.Size < cps[j].c.Size })
	if in.LeafHashes != nil && len(in.LeafHashes) != len(in.Leaves) {
		return LogResult{}, fmt.Errorf("%d leaf hashes for %d leaves: %w", len(in.LeafHashes), len(in.Leaves), ErrVerify)
	}

	var t Tree
	good := int64(0) // size of the last checkpoint that matched
	next := 0
	check := func() error {
		for next < len(cps) && cps[next].c.Size <= t.Size() {
			c := cps[next].c
			root, err := t.Root(c.Size)
			if err != nil {
				return err
			}
			if root != c.Hash {
				return fmt.Errorf("checkpoint at size %d does not match the log: a record between index %d and %d was changed, removed or reordered: %w",
					c.Size, good, c.Size-1, ErrVerify)
			}
			good = c.Size
			next++
		}
		return nil
	}
	if err := check(); err != nil {
		return LogResult{}, err
	}
	for i, leaf := range in.Leaves {
		var want *tlog.Hash
		if in.LeafHashes != nil {
			want = &in.LeafHashes[i]
		}
		if _, err := t.Add(int64(i), leaf, want); err != nil {
			return LogResult{}, err
		}
		if err := check(); err != nil {
			return LogResult{}, err
		}
	}
	if next < len(cps) {
		c := cps[next].c
		return LogResult{}, fmt.Errorf("checkpoint at size %d but the log has only %d records (log truncated): %w", c.Size, t.Size(), ErrVerify)
	}
	if len(cps) == 0 {
		return LogResult{}, fmt.Errorf("no signed checkpoint: the log cannot be verified: %w", ErrVerify)
	}
	latest := cps[len(cps)-1]
	res := LogResult{Size: t.Size(), Checkpoints: len(cps), Latest: latest.c, LatestNote: latest.msg, Uncovered: t.Size() - latest.c.Size}

	if in.Saved != nil {
		saved, err := OpenCheckpoint(in.Saved, in.Verifier)
		if err != nil {
			return res, fmt.Errorf("saved checkpoint: %w", err)
		}
		if saved.Size > latest.c.Size {
			return res, fmt.Errorf("saved checkpoint at size %d is larger than the latest checkpoint at size %d (log truncated): %w", saved.Size, latest.c.Size, ErrVerify)
		}
		root, err := t.Root(saved.Size)
		if err != nil {
			return res, err
		}
		if root != saved.Hash {
			return res, fmt.Errorf("log is not consistent with the saved checkpoint at size %d: history was rewritten before index %d: %w", saved.Size, saved.Size, ErrVerify)
		}
	}
	return res, nil
}

// CheckConsistency verifies that newer extends older, given a consistency
// proof between their sizes. Errors wrap ErrVerify.
func CheckConsistency(older, newer Checkpoint, proof tlog.TreeProof) error {
	if older.Size > newer.Size {
		return fmt.Errorf("checkpoint size went from %d down to %d: %w", older.Size, newer.Size, ErrVerify)
	}
	if err := tlog.CheckTree(proof, newer.Size, newer.Hash, older.Size, older.Hash); err != nil {
		return fmt.Errorf("checkpoint at size %d is not consistent with checkpoint at size %d: %v: %w", newer.Size, older.Size, err, ErrVerify)
	}
	return nil
}

// CheckInclusion verifies that the leaf with hash leaf is at index in the
// tree of checkpoint c. Errors wrap ErrVerify.
func CheckInclusion(c Checkpoint, index int64, leaf tlog.Hash, proof tlog.RecordProof) error {
	if err := tlog.CheckRecord(proof, c.Size, c.Hash, index, leaf); err != nil {
		return fmt.Errorf("index %d is not in the checkpoint at size %d: %v: %w", index, c.Size, err, ErrVerify)
	}
	return nil
}
