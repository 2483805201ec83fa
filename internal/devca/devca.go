// Package devca is a development certificate authority for Borderlink: one
// self-signed CA per trust domain and leaf certificates carrying SPIFFE IDs,
// for `borderlink certs dev`, demos and tests. It is not for production: keys
// are generated and stored in plain files.
//
// Each CA is name-constrained to URIs in its own trust domain, so even a CA
// put in the wrong bundle cannot vouch for another domain's identities.
// Issue does not validate the SPIFFE IDs it is given, so tests can make
// certificates that a verifier must refuse.
package devca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"slices"
	"time"

	"github.com/borderlink/borderlink/internal/identity"
)

const (
	caValidityYears = 10
	// clockSkew backdates certificates so a peer whose clock is slightly
	// behind accepts them straight away.
	clockSkew       = 5 * time.Minute
	leafValidity    = 1 // year
	organization    = "Borderlink development"
	pemCertificate  = "CERTIFICATE"
	pemPrivateKey   = "PRIVATE KEY"
	serialLimitBits = 128
)

// CA is a development certificate authority for one trust domain.
type CA struct {
	Domain string
	Cert   *x509.Certificate
	Key    crypto.Signer
	// now is the reference time for leaf validity defaults.
	now time.Time
}

// LeafOptions shapes a leaf certificate. The zero value gives a certificate
// for the ID passed to Issue, valid from now-5m to now+1 year, for client and
// server auth.
type LeafOptions struct {
	URIs        []string // SAN URIs; default the SPIFFE ID given to Issue
	NoURI       bool     // issue without any URI SAN (negative tests)
	DNSNames    []string
	IPs         []net.IP
	NotBefore   time.Time          // default now-5m
	NotAfter    time.Time          // default now+1 year
	ExtKeyUsage []x509.ExtKeyUsage // default ClientAuth+ServerAuth
}

// NewCA makes a CA for domain: ECDSA P-256, self-signed, valid for 10 years
// from now, path length 0 (it signs leaves only). now is also the reference
// time for the leaves it issues.
func NewCA(domain string, now time.Time) (*CA, error) {
	if err := identity.ValidateTrustDomain(domain); err != nil {
		return nil, fmt.Errorf("new CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("new CA %s: generate key: %w", domain, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("new CA %s: %w", domain, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: domain + " development CA", Organization: []string{organization}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.AddDate(caValidityYears, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		PermittedURIDomains:   []string{domain},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("new CA %s: create certificate: %w", domain, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("new CA %s: parse certificate: %w", domain, err)
	}
	return &CA{Domain: domain, Cert: cert, Key: key, now: now}, nil
}

// LoadCA loads a CA written by Generate (or a CA with the same properties)
// for domain, and checks it can still issue at now.
func LoadCA(domain, certFile, keyFile string, now time.Time) (*CA, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("load CA %s: %w", domain, err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("load CA %s: %w", domain, err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA %s from %s, %s: %w", domain, certFile, keyFile, err)
	}
	cert := pair.Leaf
	if cert == nil {
		if cert, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("load CA %s from %s: %w", domain, certFile, err)
		}
	}
	key, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("load CA %s from %s: key of type %T cannot sign", domain, keyFile, pair.PrivateKey)
	}
	switch {
	case !cert.IsCA:
		return nil, fmt.Errorf("load CA %s from %s: not a CA certificate", domain, certFile)
	case len(cert.PermittedURIDomains) > 0 && !slices.Equal(cert.PermittedURIDomains, []string{domain}):
		return nil, fmt.Errorf("load CA %s from %s: CA is constrained to %v, not %s", domain, certFile, cert.PermittedURIDomains, domain)
	case now.Before(cert.NotBefore) || !now.Before(cert.NotAfter):
		return nil, fmt.Errorf("load CA %s from %s: valid %s to %s, not at %s; remove %s and %s to make a new CA (partners then need the new bundle)",
			domain, certFile, cert.NotBefore.Format(time.RFC3339), cert.NotAfter.Format(time.RFC3339), now.Format(time.RFC3339), certFile, keyFile)
	}
	return &CA{Domain: domain, Cert: cert, Key: key, now: now}, nil
}

// CertPEM returns the CA certificate in PEM: the domain's trust bundle.
func (ca *CA) CertPEM() []byte {
	return pemEncode(pemCertificate, ca.Cert.Raw)
}

// Issue issues a leaf certificate for id and returns it and its new private
// key (PKCS #8) in PEM. id is not validated.
func (ca *CA) Issue(id string, opts LeafOptions) (certPEM, keyPEM []byte, err error) {
	cert, key, err := ca.issue(id, opts)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("issue %s: marshal key: %w", id, err)
	}
	return pemEncode(pemCertificate, cert.Raw), pemEncode(pemPrivateKey, der), nil
}

// IssueTLS is Issue returning a tls.Certificate (leaf only, Leaf set).
func (ca *CA) IssueTLS(id string, opts LeafOptions) (tls.Certificate, error) {
	cert, key, err := ca.issue(id, opts)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}, nil
}

func (ca *CA) issue(id string, opts LeafOptions) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	if opts.NoURI && len(opts.URIs) > 0 {
		return nil, nil, fmt.Errorf("issue %s: NoURI and URIs both set", id)
	}
	rawURIs := opts.URIs
	if len(rawURIs) == 0 && !opts.NoURI {
		rawURIs = []string{id}
	}
	var uris []*url.URL
	for _, s := range rawURIs {
		u, err := url.Parse(s)
		if err != nil {
			return nil, nil, fmt.Errorf("issue %s: URI SAN %q: %w", id, s, err)
		}
		uris = append(uris, u)
	}
	notBefore, notAfter := opts.NotBefore, opts.NotAfter
	if notBefore.IsZero() {
		notBefore = ca.now.Add(-clockSkew)
	}
	if notAfter.IsZero() {
		notAfter = ca.now.AddDate(leafValidity, 0, 0)
	}
	eku := opts.ExtKeyUsage
	if eku == nil {
		eku = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("issue %s: generate key: %w", id, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, fmt.Errorf("issue %s: %w", id, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{organization}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           eku,
		BasicConstraintsValid: true,
		URIs:                  uris,
		DNSNames:              opts.DNSNames,
		IPAddresses:           opts.IPs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("issue %s: create certificate: %w", id, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("issue %s: parse certificate: %w", id, err)
	}
	return cert, key, nil
}

func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), serialLimitBits))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	// RFC 5280 wants a positive serial.
	return n.Add(n, big.NewInt(1)), nil
}

func pemEncode(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
