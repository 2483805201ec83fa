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
	sv       audit.SplitView
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
	return forkedLog{origin, v, audit.SplitView{Origin: origin, Accepted: a, AcceptedNote: an, Conflicting: c, ConflictingNote: cn,
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
// both notes verbatim — each verifies with the forking partner's key —
// and the exit code says whether there is any.
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
	for _, l := range []forkedLog{nlLog, cnLog} {
		if _, err := st.PutSplitView(ctx, l.sv, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()

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
			notes := printedNotes(out)
			if len(notes) != 2*len(tt.want) {
				t.Fatalf("%d notes printed, want %d:\n%s", len(notes), 2*len(tt.want), out)
			}
			for i, l := range tt.want {
				if notes[2*i] != string(l.sv.AcceptedNote) || notes[2*i+1] != string(l.sv.ConflictingNote) {
					t.Errorf("split view %d: notes not printed verbatim:\n%s", i, out)
				}
				for _, n := range notes[2*i : 2*i+2] {
					if _, err := audit.OpenCheckpoint([]byte(n), l.verifier); err != nil {
						t.Errorf("split view %d: printed note does not verify with %s's key: %v", i, l.origin, err)
					}
				}
				if !strings.Contains(out, "of "+l.origin) || !strings.Contains(out, l.sv.Detection) {
					t.Errorf("split view %d: origin or detection missing:\n%s", i, out)
				}
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
		var got struct {
			Origin, Detection, Witness string
			Count                      int64
			Accepted, Conflicting      struct {
				Size int64
				Root string
				Note string
			}
		}
		if err := json.Unmarshal([]byte(lines[i]), &got); err != nil {
			t.Fatalf("--json line %d: %v", i, err)
		}
		if got.Origin != l.origin || got.Detection != l.sv.Detection || got.Witness != l.sv.Witness || got.Count != 1 ||
			got.Accepted.Root != l.sv.Accepted.Hash.String() || got.Conflicting.Root != l.sv.Conflicting.Hash.String() {
			t.Errorf("--json line %d = %+v", i, got)
		}
		for _, n := range []string{got.Accepted.Note, got.Conflicting.Note} {
			if _, err := audit.OpenCheckpoint([]byte(n), l.verifier); err != nil {
				t.Errorf("--json line %d: note does not verify with %s's key: %v", i, l.origin, err)
			}
		}
	}

	if code, _, _ := run(t, nil, "audit", "split-views"); code != cli.ExitUsage {
		t.Errorf("without --config: exit %d, want %d", code, cli.ExitUsage)
	}
}
