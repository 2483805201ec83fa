package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/cli"
	"github.com/borderlink/borderlink/internal/store/sqlite"
)

// offlineConfig writes a gateway configuration whose store is dbPath, for
// the commands that only read the store; the certificate and key files
// exist but are never read.
func offlineConfig(t *testing.T, dbPath string) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range map[string][]byte{"gateway.pem": nil, "gateway-key.pem": nil, "bundle.pem": nil, "pseudonym.key": bytes.Repeat([]byte{7}, 32)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := fmt.Sprintf(`trust_domain: sg.customs.example
listen: 127.0.0.1:0
tls:
  cert_file: gateway.pem
  key_file: gateway-key.pem
trust_bundles:
  sg.customs.example: bundle.pem
store:
  sqlite:
    path: %s
policy:
  dir: .
pseudonymization:
  key_file: pseudonym.key
`, dbPath)
	path := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// forkedLog is a partner log's key and two checkpoints of one size with
// different roots, both signed by it.
type forkedLog struct {
	origin   string
	verifier note.Verifier
	signer   note.Signer
	sv       audit.SplitView
}

// grown is the same incident detected again later: the accepted
// checkpoint unchanged, the conflicting branch grown to size.
func (l forkedLog) grown(t *testing.T, size int64) audit.SplitView {
	t.Helper()
	sv := l.sv
	sv.Conflicting = audit.Checkpoint{Origin: l.origin, Size: size, Hash: tlog.RecordHash([]byte(fmt.Sprintf("forked at %d", size)))}
	msg, err := audit.SignCheckpoint(l.signer, sv.Conflicting)
	if err != nil {
		t.Fatal(err)
	}
	sv.ConflictingNote, sv.Reason = msg, "the new checkpoint does not extend the accepted one"
	return sv
}

func newForkedLog(t *testing.T, domain, detection, witness string) forkedLog {
	t.Helper()
	origin := audit.Origin(domain)
	sk, vk, err := audit.GenerateKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := note.NewSigner(sk)
	v, _ := audit.NewVerifier(vk, origin)
	sign := func(root string) (audit.Checkpoint, []byte) {
		c := audit.Checkpoint{Origin: origin, Size: 8, Hash: tlog.RecordHash([]byte(root))}
		msg, err := audit.SignCheckpoint(s, c)
		if err != nil {
			t.Fatal(err)
		}
		return c, msg
	}
	a, an := sign("honest")
	c, cn := sign("forked")
	return forkedLog{origin, v, s, audit.SplitView{Origin: origin, Accepted: a, AcceptedNote: an, Conflicting: c, ConflictingNote: cn,
		Reason: "two different roots for one size", Detection: detection, Witness: witness}}
}

// printedNotes cuts the signed checkpoints out of the text output.
func printedNotes(out string) []string {
	var notes []string
	for _, part := range strings.Split(out, " CHECKPOINT-----\n")[1:] {
		if n, _, ok := strings.Cut(part, "-----END "); ok {
			notes = append(notes, n)
		}
	}
	return notes
}

// TestAuditSplitViews: the evidence kept in the store is printed with
// both notes of the first detection verbatim — each verifies with the
// forking partner's key —, then both of the latest when it differs (nl's
// fork was detected three times, its branch growing), and the exit code
// says whether there is any.
func TestAuditSplitViews(t *testing.T) {
	ctx := context.Background()
	dbPath := filepath.Join(t.TempDir(), "gateway.db")
	cfg := offlineConfig(t, dbPath)
	nlLog := newForkedLog(t, "nl.customs.example", audit.DetectedDirect, "")
	cnLog := newForkedLog(t, "cn.customs.example", audit.DetectedGossip, "sg.customs.example")

	st, err := sqlite.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if code, out, stderr := run(t, nil, "audit", "split-views", "--config", cfg); code != cli.ExitOK || !strings.Contains(out, "no split views") {
		t.Fatalf("empty store: exit %d\n%s\n%s", code, out, stderr)
	}

	st, err = sqlite.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	nlLatest := nlLog.grown(t, 10)
	for i, sv := range []audit.SplitView{nlLog.sv, cnLog.sv, nlLog.grown(t, 9), nlLatest} {
		if _, err := st.PutSplitView(ctx, sv, t0.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	// The notes printed per incident: the latest pair only where it
	// differs from the first.
	wantNotes := map[string][]audit.SplitView{nlLog.origin: {nlLog.sv, nlLatest}, cnLog.origin: {cnLog.sv}}

	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     []forkedLog
	}{
		{"all", nil, cli.ExitSplitView, []forkedLog{nlLog, cnLog}},
		{"by trust domain", []string{"--origin", "nl.customs.example"}, cli.ExitSplitView, []forkedLog{nlLog}},
		{"by origin", []string{"--origin", cnLog.origin}, cli.ExitSplitView, []forkedLog{cnLog}},
		{"a partner without any", []string{"--origin", "sg.customs.example"}, cli.ExitOK, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, stderr := run(t, nil, append([]string{"audit", "split-views", "--config", cfg}, tt.args...)...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\n%s\n%s", code, tt.wantCode, out, stderr)
			}
			var want []string
			for _, l := range tt.want {
				for _, sv := range wantNotes[l.origin] {
					want = append(want, string(sv.AcceptedNote), string(sv.ConflictingNote))
				}
			}
			notes := printedNotes(out)
			if strings.Join(notes, "\x00") != strings.Join(want, "\x00") {
				t.Fatalf("%d notes printed, want %d, verbatim:\n%s", len(notes), len(want), out)
			}
			for i, l := range tt.want {
				for _, n := range wantNotes[l.origin] {
					for _, msg := range [][]byte{n.AcceptedNote, n.ConflictingNote} {
						if _, err := audit.OpenCheckpoint(msg, l.verifier); err != nil {
							t.Errorf("split view %d: printed note does not verify with %s's key: %v", i, l.origin, err)
						}
					}
				}
				if !strings.Contains(out, "of "+l.origin) || !strings.Contains(out, l.sv.Detection) {
					t.Errorf("split view %d: origin or detection missing:\n%s", i, out)
				}
			}
			if hasNL := len(tt.want) > 0 && tt.want[0].origin == nlLog.origin; hasNL != strings.Contains(out, "BEGIN LATEST CONFLICTING CHECKPOINT") ||
				hasNL != strings.Contains(out, "3 time(s)") || hasNL != strings.Contains(out, "conflicting: size 10 root "+nlLatest.Conflicting.Hash.String()) {
				t.Errorf("nl's latest pair printed %v, want %v:\n%s", !hasNL, hasNL, out)
			}
			if tt.wantCode == cli.ExitSplitView && !strings.Contains(stderr, "split view") {
				t.Errorf("stderr does not say why the exit code is %d: %q", code, stderr)
			}
		})
	}

	code, out, stderr := run(t, nil, "audit", "split-views", "--config", cfg, "--json")
	if code != cli.ExitSplitView {
		t.Fatalf("--json: exit %d\n%s\n%s", code, out, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("--json: %d lines, want 2:\n%s", len(lines), out)
	}
	for i, l := range []forkedLog{nlLog, cnLog} {
		type jsonNote struct {
			Size int64
			Root string
			Note string
		}
		var got struct {
			Origin, Detection, Witness, Reason string
			Count                              int64
			Accepted, Conflicting              jsonNote
			Latest                             struct {
				Reason                string
				Accepted, Conflicting jsonNote
			}
		}
		if err := json.Unmarshal([]byte(lines[i]), &got); err != nil {
			t.Fatalf("--json line %d: %v", i, err)
		}
		latest, count := l.sv, int64(1)
		if l.origin == nlLog.origin {
			latest, count = nlLatest, 3
		}
		if got.Origin != l.origin || got.Detection != l.sv.Detection || got.Witness != l.sv.Witness || got.Count != count ||
			got.Reason != l.sv.Reason || got.Accepted.Root != l.sv.Accepted.Hash.String() || got.Conflicting.Root != l.sv.Conflicting.Hash.String() ||
			got.Latest.Reason != latest.Reason || got.Latest.Conflicting.Size != latest.Conflicting.Size ||
			got.Latest.Accepted.Root != latest.Accepted.Hash.String() || got.Latest.Conflicting.Root != latest.Conflicting.Hash.String() {
			t.Errorf("--json line %d = %+v", i, got)
		}
		for _, n := range []string{got.Accepted.Note, got.Conflicting.Note, got.Latest.Accepted.Note, got.Latest.Conflicting.Note} {
			if _, err := audit.OpenCheckpoint([]byte(n), l.verifier); err != nil {
				t.Errorf("--json line %d: note does not verify with %s's key: %v", i, l.origin, err)
			}
		}
		if got.Latest.Conflicting.Note != string(latest.ConflictingNote) {
			t.Errorf("--json line %d: latest conflicting note %q, want %q", i, got.Latest.Conflicting.Note, latest.ConflictingNote)
		}
	}

	if code, _, _ := run(t, nil, "audit", "split-views"); code != cli.ExitUsage {
		t.Errorf("without --config: exit %d, want %d", code, cli.ExitUsage)
	}
}
