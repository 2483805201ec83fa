package demo

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/devca"
	"github.com/borderlink/borderlink/internal/identity"
	"github.com/borderlink/borderlink/internal/keys/vault"
	"github.com/borderlink/borderlink/internal/keys/vault/devserver"
)

// The Vault variant of the demo (`borderlink demo --vault-bin PATH`, `make
// demo-vault`): one Vault dev server on loopback holds, for each of the
// three administrations, its own PKI mount (its CA and the gateway's
// certificates), transit key (audit signatures) and KV mount (the
// pseudonymisation key), set up with vault.InitDev as `borderlink vault
// init-dev` does. The gateways log in with AppRole; no gateway private key,
// audit signing key or pseudonymisation key is written to disk. Only the
// client identities the tour uses (system/cli, agency/health, auditor/dpa)
// stay files, issued by a file CA per domain whose key is never written.

// devVault is the demo's Vault dev server.
type devVault struct {
	*devserver.Server // its root token is random, never printed or written
}

// startVault starts `vault server -dev` on a free loopback port with dir as
// its working directory and HOME, and waits until it is healthy. Its output
// goes to dir/vault.log. The kernel kills it if the demo dies.
func startVault(ctx context.Context, bin, dir string) (*devVault, error) {
	srv, err := devserver.Start(ctx, bin, devserver.Options{Dir: dir, RootToken: "demo-" + rand.Text()})
	if err != nil {
		return nil, err
	}
	// The dev server saves its root token in HOME; the demo keeps it in
	// memory only.
	os.Remove(filepath.Join(dir, ".vault-token"))
	return &devVault{srv}, nil
}

// stop stops the server and removes the root token file it may have
// written again. Safe to call more than once.
func (v *devVault) stop() {
	v.Stop()
	os.Remove(filepath.Join(v.Dir, ".vault-token"))
}

// vaultDomain is what the demo set up in Vault for one administration.
type vaultDomain struct {
	setup *vault.DevSetup
	// caFile is the domain's Vault PKI CA, the bundle partners trust.
	caFile string
	// secretIDFile holds the gateway's AppRole secret ID (0600).
	secretIDFile string
}

// vaultMounts returns InitDev's options for domain in the shared dev
// server: every administration has its own PKI, transit and KV mounts and
// its own policy and AppRole role (one AppRole mount is shared).
func vaultMounts(domain, secretIDFile string) vault.InitDevOptions {
	c := strings.ToLower(countryOf(domain))
	return vault.InitDevOptions{
		TrustDomain:  domain,
		SignerName:   audit.Origin(domain),
		SecretIDFile: secretIDFile,
		PKIMount:     "pki-" + c,
		TransitMount: "transit-" + c,
		KVMount:      "kv-" + c,
		Name:         "borderlink-gateway-" + c,
		CertTTL:      time.Hour,
	}
}

// setupVault runs InitDev for every domain and exports each domain's Vault
// CA to dir/vault/ca/<domain>.pem.
func setupVault(ctx context.Context, v *devVault, dir string) (map[string]*vaultDomain, error) {
	caDir := filepath.Join(dir, "vault", "ca")
	if err := os.MkdirAll(caDir, 0o755); err != nil {
		return nil, err
	}
	out := map[string]*vaultDomain{}
	for _, d := range domains {
		ddir := filepath.Join(dir, d)
		if err := os.MkdirAll(ddir, 0o700); err != nil {
			return nil, err
		}
		vd := &vaultDomain{caFile: filepath.Join(caDir, d+".pem"), secretIDFile: filepath.Join(ddir, "vault-secret-id")}
		s, err := vault.InitDev(ctx, v.Addr, v.RootToken, vaultMounts(d, vd.secretIDFile))
		if err != nil {
			return nil, fmt.Errorf("set up vault for %s: %w", d, err)
		}
		vd.setup = s
		if err := os.WriteFile(vd.caFile, []byte(s.CACertPEM), 0o644); err != nil {
			return nil, err
		}
		out[d] = vd
	}
	return out, nil
}

