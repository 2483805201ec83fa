package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/cli"
)

// TestAuditReconcileRefusesCheckpointOfRetiredKey: ADR 0010. sg has been
// told that nl rotated its audit key (the NEW key is peers.nl.audit_key,
// the OLD one is in retired_audit_keys), but nl has not switched and still
// signs its checkpoints with the OLD key. The latest checkpoint is a new
// statement, so reconcile must refuse it: a retired key (which may have
// leaked) vouches for nothing new. The control keeps the very same key ring
// and only swaps which key is current, so the one thing that differs is
// whether nl's signing key is the configured current key.
func TestAuditReconcileRefusesCheckpointOfRetiredKey(t *testing.T) {
	c := startCluster(t)
	// One exchange, so that sg keeps a receipt signed by nl (with the OLD
	// key) and reconcile has something to prove against the checkpoint.
	pullOneToSG(t, c)

	// nl's running gateway signs with the key in its audit.key: the OLD one.
	oldKey := auditKeyOf(t, filepath.Join(c.dir, nl, "audit.key"), nl)
	_, newKey, err := audit.GenerateKey(audit.Origin(nl))
	if err != nil {
		t.Fatal(err)
	}
	base, err := os.ReadFile(filepath.Join(c.dir, sg, "gateway.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// sg's config as written by startCluster names nl's key once, as
	// peers.nl.audit_key; a rotated variant replaces that line. New files
	// in sg's directory, so that the relative paths (store, certs) resolve
	// to sg's running gateway.
	withKeys := func(name, current, retired string) string {
		old := "audit_key: " + oldKey + "\n"
		if strings.Count(string(base), old) != 1 {
			t.Fatalf("sg's config does not name nl's audit_key exactly once:\n%s", base)
		}
		cfg := strings.Replace(string(base), old, "audit_key: "+current+"\n    retired_audit_keys: [\""+retired+"\"]\n", 1)
		path := filepath.Join(c.dir, sg, name)
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}

	// Control: the key nl signs with is the configured current one (the
	// NEW key only retired, i.e. unused here). Reconcile succeeds, and the
	// receipt is proved in the checkpoint: the setup itself is sound.
	// nl signs checkpoints in the background: wait for one covering the
	// receipt (as TestAuditOnlineAndExport does).
	control := withKeys("current-is-old.yaml", oldKey, newKey)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		code, out, stderr := run(t, nil, "audit", "reconcile", "--config", control, "--partner", nl)
		if code == cli.ExitOK && strings.Contains(out, "1 receipts proved in the partner's checkpoint") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("control, nl signs with its configured current key: exit %d\n%s\n%s", code, out, stderr)
		}
	}

	// Rotation announced but not done: NEW is current, OLD retired, nl
	// still signs with OLD. The ring would open the checkpoint; the current
	// key alone must not.
	code, out, stderr := run(t, nil, "audit", "reconcile", "--config", withKeys("current-is-new.yaml", newKey, oldKey), "--partner", nl)
	if code != cli.ExitVerifyFailed {
		t.Errorf("checkpoint signed only with a retired key: exit %d, want %d (verification failed)\n%s\n%s", code, cli.ExitVerifyFailed, out, stderr)
	}
	// The wording of runAuditReconcile's refusal (audit.go) around
	// audit.OpenCheckpoint's: it names the current audit_key and the
	// signature, not some unrelated failure such as a connection error.
	for _, want := range []string{"audit reconcile: FAILED: partner checkpoint (with its current audit_key): checkpoint signature:", "audit verification failed"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	// No success summary: reconcile stops before proving anything.
	if strings.Contains(out, "exchanges matched") || strings.Contains(out, "receipts proved") {
		t.Errorf("reconcile reported results from a checkpoint it should refuse:\n%s", out)
	}
}
