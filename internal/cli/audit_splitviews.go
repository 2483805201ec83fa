package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/borderlink/borderlink/internal/audit"
)

// ExitSplitView is the exit code of `audit split-views` when evidence of a
// split view is kept: a partner showed different histories of its audit
// log (docs/audit.md). It is the code of every audit command that found
// the log untrustworthy.
const ExitSplitView = ExitVerifyFailed

// splitViewsFound carries kept evidence to its exit code.
type splitViewsFound struct{ n int }

func (s splitViewsFound) Error() string {
	return fmt.Sprintf("audit split-views: %d split view incident(s) kept: a partner signed audit checkpoints that no single history explains (evidence above)", s.n)
}
func (s splitViewsFound) ExitCode() int { return ExitSplitView }

func runAuditSplitViews(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "audit split-views", `audit split-views --config FILE [--origin O] [--json]

Prints the evidence of split views this gateway's witness found in its
partners' audit logs (kept in the gateway's store; the running gateway may
stay up), one incident per partner log and detection (direct, or gossip
through one witness): both checkpoints of the first detection exactly as
the partner signed them, so that anyone can check both signatures with the
partner's published audit verifier key and see that no single history
explains them, and those of the latest detection when they differ.
Evidence is never deleted, so the exit code stays 5 once any is kept.
Exit codes: 0 no evidence, 1 could not read the store, 2 usage, 5 evidence
of a split view.`)
	cfgPath := fs.String("config", "", "gateway configuration file; its store is read")
	origin := fs.String("origin", "", "only this partner's log: its origin (nl.customs.example/borderlink/audit) or trust domain")
	asJSON := fs.Bool("json", false, "print one JSON object per split-view incident")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *cfgPath == "" {
		return usagef("audit split-views: --config is required")
	}
	if *origin != "" && !strings.Contains(*origin, "/") {
		*origin = audit.Origin(*origin)
	}
	st, _, err := openStore(ctx, *cfgPath)
	if err != nil {
		return fmt.Errorf("audit split-views: %w", err)
	}
	defer st.Close()
	views, err := st.SplitViews(ctx, *origin, 0)
	if err != nil {
		return fmt.Errorf("audit split-views: %w", err)
	}
	if err := writeSplitViews(e.stdout, views, *asJSON); err != nil {
		return fmt.Errorf("audit split-views: %w", err)
	}
	if len(views) > 0 {
		return splitViewsFound{len(views)}
	}
	if !*asJSON {
		fmt.Fprintln(e.stdout, "no split views: every partner log this gateway witnessed showed it one history")
	}
	return nil
}

// splitViewJSON is one line of `audit split-views --json`: an incident,
// the pair of its first detection (Reason, Accepted, Conflicting) and that
// of its latest (Latest, the same as the first until detected again).
type splitViewJSON struct {
	ID          int64             `json:"id"`
	Origin      string            `json:"origin"`
	Detection   string            `json:"detection"`
	Witness     string            `json:"witness,omitempty"`
	Reason      string            `json:"reason"`
	Accepted    splitViewNoteJSON `json:"accepted"`
	Conflicting splitViewNoteJSON `json:"conflicting"`
	Latest      splitViewPairJSON `json:"latest"`
	FirstSeen   time.Time         `json:"first_seen"`
	LastSeen    time.Time         `json:"last_seen"`
	Count       int64             `json:"count"`
}

type splitViewPairJSON struct {
	Reason      string            `json:"reason"`
	Accepted    splitViewNoteJSON `json:"accepted"`
	Conflicting splitViewNoteJSON `json:"conflicting"`
}

type splitViewNoteJSON struct {
	Size int64  `json:"size"`
	Root string `json:"root"`
	// Note is the signed checkpoint exactly as received.
	Note string `json:"note"`
}

