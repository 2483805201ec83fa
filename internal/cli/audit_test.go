package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/borderlink/borderlink/internal/cli"
	"github.com/borderlink/borderlink/internal/store/sqlite/sqlitetest"
)

// TestAuditOnlineAndExport: an exchange through real `serve` processes,
// then the provider's log verified online as its auditor (with --state),
// exported and verified offline, and the verifier key printed.
func TestAuditOnlineAndExport(t *testing.T) {
	c := startCluster(t)
	// One allowed exchange (with a receipt) and one refused one.
	toSG := pullOneToSG(t, c)
	run(t, c.env(sg), "query", "declaration", "--peer", nl, "--purpose", "marketing", "NL-NONE")

	auditor := auditorEnv(c)
	pub := "@" + filepath.Join(c.dir, nl, "audit.key.pub")
	state := t.TempDir()
	code, out, stderr := run(t, auditor, "audit", "verify", "--verifier", pub, "--sign-now", "--state", state)
	if code != cli.ExitOK || !strings.Contains(out, "OK nl.customs.example/borderlink/audit: records 0..1 verified (2 leaves hashed); 1 checkpoints verified") {
		t.Fatalf("online verify: exit %d\n%s\n%s", code, out, stderr)
	}
	// The second run resumes from the right edge saved at size 2: it asks
	// for leaves from index 2 on, and there are none.
	if code, out, stderr := run(t, auditor, "audit", "verify", "--verifier", pub, "--state", state); code != cli.ExitOK || !strings.Contains(out, "consistent with the checkpoint saved") ||
		!strings.Contains(out, "OK nl.customs.example/borderlink/audit: no records from index 2 (0 leaves hashed); records below 2 not read again (covered by the saved state); 1 checkpoints verified") {
		t.Fatalf("second online verify: exit %d\n%s\n%s", code, out, stderr)
	}
	// The same log read as C2SP tiles, up to the latest checkpoint.
	if code, out, stderr := run(t, auditor, "audit", "verify", "--verifier", pub, "--tiles", "--state", state); code != cli.ExitOK || !strings.Contains(out, "OK nl.customs.example/borderlink/audit: ") || !strings.Contains(out, "records below 2 not read again") {
		t.Fatalf("online verify from tiles: exit %d\n%s\n%s", code, out, stderr)
	}
	// sg witnesses nl's log and cosigns its checkpoints.
	sgPub := "@" + filepath.Join(c.dir, sg, "audit.key.pub")
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, out, stderr := run(t, auditor, "audit", "verify", "--verifier", pub, "--witness", sgPub)
		if code == cli.ExitOK && strings.Contains(out, "cosigned by witness sg.customs.example/borderlink/witness") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint cosigned by sg after 10s: exit %d %s %s", code, out, stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, _, stderr := run(t, auditor, "audit", "verify", "--verifier", pub, "--witness", pub); code != cli.ExitVerifyFailed || !strings.Contains(stderr, "cosignature of nl.customs.example/borderlink/witness") {
		t.Errorf("verify requiring a witness that did not cosign: exit %d %s", code, stderr)
	}
	// The partner's key does not verify nl's log.
	if code, _, stderr := run(t, auditor, "audit", "verify", "--verifier", "@"+filepath.Join(c.dir, sg, "audit.key.pub")); code != cli.ExitVerifyFailed {
		t.Fatalf("verify with the wrong key: exit %d %s", code, stderr)
	}
	// A system identity is not an auditor.
	if code, _, _ := run(t, c.env(nl), "audit", "verify", "--verifier", pub); code != cli.ExitDenied {
		t.Errorf("verify as a system identity: exit %d, want %d", code, cli.ExitDenied)
	}

	cfg := filepath.Join(c.dir, nl, "gateway.yaml")
	export := filepath.Join(t.TempDir(), "nl.jsonl")
	if code, _, stderr := run(t, nil, "audit", "export", "--config", cfg, "--out", export); code != cli.ExitOK {
		t.Fatalf("export: %d %s", code, stderr)
	}
	for _, env := range []string{"BORDERLINK_GATEWAY", "BORDERLINK_CERT", "BORDERLINK_KEY", "BORDERLINK_BUNDLE"} {
		t.Setenv(env, "")
	}
	// A gateway address left in the environment must not make an offline
	// check a usage error.
	if code, out, stderr := run(t, []string{"BORDERLINK_GATEWAY=127.0.0.1:1"}, "audit", "verify", "--verifier", pub, "--export", export); code != cli.ExitOK {
		t.Errorf("offline verify with BORDERLINK_GATEWAY set: exit %d\n%s\n%s", code, out, stderr)
	}
	t.Setenv("BORDERLINK_GATEWAY", "")
	if code, out, stderr := run(t, nil, "audit", "verify", "--verifier", pub, "--export", export, "--state", state); code != cli.ExitOK {
		t.Fatalf("offline verify: exit %d\n%s\n%s", code, out, stderr)
	}
	code, out, _ = run(t, nil, "audit", "export", "--config", cfg, "--format", "csv")
	if code != cli.ExitOK || !strings.HasPrefix(out, "seq,time,side,") || !strings.Contains(out, "PERMISSION_DENIED") {
		t.Errorf("csv export: exit %d\n%s", code, out)
	}
	// sg's records match nl's, and nl's receipts (for the release and for
	// the refusal) are in nl's signed log.
	code, out, stderr = run(t, nil, "audit", "reconcile", "--config", filepath.Join(c.dir, sg, "gateway.yaml"), "--partner", nl)
	if code != cli.ExitOK || !strings.Contains(out, "2 exchanges matched (0 of them alerts we pushed), 2 receipts proved") {
		t.Errorf("reconcile: exit %d\n%s\n%s", code, out, stderr)
	}
	// Pushes: nl sends sg a risk alert. nl's delivery record with sg's
	// receipt matches sg's record of receiving it, and the receipt is
	// proved in sg's log; sg sees the alert among its exchanges with nl.
	// nl pushes a risk alert about that declaration to sg.
	alert := filepath.Join(t.TempDir(), "alert.json")
	if err := os.WriteFile(alert, []byte(`{"id":"NL-RA-REC","declaration_id":"`+toSG+`","score":0.93,"level":"RISK_LEVEL_HIGH","model_name":"test"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, stderr := run(t, c.env(nl), "publish", alert); code != 0 || !strings.Contains(out, sg) {
		t.Fatalf("publish: %d %s %s", code, out, stderr)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		code, out, stderr = run(t, nil, "audit", "reconcile", "--config", cfg, "--partner", sg)
		// Delivered, and sg has signed a checkpoint covering its record.
		if code == cli.ExitOK && strings.Contains(out, "1 exchanges matched (1 of them alerts we pushed), 1 receipts proved") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reconcile of pushed alerts: exit %d\n%s\n%s", code, out, stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	code, out, stderr = run(t, nil, "audit", "reconcile", "--config", filepath.Join(c.dir, sg, "gateway.yaml"), "--partner", nl)
	if code != cli.ExitOK || !strings.Contains(out, "3 exchanges matched (0 of them alerts we pushed), 2 receipts proved") {
		t.Errorf("reconcile after the push, from sg: exit %d\n%s\n%s", code, out, stderr)
	}
	code, out, _ = run(t, nil, "audit", "key", "--config", cfg)
	want, _ := os.ReadFile(filepath.Join(c.dir, nl, "audit.key.pub"))
	if code != cli.ExitOK || out != string(want) {
		t.Errorf("audit key: exit %d, %q, want %q", code, out, want)
	}
}

// pullOneToSG loads generated NL data into nl's gateway and has sg pull
// one declaration bound for SG from it: one allowed exchange, with nl's
// receipt kept by sg. It returns the declaration's ID.
// auditorEnv is the environment of a CLI call as NL's auditor.
func auditorEnv(c *cluster) []string {
	certs := filepath.Join(c.dir, "certs")
	return []string{
		"BORDERLINK_GATEWAY=" + c.addrs[nl],
		"BORDERLINK_CERT=" + filepath.Join(certs, nl, "auditor-dpa.pem"),
		"BORDERLINK_KEY=" + filepath.Join(certs, nl, "auditor-dpa-key.pem"),
		"BORDERLINK_BUNDLE=" + filepath.Join(certs, "bundle", nl+".pem"),
	}
}

func pullOneToSG(t *testing.T, c *cluster) string {
	t.Helper()
	gen := filepath.Join(t.TempDir(), "nl.jsonl")
	if code, _, stderr := run(t, nil, "gen", "--domain", nl, "--count", "10", "--seed", "3", "--start", "2026-11-20T00:00:00Z", "--partners", "SG", "--out", gen); code != 0 {
		t.Fatalf("gen: %s", stderr)
	}
	if code, _, stderr := run(t, c.env(nl), "import", gen); code != 0 {
		t.Fatalf("import: %s", stderr)
	}
	data, _ := os.ReadFile(gen)
	var toSG string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, `"destination_country":"SG"`) && strings.Contains(l, `"declaration"`) {
			toSG = between(l, `"id":"`, `"`)
			break
		}
	}
	if code, _, stderr := run(t, c.env(sg), "query", "declaration", "--peer", nl, "--purpose", "risk-assessment", toSG); code != 0 {
		t.Fatalf("query %s: %d %s", toSG, code, stderr)
	}
	return toSG
}

// TestAuditVerifySignNowRefused: a gateway whose stored checkpoints were
// altered behind its back refuses to sign (DATA_LOSS, ADR 0017), and
// `audit verify --sign-now` reports that as a log that does not verify
// (exit 5), naming the gateway's reason once.
func TestAuditVerifySignNowRefused(t *testing.T) {
	c := startCluster(t)
	toSG := pullOneToSG(t, c)
	auditor := auditorEnv(c)
	pub := "@" + filepath.Join(c.dir, nl, "audit.key.pub")
	if code, out, stderr := run(t, auditor, "audit", "verify", "--verifier", pub, "--sign-now"); code != cli.ExitOK {
		t.Fatalf("verify before tampering: exit %d\n%s\n%s", code, out, stderr)
	}
	sqlitetest.Exec(t, filepath.Join(c.dir, nl, "gateway.db"),
		"DROP TRIGGER audit_checkpoints_no_update", "UPDATE audit_checkpoints SET note = CAST('garbage' AS BLOB)")
	if code, _, stderr := run(t, c.env(sg), "query", "declaration", "--peer", nl, "--purpose", "risk-assessment", toSG); code != 0 {
		t.Fatalf("query after tampering: %d %s", code, stderr)
	}
	code, out, stderr := run(t, auditor, "audit", "verify", "--verifier", pub, "--sign-now")
	if code != cli.ExitVerifyFailed || !strings.Contains(stderr, "the gateway refused to sign a checkpoint") || !strings.Contains(stderr, "malformed") ||
		strings.Count(stderr, "audit verification failed") != 1 {
		t.Errorf("verify --sign-now after tampering: exit %d\n%s\n%s\nwant exit %d with the gateway's reason, once", code, out, stderr, cli.ExitVerifyFailed)
	}
}