// clientCerts writes the client identities of the tour (system/cli,
// agency/health, auditor/dpa) for every domain, issued by a file CA whose
// private key stays in memory, and each domain's bundle for its own
// clients and gateway: that file CA plus the domain's Vault PKI CA (which
// issued the gateway's certificate the clients must verify).
func clientCerts(certDir string, vds map[string]*vaultDomain, now time.Time) error {
	leaves := []struct{ file, kind, name string }{
		{"agency-health", identity.KindAgency, "health"},
		{"auditor-dpa", identity.KindAuditor, "dpa"},
		{"system-cli", identity.KindSystem, "cli"},
	}
	clientOnly := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if err := os.MkdirAll(filepath.Join(certDir, "bundle"), 0o755); err != nil {
		return err
	}
	for _, d := range domains {
		ca, err := devca.NewCA(d, now)
		if err != nil {
			return err
		}
		ddir := filepath.Join(certDir, d)
		if err := os.MkdirAll(ddir, 0o700); err != nil {
			return err
		}
		for _, l := range leaves {
			id := identity.ID{TrustDomain: d, Kind: l.kind, Name: l.name}
			certPEM, keyPEM, err := ca.Issue(id.String(), devca.LeafOptions{ExtKeyUsage: clientOnly})
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(ddir, l.file+"-key.pem"), keyPEM, 0o600); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(ddir, l.file+".pem"), certPEM, 0o644); err != nil {
				return err
			}
		}
		if err := os.WriteFile(filepath.Join(ddir, "ca.pem"), ca.CertPEM(), 0o644); err != nil {
			return err
		}
		bundle := append(bytes.Clone(ca.CertPEM()), []byte(vds[d].setup.CACertPEM)...)
		if err := os.WriteFile(filepath.Join(certDir, "bundle", d+".pem"), bundle, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// vaultConfig is the part of a Vault-backed gateway's config that differs
// from the file variant: trust bundles (own: file CA of the own clients and
// Vault CA; partners: their Vault CA), peers' audit keys from transit, and
// the vault: section instead of tls:, pseudonymization: and audit:.
func vaultConfig(n *node, nodes []*node, certDir string, vds map[string]*vaultDomain) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "trust_bundles:\n")
	for _, d := range domains {
		f := vds[d].caFile
		if d == n.domain {
			f = filepath.Join(certDir, "bundle", d+".pem")
		}
		fmt.Fprintf(&b, "  %s: %s\n", d, f)
	}
	fmt.Fprintf(&b, "peers:\n")
	for _, m := range nodes {
		if m != n {
			fmt.Fprintf(&b, "  %s:\n    address: %s\n    audit_key: %s\n", m.domain, m.addr, vds[m.domain].setup.VerifierKey)
		}
	}
	snippet, err := vds[n.domain].setup.Snippet()
	if err != nil {
		return "", err
	}
	fmt.Fprintf(&b, "# Every key of this gateway comes from Vault; the AppRole secret ID is in\n# %s, never in this file.\n", vds[n.domain].secretIDFile)
	b.WriteString(snippet)
	return b.String(), nil
}

// keySource describes where a Vault-backed gateway's keys come from, as
// shown at the start of the tour.
type keySource struct {
	serial   string
	notAfter time.Time
	pki      string
	transit  string
	verifier string
}

// vaultKeySources reads each gateway's certificate from a TLS handshake
// (it exists only in the gateway's memory) and names its Vault material.
func vaultKeySources(ctx context.Context, nodes []*node, certDir string, vds map[string]*vaultDomain) (map[string]keySource, error) {
	out := map[string]keySource{}
	for _, n := range nodes {
		cert, err := peerCertificate(ctx, n, certDir)
		if err != nil {
			return nil, err
		}
		c := vds[n.domain].setup.Config
		out[n.domain] = keySource{
			serial:   formatSerial(cert),
			notAfter: cert.NotAfter,
			pki:      c.PKI.Mount,
			transit:  c.Transit.Mount + "/keys/" + c.Transit.Key,
			verifier: vds[n.domain].setup.VerifierKey,
		}
	}
	return out, nil
}

func peerCertificate(ctx context.Context, n *node, certDir string) (*x509.Certificate, error) {
	kp, err := identity.LoadKeyPair(filepath.Join(certDir, n.domain, "system-cli.pem"), filepath.Join(certDir, n.domain, "system-cli-key.pem"))
	if err != nil {
		return nil, err
	}
	b := identity.NewBundles()
	if err := b.AddPEMFile(n.domain, filepath.Join(certDir, "bundle", n.domain+".pem")); err != nil {
		return nil, err
	}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: identity.ClientTLSConfig(kp, b, identity.GatewayID(n.domain))}
	conn, err := d.DialContext(ctx, "tcp", n.addr)
	if err != nil {
		return nil, fmt.Errorf("read the certificate of gateway %s: %w", n.domain, err)
	}
	defer conn.Close()
	certs := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return nil, fmt.Errorf("gateway %s presented no certificate", n.domain)
	}
	return certs[0], nil
}

func formatSerial(c *x509.Certificate) string {
	b := c.SerialNumber.Bytes()
	parts := make([]string, len(b))
	for i, x := range b {
		parts[i] = fmt.Sprintf("%02x", x)
	}
	return strings.Join(parts, ":")
}

// shortKey shortens a verifier key "name+hash+key" to "name+hash" (a
// name has no '+'; the base64 key may).
func shortKey(vkey string) string {
	if f := strings.SplitN(vkey, "+", 3); len(f) == 3 {
		return f[0] + "+" + f[1]
	}
	return vkey
}

// roughly prints d in whole minutes: "1h", "59m", "1h5m".
func roughly(d time.Duration) string {
	s := d.Round(time.Minute).String()
	s = strings.TrimSuffix(s, "0s")
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
