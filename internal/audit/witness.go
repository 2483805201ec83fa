package audit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// ErrSplitView is wrapped (together with ErrVerify) when a log shows a
// witness a checkpoint that does not extend the one it showed before: the
// log was rewritten, rolled back, or shows different histories to
// different parties.
var ErrSplitView = errors.New("split view: the log's checkpoints are not consistent")

// ErrGossipUnproven is wrapped when a gossiped checkpoint has another size
// than the one this witness accepted and the log did not prove the two
// consistent (it was unreachable, refused or failed to answer): neither a
// split view nor cleared. A log that forks can refuse the proof, so the
// caller keeps such gossip and asks again (docs/audit.md, Gossip).
var ErrGossipUnproven = errors.New("gossiped checkpoint not proven consistent by the log")

// ErrWitnessUnproven is wrapped when a log shows this witness a checkpoint
// larger than the last one accepted from it (or a checkpoint kept from
// an earlier round, RetryWitness) and does not prove the two consistent:
// it refused, failed or was unreachable. The checkpoint is not accepted
// (nor cosigned), and it is neither a split view nor cleared: a log that
// forked can refuse the proof, so the caller keeps the checkpoint and
// asks again (docs/audit.md, Witnessing).
var ErrWitnessUnproven = errors.New("checkpoint not proven consistent by the log")

// How a split view was detected (SplitView.Detection).
const (
	// DetectedDirect: the log showed this witness a checkpoint that does
	// not extend one it showed the same witness before (Witness).
	DetectedDirect = "direct"
	// DetectedGossip: another witness accepted a checkpoint of the log
	// that is not consistent with the one this witness accepted
	// (CheckGossip).
	DetectedGossip = "gossip"
)

// SplitView is the evidence of a split view: two checkpoints of one log,
// both signed by the log, that no append-only tree can both describe. The
// notes are kept exactly as received (cosignature lines included), so an
// auditor can check the log's signatures on them with its published key
// alone and conclude the log forked without trusting the witness.
type SplitView struct {
	Origin string
	// Accepted is the checkpoint this witness accepted from the log itself
	// (its latest accepted one when the conflict was found).
	Accepted     Checkpoint
	AcceptedNote []byte
	// Conflicting contradicts Accepted: shown later by the log itself
	// (DetectedDirect) or gossiped by Witness (DetectedGossip).
	Conflicting     Checkpoint
	ConflictingNote []byte
	// Reason says why the two cannot both be true, e.g. "two different
	// roots for one size".
	Reason    string
	Detection string // DetectedDirect or DetectedGossip
	// Witness is the trust domain of the witness whose gossip carried
	// Conflicting; empty for DetectedDirect. CheckGossip does not know it:
	// the caller fills it in.
	Witness string
}

// SplitViewTally counts the split-view evidence kept about one partner
// log: incidents (one per detection path, however long its fork lasts) and
// detections (every sighting).
type SplitViewTally struct {
	Incidents, Detections int64
}

// KeptSplitView is a split view as a witness keeps it: one per incident,
// that is per origin, detection and witness (none for DetectedDirect),
// however long the fork lasts and however both sides of it move. The
// embedded SplitView is the evidence of the first detection, never
// rewritten; Latest is the pair of the latest one.
type KeptSplitView struct {
	ID int64 // the order in which incidents were first seen
	SplitView
	// Latest is the split view as detected last (at LastSeen): the same
	// Origin, Detection and Witness, and that detection's checkpoints,
	// notes (exactly as received) and Reason. It equals SplitView until
	// the incident is detected again.
	Latest              SplitView
	FirstSeen, LastSeen time.Time
	Count               int64 // detections of the incident
}

// SplitViewError is the error Witness and CheckGossip return for a split
// view. It wraps ErrSplitView and ErrVerify; errors.As it to keep the
// evidence.
type SplitViewError struct {
	SplitView
	msg string
}

func (e *SplitViewError) Error() string   { return e.msg }
func (e *SplitViewError) Unwrap() []error { return []error{ErrSplitView, ErrVerify} }

// WitnessSource is a partner's log as a witness sees it.
type WitnessSource interface {
	// Checkpoint returns the log's latest signed checkpoint.
	Checkpoint(ctx context.Context) ([]byte, error)
	// ConsistencyProof proves that the tree of newSize extends oldSize.
	ConsistencyProof(ctx context.Context, oldSize, newSize int64) (tlog.TreeProof, error)
}

