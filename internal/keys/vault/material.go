package vault

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/borderlink/borderlink/internal/identity"
	"github.com/borderlink/borderlink/internal/keys"
)

// Material is everything a gateway takes from Vault, loaded at start by
// Load and kept current (token, certificate) until Close.
type Material struct {
	// Client is the logged-in client, for later reads (ReadSecret).
	Client *Client
	// KeyPair holds the gateway certificate, renewed at two thirds of its
	// lifetime; hand it to identity.ServerTLSConfig / ClientTLSConfig.
	KeyPair *identity.KeyPair
	// PseudonymKey is the pseudonymisation key for release.NewPseudonymizer.
	PseudonymKey []byte
	// Signer signs checkpoints and receipts (an audit.Signer).
	Signer *Signer
	// VerifierKeys are the verifier keys of every version of the signing
	// key, oldest first; the last is Signer's. Publish them all.
	VerifierKeys []string

	trustDomain string
	logger      *slog.Logger
	stopRenew   func()
	// ctx bounds bundle refreshes; cancelled by Close.
	ctx    context.Context
	cancel context.CancelFunc

	bundleMu sync.Mutex
	bundle   []*x509.Certificate // the PKI mount's trusted issuers, as last read
	sink     *identity.Bundles   // kept current by TrustOwnDomain
	extra    []*x509.Certificate
}

// Load logs in to Vault and loads a gateway's key material: certificate
// for spiffe://<trustDomain>/gateway (with renewal started), the own CA's
// issuers (read again after every renewal, see TrustOwnDomain),
// pseudonymisation key (if kv.pseudonym_key_path is set) and the audit
// signer named origin. Any failure is returned, naming Vault's address and
// the path, and nothing is left running: a gateway configured for Vault
// does not start without it.
func Load(ctx context.Context, cfg keys.VaultConfig, trustDomain, origin string, logger *slog.Logger) (_ *Material, err error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c, err := New(ctx, cfg, Options{Logger: logger})
	if err != nil {
		return nil, err
	}
	m := &Material{Client: c, trustDomain: trustDomain, logger: logger}
	m.ctx, m.cancel = context.WithCancel(context.WithoutCancel(ctx))
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	if m.bundle, err = c.TrustBundle(ctx); err != nil {
		return nil, err
	}
	m.KeyPair, m.stopRenew, err = keys.RenewingKeyPair(ctx, c.CertIssuer(identity.GatewayID(trustDomain)), keys.RenewOptions{
		Logger: logger,
		// A renewal is when a CA rotation shows: the new certificate may
		// come from a new default issuer, and peers may hold certificates
		// of it. Reading the issuers again here costs one list and one
		// read per issuer every 40 minutes (1 h certificates).
		OnRenew: func(*x509.Certificate) {
			if err := m.RefreshOwnBundle(m.ctx); err != nil && m.ctx.Err() == nil {
				m.logger.Warn("own trust bundle not refreshed; keeping the current one until the next certificate renewal", "error", err)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	if c.cfg.KV.PseudonymKeyPath != "" {
		if m.PseudonymKey, err = c.PseudonymKey(ctx); err != nil {
			return nil, err
		}
	}
	if m.Signer, err = c.NewSigner(ctx, origin); err != nil {
		return nil, err
	}
	if m.VerifierKeys, err = m.Signer.VerifierKeys(ctx); err != nil {
		return nil, err
	}
	if n := len(m.VerifierKeys); n == 0 || m.VerifierKeys[n-1] != m.Signer.VerifierKey() {
		return nil, fmt.Errorf("vault %s: signing key changed while loading; try again", c.Address())
	}
	return m, nil
}

// OwnBundle returns the own trust domain's CA certificates as last read
// from the PKI mount: the certificate of every issuer with its key in the
// mount, not revoked, that may issue certificates (see
// Client.TrustBundle).
func (m *Material) OwnBundle() []*x509.Certificate {
	m.bundleMu.Lock()
	defer m.bundleMu.Unlock()
	return slices.Clone(m.bundle)
}

// TrustOwnDomain sets b's bundle for the own trust domain to the PKI
// mount's trusted issuers (Client.TrustBundle: own key, not revoked) plus
// extra (e.g. a trust_bundles file for the own
// domain, for own systems certified by another CA), and keeps it so until
// Close: after each certificate renewal the issuers are read again and
// the domain's pool in b is replaced at once (identity.Bundles.Set), so
// peers certified by an old and by a new issuer both verify during a
// rotation, an issuer deleted from the mount or revoked stops being
// trusted, and no established connection is dropped. Call it once.
func (m *Material) TrustOwnDomain(b *identity.Bundles, extra ...*x509.Certificate) {
	m.bundleMu.Lock()
	defer m.bundleMu.Unlock()
	m.sink, m.extra = b, slices.Clone(extra)
	b.Set(m.trustDomain, append(slices.Clone(m.extra), m.bundle...)...)
}

// RefreshOwnBundle reads the PKI mount's issuers now and, if they
// changed, updates OwnBundle and the bundle TrustOwnDomain keeps. On error
// the current bundle stays. It runs after every certificate renewal; call
// it to pick up a rotation sooner.
func (m *Material) RefreshOwnBundle(ctx context.Context) error {
	certs, err := m.Client.TrustBundle(ctx)
	if err != nil {
		return err
	}
	m.bundleMu.Lock()
	defer m.bundleMu.Unlock()
	if sameCerts(certs, m.bundle) {
		return nil
	}
	m.bundle = certs
	if m.sink != nil {
		m.sink.Set(m.trustDomain, append(slices.Clone(m.extra), certs...)...)
	}
	subjects := make([]string, len(certs))
	for i, c := range certs {
		subjects[i] = c.Subject.String()
	}
	m.logger.Info("own trust bundle changed", "trust_domain", m.trustDomain, "issuers", len(certs), "subjects", subjects)
	return nil
}

func sameCerts(a, b []*x509.Certificate) bool {
	if len(a) != len(b) {
		return false
	}
	in := make(map[string]bool, len(a))
	for _, c := range a {
		in[string(c.Raw)] = true
	}
	for _, c := range b {
		if !in[string(c.Raw)] {
			return false
		}
	}
	return true
}

// Close stops certificate, bundle and token renewal. The KeyPair keeps
// its last certificate, the bundles their last pool.
func (m *Material) Close() error {
	m.cancel() // first: a refresh in progress must not hold up stopRenew
	if m.stopRenew != nil {
		m.stopRenew()
	}
	return m.Client.Close()
}
