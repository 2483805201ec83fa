package identity_test

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/borderlink/borderlink/internal/devca"
	"github.com/borderlink/borderlink/internal/identity"
)

const (
	nlDomain = "nl.customs.example"
	sgDomain = "sg.customs.example"
	xxDomain = "xx.customs.example" // has a CA but no bundle at the gateways
	ioWait   = 5 * time.Second
)

var (
	nlGateway = identity.GatewayID(nlDomain)
	sgGateway = identity.GatewayID(sgDomain)
)

// testPKI is the set of CAs every handshake test uses; the bundles know NL
// and SG only.
type testPKI struct {
	nl, sg, xx *devca.CA
	bundles    *identity.Bundles
	now        time.Time
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	now := time.Now()
	p := &testPKI{now: now, bundles: identity.NewBundles()}
	for _, c := range []struct {
		ca     **devca.CA
		domain string
	}{{&p.nl, nlDomain}, {&p.sg, sgDomain}, {&p.xx, xxDomain}} {
		ca, err := devca.NewCA(c.domain, now)
		if err != nil {
			t.Fatal(err)
		}
		*c.ca = ca
	}
	p.bundles.Add(nlDomain, p.nl.Cert)
	p.bundles.Add(sgDomain, p.sg.Cert)
	return p
}

func issue(t *testing.T, ca *devca.CA, id string, opts devca.LeafOptions) tls.Certificate {
	t.Helper()
	c, err := ca.IssueTLS(id, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type rejection struct {
	claimed string
	err     error
}

// testServer accepts TLS connections and answers each verified client with
// its SPIFFE ID and a newline, so a client sees the server's verdict on its
// first read.
type testServer struct {
	addr          string
	rejects       chan rejection // from onReject
	handshakeErrs chan error     // from the server side of the handshake
}

func startServer(t *testing.T, p *testPKI, kp *identity.KeyPair, logger *slog.Logger) *testServer {
	t.Helper()
	s := &testServer{rejects: make(chan rejection, 16), handshakeErrs: make(chan error, 16)}
	cfg := identity.ServerTLSConfig(kp, p.bundles, logger, func(claimed string, err error) {
		s.rejects <- rejection{claimed, err}
	})
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				tc := conn.(*tls.Conn)
				tc.SetDeadline(time.Now().Add(ioWait))
				if err := tc.Handshake(); err != nil {
					s.handshakeErrs <- err
					return
				}
				id, err := identity.FromCertificate(tc.ConnectionState().PeerCertificates[0])
				if err != nil {
					s.handshakeErrs <- err
					return
				}
				tc.Write([]byte(id.String() + "\n"))
			})
		}
	})
	return s
}

// dial connects, and returns what the server answered and the server's leaf.
// With TLS 1.3 the client's handshake completes before the server has
// checked the client certificate, so a refusal only surfaces on the first
// read.
func dial(t *testing.T, addr string, cfg *tls.Config) (string, *x509.Certificate, error) {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: ioWait}, "tcp", addr, cfg)
	if err != nil {
		return "", nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(ioWait))
	line, err := bufio.NewReader(conn).ReadString('\n')
	return strings.TrimSuffix(line, "\n"), conn.ConnectionState().PeerCertificates[0], err
}

func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(ioWait):
		t.Fatalf("no %s within %v", what, ioWait)
		panic("unreachable")
	}
}

func expectNone[T any](t *testing.T, ch <-chan T, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Errorf("unexpected %s: %+v", what, v)
	default:
	}
}

