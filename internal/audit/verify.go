package audit

import (
	"fmt"
	"math/bits"
	"slices"
	"sort"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// Tree rebuilds a log's whole Merkle tree from its leaves, in memory
// (about 64 bytes per leaf), checking each leaf as it is added, for those
// who need every stored hash: proofs in tests, a log served from memory.
// Verification needs only the right edge (LogVerifier). The zero Tree is
// an empty log.
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
	rec, h, err := checkLeaf(t.size, index, leaf, want)
	if err != nil {
		return nil, err
	}
	hs, err := tlog.StoredHashesForRecordHash(t.size, h, t)
	if err != nil {
		return nil, fmt.Errorf("index %d: %w", index, err)
	}
	t.hashes = append(t.hashes, hs...)
	t.size++
	return rec, nil
}

// checkLeaf checks the leaf at index, which must be next, and returns its
// record and leaf hash. If want is not nil it is the leaf hash the log
// claims for it, and a leaf that hashes differently is an altered record.
// Errors wrap ErrVerify.
func checkLeaf(next, index int64, leaf []byte, want *tlog.Hash) (*blv1.AuditRecord, tlog.Hash, error) {
	if index != next {
		return nil, tlog.Hash{}, fmt.Errorf("index %d: expected index %d next (leaves missing or out of order): %w", index, next, ErrVerify)
	}
	rec, err := ParseLeaf(index, leaf)
	if err != nil {
		return nil, tlog.Hash{}, err
	}
	h := tlog.RecordHash(leaf)
	if want != nil && *want != h {
		return nil, tlog.Hash{}, fmt.Errorf("index %d: record hashes to %s, the log stored %s (record altered): %w", index, h, want, ErrVerify)
	}
	return rec, h, nil
}

// Root is the tree hash of the first n leaves.
func (t *Tree) Root(n int64) (tlog.Hash, error) {
	if n < 0 || n > t.size {
		return tlog.Hash{}, fmt.Errorf("tree of %d leaves has no root at size %d", t.size, n)
	}
	return tlog.TreeHash(n, t)
}

// rightEdge is the right edge of a log's Merkle tree: the stored hashes
// of the complete subtrees a tree of size leaves splits into, one per set
// bit of size (the compact range [0, size)). They are exactly the hashes
// tlog reads to append a leaf (StoredHashesForRecordHash) and to compute
// the root (TreeHash), so a verifier that keeps only them streams a log of
// any length in O(log n) memory.
type rightEdge struct {
	size   int64
	hashes [64]tlog.Hash // by level; level L is set iff bit L of size is
}

// ReadHashes implements tlog.HashReader over the edge: any other stored
// hash is gone.
func (e *rightEdge) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		level, n := tlog.SplitStoredHashIndex(x)
		if level >= len(e.hashes) || e.size>>level&1 == 0 || n != e.size>>level-1 {
			return nil, fmt.Errorf("hash %d (level %d, node %d) is not on the right edge of a tree of %d leaves", x, level, n, e.size)
		}
		out[i] = e.hashes[level]
	}
	return out, nil
}

// add appends a leaf hash. The hashes tlog returns are those of the
// subtrees the leaf completes, bottom up; the last one replaces the edge
// hashes below it.
func (e *rightEdge) add(h tlog.Hash) error {
	hs, err := tlog.StoredHashesForRecordHash(e.size, h, e)
	if err != nil {
		return err
	}
	e.hashes[len(hs)-1] = hs[len(hs)-1]
	e.size++
	return nil
}

func (e *rightEdge) root() (tlog.Hash, error) { return tlog.TreeHash(e.size, e) }

// compact returns the edge's hashes, lowest level first: one per set bit
// of size (the compact range [0, size), at most 64).
func (e *rightEdge) compact() []tlog.Hash {
	var out []tlog.Hash
	for level := range len(e.hashes) {
		if e.size>>level&1 == 1 {
			out = append(out, e.hashes[level])
		}
	}
	return out
}

