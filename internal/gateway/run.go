package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/mod/sumdb/note"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/config"
	"github.com/borderlink/borderlink/internal/identity"
	"github.com/borderlink/borderlink/internal/keys/vault"
	"github.com/borderlink/borderlink/internal/policy"
	"github.com/borderlink/borderlink/internal/release"
	"github.com/borderlink/borderlink/internal/store/sqlite"
)

// Run builds a gateway from its configuration and serves until ctx is
// cancelled. A change in the policy directory, or SIGHUP, reloads the
// policy; a policy set that does not compile is logged, shown by
// Admin.PolicyStatus, and the previous one stays in force.
func Run(ctx context.Context, cfg *config.Config, logger *slog.Logger) error {
	// Registered first: a SIGHUP during start-up must not kill the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	bundles := identity.NewBundles()
	var kp *identity.KeyPair
	var vm *vault.Material
	var err error
	if cfg.Vault != nil {
		vm, err = vault.Load(ctx, *cfg.Vault, cfg.TrustDomain, audit.Origin(cfg.TrustDomain), logger)
		if err != nil {
			return fmt.Errorf("%s: vault: %w", cfg.File, err)
		}
		defer vm.Close()
		kp = vm.KeyPair
		bundles.Add(cfg.TrustDomain, vm.OwnBundle...)
	} else if kp, err = identity.LoadKeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile); err != nil {
		return fmt.Errorf("%s: tls: %w", cfg.File, err)
	}
	for d, path := range cfg.TrustBundles {
		if err := bundles.AddPEMFile(d, path); err != nil {
			return fmt.Errorf("%s: trust_bundles.%s: %w", cfg.File, d, err)
		}
	}
	var key []byte
	if vm != nil && vm.PseudonymKey != nil {
		key = vm.PseudonymKey
	} else if key, err = os.ReadFile(cfg.Pseudonymization.KeyFile); err != nil {
		return fmt.Errorf("%s: pseudonymization.key_file: %w", cfg.File, err)
	}
	pseud, err := release.NewPseudonymizer(key)
	if err != nil {
		return fmt.Errorf("%s: pseudonymization.key_file %s: %w", cfg.File, cfg.Pseudonymization.KeyFile, err)
	}
	engine, err := policy.NewEngine(ctx, cfg.TrustDomain, os.DirFS(cfg.Policy.Dir), logger)
	if err != nil {
		return fmt.Errorf("%s: policy.dir %s: %w", cfg.File, cfg.Policy.Dir, err)
	}
	st, err := sqlite.Open(ctx, cfg.Store.SQLite.Path)
	if err != nil {
		return fmt.Errorf("%s: store.sqlite.path: %w", cfg.File, err)
	}
	defer st.Close()

	peerAddrs := map[string]string{}
	peerKeys := map[string]string{}
	for d, p := range cfg.Peers {
		peerAddrs[d] = p.Address
		if p.AuditKey != "" {
			peerKeys[d] = p.AuditKey
		}
	}
	var signer audit.Signer
	if vm != nil {
		signer = vm.Signer
		logger.Info("audit log", "origin", audit.Origin(cfg.TrustDomain), "verifier_key", vm.Signer.VerifierKey(), "all_verifier_keys", vm.VerifierKeys)
	} else {
		s, vkey, err := audit.LoadOrCreateKey(cfg.Audit.KeyFile, audit.Origin(cfg.TrustDomain), true)
		if err != nil {
			return fmt.Errorf("%s: audit.key_file: %w", cfg.File, err)
		}
		signer = s
		logger.Info("audit log", "origin", audit.Origin(cfg.TrustDomain), "verifier_key", vkey)
	}
	// The witness cosigns with the same key as the log (docs/audit.md):
	// from Vault transit when configured, so no private key is on disk.
	var cosigner note.Signer
	if vm != nil {
		cosigner = audit.NewCosignerFunc(audit.WitnessName(cfg.TrustDomain), vm.Signer.PublicKey(), vm.Signer.Sign, nil)
	} else if cosigner, err = audit.LoadCosigner(cfg.Audit.KeyFile, audit.WitnessName(cfg.TrustDomain)); err != nil {
		return fmt.Errorf("%s: audit.key_file: %w", cfg.File, err)
	}
	g, err := New(Options{
		Self:          cfg.TrustDomain,
		KeyPair:       kp,
		Bundles:       bundles,
		Store:         st,
		Policy:        engine,
		Pseudonymizer: pseud,
		Peers:         peerAddrs,
		Limits: Limits{
			SearchDefault: cfg.Limits.SearchDefault,
			SearchMax:     cfg.Limits.SearchMax,
			PeerTimeout:   cfg.Limits.PeerTimeout.Duration,
			ShutdownGrace: cfg.Limits.ShutdownGrace.Duration,
		},
		Logger: logger,
		Audit: AuditOptions{Signer: signer, Cosigner: cosigner, PeerKeys: peerKeys, CheckpointInterval: cfg.Audit.CheckpointInterval.Duration,
			WitnessInterval: cfg.Audit.WitnessInterval.Duration},
	})
	if err != nil {
		return err
	}
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("%s: listen %s: %w", cfg.File, cfg.Listen, err)
	}

	watchCtx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		if err := engine.Watch(watchCtx, cfg.Policy.Dir, policy.DefaultSettle, hup); err != nil {
			logger.Error("policy directory not watched; reload with SIGHUP only", "dir", cfg.Policy.Dir, "error", err)
			for {
				select {
				case <-watchCtx.Done():
					return
				case <-hup:
					if err := engine.Reload(watchCtx, os.DirFS(cfg.Policy.Dir)); err != nil {
						logger.Error("policy reload failed; keeping the current policy", "dir", cfg.Policy.Dir, "revision", engine.Revision(), "error", err)
					}
				}
			}
		}
	}()
	defer func() { stopWatch(); <-watchDone }()

	err = g.Serve(ctx, lis)
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
