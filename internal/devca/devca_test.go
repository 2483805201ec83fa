package devca_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/borderlink/borderlink/internal/devca"
	"github.com/borderlink/borderlink/internal/identity"
)

var domains = []string{"nl.customs.example", "sg.customs.example"}

func TestNewCA(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	ca, err := devca.NewCA("nl.customs.example", now)
	if err != nil {
		t.Fatal(err)
	}
	c := ca.Cert
	if got, want := c.Subject.CommonName, "nl.customs.example development CA"; got != want {
		t.Errorf("CN = %q; want %q", got, want)
	}
	if !c.IsCA || c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("IsCA, MaxPathLen, MaxPathLenZero = %v, %d, %v; want true, 0, true", c.IsCA, c.MaxPathLen, c.MaxPathLenZero)
	}
	if got, want := c.NotAfter, now.AddDate(10, 0, 0); !got.Equal(want) {
		t.Errorf("NotAfter = %v; want %v", got, want)
	}
	if got, want := c.PublicKeyAlgorithm, x509.ECDSA; got != want {
		t.Errorf("key algorithm = %v; want %v", got, want)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	if _, err := devca.NewCA("NL.customs.example", now); err == nil || !strings.Contains(err.Error(), `"NL.customs.example"`) {
		t.Errorf("NewCA(uppercase) error = %v; want one naming the domain", err)
	}
}

func TestIssue(t *testing.T) {
	now := time.Now()
	ca, err := devca.NewCA("nl.customs.example", now)
	if err != nil {
		t.Fatal(err)
	}
	id := "spiffe://nl.customs.example/agency/health"
	tests := []struct {
		name     string
		opts     devca.LeafOptions
		wantURIs []string
		wantEKU  []x509.ExtKeyUsage
	}{
		{"defaults", devca.LeafOptions{}, []string{id},
			[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}},
		{"no URI", devca.LeafOptions{NoURI: true}, nil,
			[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}},
		{"explicit URIs and usage", devca.LeafOptions{
			URIs:        []string{"spiffe://x/gateway", "https://y/"},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}, []string{"spiffe://x/gateway", "https://y/"}, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certPEM, keyPEM, err := ca.Issue(id, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			pair, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				t.Fatalf("key pair does not load: %v", err)
			}
			leaf := pair.Leaf
			var uris []string
			for _, u := range leaf.URIs {
				uris = append(uris, u.String())
			}
			if !slices.Equal(uris, tt.wantURIs) {
				t.Errorf("URIs = %v; want %v", uris, tt.wantURIs)
			}
			if !slices.Equal(leaf.ExtKeyUsage, tt.wantEKU) {
				t.Errorf("ExtKeyUsage = %v; want %v", leaf.ExtKeyUsage, tt.wantEKU)
			}
			if leaf.IsCA {
				t.Error("leaf IsCA = true; want false")
			}
			if got, want := leaf.NotBefore, now.Add(-5*time.Minute).Truncate(time.Second); !got.Equal(want) {
				t.Errorf("NotBefore = %v; want %v", got, want)
			}
			if got, want := leaf.NotAfter, now.AddDate(1, 0, 0).Truncate(time.Second); !got.Equal(want) {
				t.Errorf("NotAfter = %v; want %v", got, want)
			}
			if err := leaf.CheckSignatureFrom(ca.Cert); err != nil {
				t.Errorf("leaf not signed by CA: %v", err)
			}
		})
	}
	if _, _, err := ca.Issue(id, devca.LeafOptions{NoURI: true, URIs: []string{id}}); err == nil {
		t.Error("Issue(NoURI and URIs) error = nil; want an error")
	}
}

