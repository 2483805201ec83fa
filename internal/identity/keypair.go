package identity

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync/atomic"
)

// KeyPair is the gateway's own certificate and key. It can be replaced at
// runtime (rotation); TLS configs built by this package read it on every
// handshake, so a Set takes effect for the next connection without a restart.
// The zero value holds no certificate.
type KeyPair struct {
	cert atomic.Pointer[tls.Certificate]
}

// LoadKeyPair loads a PEM certificate chain and private key, and checks that
// the leaf carries a valid SPIFFE ID: a gateway started with a certificate no
// peer would accept should fail at start, not on every handshake.
func LoadKeyPair(certFile, keyFile string) (*KeyPair, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load key pair %s, %s: %w", certFile, keyFile, err)
	}
	kp := NewKeyPair(cert)
	if _, err := kp.ID(); err != nil {
		return nil, fmt.Errorf("load key pair %s: %w", certFile, err)
	}
	return kp, nil
}

// NewKeyPair returns a KeyPair holding cert.
func NewKeyPair(cert tls.Certificate) *KeyPair {
	k := &KeyPair{}
	k.Set(cert)
	return k
}

// Set replaces the certificate. Handshakes already under way keep the old one.
func (k *KeyPair) Set(cert tls.Certificate) {
	if cert.Leaf == nil && len(cert.Certificate) > 0 {
		// Parse once here rather than on every ID call; a bad leaf is
		// reported by ID.
		if leaf, err := x509.ParseCertificate(cert.Certificate[0]); err == nil {
			cert.Leaf = leaf
		}
	}
	k.cert.Store(&cert)
}

// Certificate returns the current certificate, nil if none was set. Callers
// must not modify it.
func (k *KeyPair) Certificate() *tls.Certificate {
	return k.cert.Load()
}

// ID returns the SPIFFE ID of the current leaf certificate.
func (k *KeyPair) ID() (ID, error) {
	c := k.Certificate()
	if c == nil || len(c.Certificate) == 0 {
		return ID{}, fmt.Errorf("%w: key pair is empty", ErrNoCertificate)
	}
	if c.Leaf == nil {
		return ID{}, fmt.Errorf("%w: key pair leaf does not parse", ErrNoCertificate)
	}
	return FromCertificate(c.Leaf)
}

// current is Certificate for TLS callbacks, which must fail the handshake
// rather than send no certificate.
func (k *KeyPair) current() (*tls.Certificate, error) {
	c := k.Certificate()
	if c == nil || len(c.Certificate) == 0 {
		return nil, fmt.Errorf("%w: key pair is empty", ErrNoCertificate)
	}
	return c, nil
}
