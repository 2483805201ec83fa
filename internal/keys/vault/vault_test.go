package vault_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"golang.org/x/mod/sumdb/note"

	"github.com/borderlink/borderlink/internal/freeport"
	"github.com/borderlink/borderlink/internal/identity"
	"github.com/borderlink/borderlink/internal/keys"
	"github.com/borderlink/borderlink/internal/keys/vault"
	"github.com/borderlink/borderlink/internal/keys/vault/vaulttest"
)

const domain = "nl.customs.example"

var origin = domain + "/borderlink/audit"

// fixture is a dev server set up by InitDev, and a gateway client logged
// in with the AppRole InitDev made.
type fixture struct {
	srv   *vaulttest.Server
	setup *vault.DevSetup
	root  *vaultapi.Client
}

func newFixture(t *testing.T, o vault.InitDevOptions) *fixture {
	t.Helper()
	srv := vaulttest.Start(t)
	o.TrustDomain = domain
	o.SignerName = origin
	o.SecretIDFile = filepath.Join(t.TempDir(), "secret-id")
	setup, err := vault.InitDev(context.Background(), srv.Addr, srv.Token, o)
	if err != nil {
		t.Fatalf("InitDev: %v", err)
	}
	root, err := vaultapi.NewClient(&vaultapi.Config{Address: srv.Addr})
	if err != nil {
		t.Fatal(err)
	}
	root.SetToken(srv.Token)
	return &fixture{srv: srv, setup: setup, root: root}
}

