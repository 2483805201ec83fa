package demo_test

import (
	"bytes"
	"context"
	"encoding/pem"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/borderlink/borderlink/internal/cli"
	"github.com/borderlink/borderlink/internal/demo"
	"github.com/borderlink/borderlink/internal/keys/vault/vaulttest"
)

// envExec makes the test binary behave as the borderlink binary, so the
// demo can start its gateways (`borderlink serve`) and the auditor's CLI
// from it without a separate build.
const envExec = "BORDERLINK_DEMO_TEST_EXEC"

func TestMain(m *testing.M) {
	if os.Getenv(envExec) == "1" {
		os.Exit(runCLI())
	}
	os.Exit(m.Run())
}

func runCLI() int {
	// The demo stops its gateways with SIGTERM; main.go turns that into a
	// cancelled context, and so does this.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
}

// TestDemoVault runs `borderlink demo --vault-bin` end to end against the
// Vault binary of BORDERLINK_VAULT_BIN (skipped without it): the tour must
// pass with every gateway key in Vault, say where the keys come from, and
// leave neither a gateway private key on disk nor a process behind.
func TestDemoVault(t *testing.T) {
	bin := os.Getenv(vaulttest.EnvBin)
	if bin == "" {
		t.Skipf("%s is not set: skipping the Vault demo (make test sets it)", vaulttest.EnvBin)
	}
	t.Setenv(envExec, "1")
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := demo.Run(ctx, demo.Options{Dir: dir, Exe: os.Args[0], Count: 300, Out: &out, Vault: bin})
	if err != nil {
		t.Fatalf("demo with vault: %v\n%s", err, out.String())
	}
	got := out.String()
	for _, d := range []string{demo.NL, demo.SG, demo.CN} {
		if !regexp.MustCompile(regexp.QuoteMeta(d) + ` +certificate [0-9a-f:]+ issued by Vault PKI \(pki-[a-z]{2}\), expires in (1h|59m)`).MatchString(got) {
			t.Errorf("the tour does not say where %s's certificate comes from:\n%s", d, got)
		}
		if !strings.Contains(got, "verifier key "+d+"/borderlink/audit+") {
			t.Errorf("the tour does not name %s's transit verifier key", d)
		}
		cfg, err := os.ReadFile(filepath.Join(dir, d, "gateway.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"tls:", "key_file", "secret_id:"} {
			if strings.Contains(string(cfg), bad) {
				t.Errorf("%s's config has %q; a Vault-backed config must not:\n%s", d, bad, cfg)
			}
		}
		if !strings.Contains(string(cfg), "\nvault:\n") || !strings.Contains(string(cfg), "secret_id_file:") {
			t.Errorf("%s's config has no vault: section with a secret ID file:\n%s", d, cfg)
		}
	}
	if !strings.Contains(got, "OK nl.customs.example/borderlink/audit:") {
		t.Errorf("the auditor did not verify NL's transit-signed log:\n%s", got)
	}

	// The only private keys on disk are the tour's client identities.
	allowed := map[string]bool{}
	for _, d := range []string{demo.NL, demo.SG, demo.CN} {
		for _, f := range []string{"system-cli", "agency-health", "auditor-dpa"} {
			allowed[filepath.Join("certs", d, f+"-key.pem")] = true
		}
	}
	err = filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		switch filepath.Base(path) {
		case "audit.key", "pseudonym.key", ".vault-token":
			t.Errorf("%s: a key file of the file-based demo in the Vault variant", rel)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for rest := data; ; {
			var b *pem.Block
			if b, rest = pem.Decode(rest); b == nil {
				break
			}
			if strings.Contains(b.Type, "PRIVATE KEY") && !allowed[rel] {
				t.Errorf("%s holds a %s block; no gateway key may be on disk", rel, b.Type)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Nothing is left running: the Vault dev server is gone.
	m := regexp.MustCompile(`started a Vault dev server on http://(\S+)`).FindStringSubmatch(got)
	if m == nil {
		t.Fatalf("no Vault address in the output:\n%s", got)
	}
	if c, err := net.DialTimeout("tcp", m[1], time.Second); err == nil {
		c.Close()
		t.Errorf("the Vault dev server at %s still answers after the demo", m[1])
	}
}