// TestServerVerifiesClients runs each client certificate through a real
// handshake against an NL gateway built with ServerTLSConfig.
func TestServerVerifiesClients(t *testing.T) {
	p := newPKI(t)
	hourAgo, yearAgo := p.now.Add(-time.Hour), p.now.AddDate(-1, 0, 0)
	tests := []struct {
		name        string
		cert        func() tls.Certificate
		wantErr     error  // nil: accepted
		wantClaimed string // what onReject is told the peer claimed
	}{
		{
			name: "partner gateway",
			cert: func() tls.Certificate { return issue(t, p.sg, sgGateway.String(), devca.LeafOptions{}) },
		},
		{
			name: "own agency",
			cert: func() tls.Certificate {
				return issue(t, p.nl, "spiffe://nl.customs.example/agency/health", devca.LeafOptions{
					ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
			},
		},
		{
			name: "unknown trust domain",
			cert: func() tls.Certificate {
				return issue(t, p.xx, "spiffe://xx.customs.example/gateway", devca.LeafOptions{})
			},
			wantErr:     identity.ErrUnknownTrustDomain,
			wantClaimed: "spiffe://xx.customs.example/gateway",
		},
		{
			name:        "SG identity signed by NL CA",
			cert:        func() tls.Certificate { return issue(t, p.nl, sgGateway.String(), devca.LeafOptions{}) },
			wantErr:     identity.ErrUntrusted,
			wantClaimed: sgGateway.String(),
		},
		{
			name:        "NL identity signed by SG CA",
			cert:        func() tls.Certificate { return issue(t, p.sg, nlGateway.String(), devca.LeafOptions{}) },
			wantErr:     identity.ErrUntrusted,
			wantClaimed: nlGateway.String(),
		},
		{
			name: "NL identity signed by an unknown CA",
			cert: func() tls.Certificate {
				return issue(t, p.xx, "spiffe://nl.customs.example/system/cli", devca.LeafOptions{})
			},
			wantErr:     identity.ErrUntrusted,
			wantClaimed: "spiffe://nl.customs.example/system/cli",
		},
		{
			name: "expired",
			cert: func() tls.Certificate {
				return issue(t, p.sg, sgGateway.String(), devca.LeafOptions{NotBefore: yearAgo, NotAfter: hourAgo})
			},
			wantErr:     identity.ErrExpired,
			wantClaimed: sgGateway.String(),
		},
		{
			name: "not yet valid",
			cert: func() tls.Certificate {
				return issue(t, p.sg, sgGateway.String(), devca.LeafOptions{NotBefore: p.now.Add(time.Hour), NotAfter: p.now.AddDate(1, 0, 0)})
			},
			wantErr:     identity.ErrExpired,
			wantClaimed: sgGateway.String(),
		},
		{
			name:    "no URI SAN",
			cert:    func() tls.Certificate { return issue(t, p.sg, sgGateway.String(), devca.LeafOptions{NoURI: true}) },
			wantErr: identity.ErrNoSPIFFEID,
		},
		{
			name: "uppercase trust domain",
			cert: func() tls.Certificate {
				return issue(t, p.nl, "spiffe://NL.customs.example/gateway", devca.LeafOptions{})
			},
			wantErr:     identity.ErrMalformedID,
			wantClaimed: "spiffe://NL.customs.example/gateway",
		},
		{
			name: "https URI",
			cert: func() tls.Certificate {
				return issue(t, p.nl, "https://nl.customs.example/gateway", devca.LeafOptions{})
			},
			wantErr:     identity.ErrMalformedID,
			wantClaimed: "https://nl.customs.example/gateway",
		},
		{
			name: "two URI SANs",
			cert: func() tls.Certificate {
				return issue(t, p.sg, "", devca.LeafOptions{URIs: []string{sgGateway.String(), "spiffe://sg.customs.example/agency/health"}})
			},
			wantErr:     identity.ErrMalformedID,
			wantClaimed: "spiffe://sg.customs.example/gateway,spiffe://sg.customs.example/agency/health",
		},
		{
			name: "server-only certificate",
			cert: func() tls.Certificate {
				return issue(t, p.sg, sgGateway.String(), devca.LeafOptions{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			},
			wantErr:     identity.ErrWrongUsage,
			wantClaimed: sgGateway.String(),
		},
		{
			// x509 alone would accept a leaf without EKU for any usage.
			name: "no extended key usage",
			cert: func() tls.Certificate {
				return issue(t, p.sg, sgGateway.String(), devca.LeafOptions{ExtKeyUsage: []x509.ExtKeyUsage{}})
			},
			wantErr:     identity.ErrWrongUsage,
			wantClaimed: sgGateway.String(),
		},
	}
	server := startServer(t, p, identity.NewKeyPair(issue(t, p.nl, nlGateway.String(), devca.LeafOptions{})), nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert := tt.cert()
			client := identity.ClientTLSConfig(identity.NewKeyPair(cert), p.bundles, nlGateway)
			got, _, err := dial(t, server.addr, client)
			if tt.wantErr == nil {
				want, idErr := identity.FromCertificate(cert.Leaf)
				if idErr != nil {
					t.Fatal(idErr)
				}
				if err != nil || got != want.String() {
					t.Errorf("server saw %q, err %v; want %q", got, err, want)
				}
				expectNone(t, server.rejects, "reject")
				return
			}
			if got, want := errString(err), "remote error: tls: bad certificate"; got != want {
				t.Errorf("client read error = %q; want %q", got, want)
			}
			r := receive(t, server.rejects, "reject")
			if !errors.Is(r.err, tt.wantErr) {
				t.Errorf("reject error = %v; want errors.Is %v", r.err, tt.wantErr)
			}
			if got, want := r.claimed, tt.wantClaimed; got != want {
				t.Errorf("reject claimed = %q; want %q", got, want)
			}
			if got := receive(t, server.handshakeErrs, "server handshake error"); !errors.Is(got, tt.wantErr) {
				t.Errorf("server handshake error = %v; want errors.Is %v", got, tt.wantErr)
			}
		})
	}
}

// TestServerNoClientCertificate: a client that sends no certificate is
// refused by Verify (the server only requests a certificate from crypto/tls),
// so the refusal is logged and reported like every other one.
func TestServerNoClientCertificate(t *testing.T) {
	p := newPKI(t)
	server := startServer(t, p, identity.NewKeyPair(issue(t, p.nl, nlGateway.String(), devca.LeafOptions{})), nil)
	client := identity.ClientTLSConfig(identity.NewKeyPair(issue(t, p.sg, sgGateway.String(), devca.LeafOptions{})), p.bundles, nlGateway)
	client.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &tls.Certificate{}, nil // send an empty Certificate message
	}
	_, _, err := dial(t, server.addr, client)
	if err == nil {
		t.Fatal("client without certificate was admitted")
	}
	r := receive(t, server.rejects, "reject")
	if !errors.Is(r.err, identity.ErrNoCertificate) {
		t.Errorf("reject error = %v; want ErrNoCertificate", r.err)
	}
	if r.claimed != "" {
		t.Errorf("reject claimed = %q; want empty", r.claimed)
	}
	if got := receive(t, server.handshakeErrs, "server handshake error"); !errors.Is(got, identity.ErrNoCertificate) {
		t.Errorf("server handshake error = %v; want ErrNoCertificate", got)
	}
}

// TestClientVerifiesServer checks the client side: the server must be
// exactly the wanted identity, vouched for by its own domain's CA.
func TestClientVerifiesServer(t *testing.T) {
	p := newPKI(t)
	tests := []struct {
		name       string
		serverCert func() tls.Certificate
		want       identity.ID
		wantErr    error
	}{
		{
			name:       "wanted gateway",
			serverCert: func() tls.Certificate { return issue(t, p.nl, nlGateway.String(), devca.LeafOptions{}) },
			want:       nlGateway,
		},
		{
			name:       "other gateway than wanted",
			serverCert: func() tls.Certificate { return issue(t, p.nl, nlGateway.String(), devca.LeafOptions{}) },
			want:       sgGateway,
			wantErr:    identity.ErrUnexpectedID,
		},
		{
			name: "agency posing as gateway",
			serverCert: func() tls.Certificate {
				return issue(t, p.nl, "spiffe://nl.customs.example/agency/health", devca.LeafOptions{})
			},
			want:    nlGateway,
			wantErr: identity.ErrUnexpectedID,
		},
		{
			name:       "wanted ID signed by another domain's CA",
			serverCert: func() tls.Certificate { return issue(t, p.sg, nlGateway.String(), devca.LeafOptions{}) },
			want:       nlGateway,
			wantErr:    identity.ErrUntrusted,
		},
		{
			name: "expired server certificate",
			serverCert: func() tls.Certificate {
				return issue(t, p.nl, nlGateway.String(), devca.LeafOptions{NotBefore: p.now.AddDate(-1, 0, 0), NotAfter: p.now.Add(-time.Hour)})
			},
			want:    nlGateway,
			wantErr: identity.ErrExpired,
		},
		{
			name: "client-only server certificate",
			serverCert: func() tls.Certificate {
				return issue(t, p.nl, nlGateway.String(), devca.LeafOptions{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
			},
			want:    nlGateway,
			wantErr: identity.ErrWrongUsage,
		},
		{
			name:       "no wanted ID configured",
			serverCert: func() tls.Certificate { return issue(t, p.nl, nlGateway.String(), devca.LeafOptions{}) },
			want:       identity.ID{},
			wantErr:    identity.ErrUnexpectedID,
		},
	}
	clientKP := identity.NewKeyPair(issue(t, p.sg, sgGateway.String(), devca.LeafOptions{}))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server := startServer(t, p, identity.NewKeyPair(tt.serverCert()), nil)
			got, _, err := dial(t, server.addr, identity.ClientTLSConfig(clientKP, p.bundles, tt.want))
			if tt.wantErr == nil {
				if err != nil || got != sgGateway.String() {
					t.Errorf("server saw %q, err %v; want %q", got, err, sgGateway)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("dial error = %v; want errors.Is %v", err, tt.wantErr)
			}
			if !tt.want.IsZero() && !strings.Contains(err.Error(), tt.want.String()) {
				t.Errorf("dial error %q does not name the wanted ID %s", err, tt.want)
			}
			if errors.Is(err, identity.ErrUnexpectedID) && !tt.want.IsZero() {
				presented, _ := identity.FromCertificate(tt.serverCert().Leaf)
				if !strings.Contains(err.Error(), "got "+presented.String()) {
					t.Errorf("dial error %q does not name the presented ID %s", err, presented)
				}
			}
			// The server learns only that the client refused it.
			if got, want := errString(receive(t, server.handshakeErrs, "server handshake error")), "remote error: tls: bad certificate"; got != want {
				t.Errorf("server handshake error = %q; want %q", got, want)
			}
			expectNone(t, server.rejects, "reject")
		})
	}
}

// TestKeyPairRotation checks that a Set takes effect on the next handshake.
func TestKeyPairRotation(t *testing.T) {
	p := newPKI(t)
	first := issue(t, p.nl, nlGateway.String(), devca.LeafOptions{})
	kp := identity.NewKeyPair(first)
	server := startServer(t, p, kp, nil)
	client := identity.ClientTLSConfig(identity.NewKeyPair(issue(t, p.sg, sgGateway.String(), devca.LeafOptions{})), p.bundles, nlGateway)

	_, leaf, err := dial(t, server.addr, client)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := leaf.SerialNumber, first.Leaf.SerialNumber; got.Cmp(want) != 0 {
		t.Errorf("first serial = %v; want %v", got, want)
	}
	second := issue(t, p.nl, nlGateway.String(), devca.LeafOptions{})
	kp.Set(second)
	_, leaf, err = dial(t, server.addr, client)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := leaf.SerialNumber, second.Leaf.SerialNumber; got.Cmp(want) != 0 {
		t.Errorf("serial after Set = %v; want %v", got, want)
	}
}

// TestServerLogsRejects checks the Warn record a refused client leaves.
func TestServerLogsRejects(t *testing.T) {
	p := newPKI(t)
	var buf lockedBuffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	server := startServer(t, p, identity.NewKeyPair(issue(t, p.nl, nlGateway.String(), devca.LeafOptions{})), logger)
	client := identity.ClientTLSConfig(identity.NewKeyPair(issue(t, p.xx, "spiffe://xx.customs.example/gateway", devca.LeafOptions{})), p.bundles, nlGateway)
	dial(t, server.addr, client)
	receive(t, server.rejects, "reject") // the log line is written before onReject

	var rec struct {
		Level     string `json:"level"`
		ClaimedID string `json:"claimed_id"`
		Error     string `json:"error"`
	}
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("log %q: %v", buf.Bytes(), err)
	}
	if got, want := rec.Level, "WARN"; got != want {
		t.Errorf("level = %q; want %q", got, want)
	}
	if got, want := rec.ClaimedID, "spiffe://xx.customs.example/gateway"; got != want {
		t.Errorf("claimed_id = %q; want %q", got, want)
	}
	if got, want := rec.Error, identity.ErrUnknownTrustDomain.Error(); !strings.HasPrefix(got, want) {
		t.Errorf("error = %q; want prefix %q", got, want)
	}
}