// WitnessState keeps, per origin, the checkpoints a witness accepted.
type WitnessState interface {
	// LastWitnessed returns the largest accepted checkpoint of origin, or
	// an error wrapping ErrNoCheckpoint.
	LastWitnessed(ctx context.Context, origin string) ([]byte, error)
	// PutWitnessed durably records an accepted checkpoint.
	PutWitnessed(ctx context.Context, origin string, size int64, note []byte, at time.Time) error
}

// Witnessed is the outcome of one Witness round.
type Witnessed struct {
	Checkpoint
	Note []byte // the signed note as the log served it
	New  bool   // larger than the last accepted one (and now recorded)
	// Accepted is the last checkpoint accepted before, which Checkpoint
	// was compared with (zero if none was).
	Accepted Checkpoint
}

// Witness fetches the latest checkpoint of a log, verifies its signature
// with v's current key (a KeyRing's Current: a retired key vouches for
// nothing new; the last accepted checkpoint, stored, opens with any key of
// the ring), checks that it is consistent with the last checkpoint accepted
// from the same log (by a consistency proof from the log), and records it.
// A checkpoint that does
// not extend the last accepted one is an error wrapping ErrSplitView and
// ErrVerify (a *SplitViewError carrying both signed checkpoints as
// evidence), and is not recorded; the message carries both checkpoints'
// sizes and roots. A larger checkpoint the log does not prove consistent
// (the proof was refused or failed) is an error wrapping
// ErrWitnessUnproven, and is not recorded either; w then holds it, to be
// asked about again with RetryWitness.
func Witness(ctx context.Context, src WitnessSource, v note.Verifier, st WitnessState, now time.Time) (w Witnessed, err error) {
	msg, err := src.Checkpoint(ctx)
	if err != nil {
		return w, fmt.Errorf("witness %s: fetch checkpoint: %w", v.Name(), err)
	}
	return witness(ctx, src, v, st, msg, now, true)
}

// RetryWitness checks again a checkpoint of the log that Witness left
// unproven (msg, as the log served it) against the last checkpoint
// accepted from the log now, which may since have grown past it. Like
// Witness, it must be signed with v's current key. Larger than the
// accepted one, it must be proved to extend it, and is then recorded
// (w.New); smaller, the log must prove that the accepted one extends it
// (nothing is recorded). A proof that does not check is a
// *SplitViewError (DetectedDirect); no proof (refused, failed,
// unreachable) is an error wrapping ErrWitnessUnproven.
func RetryWitness(ctx context.Context, src WitnessSource, v note.Verifier, st WitnessState, msg []byte, now time.Time) (w Witnessed, err error) {
	return witness(ctx, src, v, st, msg, now, false)
}

// witness checks msg against the last accepted checkpoint and records it
// if it is larger and proven. latest: msg is what the log serves as its
// latest checkpoint now, so one smaller than the accepted one means the
// log shrank; otherwise (RetryWitness) a smaller one must be proved to be
// a prefix of the accepted one.
func witness(ctx context.Context, src WitnessSource, v note.Verifier, st WitnessState, msg []byte, now time.Time, latest bool) (w Witnessed, err error) {
	c, err := OpenCheckpoint(msg, currentKey(v))
	if err != nil {
		return w, fmt.Errorf("witness %s: %w", v.Name(), err)
	}
	w.Checkpoint, w.Note = c, msg
	last, err := st.LastWitnessed(ctx, c.Origin)
	if err != nil && !errors.Is(err, ErrNoCheckpoint) {
		return w, fmt.Errorf("witness %s: %w", v.Name(), err)
	}
	if err == nil {
		old, err := OpenCheckpoint(last, v)
		if err != nil {
			return w, fmt.Errorf("witness %s: stored checkpoint: %w", v.Name(), err)
		}
		w.Accepted = old
		split := func(why string) error {
			return &SplitViewError{
				SplitView: SplitView{Origin: c.Origin, Accepted: old, AcceptedNote: last, Conflicting: c, ConflictingNote: msg,
					Reason: why, Detection: DetectedDirect},
				msg: fmt.Sprintf("witness %s: %s (accepted size %d root %s, now shown size %d root %s): %v (%v)",
					v.Name(), why, old.Size, old.Hash, c.Size, c.Hash, ErrSplitView, ErrVerify),
			}
		}
		switch {
		case c.Size < old.Size && latest:
			return w, split("the log shrank")
		case c.Size == old.Size && c.Hash != old.Hash:
			return w, split("two different roots for one size")
		case c.Size == old.Size:
			return w, nil // nothing new
		}
		older, newer := old, c
		if c.Size < old.Size {
			older, newer = c, old
		}
		if older.Size > 0 {
			proof, err := src.ConsistencyProof(ctx, older.Size, newer.Size)
			if err != nil {
				return w, fmt.Errorf("witness %s: consistency proof %d->%d: %w (%w)", v.Name(), older.Size, newer.Size, err, ErrWitnessUnproven)
			}
			if err := CheckConsistency(older, newer, proof); err != nil {
				if c.Size < old.Size {
					return w, split("the two checkpoints are not consistent")
				}
				return w, split("the new checkpoint does not extend the accepted one")
			}
		}
		if c.Size < old.Size {
			return w, nil // an earlier state of the accepted tree
		}
	}
	if err := st.PutWitnessed(ctx, c.Origin, c.Size, msg, now); err != nil {
		return w, fmt.Errorf("witness %s: %w", v.Name(), err)
	}
	w.New = true
	return w, nil
}

