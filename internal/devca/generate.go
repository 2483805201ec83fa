package devca

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/borderlink/borderlink/internal/identity"
)

// Layout names under Generate's output directory.
const (
	BundleDir = "bundle" // DIR/bundle/<domain>.pem
	CAFile    = "ca.pem"
	CAKeyFile = "ca-key.pem"

	dirModePrivate = 0o700 // holds keys
	dirModePublic  = 0o755
	certMode       = 0o644
	keyMode        = 0o600
)

// devLeaf is one certificate Generate issues in each domain.
type devLeaf struct {
	file string // base name: <file>.pem, <file>-key.pem
	id   func(domain string) identity.ID
	opts LeafOptions
}

var clientOnly = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}

// devLeaves returns the leaves of the development layout. Only the gateway
// both serves and calls; the others are clients, and get only client auth so
// a demo cannot accidentally run a server as an agency.
func devLeaves() []devLeaf {
	return []devLeaf{
		{"gateway", identity.GatewayID, LeafOptions{
			DNSNames: []string{"localhost"},
			IPs:      []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		}},
		{"agency-health", named(identity.KindAgency, "health"), LeafOptions{ExtKeyUsage: clientOnly}},
		{"auditor-dpa", named(identity.KindAuditor, "dpa"), LeafOptions{ExtKeyUsage: clientOnly}},
		// The identity the CLI uses to call its own gateway's Local API.
		{"system-cli", named(identity.KindSystem, "cli"), LeafOptions{ExtKeyUsage: clientOnly}},
	}
}

func named(kind, name string) func(string) identity.ID {
	return func(domain string) identity.ID { return identity.ID{TrustDomain: domain, Kind: kind, Name: name} }
}

// Generate writes the development layout for `borderlink certs dev`:
//
//	DIR/<domain>/ca.pem, ca-key.pem         the domain's CA
//	DIR/<domain>/gateway.pem, -key.pem      spiffe://<domain>/gateway, DNS localhost, IPs 127.0.0.1 and ::1
//	DIR/<domain>/agency-health.pem, -key    spiffe://<domain>/agency/health
//	DIR/<domain>/auditor-dpa.pem, -key      spiffe://<domain>/auditor/dpa
//	DIR/<domain>/system-cli.pem, -key       spiffe://<domain>/system/cli
//	DIR/bundle/<domain>.pem                 the domain's trust bundle (its CA certificate)
//
// Keys are 0600 and domain directories 0700; certificates and DIR/bundle are
// world-readable. Files are replaced atomically.
//
// Generate is idempotent: an existing CA in DIR/<domain> is reused, so
// re-running does not invalidate bundles already handed to partners, and the
// leaf certificates are issued afresh. All domains are validated before
// anything is written. A nil logger discards.
func Generate(dir string, domains []string, now time.Time, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := validateDomains(domains); err != nil {
		return err
	}
	bundleDir := filepath.Join(dir, BundleDir)
	if err := mkdir(bundleDir, dirModePublic); err != nil {
		return fmt.Errorf("generate dev certificates in %s: %w", dir, err)
	}
	for _, domain := range domains {
		if err := generateDomain(dir, domain, now, logger); err != nil {
			return fmt.Errorf("generate dev certificates for %s in %s: %w", domain, dir, err)
		}
	}
	return nil
}

func validateDomains(domains []string) error {
	if len(domains) == 0 {
		return errors.New("generate dev certificates: no domains given")
	}
	seen := make(map[string]bool, len(domains))
	for _, d := range domains {
		if err := identity.ValidateTrustDomain(d); err != nil {
			return fmt.Errorf("generate dev certificates: domain %q: %w", d, err)
		}
		if d == BundleDir {
			return fmt.Errorf("generate dev certificates: domain %q: reserved for the bundle directory", d)
		}
		if seen[d] {
			return fmt.Errorf("generate dev certificates: domain %q given twice", d)
		}
		seen[d] = true
	}
	return nil
}

func generateDomain(dir, domain string, now time.Time, logger *slog.Logger) error {
	domainDir := filepath.Join(dir, domain)
	if err := mkdir(domainDir, dirModePrivate); err != nil {
		return err
	}
	ca, err := loadOrCreateCA(domainDir, domain, now, logger)
	if err != nil {
		return err
	}
	for _, l := range devLeaves() {
		id := l.id(domain)
		certPEM, keyPEM, err := ca.Issue(id.String(), l.opts)
		if err != nil {
			return err
		}
		certPath := filepath.Join(domainDir, l.file+".pem")
		// Key first: a crash in between leaves an old certificate with a key
		// that does not match it, which tls.LoadX509KeyPair reports clearly.
		if err := writeFile(filepath.Join(domainDir, l.file+"-key.pem"), keyPEM, keyMode); err != nil {
			return err
		}
		if err := writeFile(certPath, certPEM, certMode); err != nil {
			return err
		}
		logger.Info("issued development certificate", slog.String("id", id.String()), slog.String("path", certPath))
	}
	bundlePath := filepath.Join(dir, BundleDir, domain+".pem")
	if err := writeFile(bundlePath, ca.CertPEM(), certMode); err != nil {
		return err
	}
	logger.Info("wrote trust bundle", slog.String("domain", domain), slog.String("path", bundlePath))
	return nil
}

func loadOrCreateCA(domainDir, domain string, now time.Time, logger *slog.Logger) (*CA, error) {
	certPath := filepath.Join(domainDir, CAFile)
	keyPath := filepath.Join(domainDir, CAKeyFile)
	certExists, err := exists(certPath)
	if err != nil {
		return nil, err
	}
	keyExists, err := exists(keyPath)
	if err != nil {
		return nil, err
	}
	switch {
	case certExists && keyExists:
		ca, err := LoadCA(domain, certPath, keyPath, now)
		if err != nil {
			return nil, err
		}
		logger.Info("reusing development CA", slog.String("domain", domain), slog.String("path", certPath))
		return ca, nil
	case certExists != keyExists:
		// Making a new CA here would silently invalidate the bundle partners
		// already hold; let the operator decide.
		have, missing := certPath, keyPath
		if keyExists {
			have, missing = keyPath, certPath
		}
		return nil, fmt.Errorf("found %s but not %s: restore it, or remove %s to make a new CA", have, missing, have)
	}
	ca, err := NewCA(domain, now)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return nil, fmt.Errorf("marshal CA key: %w", err)
	}
	if err := writeFile(keyPath, pemEncode(pemPrivateKey, keyDER), keyMode); err != nil {
		return nil, err
	}
	if err := writeFile(certPath, ca.CertPEM(), certMode); err != nil {
		return nil, err
	}
	logger.Info("created development CA", slog.String("domain", domain), slog.String("path", certPath))
	return ca, nil
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, err
	}
}

// mkdir creates dir with mode, and sets mode on it if it already exists:
// MkdirAll honours the umask and leaves existing directories alone.
func mkdir(dir string, mode os.FileMode) error {
	if err := os.MkdirAll(dir, mode); err != nil {
		return err
	}
	return os.Chmod(dir, mode)
}

// writeFile replaces path atomically, so an interrupted run never leaves a
// truncated key or certificate, and sets mode regardless of the umask.
func writeFile(path string, data []byte, mode os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