// LogVerifier checks a log as its leaves stream past, in memory that grows
// with the logarithm of the log's size (plus 48 bytes per checkpoint not
// reached yet),
// never with the number of records: it keeps only the right edge of the
// tree and compares the root with each checkpoint when the stream reaches
// the checkpoint's size. Give it the checkpoints (Checkpoint) before the
// leaves they cover, then every leaf in index order (Add), then call
// Finish. Every verification failure wraps ErrVerify and names the first
// bad index or the failing checkpoint.
type LogVerifier struct {
	v       note.Verifier
	edge    rightEdge
	pending []pendingCheckpoint // sorted by size, not yet compared
	given   int                 // checkpoints given
	good    int64               // size of the last checkpoint that matched
	latest  Checkpoint          // largest checkpoint given
	note    []byte              // its signed note
	saved   *Checkpoint
	start   int64     // first leaf index this verifier reads (ResumeLogVerifier)
	snap    rightEdge // the edge at the size of the latest checkpoint that matched
	snapped bool

	// Resumed (start > 0): checkpoints below start are compared with the
	// tree grown from index 0 out of the log's stored leaf hashes
	// (AddLeafHash), which must reach the saved checkpoint's root at
	// start. A checkpoint below start left unchecked fails Finish.
	below     []pendingCheckpoint // sorted by size, not yet compared
	lower     rightEdge           // tree of the leaf hashes below start
	goodBelow int64               // size of the last checkpoint below start that matched
}

// pendingCheckpoint is what is kept of a checkpoint until the stream
// reaches its size: 48 bytes.
type pendingCheckpoint struct {
	Size  int64
	Hash  tlog.Hash
	saved bool // the checkpoint saved by an earlier run (--state)
}

// NewLogVerifier returns a verifier for the log whose checkpoints v
// checks. saved, if not nil, is a checkpoint seen earlier (audit verify
// --state): the log must extend it.
func NewLogVerifier(v note.Verifier, saved []byte) (*LogVerifier, error) {
	lv := &LogVerifier{v: v}
	if saved != nil {
		c, err := OpenCheckpoint(saved, v)
		if err != nil {
			return nil, fmt.Errorf("saved checkpoint: %w", err)
		}
		lv.saved = &c
		lv.insert(pendingCheckpoint{Size: c.Size, Hash: c.Hash, saved: true})
	}
	return lv, nil
}

// ResumeLogVerifier returns a verifier that continues from an earlier
// run (audit verify --state): saved is the checkpoint that run verified
// last, and edge the right edge of the tree at its size (LogResult.Edge:
// the compact range [0, size), lowest level first). The edge is not
// trusted: its root must be the saved checkpoint's, or the error (wrapping
// ErrVerify) says the saved state was tampered with. The verifier then
// takes leaves from index size on (Add), and every checkpoint at size or
// more is compared with the root of the tree grown from the edge, which is
// also what proves it consistent with the saved checkpoint: the first
// size leaves are those the saved checkpoint signed, by construction.
// A checkpoint smaller than size is compared with the root at its size
// of the tree grown from index 0 out of the log's stored leaf hashes
// (AddLeafHash: an export's "leaf_hash" values; the leaves themselves
// are not hashed again), whose root at size must be the saved
// checkpoint's; one left unchecked fails Finish.
func ResumeLogVerifier(v note.Verifier, saved []byte, size int64, edge []tlog.Hash) (*LogVerifier, error) {
	c, err := OpenCheckpoint(saved, v)
	if err != nil {
		return nil, fmt.Errorf("saved checkpoint: %w", err)
	}
	if size != c.Size {
		return nil, fmt.Errorf("saved right edge is for size %d, the saved checkpoint is at size %d: %w", size, c.Size, ErrVerify)
	}
	if size < 0 || len(edge) != bits.OnesCount64(uint64(size)) {
		return nil, fmt.Errorf("saved right edge at size %d has %d hashes, want %d: %w", size, len(edge), bits.OnesCount64(uint64(max(size, 0))), ErrVerify)
	}
	lv := &LogVerifier{v: v, saved: &c, start: size, good: size}
	lv.edge.size = size
	i := 0
	for level := range len(lv.edge.hashes) {
		if size>>level&1 == 1 {
			lv.edge.hashes[level] = edge[i]
			i++
		}
	}
	root, err := lv.edge.root()
	if err != nil {
		return nil, fmt.Errorf("saved right edge at size %d: %v: %w", size, err, ErrVerify)
	}
	if root != c.Hash {
		return nil, fmt.Errorf("saved right edge at size %d hashes to %s, not to the saved checkpoint's root %s (saved state altered or corrupt): %w", size, root, c.Hash, ErrVerify)
	}
	return lv, nil
}

