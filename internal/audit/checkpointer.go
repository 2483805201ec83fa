package audit

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// DefaultCheckpointInterval is how often a Checkpointer signs when the log
// has grown.
const DefaultCheckpointInterval = time.Second

// ErrNoCheckpoint is wrapped by LatestAuditCheckpoint when none was signed.
var ErrNoCheckpoint = errors.New("no checkpoint signed yet")

// LogStore is what the Checkpointer needs from the store that holds the
// log.
type LogStore interface {
	// AuditTreeSize is the number of leaves durably appended.
	AuditTreeSize(ctx context.Context) (int64, error)
	// ReadAuditHashes reads stored hashes (tlog stored-hash indexes).
	ReadAuditHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error)
	// PutAuditCheckpoint durably stores a signed checkpoint of size leaves.
	// Sizes only grow; storing a size not larger than the latest fails.
	PutAuditCheckpoint(ctx context.Context, size int64, note []byte, at time.Time) error
	// LatestAuditCheckpoint returns the largest stored checkpoint, or an
	// error wrapping ErrNoCheckpoint.
	LatestAuditCheckpoint(ctx context.Context) (size int64, note []byte, err error)
}

// HashReader adapts a LogStore to tlog.HashReader for one context.
func HashReader(ctx context.Context, s LogStore) tlog.HashReader {
	return tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) { return s.ReadAuditHashes(ctx, ix) })
}

// Checkpointer signs checkpoints of a log: on demand (Sign) and, with Run,
// periodically whenever the log has grown. It is safe for concurrent use;
// signing is serialised so sizes only grow.
type Checkpointer struct {
	store  LogStore
	signer Signer
	origin string
	log    *slog.Logger
	now    func() time.Time

	mu sync.Mutex
	// anchor is the latest checkpoint this Checkpointer signed or, before
	// it signed one, the first it found stored (zero before either): held
	// in memory, so that changes to the stored checkpoints made behind a
	// running gateway cannot remove it.
	anchor Checkpoint
}

// NewCheckpointer returns a Checkpointer for the log of origin. The
// signer's name must be origin.
func NewCheckpointer(s LogStore, signer Signer, origin string, logger *slog.Logger) (*Checkpointer, error) {
	if signer == nil {
		return nil, errors.New("audit: checkpointer: no signer")
	}
	if signer.Name() != origin {
		return nil, fmt.Errorf("audit: checkpointer: key %q does not sign for origin %q", signer.Name(), origin)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Checkpointer{store: s, signer: signer, origin: origin, log: logger, now: time.Now}, nil
}

// Sign returns a signed checkpoint covering every leaf appended before the
// call: the latest stored one if it already does, else a new one, stored
// before it is returned.
func (c *Checkpointer) Sign(ctx context.Context) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	size, err := c.store.AuditTreeSize(ctx)
	if err != nil {
		return nil, fmt.Errorf("audit: checkpoint: %w", err)
	}
	last, prev, err := c.store.LatestAuditCheckpoint(ctx)
	stored := err == nil
	if !stored && !errors.Is(err, ErrNoCheckpoint) {
		return nil, fmt.Errorf("audit: checkpoint: %w", err)
	}
	var latest Checkpoint
	if stored {
		if latest, err = storedCheckpoint(prev, last); err != nil {
			return nil, fmt.Errorf("audit: checkpoint: %w", err)
		}
		if c.anchor.Size == 0 {
			c.anchor = latest
		}
	}
	// Checked before anything is returned: a checkpoint is stored only
	// after its size was read from committed records, so an honest log is
	// never shorter than one, and a truncated log must not pass for an
	// empty or a covered one.
	if signed := max(c.anchor.Size, latest.Size); size < signed {
		return nil, fmt.Errorf("audit: checkpoint: the log has %d records, fewer than the checkpoint of size %d signed before: "+
			"the database was modified outside Borderlink: %w", size, signed, ErrVerify)
	}
	if size == 0 {
		// tlog's hash of the empty tree is all zeros, RFC 6962's is
		// SHA-256(""): sign nothing rather than something ambiguous.
		return nil, fmt.Errorf("audit: checkpoint: log is empty: %w", ErrNoCheckpoint)
	}
	if stored && last == size {
		return prev, nil
	}
	hr := HashReader(ctx, c.store)
	root, err := tlog.TreeHash(size, hr)
	if err != nil {
		return nil, fmt.Errorf("audit: checkpoint size %d: %w", size, err)
	}
	// The tree must extend the latest stored checkpoint and the anchor,
	// which are the same unless stored checkpoints were removed or added
	// outside Borderlink (see extends).
	var anchors []Checkpoint
	if stored {
		anchors = append(anchors, latest)
	}
	if c.anchor.Size > 0 && (!stored || c.anchor != latest) {
		anchors = append(anchors, c.anchor)
	}
	for _, a := range anchors {
		if err := extends(hr, size, root, a); err != nil {
			return nil, fmt.Errorf("audit: checkpoint size %d: %w", size, err)
		}
	}
	cp := Checkpoint{Origin: c.origin, Size: size, Hash: root}
	msg, err := SignCheckpoint(c.signer, cp)
	if err != nil {
		return nil, err
	}
	if err := c.store.PutAuditCheckpoint(ctx, size, msg, c.now()); err != nil {
		return nil, fmt.Errorf("audit: checkpoint size %d: %w", size, err)
	}
	c.anchor = cp
	return msg, nil
}

