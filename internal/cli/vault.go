package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/keys/vault"
)

// runVault is `borderlink vault init-dev`: set up a development Vault for
// one administration and print the gateway's vault: config section.
func runVault(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || args[0] != "init-dev" {
		return usagef("vault: the only subcommand is init-dev: vault init-dev --domain D [--address URL] [--secret-id-file FILE]")
	}
	fs := newFlagSet(e, "vault init-dev", "vault init-dev --domain D [--address URL] [--token-env VAR] [--secret-id-file FILE]\n\n"+
		"Development only: mounts pki, transit, kv-v2 and approle in the Vault at --address, with a least-privilege\n"+
		"policy for the gateway of --domain, writes the AppRole secret ID to --secret-id-file and prints the\n"+
		"config section to paste into the gateway's config. Safe to run again. See docs/vault.md.")
	domain := fs.String("domain", "", "the administration's trust domain, e.g. nl.customs.example")
	addr := fs.String("address", "", "Vault's address (default $VAULT_ADDR, else http://127.0.0.1:8200)")
	tokenEnv := fs.String("token-env", "VAULT_TOKEN", "environment variable holding an admin token (the dev server's root token)")
	secretFile := fs.String("secret-id-file", "vault-secret-id", "where to write the gateway's AppRole secret ID (mode 0600)")
	ttl := fs.Duration("cert-ttl", time.Hour, "lifetime of the gateway's certificates")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if *domain == "" {
		return usagef("vault init-dev: --domain is required")
	}
	if *addr == "" {
		*addr = e.getenv("VAULT_ADDR")
	}
	if *addr == "" {
		*addr = "http://127.0.0.1:8200"
	}
	token := e.getenv(*tokenEnv)
	if token == "" {
		return usagef("vault init-dev: environment variable %s is empty: export an admin token (for `vault server -dev -dev-root-token-id=root`: root)", *tokenEnv)
	}
	abs, err := filepath.Abs(*secretFile)
	if err != nil {
		return err
	}
	setup, err := vault.InitDev(ctx, *addr, token, vault.InitDevOptions{
		TrustDomain:  *domain,
		SignerName:   audit.Origin(*domain),
		SecretIDFile: abs,
		CertTTL:      *ttl,
	})
	if err != nil {
		return err
	}
	snippet, err := setup.Snippet()
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "# Vault for %s is ready. Secret ID written to %s (never put it in the config).\n", *domain, abs)
	fmt.Fprintf(e.stdout, "# Audit verifier key (partners: peers.%s.audit_key):\n#   %s\n", *domain, setup.VerifierKey)
	fmt.Fprintf(e.stdout, "# Policy %s:\n", setup.PolicyName)
	for _, line := range strings.Split(strings.TrimRight(setup.Policy, "\n"), "\n") {
		fmt.Fprintf(e.stdout, "#   %s\n", line)
	}
	fmt.Fprint(e.stdout, snippet)
	return nil
}
