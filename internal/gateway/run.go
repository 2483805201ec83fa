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

	"github.com/borderlink/borderlink/internal/config"
	"github.com/borderlink/borderlink/internal/identity"
	"github.com/borderlink/borderlink/internal/policy"
	"github.com/borderlink/borderlink/internal/release"
	"github.com/borderlink/borderlink/internal/store/sqlite"
)

// Run builds a gateway from its configuration and serves until ctx is
// cancelled. SIGHUP reloads the policy directory; a policy set that does
// not compile is logged and the previous one stays in force.
func Run(ctx context.Context, cfg *config.Config, logger *slog.Logger) error {
	kp, err := identity.LoadKeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
	if err != nil {
		return fmt.Errorf("%s: tls: %w", cfg.File, err)
	}
	bundles := identity.NewBundles()
	for d, path := range cfg.TrustBundles {
		if err := bundles.AddPEMFile(d, path); err != nil {
			return fmt.Errorf("%s: trust_bundles.%s: %w", cfg.File, d, err)
		}
	}
	key, err := os.ReadFile(cfg.Pseudonymization.KeyFile)
	if err != nil {
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
	for d, p := range cfg.Peers {
		peerAddrs[d] = p.Address
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
	})
	if err != nil {
		return err
	}
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("%s: listen %s: %w", cfg.File, cfg.Listen, err)
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := engine.Reload(ctx, os.DirFS(cfg.Policy.Dir)); err != nil {
					logger.Error("policy reload failed; keeping the current policy", "dir", cfg.Policy.Dir, "revision", engine.Revision(), "error", err)
				}
			}
		}
	}()

	err = g.Serve(ctx, lis)
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