// storedCheckpoint parses the stored checkpoint msg of size last. Its
// signature is not checked: the gateway may not hold the key it was signed
// with (before a key rotation), and whoever could add a row in its place
// could as well delete the rows, leaving nothing to compare with (ADR 0017).
func storedCheckpoint(msg []byte, last int64) (Checkpoint, error) {
	text, err := CheckpointText(msg)
	var cp Checkpoint
	if err == nil {
		cp, err = ParseCheckpoint(text)
	}
	if err == nil && cp.Size != last {
		err = fmt.Errorf("it says size %d", cp.Size)
	}
	if err != nil {
		return Checkpoint{}, fmt.Errorf("latest stored checkpoint (size %d) is malformed (%v): "+
			"the database was modified outside Borderlink or is corrupt: %w", last, err, ErrVerify)
	}
	return cp, nil
}

// extends checks, by a consistency proof built from the stored hashes,
// that the stored tree of size leaves, with root, extends the checkpoint
// prev signed before. Whoever can write the database file can rewrite
// records together with their tree hashes, and the stored hashes then give
// the root of a forked history; signing it would put this gateway's name
// to the fork. Refusing leaves the log unsigned until an operator looks.
// What this cannot catch: a rewrite made while the gateway was down
// together with the removal or replacement of the stored checkpoints;
// partners' witnesses and auditors' saved checkpoints catch that (ADR
// 0017).
func extends(hr tlog.HashReader, size int64, root tlog.Hash, prev Checkpoint) error {
	proof, err := tlog.ProveTree(size, prev.Size, hr)
	if err != nil {
		// Reading the store failed. A read error is no evidence either
		// way; a missing or malformed hash row is, and the store's error
		// says so (wrapping ErrVerify) itself.
		return fmt.Errorf("consistency proof from size %d: %w", prev.Size, err)
	}
	if err := tlog.CheckTree(proof, size, root, prev.Size, prev.Hash); err != nil {
		return fmt.Errorf("the stored tree does not extend the checkpoint of size %d signed before (%v): "+
			"the database was modified outside Borderlink or is corrupt; not signing. "+
			"Export the log and run borderlink audit verify, which checks the records themselves (docs/audit.md): %w", prev.Size, err, ErrVerify)
	}
	return nil
}

// Run signs a checkpoint every interval when the log has grown (and once at
// start), until ctx is cancelled. Failures are logged and retried at the
// next tick.
func (c *Checkpointer) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultCheckpointInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := c.Sign(ctx); err != nil && ctx.Err() == nil && !errors.Is(err, ErrNoCheckpoint) {
			c.log.Error("audit checkpoint failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// SignedByCurrentKey reports whether the latest stored checkpoint carries a
// signature by the Checkpointer's signer (its name and key hash), and the
// checkpoint's size; true when none is stored yet. After the signing key
// is rotated the latest checkpoint still bears the old key, and Sign keeps
// returning it until the log grows (sizes only grow): the caller appends a
// record so that the next checkpoint is signed with the new key.
func (c *Checkpointer) SignedByCurrentKey(ctx context.Context) (bool, int64, error) {
	size, msg, err := c.store.LatestAuditCheckpoint(ctx)
	if errors.Is(err, ErrNoCheckpoint) {
		return true, 0, nil
	}
	if err != nil {
		return false, 0, fmt.Errorf("audit: latest checkpoint: %w", err)
	}
	return signedBy(msg, c.signer.Name(), c.signer.KeyHash()), size, nil
}

// signedBy reports whether the signed note msg has a signature line by the
// key name+hash (whether that signature verifies is not checked: the note
// was verified when it was signed and stored).
func signedBy(msg []byte, name string, hash uint32) bool {
	i := bytes.LastIndex(msg, []byte("\n\n"))
	if i < 0 {
		return false
	}
	for _, line := range strings.Split(string(msg[i+2:]), "\n") {
		rest, ok := strings.CutPrefix(line, "— "+name+" ")
		if !ok {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(rest)
		if err == nil && len(sig) >= 4 && binary.BigEndian.Uint32(sig) == hash {
			return true
		}
	}
	return false
}