// Start is the first leaf index the verifier reads: 0, or the saved size
// for ResumeLogVerifier.
func (lv *LogVerifier) Start() int64 { return lv.start }

// Checkpoint verifies a signed checkpoint's signature and queues it for
// comparison with the root at its size. A checkpoint smaller than the
// leaves already added can no longer be compared and is refused (not a
// verification failure: the caller fed the log in the wrong order). One
// below Start is queued for comparison with the tree of the leaf hashes
// below Start (AddLeafHash); if they are not given, Finish fails.
func (lv *LogVerifier) Checkpoint(msg []byte) error {
	lv.given++
	c, err := OpenCheckpoint(msg, lv.v)
	if err != nil {
		return fmt.Errorf("checkpoint #%d: %w", lv.given, err)
	}
	if c.Size < lv.start {
		if c.Size < lv.lower.size {
			return fmt.Errorf("checkpoint #%d at size %d given after %d leaf hashes: give checkpoints before the leaves they cover", lv.given, c.Size, lv.lower.size)
		}
		if lv.note == nil || c.Size > lv.latest.Size {
			lv.latest, lv.note = c, msg
		}
		p := pendingCheckpoint{Size: c.Size, Hash: c.Hash}
		i := sort.Search(len(lv.below), func(i int) bool { return lv.below[i].Size > p.Size })
		lv.below = slices.Insert(lv.below, i, p)
		return lv.checkBelow()
	}
	if c.Size < lv.edge.size {
		return fmt.Errorf("checkpoint #%d at size %d given after %d leaves: give checkpoints before the leaves they cover", lv.given, c.Size, lv.edge.size)
	}
	if lv.note == nil || c.Size > lv.latest.Size {
		lv.latest, lv.note = c, msg
	}
	lv.insert(pendingCheckpoint{Size: c.Size, Hash: c.Hash})
	return lv.check()
}

func (lv *LogVerifier) insert(p pendingCheckpoint) {
	i := sort.Search(len(lv.pending), func(i int) bool { return lv.pending[i].Size > p.Size })
	lv.pending = slices.Insert(lv.pending, i, p)
}

// Size is the number of leaves added.
func (lv *LogVerifier) Size() int64 { return lv.edge.size }

// Latest is the largest checkpoint given so far (zero if none).
func (lv *LogVerifier) Latest() Checkpoint { return lv.latest }

// Root is the tree hash of the leaves added so far.
func (lv *LogVerifier) Root() (tlog.Hash, error) { return lv.edge.root() }

// Add checks the leaf at index (which must be Size()) and appends it. If
// want is not nil it is the leaf hash the log claims for it, and a leaf
// that hashes differently is an altered record. Errors wrap ErrVerify.
func (lv *LogVerifier) Add(index int64, leaf []byte, want *tlog.Hash) error {
	_, h, err := checkLeaf(lv.edge.size, index, leaf, want)
	if err != nil {
		return err
	}
	if err := lv.edge.add(h); err != nil {
		return fmt.Errorf("index %d: %w", index, err)
	}
	return lv.check()
}