// latestDiffers reports whether an incident's latest pair is not, byte
// for byte, its first.
func latestDiffers(v audit.KeptSplitView) bool {
	return !bytes.Equal(v.Latest.AcceptedNote, v.AcceptedNote) || !bytes.Equal(v.Latest.ConflictingNote, v.ConflictingNote) ||
		v.Latest.Accepted != v.Accepted || v.Latest.Conflicting != v.Conflicting || v.Latest.Reason != v.Reason
}

// writeSplitViews prints kept split-view incidents; the notes verbatim, so
// that they can be cut out and checked with the partner's key: the first
// pair, then the latest when it differs (always both with asJSON).
func writeSplitViews(w io.Writer, views []audit.KeptSplitView, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		for _, v := range views {
			if err := enc.Encode(splitViewJSON{
				ID: v.ID, Origin: v.Origin, Detection: v.Detection, Witness: v.Witness, Reason: v.Reason,
				Accepted:    splitViewNoteJSON{v.Accepted.Size, v.Accepted.Hash.String(), string(v.AcceptedNote)},
				Conflicting: splitViewNoteJSON{v.Conflicting.Size, v.Conflicting.Hash.String(), string(v.ConflictingNote)},
				Latest: splitViewPairJSON{
					Reason:      v.Latest.Reason,
					Accepted:    splitViewNoteJSON{v.Latest.Accepted.Size, v.Latest.Accepted.Hash.String(), string(v.Latest.AcceptedNote)},
					Conflicting: splitViewNoteJSON{v.Latest.Conflicting.Size, v.Latest.Conflicting.Hash.String(), string(v.Latest.ConflictingNote)},
				},
				FirstSeen: v.FirstSeen, LastSeen: v.LastSeen, Count: v.Count,
			}); err != nil {
				return err
			}
		}
		return nil
	}
	var b bytes.Buffer
	for i, v := range views {
		if i > 0 {
			fmt.Fprintln(&b)
		}
		how := "the partner showed this gateway both"
		if v.Detection == audit.DetectedGossip {
			how = "this gateway accepted one, witness " + v.Witness + " gossiped the other"
		}
		latest := latestDiffers(v)
		fmt.Fprintf(&b, "SPLIT VIEW #%d of %s: %s\n", v.ID, v.Origin, v.Reason)
		fmt.Fprintf(&b, "  detected:    %s (%s)\n", v.Detection, how)
		fmt.Fprintf(&b, "  seen:        %d time(s), first %s, last %s\n", v.Count, v.FirstSeen.Format(time.RFC3339), v.LastSeen.Format(time.RFC3339))
		fmt.Fprintf(&b, "  accepted:    size %d root %s\n", v.Accepted.Size, v.Accepted.Hash)
		fmt.Fprintf(&b, "  conflicting: size %d root %s\n", v.Conflicting.Size, v.Conflicting.Hash)
		if latest {
			fmt.Fprintf(&b, "  latest (%s): %s\n", v.LastSeen.Format(time.RFC3339), v.Latest.Reason)
			fmt.Fprintf(&b, "    accepted:    size %d root %s\n", v.Latest.Accepted.Size, v.Latest.Accepted.Hash)
			fmt.Fprintf(&b, "    conflicting: size %d root %s\n", v.Latest.Conflicting.Size, v.Latest.Conflicting.Hash)
		}
		type namedNote struct {
			name string
			note []byte
		}
		notes := []namedNote{{"accepted", v.AcceptedNote}, {"conflicting", v.ConflictingNote}}
		if latest {
			notes = append(notes, namedNote{"latest accepted", v.Latest.AcceptedNote}, namedNote{"latest conflicting", v.Latest.ConflictingNote})
		}
		for _, n := range notes {
			fmt.Fprintf(&b, "-----BEGIN %s CHECKPOINT-----\n", strings.ToUpper(n.name))
			b.Write(n.note)
			if len(n.note) > 0 && n.note[len(n.note)-1] != '\n' {
				fmt.Fprintln(&b)
			}
			fmt.Fprintf(&b, "-----END %s CHECKPOINT-----\n", strings.ToUpper(n.name))
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}