func TestGenerate(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	if err := devca.Generate(dir, domains, now, nil); err != nil {
		t.Fatal(err)
	}
	checkLayout(t, dir, now)

	// A second run keeps each CA (partners' bundles stay valid) and issues
	// new leaves.
	before := snapshot(t, dir)
	later := now.Add(time.Hour)
	if err := devca.Generate(dir, domains, later, nil); err != nil {
		t.Fatal(err)
	}
	checkLayout(t, dir, later)
	after := snapshot(t, dir)
	for _, d := range domains {
		for _, f := range []string{
			filepath.Join(d, devca.CAFile), filepath.Join(d, devca.CAKeyFile), filepath.Join(devca.BundleDir, d+".pem"),
		} {
			if !bytes.Equal(before[f], after[f]) {
				t.Errorf("%s changed on re-run; want the CA reused", f)
			}
		}
		for _, f := range []string{filepath.Join(d, "gateway.pem"), filepath.Join(d, "gateway-key.pem")} {
			if bytes.Equal(before[f], after[f]) {
				t.Errorf("%s unchanged on re-run; want it re-issued", f)
			}
		}
	}
}

type wantFile struct {
	path string
	mode os.FileMode
	id   string // SPIFFE ID of a leaf certificate
}

func wantLayout() []wantFile {
	var files []wantFile
	for _, d := range domains {
		files = append(files,
			wantFile{path: d, mode: os.ModeDir | 0o700},
			wantFile{path: filepath.Join(d, "ca.pem"), mode: 0o644},
			wantFile{path: filepath.Join(d, "ca-key.pem"), mode: 0o600},
			wantFile{path: filepath.Join(devca.BundleDir, d+".pem"), mode: 0o644},
		)
		for _, leaf := range []struct{ file, id string }{
			{"gateway", "spiffe://" + d + "/gateway"},
			{"agency-health", "spiffe://" + d + "/agency/health"},
			{"auditor-dpa", "spiffe://" + d + "/auditor/dpa"},
			{"system-cli", "spiffe://" + d + "/system/cli"},
		} {
			files = append(files,
				wantFile{path: filepath.Join(d, leaf.file+".pem"), mode: 0o644, id: leaf.id},
				wantFile{path: filepath.Join(d, leaf.file+"-key.pem"), mode: 0o600},
			)
		}
	}
	return append(files, wantFile{path: devca.BundleDir, mode: os.ModeDir | 0o755})
}

func checkLayout(t *testing.T, dir string, at time.Time) {
	t.Helper()
	want := wantLayout()
	for _, f := range want {
		fi, err := os.Stat(filepath.Join(dir, f.path))
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if got := fi.Mode(); got != f.mode {
			t.Errorf("%s mode = %v; want %v", f.path, got, f.mode)
		}
		if f.id != "" {
			checkLeaf(t, dir, f.path, f.id, at)
		}
	}
	// Nothing else: no temporary files left behind.
	var got []string
	filepath.WalkDir(dir, func(path string, _ os.DirEntry, err error) error {
		if err == nil && path != dir {
			rel, _ := filepath.Rel(dir, path)
			got = append(got, rel)
		}
		return err
	})
	if len(got) != len(want) {
		t.Errorf("files in %s = %v; want %d entries", dir, got, len(want))
	}
}

// checkLeaf checks that a leaf carries id, loads with its key, and chains to
// its domain's bundle at time at for the usages its role needs.
func checkLeaf(t *testing.T, dir, path, id string, at time.Time) {
	t.Helper()
	want := identity.MustParse(id)
	kp, err := identity.LoadKeyPair(filepath.Join(dir, path), filepath.Join(dir, strings.TrimSuffix(path, ".pem")+"-key.pem"))
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	b := identity.NewBundles()
	if err := b.AddPEMFile(want.TrustDomain, filepath.Join(dir, devca.BundleDir, want.TrustDomain+".pem")); err != nil {
		t.Fatal(err)
	}
	usages := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if want.Kind == identity.KindGateway {
		usages = append(usages, x509.ExtKeyUsageServerAuth)
		leaf := kp.Certificate().Leaf
		if !slices.Equal(leaf.DNSNames, []string{"localhost"}) || len(leaf.IPAddresses) != 2 ||
			!leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) || !leaf.IPAddresses[1].Equal(net.IPv6loopback) {
			t.Errorf("%s: DNS %v, IPs %v; want [localhost], [127.0.0.1 ::1]", path, leaf.DNSNames, leaf.IPAddresses)
		}
	}
	for _, u := range usages {
		got, err := b.Verify(kp.Certificate().Certificate, u, at)
		if err != nil || got != want {
			t.Errorf("%s: Verify(usage %v) = %v, %v; want %v", path, u, got, err, want)
		}
	}
}