// AddLeafHash, on a resumed verifier (ResumeLogVerifier), appends the
// log's stored leaf hash h of the leaf at index (which must be the
// number of leaf hashes given so far, below Start) to a tree grown from
// index 0, without the leaf: it is how checkpoints below Start are
// compared (an export's "leaf_hash" values). At Start its root must be
// the saved checkpoint's. Errors wrap ErrVerify.
func (lv *LogVerifier) AddLeafHash(index int64, h tlog.Hash) error {
	if index != lv.lower.size || index >= lv.start {
		return fmt.Errorf("leaf hash at index %d: expected index %d next, below the saved size %d: %w", index, lv.lower.size, lv.start, ErrVerify)
	}
	if err := lv.lower.add(h); err != nil {
		return fmt.Errorf("index %d: %w", index, err)
	}
	return lv.checkBelow()
}

// checkBelow compares the root of the leaf-hash tree below Start with
// every checkpoint below Start of its size, and at Start with the saved
// checkpoint.
func (lv *LogVerifier) checkBelow() error {
	for len(lv.below) > 0 && lv.below[0].Size == lv.lower.size {
		c := lv.below[0]
		root, err := lv.lower.root()
		if err != nil {
			return err
		}
		if root != c.Hash {
			return fmt.Errorf("checkpoint at size %d does not match the log (checked by the stored leaf hashes below the saved size %d): a record between index %d and %d was changed, removed or reordered, or the checkpoint signs another history (fork): %w",
				c.Size, lv.start, lv.goodBelow, c.Size-1, ErrVerify)
		}
		lv.goodBelow = c.Size
		lv.below = lv.below[1:]
	}
	if lv.start > 0 && lv.lower.size == lv.start {
		root, err := lv.lower.root()
		if err != nil {
			return err
		}
		if root != lv.saved.Hash {
			return fmt.Errorf("saved checkpoint at size %d (--state): the log's stored leaf hashes below index %d give root %s, not the saved checkpoint's root %s: they are not those of the saved tree (history rewritten below index %d, or a leaf hash altered): %w",
				lv.start, lv.start, root, lv.saved.Hash, lv.start, ErrVerify)
		}
	}
	return nil
}

// check compares the root with every pending checkpoint of the current
// size.
func (lv *LogVerifier) check() error {
	for len(lv.pending) > 0 && lv.pending[0].Size == lv.edge.size {
		c := lv.pending[0]
		root, err := lv.edge.root()
		if err != nil {
			return err
		}
		switch {
		case root == c.Hash:
		case c.saved:
			return fmt.Errorf("log is not consistent with the saved checkpoint at size %d: history was rewritten before index %d: %w", c.Size, c.Size, ErrVerify)
		case lv.saved != nil && c.Size == lv.start:
			return fmt.Errorf("checkpoint at size %d has another root than the saved checkpoint at the same size (split view): %w", c.Size, ErrVerify)
		case lv.start > 0 && lv.good == lv.start:
			// Resumed: no checkpoint since the saved one has matched yet.
			return fmt.Errorf("checkpoint at size %d is not consistent with the saved checkpoint at size %d (its root is not that of the saved tree extended by the records from index %d): history was rewritten before index %d, or a record between index %d and %d was changed, removed or reordered: %w",
				c.Size, lv.start, lv.start, lv.start, lv.start, c.Size-1, ErrVerify)
		default:
			return fmt.Errorf("checkpoint at size %d does not match the log: a record between index %d and %d was changed, removed or reordered: %w",
				c.Size, lv.good, c.Size-1, ErrVerify)
		}
		if !c.saved {
			lv.good = c.Size
			if c.Size == lv.latest.Size {
				lv.snap, lv.snapped = lv.edge, true
			}
		}
		lv.pending = lv.pending[1:]
	}
	return nil
}

