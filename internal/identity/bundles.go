package identity

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"
	"time"
)

// Bundles maps a trust domain to the CA certificates that may vouch for
// identities in that domain, like SPIFFE federation bundles. A certificate is
// only ever verified against the pool of the trust domain its own SPIFFE ID
// names, so one domain's CA can never vouch for another domain's identity.
//
// Bundles is safe for concurrent use; Add may be called while handshakes
// verify peers.
type Bundles struct {
	mu    sync.RWMutex
	pools map[string]*x509.CertPool
}

// NewBundles returns an empty set of bundles.
func NewBundles() *Bundles {
	return &Bundles{pools: make(map[string]*x509.CertPool)}
}

// Add adds CA certificates to domain's bundle. Nil certificates are ignored;
// adding none leaves the domain unknown.
func (b *Bundles) Add(domain string, certs ...*x509.Certificate) {
	certs = slices.DeleteFunc(slices.Clone(certs), func(c *x509.Certificate) bool { return c == nil })
	if len(certs) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pools == nil {
		b.pools = make(map[string]*x509.CertPool)
	}
	// Pools handed out to in-flight verifications are never mutated: build a
	// new one and swap it in.
	pool := x509.NewCertPool()
	if old, ok := b.pools[domain]; ok {
		pool = old.Clone()
	}
	for _, c := range certs {
		pool.AddCert(c)
	}
	b.pools[domain] = pool
}

// Set replaces domain's bundle with certs, for a bundle that follows a CA
// rotation: handshakes verifying now keep the pool they started with, the
// next ones use the new one, and established connections are not touched
// (a certificate is verified once, at the handshake). Nil certificates are
// ignored; setting none leaves the bundle as it is, so that a source that
// returned nothing cannot make a domain unknown.
func (b *Bundles) Set(domain string, certs ...*x509.Certificate) {
	certs = slices.DeleteFunc(slices.Clone(certs), func(c *x509.Certificate) bool { return c == nil })
	if len(certs) == 0 {
		return
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pools == nil {
		b.pools = make(map[string]*x509.CertPool)
	}
	b.pools[domain] = pool
}

// AddPEMFile adds the CA certificates in a PEM file to domain's bundle. The
// file must hold at least one certificate and nothing but certificates.
func (b *Bundles) AddPEMFile(domain, path string) error {
	if err := ValidateTrustDomain(domain); err != nil {
		return fmt.Errorf("load bundle %s: %w", path, err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("load bundle %s: %w", path, err)
	}
	certs, err := parsePEMCertificates(data)
	if err != nil {
		return fmt.Errorf("load bundle %s for %s: %w", path, domain, err)
	}
	b.Add(domain, certs...)
	return nil
}

// ReadPEMCertificates reads the CA certificates in a PEM file with the
// checks of AddPEMFile (at least one certificate, nothing else), for a
// bundle assembled from several sources and then Set.
func ReadPEMCertificates(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load bundle %s: %w", path, err)
	}
	certs, err := parsePEMCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("load bundle %s: %w", path, err)
	}
	return certs, nil
}

func parsePEMCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			if len(bytes.TrimSpace(rest)) > 0 {
				return nil, errors.New("trailing data that is not PEM")
			}
			break
		}
		// A key or CSR in a trust bundle is an operator mistake worth
		// stopping for, not something to skip silently.
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q, want only CERTIFICATE", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no certificates")
	}
	return certs, nil
}

// Domains returns the trust domains that have a bundle, sorted.
func (b *Bundles) Domains() []string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return slices.Sorted(maps.Keys(b.pools))
}

// Has reports whether domain has a bundle.
func (b *Bundles) Has(domain string) bool {
	_, ok := b.pool(domain)
	return ok
}

func (b *Bundles) pool(domain string) (*x509.CertPool, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	p, ok := b.pools[domain]
	return p, ok
}

