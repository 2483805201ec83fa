package identity_test

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/borderlink/borderlink/internal/devca"
	"github.com/borderlink/borderlink/internal/identity"
)

func TestBundlesAddPEMFile(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	leafPEM, keyPEM, err := p.nl.Issue(nlGateway.String(), devca.LeafOptions{})
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"nl.pem":       p.nl.CertPEM(),
		"two.pem":      append(p.nl.CertPEM(), p.xx.CertPEM()...),
		"empty.pem":    nil,
		"key.pem":      append(p.nl.CertPEM(), keyPEM...),
		"trailing.pem": append(p.nl.CertPEM(), "garbage"...),
		"leaf.pem":     leafPEM,
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		domain, file string
		wantErr      string // substring; "" for success
	}{
		{nlDomain, "nl.pem", ""},
		{nlDomain, "two.pem", ""},
		{nlDomain, "leaf.pem", ""}, // a pinned leaf is a legitimate, if odd, bundle
		{nlDomain, "missing.pem", "missing.pem"},
		{nlDomain, "empty.pem", "no certificates"},
		{nlDomain, "key.pem", `unexpected PEM block "PRIVATE KEY"`},
		{nlDomain, "trailing.pem", "trailing data"},
		{"NL.customs.example", "nl.pem", `invalid trust domain "NL.customs.example"`},
	}
	for _, tt := range tests {
		b := identity.NewBundles()
		path := filepath.Join(dir, tt.file)
		err := b.AddPEMFile(tt.domain, path)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("AddPEMFile(%s, %s) error = %v; want nil", tt.domain, tt.file, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), path)):
			t.Errorf("AddPEMFile(%s, %s) error = %v; want one naming the file and containing %q", tt.domain, tt.file, err, tt.wantErr)
		}
		if got, want := b.Has(tt.domain), tt.wantErr == ""; got != want {
			t.Errorf("after AddPEMFile(%s, %s): Has = %v; want %v", tt.domain, tt.file, got, want)
		}
	}
}

func TestBundlesDomains(t *testing.T) {
	p := newPKI(t)
	b := identity.NewBundles()
	b.Add(sgDomain, p.sg.Cert)
	b.Add(nlDomain, p.nl.Cert)
	b.Add(xxDomain) // no certificates: stays unknown
	b.Add(xxDomain, nil)
	if got, want := b.Domains(), []string{nlDomain, sgDomain}; !slices.Equal(got, want) {
		t.Errorf("Domains() = %v; want %v", got, want)
	}
	if got, want := b.Has(xxDomain), false; got != want {
		t.Errorf("Has(%s) = %v; want %v", xxDomain, got, want)
	}

	// Adding a second CA keeps the first: bundles grow during CA rotation.
	leaf := issue(t, p.nl, nlGateway.String(), devca.LeafOptions{})
	newNL, err := devca.NewCA(nlDomain, p.now)
	if err != nil {
		t.Fatal(err)
	}
	b.Add(nlDomain, newNL.Cert)
	if _, err := b.Verify(leaf.Certificate, x509.ExtKeyUsageClientAuth, time.Time{}); err != nil {
		t.Errorf("Verify(leaf of first NL CA) after adding second = %v; want nil", err)
	}
}

// TestDevLayout checks that what `borderlink certs dev` writes loads here
// and verifies across domains.
func TestDevLayout(t *testing.T) {
	dir := t.TempDir()
	if err := devca.Generate(dir, []string{nlDomain, sgDomain}, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	b := identity.NewBundles()
	for _, d := range []string{nlDomain, sgDomain} {
		if err := b.AddPEMFile(d, filepath.Join(dir, devca.BundleDir, d+".pem")); err != nil {
			t.Fatal(err)
		}
	}
	kp, err := identity.LoadKeyPair(filepath.Join(dir, sgDomain, "gateway.pem"), filepath.Join(dir, sgDomain, "gateway-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := kp.ID(); err != nil || got != sgGateway {
		t.Errorf("KeyPair.ID() = %v, %v; want %v", got, err, sgGateway)
	}
	if got, err := b.Verify(kp.Certificate().Certificate, x509.ExtKeyUsageServerAuth, time.Time{}); err != nil || got != sgGateway {
		t.Errorf("Verify(SG gateway) = %v, %v; want %v", got, err, sgGateway)
	}

	// A key pair whose certificate carries no SPIFFE ID is refused at load.
	if _, err := identity.LoadKeyPair(filepath.Join(dir, sgDomain, devca.CAFile), filepath.Join(dir, sgDomain, devca.CAKeyFile)); err == nil {
		t.Error("LoadKeyPair(CA certificate) error = nil; want an error")
	}
	if _, err := identity.LoadKeyPair(filepath.Join(dir, "missing.pem"), filepath.Join(dir, "missing-key.pem")); err == nil || !strings.Contains(err.Error(), "missing.pem") {
		t.Errorf("LoadKeyPair(missing) error = %v; want one naming the file", err)
	}
	var empty identity.KeyPair
	if _, err := empty.ID(); err == nil {
		t.Error("empty KeyPair ID() error = nil; want an error")
	}
}