// Finish checks that every checkpoint was reached, that at least one was
// given, and that the log extends the saved one.
func (lv *LogVerifier) Finish() (LogResult, error) {
	for _, p := range lv.pending {
		if !p.saved {
			return LogResult{}, fmt.Errorf("checkpoint at size %d but the log has only %d records (log truncated): %w", p.Size, lv.edge.size, ErrVerify)
		}
	}
	if lv.note == nil {
		return LogResult{}, fmt.Errorf("no signed checkpoint: the log cannot be verified: %w", ErrVerify)
	}
	res := LogResult{Size: lv.edge.size, Checkpoints: lv.given, Latest: lv.latest, LatestNote: lv.note, Uncovered: lv.edge.size - lv.latest.Size,
		From: lv.start, Verified: lv.edge.size - lv.start}
	if lv.saved != nil && lv.saved.Size > lv.latest.Size {
		return res, fmt.Errorf("saved checkpoint at size %d is larger than the latest checkpoint at size %d (log truncated): %w", lv.saved.Size, lv.latest.Size, ErrVerify)
	}
	if len(lv.below) > 0 {
		p := lv.below[0]
		return res, fmt.Errorf("checkpoint at size %d cannot be checked: it is below the saved size %d and the log's leaf hashes below index %d were not given (only %d; an export made with --since?), so its root was not compared: %w",
			p.Size, lv.start, p.Size, lv.lower.size, ErrVerify)
	}
	if lv.start > 0 && lv.lower.size > 0 && lv.lower.size < lv.start {
		return res, fmt.Errorf("only %d of the %d leaf hashes below the saved size were given: %w", lv.lower.size, lv.start, ErrVerify)
	}
	res.HashedBelow = lv.lower.size
	if !lv.snapped || lv.snap.size != lv.latest.Size {
		return res, fmt.Errorf("internal error: no right edge at the latest checkpoint's size %d", lv.latest.Size)
	}
	res.Edge = lv.snap.compact()
	return res, nil
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
	From        int64      // first leaf index read (the saved size when resumed)
	Verified    int64      // leaves read and verified: Size - From
	// HashedBelow is how many leaves below From were checked by their
	// stored leaf hash against the saved checkpoint (AddLeafHash): From
	// for a resumed export, 0 online (those leaves are not read).
	HashedBelow int64

	// Edge is the right edge of the tree at Latest.Size (the compact range
	// [0, Latest.Size), lowest level first): with LatestNote, what
	// ResumeLogVerifier continues from.
	Edge []tlog.Hash
}

// VerifyLog recomputes every leaf hash and the tree, checks every
// checkpoint's signature and root, and checks that the log extends the
// saved checkpoint. At least one checkpoint must verify. The error names
// the first bad index or the failing checkpoint and wraps ErrVerify. It
// streams the leaves through a LogVerifier: logs too large to hold in
// memory are verified the same way leaf by leaf (VerifyExport, or Add).
func VerifyLog(in LogInput) (LogResult, error) {
	lv, err := NewLogVerifier(in.Verifier, in.Saved)
	if err != nil {
		return LogResult{}, err
	}
	for _, msg := range in.Checkpoints {
		if err := lv.Checkpoint(msg); err != nil {
			return LogResult{}, err
		}
	}
	if in.LeafHashes != nil && len(in.LeafHashes) != len(in.Leaves) {
		return LogResult{}, fmt.Errorf("%d leaf hashes for %d leaves: %w", len(in.LeafHashes), len(in.Leaves), ErrVerify)
	}
	for i, leaf := range in.Leaves {
		var want *tlog.Hash
		if in.LeafHashes != nil {
			want = &in.LeafHashes[i]
		}
		if err := lv.Add(int64(i), leaf, want); err != nil {
			return LogResult{}, err
		}
	}
	return lv.Finish()
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