func (f *fixture) client(t *testing.T) *vault.Client {
	t.Helper()
	c, err := vault.New(context.Background(), f.setup.Config, vault.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("vault.New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestInitDev checks init-dev's result: the gateway's AppRole logs in and
// gets exactly what the policy grants; a second run keeps the key.
func TestInitDev(t *testing.T) {
	t.Parallel()
	f := newFixture(t, vault.InitDevOptions{})
	snippet, err := f.setup.Snippet()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"vault:", "address: " + f.srv.Addr, "role_id: ", "secret_id_file: ", "pseudonym_key_path: borderlink/" + domain + "/pseudonym"} {
		if !strings.Contains(snippet, want) {
			t.Errorf("snippet lacks %q:\n%s", want, snippet)
		}
	}
	if strings.Contains(snippet, "secret_id:") {
		t.Errorf("snippet contains the secret ID itself:\n%s", snippet)
	}
	c := f.client(t)
	key1, err := c.PseudonymKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	again, err := vault.InitDev(context.Background(), f.srv.Addr, f.srv.Token, vault.InitDevOptions{
		TrustDomain: domain, SecretIDFile: filepath.Join(t.TempDir(), "secret-id")})
	if err != nil {
		t.Fatalf("second InitDev: %v", err)
	}
	if again.CACertPEM != f.setup.CACertPEM || again.VerifierKey != f.setup.VerifierKey {
		t.Error("second InitDev replaced the CA or the signing key")
	}
	key2, err := c.PseudonymKey(context.Background())
	if err != nil || string(key1) != string(key2) {
		t.Errorf("pseudonymisation key changed by a second InitDev (err %v)", err)
	}
	// Least privilege: nothing but the gateway's own paths. It reads an
	// issuer (key_id, usage, revoked) but may not act on it.
	if caps, err := c.API().Sys().CapabilitiesSelf("pki/issuer/0b1c"); err != nil || len(caps) != 1 || caps[0] != "read" {
		t.Errorf("capabilities on pki/issuer/0b1c = %v, %v; want [read]", caps, err)
	}
	for _, path := range []string{"sys/mounts", "kv/data/borderlink/sg.customs.example/pseudonym", "pki/issue/other", "transit/keys/other", "auth/approle/role/borderlink-gateway/secret-id",
		"pki/issuer/0b1c/revoke", "pki/issuer/0b1c/issue/borderlink-gateway", "pki/issuer/0b1c/sign-intermediate"} {
		caps, err := c.API().Sys().CapabilitiesSelf(path)
		if err != nil || len(caps) != 1 || caps[0] != "deny" {
			t.Errorf("capabilities on %s = %v, %v; want [deny]", path, caps, err)
		}
	}
}

// TestTokenRelogin: when the token reaches its max TTL the client logs in
// again and calls keep working.
func TestTokenRelogin(t *testing.T) {
	t.Parallel()
	f := newFixture(t, vault.InitDevOptions{TokenTTL: 2 * time.Second, TokenMaxTTL: 4 * time.Second})
	c := f.client(t)
	waitFor(t, "a re-login after the max TTL", 15*time.Second, func() bool { return c.Logins() >= 2 })
	if _, err := c.PseudonymKey(context.Background()); err != nil {
		t.Fatalf("after re-login: %v", err)
	}
}

// TestTokenRevoked: a call that finds the token rejected makes the client
// log in again at once, long before the token's TTL would run out.
func TestTokenRevoked(t *testing.T) {
	t.Parallel()
	f := newFixture(t, vault.InitDevOptions{}) // token TTL 1h
	var logs syncBuffer
	c, err := vault.New(context.Background(), f.setup.Config, vault.Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	// Wait for the lifetime watcher's first renewal (at once), after which
	// it sleeps for most of the hour: only the rejected call can then
	// trigger the re-login.
	waitFor(t, "the token's first renewal", 10*time.Second, func() bool { return strings.Contains(logs.String(), "vault token renewed") })
	if err := f.root.Auth().Token().RevokeTree(c.API().Token()); err != nil {
		t.Fatal(err)
	}
	// Not a policy matter: the call may be retried once logged in again.
	if _, err := c.PseudonymKey(ctx); !errors.Is(err, keys.ErrUnavailable) || errors.Is(err, keys.ErrDenied) || !strings.Contains(err.Error(), "token was rejected") {
		t.Errorf("PseudonymKey with a revoked token: %v; want ErrUnavailable saying the token was rejected", err)
	}
	waitFor(t, "a re-login after revocation", 10*time.Second, func() bool { return c.Logins() >= 2 })
	waitFor(t, "a working token", 5*time.Second, func() bool { _, err := c.PseudonymKey(ctx); return err == nil })
	if !strings.Contains(logs.String(), "vault rejected the token") {
		t.Errorf("re-login not caused by the rejected call; log:\n%s", logs.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestTokenAuth(t *testing.T) {
	t.Parallel()
	f := newFixture(t, vault.InitDevOptions{})
	cfg := f.setup.Config
	cfg.Auth = keys.VaultAuth{TokenEnv: "DEV_VAULT_TOKEN"}
	env := map[string]string{"DEV_VAULT_TOKEN": f.srv.Token}
	c, err := vault.New(context.Background(), cfg, vault.Options{Getenv: func(k string) string { return env[k] }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.PseudonymKey(context.Background()); err != nil {
		t.Error(err)
	}
	env["DEV_VAULT_TOKEN"] = "not-a-token"
	_, err = vault.New(context.Background(), cfg, vault.Options{Getenv: func(k string) string { return env[k] }})
	if !errors.Is(err, keys.ErrDenied) {
		t.Errorf("New(bad token) error = %v; want ErrDenied", err)
	}
	delete(env, "DEV_VAULT_TOKEN")
	_, err = vault.New(context.Background(), cfg, vault.Options{Getenv: func(k string) string { return env[k] }})
	if err == nil || !strings.Contains(err.Error(), "DEV_VAULT_TOKEN") {
		t.Errorf("New(no token) error = %v; want one naming DEV_VAULT_TOKEN", err)
	}
}

// TestCertificateRotation issues a short-lived gateway certificate, lets
// it renew and checks that a TLS connection made before the swap keeps
// working while new handshakes get the new certificate.
func TestCertificateRotation(t *testing.T) {
	t.Parallel()
	// 4 s TTL + 1 s backdating: renewal about 2.3 s after issue.
	f := newFixture(t, vault.InitDevOptions{CertTTL: 4 * time.Second, CertNotBefore: time.Second})
	c := f.client(t)
	ctx := context.Background()
	id := identity.GatewayID(domain)

	ca, err := c.TrustBundle(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bundles := identity.NewBundles()
	bundles.Add(domain, ca...)

	renewed := make(chan *x509.Certificate, 10)
	kp, stop, err := keys.RenewingKeyPair(ctx, c.CertIssuer(id), keys.RenewOptions{
		Logger:  testLogger(t),
		OnRenew: func(l *x509.Certificate) { renewed <- l },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	first := kp.Certificate().Leaf
	if got, err := identity.FromCertificate(first); err != nil || got != id {
		t.Fatalf("issued certificate ID = %v, %v; want %v", got, err, id)
	}
	if life := first.NotAfter.Sub(first.NotBefore); life != 5*time.Second {
		t.Errorf("certificate lifetime = %v; want 5s (4s TTL + 1s backdating)", life)
	}
	if _, err := bundles.Verify(kp.Certificate().Certificate, x509.ExtKeyUsageServerAuth, time.Time{}); err != nil {
		t.Errorf("issued certificate does not verify against the PKI CA bundle: %v", err)
	}

	// An echo server presenting kp, a client presenting kp too.
	lis, err := tls.Listen("tcp", "127.0.0.1:0", identity.ServerTLSConfig(kp, bundles, testLogger(t), nil))
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	go func() {
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); defer conn.Close(); io.Copy(conn, conn) }()
		}
	}()
	dial := func() *tls.Conn {
		t.Helper()
		conn, err := tls.Dial("tcp", lis.Addr().String(), identity.ClientTLSConfig(kp, bundles, id))
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		return conn
	}
	echo := func(conn *tls.Conn, msg string) {
		t.Helper()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(conn, msg+"\n"); err != nil {
			t.Fatalf("write on connection made before the swap: %v", err)
		}
		got, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil || got != msg+"\n" {
			t.Fatalf("echo = %q, %v; want %q", got, err, msg)
		}
	}
	old := dial()
	defer old.Close()
	echo(old, "before")
	if got := old.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(first.SerialNumber) != 0 {
		t.Fatalf("server presented serial %x; want %x", got, first.SerialNumber)
	}

	var next *x509.Certificate
	select {
	case next = <-renewed:
	case <-time.After(15 * time.Second):
		t.Fatal("no renewal within 15s")
	}
	if renewAt := keys.RenewAt(first); time.Now().Before(renewAt) {
		t.Errorf("renewed before RenewAt %v", renewAt)
	}
	if next.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatal("renewal returned the same certificate")
	}
	echo(old, "after") // the established connection is untouched
	fresh := dial()
	defer fresh.Close()
	echo(fresh, "fresh")
	if got := fresh.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(first.SerialNumber) == 0 {
		t.Errorf("new handshake got the old certificate %x", got)
	}

	// The role issues the gateway's ID only.
	if _, err := c.IssueCertificate(ctx, identity.ID{TrustDomain: domain, Kind: identity.KindAgency, Name: "health"}); err == nil {
		t.Error("IssueCertificate(agency ID) error = nil; want the role to refuse it")
	}
}

// TestSigner signs a note through transit and verifies it with the
// published verifier key alone; after a key rotation old notes still
// verify and new ones carry the new key ID.
func TestSigner(t *testing.T) {
	t.Parallel()
	f := newFixture(t, vault.InitDevOptions{})
	c := f.client(t)
	ctx := context.Background()
	s, err := c.NewSigner(ctx, origin)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name() != origin || s.Version() != 1 {
		t.Errorf("signer = %s v%d; want %s v1", s.Name(), s.Version(), origin)
	}
	if s.VerifierKey() != f.setup.VerifierKey {
		t.Errorf("VerifierKey = %s; want the one InitDev printed, %s", s.VerifierKey(), f.setup.VerifierKey)
	}
	v1, err := note.NewVerifier(f.setup.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	body := origin + "\n42\nqUzHvS1WZEcSPxG0aZqA8ZC8eLq6H2mF4yq0fVq9vX0=\n"
	msg1, err := note.Sign(&note.Note{Text: body}, s)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := note.Open(msg1, note.VerifierList(v1)); err != nil || n.Text != body {
		t.Fatalf("Open(note signed via transit) = %v; want it to verify with the published key", err)
	}
	if _, err := note.Open([]byte(strings.Replace(string(msg1), "42", "43", 1)), note.VerifierList(v1)); err == nil {
		t.Error("a tampered note verified")
	}

	// Rotate: a new signer uses version 2 with a new key ID.
	if _, err := f.root.Logical().Write("transit/keys/"+keys.DefaultVaultTransitKey+"/rotate", nil); err != nil {
		t.Fatal(err)
	}
	s2, err := c.NewSigner(ctx, origin)
	if err != nil {
		t.Fatal(err)
	}
	if s2.Version() != 2 || s2.KeyHash() == s.KeyHash() {
		t.Errorf("after rotation: version %d hash %08x; want 2 and a hash other than %08x", s2.Version(), s2.KeyHash(), s.KeyHash())
	}
	msg2, err := note.Sign(&note.Note{Text: body}, s2)
	if err != nil {
		t.Fatal(err)
	}
	published, err := s2.VerifierKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(published) != 2 || published[0] != f.setup.VerifierKey || published[1] != s2.VerifierKey() {
		t.Fatalf("VerifierKeys = %q; want v1 then v2", published)
	}
	vs, err := keys.VerifierList(published)
	if err != nil {
		t.Fatal(err)
	}
	for i, msg := range [][]byte{msg1, msg2} {
		if _, err := note.Open(msg, vs); err != nil {
			t.Errorf("note %d does not verify with the published keys: %v", i+1, err)
		}
	}
	// The pinned old signer still signs with version 1.
	if msg, err := note.Sign(&note.Note{Text: body}, s); err != nil {
		t.Error(err)
	} else if _, err := note.Open(msg, note.VerifierList(v1)); err != nil {
		t.Errorf("old signer after rotation: %v", err)
	}
}

// TestSecrets reads KV v2: the pseudonymisation key and a generic secret.
func TestSecrets(t *testing.T) {
	t.Parallel()
	f := newFixture(t, vault.InitDevOptions{})
	c := f.client(t)
	ctx := context.Background()
	k, err := c.PseudonymKey(ctx)
	if err != nil || len(k) != 32 {
		t.Fatalf("PseudonymKey = %d bytes, %v; want 32", len(k), err)
	}
	path := "borderlink/" + domain + "/postgres"
	if _, err := f.root.KVv2("kv").Put(ctx, path, map[string]any{"password": "s3cret"}); err != nil {
		t.Fatal(err)
	}
	if got, err := c.ReadSecret(ctx, path+"#password"); err != nil || string(got) != "s3cret" {
		t.Errorf("ReadSecret = %q, %v; want s3cret", got, err)
	}
	if _, err := c.ReadSecret(ctx, path+"#user"); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("ReadSecret(missing field) error = %v; want ErrNotFound", err)
	}
	if _, err := c.ReadSecret(ctx, "borderlink/"+domain+"/missing"); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("ReadSecret(missing secret) error = %v; want ErrNotFound", err)
	}
}

// TestDenied: a path outside the policy gives an error naming the path and
// the missing capability.
func TestDenied(t *testing.T) {
	t.Parallel()
	f := newFixture(t, vault.InitDevOptions{})
	c := f.client(t)
	ctx := context.Background()
	_, err := c.ReadSecret(ctx, "borderlink/sg.customs.example/pseudonym#key")
	t.Logf("denied: %v", err)
	var d *vault.DeniedError
	if !errors.As(err, &d) || !errors.Is(err, keys.ErrDenied) {
		t.Fatalf("ReadSecret(other domain) error = %v; want a DeniedError", err)
	}
	if d.Path != "kv/data/borderlink/sg.customs.example/pseudonym" || d.Capability != "read" || len(d.Have) != 1 || d.Have[0] != "deny" {
		t.Errorf("DeniedError = %+v; want path kv/data/borderlink/sg.customs.example/pseudonym, capability read, have [deny]", d)
	}
	for _, want := range []string{`"read"`, `"kv/data/borderlink/sg.customs.example/pseudonym"`, f.srv.Addr} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	// A signing key the policy does not cover.
	cfg := f.setup.Config
	cfg.Transit.Key = "someone-elses"
	c2, err := vault.New(ctx, cfg, vault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := c2.NewSigner(ctx, origin); !errors.As(err, &d) || d.Path != "transit/keys/someone-elses" {
		t.Errorf("NewSigner(uncovered key) error = %v; want a DeniedError for transit/keys/someone-elses", err)
	}
	// A wrong role ID is refused at login.
	cfg = f.setup.Config
	a := *cfg.Auth.AppRole
	a.RoleID = "00000000-0000-0000-0000-000000000000"
	cfg.Auth.AppRole = &a
	_, err = vault.New(ctx, cfg, vault.Options{})
	t.Logf("wrong role ID: %v", err)
	if err == nil || !strings.Contains(err.Error(), "auth/approle/login") {
		t.Errorf("New(wrong role ID) error = %v; want one naming auth/approle/login", err)
	}
}

// TestUnavailable: an unreachable Vault fails start-up naming the address;
// a sealed one fails start-up and makes later calls ErrUnavailable.
func TestUnavailable(t *testing.T) {
	t.Parallel()
	refusing, release, err := freeport.Refusing()
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	addr := "http://" + refusing
	cfg := keys.VaultConfig{Address: addr, Auth: keys.VaultAuth{TokenEnv: "T"}}
	_, err = vault.New(context.Background(), cfg, vault.Options{Getenv: func(string) string { return "x" }})
	t.Logf("unreachable: %v", err)
	if !errors.Is(err, keys.ErrUnavailable) || !strings.Contains(err.Error(), addr) {
		t.Errorf("New(unreachable) error = %v; want ErrUnavailable naming %s", err, addr)
	}

	f := newFixture(t, vault.InitDevOptions{})
	c := f.client(t)
	s, err := c.NewSigner(context.Background(), origin)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.root.Sys().Seal(); err != nil {
		t.Fatal(err)
	}
	_, err = s.Sign([]byte("checkpoint\n"))
	t.Logf("sign while sealed: %v", err)
	if !errors.Is(err, keys.ErrUnavailable) {
		t.Errorf("Sign(sealed) error = %v; want ErrUnavailable", err)
	}
	_, err = vault.New(context.Background(), f.setup.Config, vault.Options{})
	t.Logf("sealed: %v", err)
	if !errors.Is(err, keys.ErrUnavailable) || !strings.Contains(err.Error(), "sealed") || !strings.Contains(err.Error(), f.srv.Addr) {
		t.Errorf("New(sealed) error = %v; want ErrUnavailable saying sealed and naming %s", err, f.srv.Addr)
	}
}

// TestLoad loads everything a gateway needs in one call, as run.go will.
func TestLoad(t *testing.T) {
	t.Parallel()
	f := newFixture(t, vault.InitDevOptions{})
	m, err := vault.Load(context.Background(), f.setup.Config, domain, origin, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if id, err := m.KeyPair.ID(); err != nil || id != identity.GatewayID(domain) {
		t.Errorf("KeyPair.ID() = %v, %v", id, err)
	}
	b := identity.NewBundles()
	b.Add(domain, m.OwnBundle()...)
	if _, err := b.Verify(m.KeyPair.Certificate().Certificate, x509.ExtKeyUsageClientAuth, time.Time{}); err != nil {
		t.Errorf("certificate does not verify with the own bundle: %v", err)
	}
	if len(m.PseudonymKey) != 32 {
		t.Errorf("PseudonymKey is %d bytes; want 32", len(m.PseudonymKey))
	}
	if len(m.VerifierKeys) != 1 || m.VerifierKeys[0] != f.setup.VerifierKey || m.Signer.Name() != origin {
		t.Errorf("VerifierKeys = %q, signer %q; want [%s], %s", m.VerifierKeys, m.Signer.Name(), f.setup.VerifierKey, origin)
	}

	// A policy missing the signing key fails Load, naming the path.
	cfg := f.setup.Config
	cfg.Transit.Key = "not-ours"
	_, err = vault.Load(context.Background(), cfg, domain, origin, nil)
	var d *vault.DeniedError
	if !errors.As(err, &d) || d.Path != "transit/keys/not-ours" {
		t.Errorf("Load(uncovered key) error = %v; want DeniedError for transit/keys/not-ours", err)
	}
}

// TestSealedLater: Vault sealed while a gateway runs. Signing fails with
// ErrUnavailable saying "sealed" and naming the address; certificate
// renewal fails and the current certificate keeps being served (a Warn
// with not_after per attempt); after unseal the same Signer signs again
// (same key version, verifiable with the published key) and the
// certificate is renewed.
func TestSealedLater(t *testing.T) {
	t.Parallel()
	// 24 s TTL + 1 s backdating: renewal due about 15.7 s after issue,
	// so the first failed renewal is logged with about 9 s of validity
	// left (a call to a sealed Vault fails at once, TestSealedFailsFast).
	f := newFixture(t, vault.InitDevOptions{CertTTL: 24 * time.Second, CertNotBefore: time.Second})
	c := f.client(t)
	ctx := context.Background()
	s, err := c.NewSigner(ctx, origin)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(f.setup.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	renewed := make(chan *x509.Certificate, 10)
	kp, stop, err := keys.RenewingKeyPair(ctx, c.CertIssuer(identity.GatewayID(domain)), keys.RenewOptions{
		Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
		OnRenew: func(l *x509.Certificate) { renewed <- l },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	first := kp.Certificate().Leaf
	body := origin + "\n7\nqUzHvS1WZEcSPxG0aZqA8ZC8eLq6H2mF4yq0fVq9vX0=\n"
	if _, err := note.Sign(&note.Note{Text: body}, s); err != nil {
		t.Fatalf("sign before sealing: %v", err)
	}

	f.srv.Seal(t)
	_, err = note.Sign(&note.Note{Text: body}, s)
	t.Logf("sign while sealed: %v", err)
	if !errors.Is(err, keys.ErrUnavailable) || !strings.Contains(err.Error(), "sealed") || !strings.Contains(err.Error(), f.srv.Addr) {
		t.Errorf("Sign(sealed) error = %v; want ErrUnavailable saying sealed and naming %s", err, f.srv.Addr)
	}
	t.Logf("first certificate: not_before %v not_after %v renew_at %v", first.NotBefore, first.NotAfter, keys.RenewAt(first))
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(logs.String(), "certificate renewal failed; serving with the current certificate until it expires"); {
		if time.Now().After(deadline) {
			t.Fatalf("no failed renewal logged within 30s of sealing; log:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := kp.Certificate().Leaf; got.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatalf("serving serial %x while sealed; want the first certificate %x", got.SerialNumber, first.SerialNumber)
	}
	if l := logs.String(); !strings.Contains(l, "level=WARN") || !strings.Contains(l, "not_after=") || !strings.Contains(l, "sealed") {
		t.Errorf("renewal failure not logged at Warn with not_after and the cause; log:\n%s", l)
	}
	select {
	case l := <-renewed:
		t.Fatalf("certificate %x renewed while Vault was sealed", l.SerialNumber)
	default:
	}

	f.srv.Unseal(t)
	select {
	case l := <-renewed:
		if l.SerialNumber.Cmp(first.SerialNumber) == 0 {
			t.Error("renewal after unseal returned the same certificate")
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no renewal within 30s of unsealing; log:\n%s", logs.String())
	}
	msg, err := note.Sign(&note.Note{Text: body}, s)
	if err != nil {
		t.Fatalf("sign after unseal: %v", err)
	}
	if _, err := note.Open(msg, note.VerifierList(v)); err != nil {
		t.Errorf("note signed after unseal does not verify with the published key: %v", err)
	}
}

// TestDeniedLater: the policy loses a path while the gateway runs (an
// operator edits it): signing and certificate issue fail with a
// DeniedError naming the path and the capability the policy now lacks.
func TestDeniedLater(t *testing.T) {
	t.Parallel()
	f := newFixture(t, vault.InitDevOptions{})
	c := f.client(t)
	ctx := context.Background()
	s, err := c.NewSigner(ctx, origin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sign([]byte("checkpoint\n")); err != nil {
		t.Fatal(err)
	}
	// Keep only the KV path.
	kvOnly := `path "kv/data/borderlink/` + domain + `/*" { capabilities = ["read"] }`
	if !strings.Contains(f.setup.Policy, `path "kv/data/borderlink/`+domain+`/*"`) {
		t.Fatalf("policy does not cover the KV path:\n%s", f.setup.Policy)
	}
	if err := f.root.Sys().PutPolicy(f.setup.PolicyName, kvOnly); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		call func() error
		path string
	}{
		{func() error { _, err := s.Sign([]byte("checkpoint\n")); return err }, "transit/sign/" + keys.DefaultVaultTransitKey},
		{func() error { _, err := c.IssueCertificate(ctx, identity.GatewayID(domain)); return err }, "pki/issue/" + keys.DefaultVaultPKIRole},
	} {
		err := tc.call()
		t.Logf("denied: %v", err)
		var d *vault.DeniedError
		if !errors.As(err, &d) || !errors.Is(err, keys.ErrDenied) {
			t.Errorf("error = %v; want a DeniedError for %s", err, tc.path)
			continue
		}
		if d.Path != tc.path || d.Capability != "update" || len(d.Have) != 1 || d.Have[0] != "deny" {
			t.Errorf("DeniedError = %+v; want path %s, capability update, have [deny]", d, tc.path)
		}
		for _, want := range []string{`"update" capability on path "` + tc.path + `" is missing`, f.srv.Addr} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not contain %s", err, want)
			}
		}
	}
	// The token itself is still good: what the policy kept still works,
	// and no re-login was triggered by the denials.
	if _, err := c.PseudonymKey(ctx); err != nil {
		t.Errorf("PseudonymKey after the policy change: %v", err)
	}
	if n := c.Logins(); n != 1 {
		t.Errorf("Logins = %d after denials; want 1 (a denied path is not a rejected token)", n)
	}
}

// TestSealedFailsFast: with Vault sealed every kind of call fails in one
// round trip (no retry of the 503), well under a second, with an error
// wrapping keys.ErrUnavailable that says "sealed"; each failure is counted
// once under its operation and the last success time stops moving. Then,
// with Vault gone, a call fails after one short retry.
func TestSealedFailsFast(t *testing.T) {
	t.Parallel()
	f := newFixture(t, vault.InitDevOptions{})
	c := f.client(t)
	ctx := context.Background()
	s, err := c.NewSigner(ctx, origin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sign([]byte("checkpoint\n")); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.LastSuccess.IsZero() || time.Since(st.LastSuccess) > time.Minute || st.Logins != 1 {
		t.Fatalf("Stats after a signature = %+v; want a recent LastSuccess and 1 login", st)
	}
	f.srv.Seal(t)
	sealed := c.Stats()
	// Well under request_timeout (10 s), with room for a loaded machine:
	// what is tested is one round trip, not a wait for the timeout.
	const fast = 3 * time.Second
	for _, tc := range []struct {
		name, op string
		call     func() error
	}{
		{"sign", vault.OpTransitSign, func() error { _, err := s.Sign([]byte("checkpoint\n")); return err }},
		{"issue certificate", vault.OpPKIIssue, func() error { _, err := c.IssueCertificate(ctx, identity.GatewayID(domain)); return err }},
		{"read secret", vault.OpKVRead, func() error { _, err := c.PseudonymKey(ctx); return err }},
		{"list CA issuers", vault.OpPKIIssuers, func() error { _, err := c.TrustBundle(ctx); return err }},
		{"read signing key", vault.OpTransitKey, func() error { _, err := c.NewSigner(ctx, origin); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			was := c.Stats().Errors[tc.op]
			start := time.Now()
			err := tc.call()
			took := time.Since(start)
			t.Logf("%s while sealed: %v (after %v)", tc.name, err, took)
			if !errors.Is(err, keys.ErrUnavailable) || !strings.Contains(err.Error(), "vault is sealed") || !strings.Contains(err.Error(), f.srv.Addr) {
				t.Errorf("error = %v; want ErrUnavailable saying sealed and naming %s", err, f.srv.Addr)
			}
			if took >= fast {
				t.Errorf("failed after %v; want under %v", took, fast)
			}
			if got := c.Stats().Errors[tc.op]; got != was+1 {
				t.Errorf("Stats().Errors[%s] = %d, was %d; want one more (one request, not retried)", tc.op, got, was)
			}
		})
	}
	if got := c.Stats().LastSuccess; !got.Equal(sealed.LastSuccess) {
		t.Errorf("LastSuccess moved from %v to %v while Vault was sealed", sealed.LastSuccess, got)
	}

	// Unreachable: a transport error is retried once, shortly.
	f.srv.Stop()
	was := c.Stats().Errors[vault.OpTransitSign]
	start := time.Now()
	_, err = s.Sign([]byte("checkpoint\n"))
	took := time.Since(start)
	t.Logf("sign while unreachable: %v (after %v)", err, took)
	if !errors.Is(err, keys.ErrUnavailable) || !strings.Contains(err.Error(), "cannot reach Vault") {
		t.Errorf("Sign(unreachable) error = %v; want ErrUnavailable saying cannot reach Vault", err)
	}
	if took >= fast {
		t.Errorf("Sign(unreachable) failed after %v; want under %v", took, fast)
	}
	if got := c.Stats().Errors[vault.OpTransitSign]; got != was+2 {
		t.Errorf("transit_sign errors = %d, was %d; want two more (the request and one retry)", got, was)
	}
}

// TestReloginAfterSealedExpiry: the tokens of two clients expire while
// Vault is sealed (AppRole token TTL 3 s, sealed for 19 s). After unseal
// both log in again and sign and issue with the same Client and Signer,
// without a restart: the idle one by itself, at its next backoff step,
// with no call prompting it; the busy one as soon as its first call finds
// the token rejected, long before its next backoff step.
//
// Timing: renewal fails within about 2 s of sealing (F), then logins are
// tried at F+0, 1, 3, 7, 15, 31 s. Unsealing at 19 s leaves no scheduled
// attempt between 19 s and 31 s, so a re-login of the busy client within
// 5 s of its call can only be the call's doing.
func TestReloginAfterSealedExpiry(t *testing.T) {
	t.Parallel()
	const (
		tokenTTL = 3 * time.Second
		sealed   = 19 * time.Second
	)
	f := newFixture(t, vault.InitDevOptions{TokenTTL: tokenTTL, TokenMaxTTL: time.Hour})
	ctx := context.Background()
	type gw struct {
		c        *vault.Client
		s        *vault.Signer
		logs     *syncBuffer
		oldToken string
	}
	start := func() *gw {
		g := &gw{logs: &syncBuffer{}}
		var err error
		if g.c, err = vault.New(ctx, f.setup.Config, vault.Options{Logger: slog.New(slog.NewTextHandler(g.logs, nil))}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { g.c.Close() })
		if g.s, err = g.c.NewSigner(ctx, origin); err != nil {
			t.Fatal(err)
		}
		g.oldToken = g.c.API().Token()
		return g
	}
	idle, busy := start(), start()
	v, err := note.NewVerifier(f.setup.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	works := func(name string, g *gw) {
		t.Helper()
		body := origin + "\n9\nqUzHvS1WZEcSPxG0aZqA8ZC8eLq6H2mF4yq0fVq9vX0=\n"
		msg, err := note.Sign(&note.Note{Text: body}, g.s)
		if err != nil {
			t.Fatalf("%s client: sign after unseal and re-login: %v\nlog:\n%s", name, err, g.logs.String())
		}
		if _, err := note.Open(msg, note.VerifierList(v)); err != nil {
			t.Errorf("%s client: note signed after re-login does not verify: %v", name, err)
		}
		if _, err := g.c.IssueCertificate(ctx, identity.GatewayID(domain)); err != nil {
			t.Errorf("%s client: issue certificate after re-login: %v", name, err)
		}
		if g.c.API().Token() == g.oldToken {
			t.Errorf("%s client: logged in again but still holds the expired token", name)
		}
		if n := g.c.Stats().Errors[vault.OpLogin]; n == 0 {
			t.Errorf("%s client: no failed login counted while sealed", name)
		}
		if l := g.logs.String(); !strings.Contains(l, "vault login failed; retrying") {
			t.Errorf("%s client: no failed login logged while sealed; log:\n%s", name, l)
		}
	}

	f.srv.Seal(t)
	sealedAt := time.Now()
	if _, err := busy.s.Sign([]byte("checkpoint\n")); !errors.Is(err, keys.ErrUnavailable) || time.Since(sealedAt) >= 3*time.Second {
		t.Errorf("Sign(sealed) = %v after %v; want ErrUnavailable in under 3s (one round trip, not request_timeout)", err, time.Since(sealedAt))
	}
	time.Sleep(sealed - time.Since(sealedAt))
	f.srv.Unseal(t)
	unsealed := time.Now()
	// Otherwise this test would prove nothing. Vault revokes the tokens
	// that expired while it was sealed once its expiration manager has
	// restored them after the unseal, which on a busy machine can take a
	// moment (seen in CI: still valid right after the unseal).
	revoked := func() bool {
		for _, g := range []*gw{idle, busy} {
			if _, err := f.root.Auth().Token().Lookup(g.oldToken); err == nil {
				return false
			}
		}
		return true
	}
	waitFor(t, fmt.Sprintf("Vault to revoke the tokens that expired in %v sealed (if it never does, lengthen the sealed period)", sealed), 9*time.Second, revoked)

	// The busy client's first call finds its token rejected and brings
	// the next login forward.
	if busy.c.Logins() != 1 {
		t.Fatalf("busy client logged in again (%d logins) before any call; the timing above no longer holds", busy.c.Logins())
	}
	called := time.Now()
	_, err = busy.s.Sign([]byte("checkpoint\n"))
	t.Logf("busy client: first call after unseal: %v", err)
	// The expired token is no policy problem: the error must not send
	// the operator to the policy, and the call may be retried.
	if !errors.Is(err, keys.ErrUnavailable) || errors.Is(err, keys.ErrDenied) || !strings.Contains(err.Error(), "token was rejected") || strings.Contains(err.Error(), "policy") {
		t.Errorf("first Sign after unseal = %v; want ErrUnavailable saying the token was rejected", err)
	}
	waitFor(t, "the busy client's re-login", 5*time.Second, func() bool { return busy.c.Logins() >= 2 })
	t.Logf("busy client: logged in again %v after its call (%v after unseal)", time.Since(called).Round(time.Millisecond), time.Since(unsealed).Round(time.Millisecond))
	works("busy", busy)

	// The idle client, never called, logs in again by itself.
	waitFor(t, "the idle client's re-login", 45*time.Second, func() bool { return idle.c.Logins() >= 2 })
	t.Logf("idle client: logged in again %v after unseal", time.Since(unsealed).Round(time.Millisecond))
	works("idle", idle)
}

// TestCARotation: the PKI mount gets a second root, which becomes the
// default issuer. The gateway's next certificate comes from it; the own
// bundle, re-read at that renewal, holds both roots, so peers certified by
// the old and by the new root both complete mTLS, and a connection made
// before the swap keeps working. When the old root is deleted, the next
// renewal drops it: its peers are refused, the new root's are not.
func TestCARotation(t *testing.T) {
	t.Parallel()
	// 8 s TTL + 1 s backdating: a renewal (and bundle refresh) about
	// 5 s after each issue.
	f := newFixture(t, vault.InitDevOptions{CertTTL: 8 * time.Second, CertNotBefore: time.Second})
	ctx := context.Background()
	m, err := vault.Load(ctx, f.setup.Config, domain, origin, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	bundles := identity.NewBundles()
	m.TrustOwnDomain(bundles)
	first := m.KeyPair.Certificate().Leaf
	if n := len(m.OwnBundle()); n != 1 {
		t.Fatalf("own bundle has %d CA certificates at start; want 1", n)
	}
	s, err := f.root.Logical().Read("pki/issuer/default")
	if err != nil {
		t.Fatal(err)
	}
	oldIssuer, _ := s.Data["issuer_id"].(string)

	// A second root, not default yet (a mount keeps its default issuer).
	s, err = f.root.Logical().Write("pki/root/generate/internal", map[string]any{
		"common_name": domain + " Borderlink development CA 2", "issuer_name": "root-2",
		"key_type": "ec", "key_bits": 256, "ttl": "87600h",
	})
	if err != nil {
		t.Fatal(err)
	}
	newIssuer, _ := s.Data["issuer_id"].(string)
	newRoot, err := x509.ParseCertificate(pemBlock(t, s.Data["certificate"].(string)))
	if err != nil {
		t.Fatal(err)
	}
	peerOld, peerNew := issueFrom(t, f, oldIssuer), issueFrom(t, f, newIssuer)
	renewed := func() bool { return m.KeyPair.Certificate().Leaf.SerialNumber.Cmp(first.SerialNumber) != 0 }
	// Only meaningful before the first renewal re-reads the issuers.
	if _, err := bundles.Verify(peerNew.Certificate().Certificate, x509.ExtKeyUsageClientAuth, time.Time{}); err == nil && !renewed() {
		t.Fatal("a certificate of the new root verified before any bundle refresh")
	}

	addr := echoServer(t, identity.ServerTLSConfig(m.KeyPair, bundles, testLogger(t), nil))
	dial := func(kp *identity.KeyPair, msg string) (*tls.Conn, error) { return dialEcho(addr, kp, bundles, msg) }
	before, err := dial(peerOld, "before")
	if err != nil {
		t.Fatalf("peer of the old root before the rotation: %v", err)
	}
	defer before.Close()

	if _, err := f.root.Logical().Write("pki/config/issuers", map[string]any{"default": "root-2"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a certificate from the new root", 30*time.Second, func() bool {
		return m.KeyPair.Certificate().Leaf.CheckSignatureFrom(newRoot) == nil
	})
	waitFor(t, "the new root in the own bundle", 10*time.Second, func() bool { return len(m.OwnBundle()) == 2 })
	echo(t, before, "after the swap") // established: untouched
	for _, tc := range []struct {
		name string
		kp   *identity.KeyPair
	}{{"old root", peerOld}, {"new root", peerNew}} {
		conn, err := dial(tc.kp, tc.name)
		if err != nil {
			t.Errorf("peer of the %s during the rotation: %v", tc.name, err)
			continue
		}
		if got := conn.ConnectionState().PeerCertificates[0]; got.CheckSignatureFrom(newRoot) != nil {
			t.Errorf("gateway presented serial %x, not from the new root", got.SerialNumber)
		}
		conn.Close()
	}

	// Retire the old root.
	if _, err := f.root.Logical().Delete("pki/issuer/" + oldIssuer); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the old root out of the own bundle", 30*time.Second, func() bool { return len(m.OwnBundle()) == 1 })
	if conn, err := dial(peerOld, "deleted"); err == nil {
		conn.Close()
		t.Error("peer of the deleted root was served")
	} else {
		t.Logf("peer of the deleted root: %v", err)
	}
	if conn, err := dial(peerNew, "new only"); err != nil {
		t.Errorf("peer of the new root after the old was deleted: %v", err)
	} else {
		conn.Close()
	}
	echo(t, before, "still") // established before any of it: untouched
}

// TestTrustBundleIssuers: the own bundle holds only issuers of the PKI
// mount that have their key in it, are not revoked and may issue
// certificates. The mount holds an intermediate set-signed the usual way
// (with the full chain), which imports the organisation's root, key-less,
// as a third issuer: that root is not trusted, so a peer certified by
// another intermediate under it (or by the root itself) is refused while
// peers of the mount's own root and intermediate are served. A revoked
// issuer is trusted until the next refresh and refused after it. When no
// issuer qualifies the refresh fails, naming the mount, and the bundle
// stays.
func TestTrustBundleIssuers(t *testing.T) {
	t.Parallel()
	f := newFixture(t, vault.InitDevOptions{})
	ctx := context.Background()
	write := func(path string, data map[string]any) *vaultapi.Secret {
		t.Helper()
		s, err := f.root.Logical().Write(path, data)
		if err != nil {
			t.Fatalf("write %s: %v", path, err)
		}
		return s
	}
	mount := func(path string) {
		t.Helper()
		if err := f.root.Sys().Mount(path, &vaultapi.MountInput{Type: "pki", Config: vaultapi.MountConfigInput{MaxLeaseTTL: "87600h"}}); err != nil {
			t.Fatal(err)
		}
	}
	ec := func(m map[string]any) map[string]any { m["key_type"], m["key_bits"] = "ec", 256; return m }
	// The organisation's root, in a mount of its own.
	mount("org")
	orgRoot, err := x509.ParseCertificate(pemBlock(t, write("org/root/generate/internal", ec(map[string]any{
		"common_name": "Example organisation root", "ttl": "87600h"})).Data["certificate"].(string)))
	if err != nil {
		t.Fatal(err)
	}
	// intermediate makes an intermediate CA in pki mount m, signed by the
	// organisation's root and set-signed with the full chain, and returns
	// its issuer ID in m and its certificate.
	intermediate := func(m string) (string, *x509.Certificate) {
		t.Helper()
		csr := write(m+"/intermediate/generate/internal", ec(map[string]any{"common_name": m + " intermediate"})).Data["csr"].(string)
		s := write("org/root/sign-intermediate", map[string]any{"csr": csr, "format": "pem", "ttl": "8760h"})
		cert := s.Data["certificate"].(string)
		chain := cert + "\n" + s.Data["issuing_ca"].(string)
		mapping, _ := write(m+"/intermediate/set-signed", map[string]any{"certificate": chain}).Data["mapping"].(map[string]any)
		for id, key := range mapping {
			if key != "" {
				c, err := x509.ParseCertificate(pemBlock(t, cert))
				if err != nil {
					t.Fatal(err)
				}
				return id, c
			}
		}
		t.Fatalf("%s/intermediate/set-signed imported no issuer with a key: %v", m, mapping)
		return "", nil
	}
	s, err := f.root.Logical().Read("pki/issuer/default")
	if err != nil {
		t.Fatal(err)
	}
	ownRoot, _ := s.Data["issuer_id"].(string)
	interID, inter := intermediate("pki")
	// The mount now lists three issuers: its root, its intermediate and
	// the organisation's root (no key). Otherwise this test proves nothing.
	var orgRootID string
	if s, err := f.root.Logical().List("pki/issuers"); err != nil {
		t.Fatal(err)
	} else if ids, _ := s.Data["keys"].([]any); len(ids) != 3 {
		t.Fatalf("pki/issuers = %v; want 3 (own root, intermediate, imported organisation root)", ids)
	} else {
		for _, id := range ids {
			if id != ownRoot && id != interID {
				orgRootID = id.(string)
			}
		}
	}

	// Another administration's intermediate under the same organisation
	// root, minting our gateway's identity; and the root minting it itself.
	mount("other")
	otherID, otherInter := intermediate("other")
	role := map[string]any{"allowed_uri_sans": identity.GatewayID(domain).String(), "require_cn": false, "client_flag": true, "server_flag": true}
	write("other/roles/mint", ec(role))
	write("org/roles/mint", ec(role))
	mint := func(path string, chain ...*x509.Certificate) *identity.KeyPair {
		t.Helper()
		s := write(path, map[string]any{"uri_sans": identity.GatewayID(domain).String(), "exclude_cn_from_sans": true, "ttl": "10m", "private_key_format": "pkcs8"})
		pemChain := s.Data["certificate"].(string)
		for _, c := range chain {
			pemChain += "\n" + string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
		}
		cert, err := tls.X509KeyPair([]byte(pemChain), []byte(s.Data["private_key"].(string)))
		if err != nil {
			t.Fatal(err)
		}
		return identity.NewKeyPair(cert)
	}
	peers := []struct {
		name string
		kp   *identity.KeyPair
	}{
		{"own root", issueFrom(t, f, ownRoot)},
		{"own intermediate", issueFrom(t, f, interID)},
		{"other intermediate under the organisation root", mint("other/issuer/"+otherID+"/issue/mint", otherInter)},
		{"organisation root", mint("org/issue/mint")},
	}

	var logs syncBuffer
	m, err := vault.Load(ctx, f.setup.Config, domain, origin, slog.New(slog.NewTextHandler(io.MultiWriter(&logs, tWriter{t}), nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	bundles := identity.NewBundles()
	m.TrustOwnDomain(bundles)
	has := func(want ...*x509.Certificate) {
		t.Helper()
		got := m.OwnBundle()
		var names []string
		for _, c := range got {
			names = append(names, c.Subject.CommonName)
		}
		if len(got) != len(want) {
			t.Errorf("own bundle = %q; want %d CA certificates", names, len(want))
		}
		for _, w := range want {
			if !slices.ContainsFunc(got, w.Equal) {
				t.Errorf("own bundle = %q; lacks %q", names, w.Subject.CommonName)
			}
		}
	}
	s, err = f.root.Logical().Read("pki/issuer/" + ownRoot)
	if err != nil {
		t.Fatal(err)
	}
	ownRootCert, err := x509.ParseCertificate(pemBlock(t, s.Data["certificate"].(string)))
	if err != nil {
		t.Fatal(err)
	}
	has(ownRootCert, inter)
	if slices.ContainsFunc(m.OwnBundle(), orgRoot.Equal) {
		t.Error("the organisation's root is in the own bundle")
	}
	// skippedLogged checks the refreshes so far logged id's exclusion n
	// times (once each) at Info with reason.
	skippedLogged := func(id string, n int, reason string) {
		t.Helper()
		var lines []string
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "issuer_id="+id) && strings.Contains(l, "CA issuer not trusted") {
				lines = append(lines, l)
			}
		}
		if len(lines) != n {
			t.Errorf("issuer %s logged as not trusted %d times; want %d:\n%s", id, len(lines), n, logs.String())
		}
		for _, l := range lines {
			if !strings.Contains(l, "level=INFO") || !strings.Contains(l, reason) || !strings.Contains(l, "mount=pki") {
				t.Errorf("log line %q lacks level INFO, mount=pki or reason %q", l, reason)
			}
		}
	}
	skippedLogged(orgRootID, 1, "no key in the mount")

	// The server presents a certificate of the intermediate, which stays
	// trusted throughout; what is checked is which client peers it serves.
	addr := echoServer(t, identity.ServerTLSConfig(issueFrom(t, f, interID), bundles, testLogger(t), nil))
	check := func(stage string, served ...bool) {
		t.Helper()
		for i, p := range peers {
			conn, err := dialEcho(addr, p.kp, bundles, stage)
			if err == nil {
				conn.Close()
			}
			switch {
			case served[i] && err != nil:
				t.Errorf("%s: peer of the %s refused: %v", stage, p.name, err)
			case !served[i] && err == nil:
				t.Errorf("%s: peer of the %s served", stage, p.name)
			case err != nil:
				t.Logf("%s: peer of the %s refused: %v", stage, p.name, err)
			}
		}
	}
	check("at start", true, true, false, false)

	// Revoke the mount's root (after making the intermediate the default,
	// as a rotation would): trusted until the next refresh, then refused.
	write("pki/config/issuers", map[string]any{"default": interID})
	write("pki/issuer/"+ownRoot+"/revoke", nil)
	check("revoked, not yet refreshed", true, true, false, false)
	if err := m.RefreshOwnBundle(ctx); err != nil {
		t.Error(err)
	}
	has(inter)
	check("revoked and refreshed", false, true, false, false)
	skippedLogged(ownRoot, 1, "revoked")
	skippedLogged(orgRootID, 2, "no key in the mount")

	// An issuer "sunset" as Vault's rotation guide does it (usage without
	// issuing-certificates) stops new issuance, but the certificates it
	// issued stay valid: it stays trusted.
	if _, err := f.root.Logical().JSONMergePatch(ctx, "pki/issuer/"+interID, map[string]any{"usage": "read-only,crl-signing,ocsp-signing"}); err != nil {
		t.Fatal(err)
	}
	if err := m.RefreshOwnBundle(ctx); err != nil {
		t.Errorf("refresh after sunsetting the intermediate: %v", err)
	}
	has(inter)
	check("intermediate sunset", false, true, false, false)

	// With every issuer revoked the refresh fails naming the mount, and
	// the bundle stays.
	write("pki/issuer/"+interID+"/revoke", nil)
	err = m.RefreshOwnBundle(ctx)
	t.Logf("no issuer to trust: %v", err)
	if err == nil || !strings.Contains(err.Error(), "PKI mount pki has no issuer") || !strings.Contains(err.Error(), "revoked") || !strings.Contains(err.Error(), "pki/root/generate/internal") {
		t.Errorf("RefreshOwnBundle with no issuer to trust = %v; want an error naming the mount, each issuer's reason and the fix", err)
	}
	has(inter)
	check("no issuer qualifies, bundle kept", false, true, false, false)

	// A policy written by an older init-dev grants only issuer/+/json,
	// which shows neither key nor revocation: the read is refused and the
	// error says what to add (no issuer is trusted blind).
	oldPolicy := strings.Replace(f.setup.Policy, `path "pki/issuer/+" {`, `path "pki/issuer/+/json" {`, 1)
	if oldPolicy == f.setup.Policy {
		t.Fatalf("policy has no pki/issuer/+ path:\n%s", f.setup.Policy)
	}
	if err := f.root.Sys().PutPolicy(f.setup.PolicyName, oldPolicy); err != nil {
		t.Fatal(err)
	}
	_, err = m.Client.TrustBundle(ctx)
	t.Logf("old policy: %v", err)
	var d *vault.DeniedError
	if !errors.As(err, &d) || !strings.HasPrefix(d.Path, "pki/issuer/") || d.Capability != "read" || !strings.Contains(err.Error(), `add path "pki/issuer/+"`) || !strings.Contains(err.Error(), "init-dev") {
		t.Errorf("TrustBundle with the old policy = %v; want a DeniedError for pki/issuer/<id> saying to add pki/issuer/+ or rerun init-dev", err)
	}
}

// dialEcho makes an mTLS connection to addr as a peer of the own domain
// holding kp and echoes a line on it: in TLS 1.3 a server refusing the
// client's certificate shows only at the first read.
func dialEcho(addr string, kp *identity.KeyPair, bundles *identity.Bundles, msg string) (*tls.Conn, error) {
	conn, err := tls.Dial("tcp", addr, identity.ClientTLSConfig(kp, bundles, identity.GatewayID(domain)))
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, msg+"\n"); err != nil {
		conn.Close()
		return nil, err
	}
	if got, err := bufio.NewReader(conn).ReadString('\n'); err != nil || got != msg+"\n" {
		conn.Close()
		return nil, fmt.Errorf("echo = %q, %w", got, err)
	}
	return conn, nil
}

func pemBlock(t *testing.T, s string) []byte {
	t.Helper()
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		t.Fatalf("no PEM block in %q", s)
	}
	return b.Bytes
}

// issueFrom issues, with the root token, a certificate for the gateway's
// ID from one issuer of the PKI mount: a peer of the own domain.
func issueFrom(t *testing.T, f *fixture, issuer string) *identity.KeyPair {
	t.Helper()
	s, err := f.root.Logical().Write("pki/issuer/"+issuer+"/issue/"+keys.DefaultVaultPKIRole, map[string]any{
		"uri_sans": identity.GatewayID(domain).String(), "exclude_cn_from_sans": true,
		"ttl": "10m", "private_key_format": "pkcs8",
	})
	if err != nil {
		t.Fatalf("issue from %s: %v", issuer, err)
	}
	cert, err := tls.X509KeyPair([]byte(s.Data["certificate"].(string)), []byte(s.Data["private_key"].(string)))
	if err != nil {
		t.Fatal(err)
	}
	return identity.NewKeyPair(cert)
}

// echoServer serves TLS with cfg on a loopback port, echoing every
// connection, until the test ends.
func echoServer(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { lis.Close(); wg.Wait() })
	go func() {
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); defer conn.Close(); io.Copy(conn, conn) }()
		}
	}()
	return lis.Addr().String()
}

func echo(t *testing.T, conn *tls.Conn, msg string) {
	t.Helper()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, msg+"\n"); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	got, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || got != msg+"\n" {
		t.Fatalf("echo = %q, %v; want %q", got, err, msg)
	}
}
