package keys_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/borderlink/borderlink/internal/devca"
	"github.com/borderlink/borderlink/internal/identity"
	"github.com/borderlink/borderlink/internal/keys"
)

func TestPseudonymKey(t *testing.T) {
	dir := t.TempDir()
	good, short := filepath.Join(dir, "good.key"), filepath.Join(dir, "short.key")
	os.WriteFile(good, make([]byte, 32), 0o600)
	os.WriteFile(short, make([]byte, 31), 0o600)
	ctx := context.Background()
	if k, err := keys.PseudonymKey(ctx, keys.FileSecrets{}, good); err != nil || len(k) != 32 {
		t.Errorf("PseudonymKey(good) = %d bytes, %v; want 32, nil", len(k), err)
	}
	for _, name := range []string{short, filepath.Join(dir, "missing.key")} {
		if _, err := keys.PseudonymKey(ctx, keys.FileSecrets{}, name); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("PseudonymKey(%s) error = %v; want one naming the file", name, err)
		}
	}
}

func TestVaultConfigValidate(t *testing.T) {
	ok := keys.VaultConfig{Address: "https://vault.example:8200", Auth: keys.VaultAuth{AppRole: &keys.VaultAppRole{RoleID: "r", SecretIDFile: "/run/secret-id"}}}
	tests := []struct {
		name    string
		edit    func(c *keys.VaultConfig)
		wantErr string
	}{
		{"ok", func(*keys.VaultConfig) {}, ""},
		{"token", func(c *keys.VaultConfig) { c.Auth = keys.VaultAuth{TokenEnv: "VAULT_TOKEN"} }, ""},
		{"no address", func(c *keys.VaultConfig) { c.Address = "vault:8200" }, "vault.address"},
		{"no auth", func(c *keys.VaultConfig) { c.Auth = keys.VaultAuth{} }, "vault.auth: sets neither"},
		{"both auth", func(c *keys.VaultConfig) { c.Auth.TokenEnv = "T" }, "vault.auth: sets both"},
		{"two secret sources", func(c *keys.VaultConfig) {
			c.Auth.AppRole = &keys.VaultAppRole{RoleID: "r", SecretIDFile: "f", SecretIDEnv: "E"}
		}, "exactly one of secret_id_file"},
		{"no role id", func(c *keys.VaultConfig) { c.Auth.AppRole = &keys.VaultAppRole{SecretIDEnv: "E"} }, "role_id: is required"},
		{"bad ttl", func(c *keys.VaultConfig) { c.PKI.TTL = "an hour" }, "vault.pki.ttl"},
		{"absolute mount", func(c *keys.VaultConfig) { c.Transit.Mount = "/transit" }, "vault.transit.mount"},
		{"plain http remote", func(c *keys.VaultConfig) { c.Address = "http://vault.example:8200" }, "plain http to a non-loopback host"},
		{"plain http loopback", func(c *keys.VaultConfig) { c.Address = "http://127.0.0.1:8200" }, ""},
		{"plain http localhost", func(c *keys.VaultConfig) { c.Address = "http://localhost:8200" }, ""},
	}
	for _, tt := range tests {
		c := ok
		a := *ok.Auth.AppRole
		c.Auth.AppRole = &a
		tt.edit(&c)
		c.SetDefaults()
		err := c.Validate()
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%s: Validate() = %v; want %q", tt.name, err, tt.wantErr)
		}
	}
}

func TestVerifierList(t *testing.T) {
	s1, v1, _ := note.GenerateKey(rand.Reader, "nl.customs.example/borderlink/audit")
	s2, v2, _ := note.GenerateKey(rand.Reader, "nl.customs.example/borderlink/audit")
	vs, err := keys.VerifierList([]string{v1, v2 + "\n"})
	if err != nil {
		t.Fatal(err)
	}
	for _, skey := range []string{s1, s2} {
		signer, _ := note.NewSigner(skey)
		msg, err := note.Sign(&note.Note{Text: "hello\n"}, signer)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := note.Open(msg, vs); err != nil {
			t.Errorf("Open(note signed by one of the versions) = %v", err)
		}
	}
	if _, err := keys.VerifierList([]string{"nonsense"}); err == nil {
		t.Error("VerifierList(nonsense) error = nil")
	}
}

// TestRenewingKeyPair renews a short-lived certificate at two thirds of its
// life, survives failed renewals while the certificate is valid, and
// swaps certificates without breaking an established TLS connection.
func TestRenewingKeyPair(t *testing.T) {
	const domain = "nl.customs.example"
	id := identity.GatewayID(domain)
	ca, err := devca.NewCA(domain, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// X.509 validity has one-second resolution.
	const life = 3 * time.Second
	var calls atomic.Int32
	fail := atomic.Bool{}
	issuer := keys.CertIssuerFunc(func(context.Context) (tls.Certificate, error) {
		calls.Add(1)
		if fail.Load() {
			return tls.Certificate{}, keys.ErrUnavailable
		}
		now := time.Now().Truncate(time.Second)
		return ca.IssueTLS(id.String(), devca.LeafOptions{NotBefore: now, NotAfter: now.Add(life)})
	})
	var mu sync.Mutex
	var renewed []*x509.Certificate
	kp, stop, err := keys.RenewingKeyPair(context.Background(), issuer, keys.RenewOptions{MaxRetryDelay: 500 * time.Millisecond, OnRenew: func(l *x509.Certificate) {
		mu.Lock()
		renewed = append(renewed, l)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	first := kp.Certificate().Leaf
	if at, want := keys.RenewAt(first), first.NotBefore.Add(life*2/3); !at.Equal(want) {
		t.Errorf("RenewAt = %v; want %v", at, want)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(renewed)
		mu.Unlock()
		if n >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d renewals after 5s; want 1", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	r0 := renewed[0]
	mu.Unlock()
	if r0.NotBefore.Before(keys.RenewAt(first).Truncate(time.Second)) {
		t.Errorf("first renewal at %v, before RenewAt %v", r0.NotBefore, keys.RenewAt(first))
	}
	// Failures: the current certificate stays, the issuer is retried.
	fail.Store(true)
	cur := kp.Certificate()
	before := calls.Load()
	time.Sleep(life)
	if calls.Load() < before+2 {
		t.Errorf("issuer called %d times while failing; want retries", calls.Load()-before)
	}
	if kp.Certificate() != cur {
		t.Error("KeyPair changed while renewal failed")
	}
	fail.Store(false)
	deadline = time.Now().Add(5 * time.Second)
	for kp.Certificate() == cur {
		if time.Now().After(deadline) {
			t.Fatal("no renewal after the issuer recovered")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRenewingKeyPairFirstIssueFails(t *testing.T) {
	issuer := keys.CertIssuerFunc(func(context.Context) (tls.Certificate, error) { return tls.Certificate{}, keys.ErrUnavailable })
	if _, _, err := keys.RenewingKeyPair(context.Background(), issuer, keys.RenewOptions{}); !errors.Is(err, keys.ErrUnavailable) {
		t.Errorf("RenewingKeyPair(failing issuer) error = %v; want ErrUnavailable", err)
	}
}