func TestVerifyDirect(t *testing.T) {
	p := newPKI(t)
	if _, err := p.bundles.Verify(nil, x509.ExtKeyUsageClientAuth, p.now); !errors.Is(err, identity.ErrNoCertificate) {
		t.Errorf("Verify(no certificates) error = %v; want ErrNoCertificate", err)
	}

	// A self-signed CA carrying a SPIFFE ID, put in a bundle, must not
	// verify as its own leaf.
	caLeaf := selfSignedCA(t, nlGateway.String())
	b := identity.NewBundles()
	b.Add(nlDomain, caLeaf)
	if _, err := b.Verify([][]byte{caLeaf.Raw}, x509.ExtKeyUsageClientAuth, p.now); !errors.Is(err, identity.ErrUntrusted) {
		t.Errorf("Verify(CA as leaf) error = %v; want ErrUntrusted", err)
	}

	// The development CA is name-constrained to its own domain, so even a
	// misconfigured bundle that lists NL's CA for SG does not let it vouch
	// for SG identities.
	b = identity.NewBundles()
	b.Add(sgDomain, p.nl.Cert)
	leaf := issue(t, p.nl, sgGateway.String(), devca.LeafOptions{})
	if _, err := b.Verify(leaf.Certificate, x509.ExtKeyUsageClientAuth, p.now); !errors.Is(err, identity.ErrUntrusted) {
		t.Errorf("Verify(SG leaf, NL CA in SG bundle) error = %v; want ErrUntrusted", err)
	}

	// Verify judges at the time it is given.
	leaf = issue(t, p.sg, sgGateway.String(), devca.LeafOptions{})
	for _, tt := range []struct {
		at      time.Time
		wantErr error
	}{
		{p.now, nil},
		{p.now.AddDate(2, 0, 0), identity.ErrExpired},
		{p.now.Add(-time.Hour), identity.ErrExpired},
	} {
		id, err := p.bundles.Verify(leaf.Certificate, x509.ExtKeyUsageServerAuth, tt.at)
		if !errors.Is(err, tt.wantErr) || (err == nil && id != sgGateway) {
			t.Errorf("Verify(at %v) = %v, %v; want %v, %v", tt.at, id, err, sgGateway, tt.wantErr)
		}
	}
}

// selfSignedCA makes a self-signed CA certificate that also claims a SPIFFE
// ID and client auth.
func selfSignedCA(t *testing.T, uri string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		BasicConstraintsValid: true,
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:                  []*url.URL{u},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}