// Verify checks a presented chain (leaf first, as in
// tls.Config.VerifyPeerCertificate) for a peer acting with the given usage
// (x509.ExtKeyUsageClientAuth or x509.ExtKeyUsageServerAuth) at time now
// (zero means the current time), and returns the verified identity.
//
// Checks, in order, and the sentinel each failure wraps:
//   - no certificate: ErrNoCertificate
//   - leaf without URI SAN: ErrNoSPIFFEID
//   - malformed ID, or more than one URI SAN: ErrMalformedID
//   - ID's trust domain has no bundle: ErrUnknownTrustDomain
//   - leaf is a CA certificate, or the chain does not verify against that
//     domain's bundle alone: ErrUntrusted, except a certificate outside its
//     validity period: ErrExpired (x509 reports expiry before it looks for
//     an issuer, so an expired certificate from an unknown CA is ErrExpired)
//   - leaf's extended key usage does not list usage, or a CA in the chain
//     forbids it: ErrWrongUsage
func (b *Bundles) Verify(rawCerts [][]byte, usage x509.ExtKeyUsage, now time.Time) (ID, error) {
	return b.verify(rawCerts, usage, now, nil)
}

// verify is Verify, optionally requiring the leaf to claim want before any
// chain is checked, so a client never verifies a server against a bundle
// other than want's.
func (b *Bundles) verify(rawCerts [][]byte, usage x509.ExtKeyUsage, now time.Time, want *ID) (ID, error) {
	if len(rawCerts) == 0 {
		return ID{}, ErrNoCertificate
	}
	certs := make([]*x509.Certificate, len(rawCerts))
	for i, raw := range rawCerts {
		c, err := x509.ParseCertificate(raw)
		if err != nil {
			return ID{}, fmt.Errorf("%w: parse certificate %d: %w", ErrUntrusted, i, err)
		}
		certs[i] = c
	}
	leaf := certs[0]
	id, err := FromCertificate(leaf)
	if err != nil {
		return ID{}, err
	}
	if want != nil && id != *want {
		return ID{}, fmt.Errorf("%w: want %s, got %s", ErrUnexpectedID, *want, id)
	}
	pool, ok := b.pool(id.TrustDomain)
	if !ok {
		return ID{}, fmt.Errorf("%w %q (peer %s)", ErrUnknownTrustDomain, id.TrustDomain, id)
	}
	// A self-signed CA certificate carrying a SPIFFE ID would otherwise
	// verify as its own leaf if it were in the bundle.
	if leaf.IsCA || leaf.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 {
		return ID{}, fmt.Errorf("%w: %s: leaf is a CA certificate", ErrUntrusted, id)
	}
	intermediates := x509.NewCertPool()
	for _, c := range certs[1:] {
		intermediates.AddCert(c)
	}
	_, err = leaf.Verify(x509.VerifyOptions{
		Roots:         pool,
		Intermediates: intermediates,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	})
	if err != nil {
		if cie, ok := errors.AsType[x509.CertificateInvalidError](err); ok {
			switch cie.Reason {
			case x509.Expired:
				return ID{}, fmt.Errorf("%w: %s: %w", ErrExpired, id, err)
			case x509.IncompatibleUsage:
				return ID{}, fmt.Errorf("%w: %s for %s: %w", ErrWrongUsage, id, usageName(usage), err)
			}
		}
		return ID{}, fmt.Errorf("%w: %s: %w", ErrUntrusted, id, err)
	}
	// x509 treats a leaf without an EKU extension as good for anything;
	// Borderlink wants the issuer to have said which role the key plays.
	if !slices.Contains(leaf.ExtKeyUsage, usage) {
		return ID{}, fmt.Errorf("%w: %s: leaf does not list %s", ErrWrongUsage, id, usageName(usage))
	}
	return id, nil
}

func usageName(u x509.ExtKeyUsage) string {
	switch u {
	case x509.ExtKeyUsageClientAuth:
		return "client auth"
	case x509.ExtKeyUsageServerAuth:
		return "server auth"
	default:
		return fmt.Sprintf("ext key usage %d", u)
	}
}