// CheckGossip checks a checkpoint of a log that another witness accepted
// (gossip, served with that witness's own checkpoint) against the last
// checkpoint this witness accepted from the same log itself: a log that
// shows two witnesses two trees is caught by either, even one that was
// never shown the other tree. Same size: the roots must be equal.
// Different sizes: src, the log itself, must prove that the larger
// extends the smaller; if it cannot (src nil: unreachable) or does not
// (an error, a refusal), the error wraps ErrGossipUnproven, and the caller
// should ask again later. A conflict is a *SplitViewError (wrapping
// ErrSplitView and ErrVerify) whose message carries both sizes and roots;
// both checkpoints are signed by the log, so together they are the
// evidence. The gossip must be signed by v's current key (a KeyRing's
// Current): gossip not signed by it — also gossip signed by a retired key,
// which whoever holds a leaked key could forge — is an error wrapping
// ErrVerify only, never a split view: it says nothing about the log. The
// accepted checkpoint, stored earlier, opens with any key of the ring.
// Nothing is recorded.
func CheckGossip(ctx context.Context, src WitnessSource, v note.Verifier, st WitnessState, gossip []byte) error {
	c, err := OpenCheckpoint(gossip, currentKey(v))
	if err != nil {
		return fmt.Errorf("gossip about %s: %w", v.Name(), err)
	}
	last, err := st.LastWitnessed(ctx, c.Origin)
	if errors.Is(err, ErrNoCheckpoint) {
		return nil // nothing of our own to compare with yet
	}
	if err != nil {
		return fmt.Errorf("gossip about %s: %w", v.Name(), err)
	}
	own, err := OpenCheckpoint(last, v)
	if err != nil {
		return fmt.Errorf("gossip about %s: stored checkpoint: %w", v.Name(), err)
	}
	split := func(why string) error {
		return &SplitViewError{
			SplitView: SplitView{Origin: c.Origin, Accepted: own, AcceptedNote: last, Conflicting: c, ConflictingNote: gossip,
				Reason: why, Detection: DetectedGossip},
			msg: fmt.Sprintf("gossip about %s: %s (we accepted size %d root %s, another witness accepted size %d root %s): %v (%v)",
				v.Name(), why, own.Size, own.Hash, c.Size, c.Hash, ErrSplitView, ErrVerify),
		}
	}
	switch {
	case c.Size == own.Size && c.Hash != own.Hash:
		return split("two different roots for one size")
	case c.Size == own.Size || min(c.Size, own.Size) == 0:
		return nil
	}
	older, newer := own, c
	if c.Size < own.Size {
		older, newer = c, own
	}
	if src == nil {
		return fmt.Errorf("gossip about %s: consistency proof %d->%d: the log is unreachable: %w", v.Name(), older.Size, newer.Size, ErrGossipUnproven)
	}
	proof, err := src.ConsistencyProof(ctx, older.Size, newer.Size)
	if err != nil {
		return fmt.Errorf("gossip about %s: consistency proof %d->%d: %w (%w)", v.Name(), older.Size, newer.Size, err, ErrGossipUnproven)
	}
	if err := CheckConsistency(older, newer, proof); err != nil {
		return split("the two checkpoints are not consistent")
	}
	return nil
}
