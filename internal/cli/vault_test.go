package cli_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/cli"
	"github.com/borderlink/borderlink/internal/keys"
	"github.com/borderlink/borderlink/internal/keys/vault"
	"github.com/borderlink/borderlink/internal/keys/vault/vaulttest"
)

// TestVaultInitDev runs `vault init-dev` against a dev server and starts a
// Vault client from the config section it prints.
func TestVaultInitDev(t *testing.T) {
	srv := vaulttest.Start(t)
	secretFile := filepath.Join(t.TempDir(), "secret-id")
	code, stdout, stderr := run(t, []string{"VAULT_TOKEN=" + srv.Token, "VAULT_ADDR="},
		"vault", "init-dev", "--domain", nl, "--address", srv.Addr, "--secret-id-file", secretFile)
	if code != cli.ExitOK {
		t.Fatalf("vault init-dev = %d, stderr:\n%s", code, stderr)
	}
	var cfg struct {
		Vault keys.VaultConfig `yaml:"vault"`
	}
	if err := yaml.Unmarshal([]byte(stdout), &cfg); err != nil {
		t.Fatalf("printed snippet does not parse: %v\n%s", err, stdout)
	}
	c, err := vault.New(context.Background(), cfg.Vault, vault.Options{})
	if err != nil {
		t.Fatalf("vault.New(printed config): %v\n%s", err, stdout)
	}
	defer c.Close()
	s, err := c.NewSigner(context.Background(), audit.Origin(nl))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout, "#   "+s.VerifierKey()+"\n") {
		t.Errorf("output does not show the verifier key %s:\n%s", s.VerifierKey(), stdout)
	}

	code, _, stderr = run(t, []string{"VAULT_TOKEN="}, "vault", "init-dev", "--domain", nl, "--address", srv.Addr)
	if code != cli.ExitUsage || !strings.Contains(stderr, "VAULT_TOKEN") {
		t.Errorf("vault init-dev without a token = %d, %q; want usage error naming VAULT_TOKEN", code, stderr)
	}
}
