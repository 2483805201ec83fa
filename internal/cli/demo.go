package cli

import (
	"context"
	"fmt"
	"os"

	"github.com/borderlink/borderlink/internal/demo"
)

func runDemo(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "demo", "demo [--dir DIR] [--count N] [--vault-bin PATH]\n\nStarts three gateways (nl, sg, cn.customs.example) as separate processes on loopback, loads synthetic data, tours allowed, narrowed and denied exchanges and both sides' audit trails, then stops everything.\nWith --vault-bin the gateways take their certificates and signing keys from one Vault dev server the demo starts (docs/vault.md).")
	dir := fs.String("dir", "demo-data", "working directory for certificates, configs, databases and logs")
	count := fs.Int("count", 300, "declarations per administration")
	verbose := fs.Bool("v", false, "log progress detail to stderr")
	vaultBin := fs.String("vault-bin", "", "path of a vault binary (e.g. bin/vault, built by make vault-bin): the gateways take their keys from a Vault dev server")
	if err := parse(fs, args); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("demo: find own binary: %w", err)
	}
	opts := demo.Options{Dir: *dir, Exe: exe, Count: *count, Out: e.stdout, Vault: *vaultBin}
	if *verbose {
		opts.Logger = newTextLogger(e.stderr)
	}
	return demo.Run(ctx, opts)
}
