package gateway

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/config"
	"github.com/borderlink/borderlink/internal/identity"
	"github.com/borderlink/borderlink/internal/keys"
	"github.com/borderlink/borderlink/internal/keys/vault"
	"github.com/borderlink/borderlink/internal/policy"
	"github.com/borderlink/borderlink/internal/release"
	"github.com/borderlink/borderlink/internal/store/sqlite"
)

// Identity is the gateway's own key material as its configuration names
// it: from files, or from Vault (then Vault holds the rest of the key
// material too).
type Identity struct {
	KeyPair *identity.KeyPair
	// Bundles holds every configured trust bundle, and with Vault the own
	// domain's CA from the PKI mount.
	Bundles *identity.Bundles
	// Vault is nil when the key material comes from files.
	Vault *vault.Material
}

// LoadIdentity loads the gateway's certificate and trust bundles. With a
// vault section the certificate is issued (and kept renewed) by Vault
// until Close. Errors name the config file and key.
func LoadIdentity(ctx context.Context, cfg *config.Config, logger *slog.Logger) (*Identity, error) {
	id := &Identity{Bundles: identity.NewBundles()}
	var err error
	if cfg.Vault != nil {
		if id.Vault, err = vault.Load(ctx, *cfg.Vault, cfg.TrustDomain, audit.Origin(cfg.TrustDomain), logger); err != nil {
			return nil, fmt.Errorf("%s: vault: %w", cfg.File, err)
		}
		id.KeyPair = id.Vault.KeyPair
	} else if id.KeyPair, err = identity.LoadKeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile); err != nil {
		return nil, fmt.Errorf("%s: tls: %w", cfg.File, err)
	}
	var ownExtra []*x509.Certificate
	for d, path := range cfg.TrustBundles {
		if id.Vault != nil && d == cfg.TrustDomain {
			// Merged with the PKI mount's issuers below, and kept in the
			// bundle when a CA rotation replaces them.
			if ownExtra, err = identity.ReadPEMCertificates(path); err != nil {
				id.Close()
				return nil, fmt.Errorf("%s: trust_bundles.%s: %w", cfg.File, d, err)
			}
			continue
		}
		if err := id.Bundles.AddPEMFile(d, path); err != nil {
			id.Close()
			return nil, fmt.Errorf("%s: trust_bundles.%s: %w", cfg.File, d, err)
		}
	}
	if id.Vault != nil {
		// The own domain: every issuer of the PKI mount (and the file
		// above), re-read at each certificate renewal so that a CA
		// rotation is followed without a restart (docs/vault.md).
		id.Vault.TrustOwnDomain(id.Bundles, ownExtra...)
	}
	return id, nil
}

// Close stops Vault renewals; it does nothing for file-based material.
func (id *Identity) Close() {
	if id.Vault != nil {
		_ = id.Vault.Close()
	}
}

// Run builds a gateway from its configuration and serves until ctx is
// cancelled. A change in the policy directory, or SIGHUP, reloads the
// policy; a policy set that does not compile is logged, shown by
// Admin.PolicyStatus, and the previous one stays in force. Run sets the
// process's garbage collector target (SetGCTarget).
func Run(ctx context.Context, cfg *config.Config, logger *slog.Logger) error {
	// Registered first: a SIGHUP during start-up must not kill the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	gc := SetGCTarget(cfg.Runtime.GCPercent)
	logger.Info("garbage collector", "gc_percent", gc.Percent, "from", gc.From)

	own, err := LoadIdentity(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer own.Close()
	kp, bundles, vm := own.KeyPair, own.Bundles, own.Vault
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
	st, err := sqlite.Open(ctx, cfg.Store.SQLite.Path, sqlite.WithLogger(logger.With("component", "store")))
	if err != nil {
		return fmt.Errorf("%s: store.sqlite.path: %w", cfg.File, err)
	}
	defer st.Close()

	peerAddrs := map[string]string{}
	peerKeys := map[string]string{}
	retiredKeys := map[string][]string{}
	for d, p := range cfg.Peers {
		peerAddrs[d] = p.Address
		if p.AuditKey != "" {
			peerKeys[d] = p.AuditKey
			retiredKeys[d] = p.RetiredAuditKeys
		}
	}
	var signer audit.Signer
	var receiptKeys ReceiptSigner
	if vm != nil {
		// Concurrent receipts share transit requests instead of paying a
		// Vault round trip each (docs/decisions/0008-batched-transit-signing.md).
		signer = vault.NewBatchSigner(vm.Signer, vault.BatchOptions{})
		logger.Info("audit log", "origin", audit.Origin(cfg.TrustDomain), "verifier_key", vm.Signer.VerifierKey(), "all_verifier_keys", vm.VerifierKeys)
		// Live receipts are signed with a short-lived key transit
		// certifies, so that no exchange waits for Vault
		// (docs/decisions/0011-delegated-receipt-keys.md).
		ttl, err := cfg.Vault.Transit.ReceiptKeyTTL.Duration()
		if err != nil {
			return fmt.Errorf("%s: vault.transit.receipt_key_ttl: %w", cfg.File, err)
		}
		if ttl > 0 {
			rk, err := keys.NewReceiptKeys(ctx, signer, ttl, nil, logger)
			if err != nil {
				return fmt.Errorf("%s: vault.transit: receipt key: %w", cfg.File, err)
			}
			defer rk.Stop()
			receiptKeys = rk
		}
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
	crashAt, err := ParseCrashPoint(os.Getenv(CrashEnv))
	if err != nil {
		return err
	}
	if crashAt != nil {
		logger.Warn("crash point armed: this process will kill itself (fault-injection testing only)", "point", os.Getenv(CrashEnv))
	}
	g, err := New(Options{
		CrashAt:       crashAt,
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
		Delivery: DeliveryOptions{
			Lanes:             cfg.Delivery.Lanes,
			RetentionInterval: cfg.Delivery.RetentionInterval.Duration,
			KeepSettled:       cfg.Delivery.KeepSettled.Duration,
		},
		Audit: AuditOptions{Signer: signer, ReceiptKeys: receiptKeys, Cosigner: cosigner, PeerKeys: peerKeys, PeerRetiredKeys: retiredKeys, CheckpointInterval: cfg.Audit.CheckpointInterval.Duration,
			WitnessInterval: cfg.Audit.WitnessInterval.Duration},
	})
	if err != nil {
		return err
	}
	if vm != nil {
		if err := g.ReportVault(vm.Client); err != nil {
			return err
		}
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

	if cfg.Metrics.Listen != "" {
		stopMetrics, err := serveMetrics(ctx, cfg.Metrics.Listen, g.MetricsHandler(), logger)
		if err != nil {
			return fmt.Errorf("%s: metrics.listen %s: %w", cfg.File, cfg.Metrics.Listen, err)
		}
		defer stopMetrics()
	}

	err = g.Serve(ctx, lis)
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// serveMetrics answers GET /metrics on addr until stop is called.
func serveMetrics(ctx context.Context, addr string, h http.Handler, logger *slog.Logger) (stop func(), err error) {
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics server stopped", "address", addr, "error", err)
		}
	}()
	logger.Info("metrics serving", "address", lis.Addr().String())
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-done
	}, nil
}
