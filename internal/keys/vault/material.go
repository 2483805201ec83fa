package vault

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"

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
	// OwnBundle is the own trust domain's CA, from the PKI mount.
	OwnBundle []*x509.Certificate
	// PseudonymKey is the pseudonymisation key for release.NewPseudonymizer.
	PseudonymKey []byte
	// Signer signs checkpoints and receipts (an audit.Signer).
	Signer *Signer
	// VerifierKeys are the verifier keys of every version of the signing
	// key, oldest first; the last is Signer's. Publish them all.
	VerifierKeys []string

	stopRenew func()
}

// Load logs in to Vault and loads a gateway's key material: certificate
// for spiffe://<trustDomain>/gateway (with renewal started), own CA,
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
	m := &Material{Client: c}
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	m.OwnBundle, err = c.TrustBundle(ctx)
	if err != nil {
		return nil, err
	}
	m.KeyPair, m.stopRenew, err = keys.RenewingKeyPair(ctx, c.CertIssuer(identity.GatewayID(trustDomain)), keys.RenewOptions{Logger: logger})
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

// Close stops certificate and token renewal. The KeyPair keeps its last
// certificate.
func (m *Material) Close() error {
	if m.stopRenew != nil {
		m.stopRenew()
	}
	return m.Client.Close()
}