func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := make(map[string][]byte)
	for _, f := range wantLayout() {
		if f.mode.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, f.path))
		if err != nil {
			t.Fatal(err)
		}
		files[f.path] = data
	}
	return files
}

func TestGenerateInvalidDomains(t *testing.T) {
	tests := []struct {
		domains []string
		bad     string // the domain the error must name
	}{
		{[]string{"NL.customs.example"}, "NL.customs.example"},
		{[]string{"nl.customs.example", "sg.customs.example:8443"}, "sg.customs.example:8443"},
		{[]string{"nl..example"}, "nl..example"},
		{[]string{"-nl.example"}, "-nl.example"},
		{[]string{"nl_customs.example"}, "nl_customs.example"},
		{[]string{" nl.customs.example"}, " nl.customs.example"},
		{[]string{""}, ""},
		{[]string{"bundle"}, "bundle"},
		{[]string{"nl.customs.example", "nl.customs.example"}, "nl.customs.example"},
	}
	for _, tt := range tests {
		dir := t.TempDir()
		err := devca.Generate(dir, tt.domains, time.Now(), nil)
		if err == nil || !strings.Contains(err.Error(), `"`+tt.bad+`"`) {
			t.Errorf("Generate(%q) error = %v; want one naming %q", tt.domains, err, tt.bad)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("Generate(%q) wrote %d entries before failing; want none", tt.domains, len(entries))
		}
	}
	if err := devca.Generate(t.TempDir(), nil, time.Now(), nil); err == nil {
		t.Error("Generate(no domains) error = nil; want an error")
	}
}

func TestGenerateRefusesHalfCA(t *testing.T) {
	dir := t.TempDir()
	if err := devca.Generate(dir, domains[:1], time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, domains[0], devca.CAKeyFile)
	if err := os.Remove(keyPath); err != nil {
		t.Fatal(err)
	}
	err := devca.Generate(dir, domains[:1], time.Now(), nil)
	if err == nil || !strings.Contains(err.Error(), keyPath) {
		t.Errorf("Generate with ca.pem but no key: error = %v; want one naming %s", err, keyPath)
	}
}

func TestLoadCA(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	if err := devca.Generate(dir, domains, now, nil); err != nil {
		t.Fatal(err)
	}
	nl := filepath.Join(dir, "nl.customs.example")
	certFile, keyFile := filepath.Join(nl, devca.CAFile), filepath.Join(nl, devca.CAKeyFile)
	ca, err := devca.LoadCA("nl.customs.example", certFile, keyFile, now)
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := os.ReadFile(filepath.Join(dir, devca.BundleDir, "nl.customs.example.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if block, _ := pem.Decode(bundle); block == nil || !bytes.Equal(block.Bytes, ca.Cert.Raw) {
		t.Error("loaded CA differs from the bundle")
	}
	tests := []struct {
		name, domain, certFile, keyFile string
		at                              time.Time
		wantErr                         string
	}{
		{"other domain", "sg.customs.example", certFile, keyFile, now, "constrained to"},
		{"expired", "nl.customs.example", certFile, keyFile, now.AddDate(11, 0, 0), "remove"},
		{"mismatched key", "nl.customs.example", certFile, filepath.Join(dir, "sg.customs.example", devca.CAKeyFile), now, "does not match"},
		{"leaf as CA", "nl.customs.example", filepath.Join(nl, "gateway.pem"), filepath.Join(nl, "gateway-key.pem"), now, "not a CA"},
	}
	for _, tt := range tests {
		if _, err := devca.LoadCA(tt.domain, tt.certFile, tt.keyFile, tt.at); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: LoadCA error = %v; want one containing %q", tt.name, err, tt.wantErr)
		}
	}
}
