package identity_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/borderlink/borderlink/internal/devca"
	"github.com/borderlink/borderlink/internal/identity"
)

// TestGRPCPeer runs a real gRPC server with ServerTLSConfig and checks that
// an interceptor sees the caller's verified identity, and that a client
// wanting another server fails to connect.
func TestGRPCPeer(t *testing.T) {
	p := newPKI(t)
	serverKP := identity.NewKeyPair(issue(t, p.nl, nlGateway.String(), devca.LeafOptions{}))
	seen := make(chan identity.ID, 1)
	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(identity.ServerTLSConfig(serverKP, p.bundles, nil, nil))),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			id, err := identity.PeerFromContext(ctx)
			if err != nil {
				return nil, status.Error(codes.Unauthenticated, "unauthenticated")
			}
			ctx = identity.NewContext(ctx, id)
			got, _ := identity.FromContext(ctx)
			seen <- got
			return handler(ctx, req)
		}),
	)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)

	clientKP := identity.NewKeyPair(issue(t, p.sg, sgGateway.String(), devca.LeafOptions{}))
	check := func(want identity.ID) error {
		conn, err := grpc.NewClient(ln.Addr().String(),
			grpc.WithTransportCredentials(credentials.NewTLS(identity.ClientTLSConfig(clientKP, p.bundles, want))))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(t.Context(), ioWait)
		defer cancel()
		_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}

	if err := check(nlGateway); err != nil {
		t.Fatalf("Check() error = %v", err)
	}
	if got, want := receive(t, seen, "peer ID"), sgGateway; got != want {
		t.Errorf("server saw peer %v; want %v", got, want)
	}

	err = check(sgGateway)
	if got, want := status.Code(err), codes.Unavailable; got != want {
		t.Errorf("Check() against unwanted server: code %v (%v); want %v", got, err, want)
	}
	expectNone(t, seen, "peer ID")
}

func TestPeerFromContextErrors(t *testing.T) {
	p := newPKI(t)
	leaf := issue(t, p.sg, sgGateway.String(), devca.LeafOptions{}).Leaf
	tests := []struct {
		name    string
		ctx     context.Context
		want    identity.ID
		wantErr error
	}{
		{"no peer", t.Context(), identity.ID{}, identity.ErrNoCertificate},
		{"insecure", peer.NewContext(t.Context(), &peer.Peer{AuthInfo: plainAuth{}}), identity.ID{}, identity.ErrNoCertificate},
		{"TLS without certificate", tlsPeer(t, nil), identity.ID{}, identity.ErrNoCertificate},
		{"TLS with certificate", tlsPeer(t, leaf), sgGateway, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := identity.PeerFromContext(tt.ctx)
			if got != tt.want || !errors.Is(err, tt.wantErr) {
				t.Errorf("PeerFromContext() = %v, %v; want %v, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// plainAuth is the AuthInfo of a connection without TLS.
type plainAuth struct{}

func (plainAuth) AuthType() string { return "plain" }

func tlsPeer(t *testing.T, leaf *x509.Certificate) context.Context {
	state := tls.ConnectionState{HandshakeComplete: true}
	if leaf != nil {
		state.PeerCertificates = []*x509.Certificate{leaf}
	}
	return peer.NewContext(t.Context(), &peer.Peer{AuthInfo: credentials.TLSInfo{State: state}})
}

func TestFromContext(t *testing.T) {
	if id, ok := identity.FromContext(t.Context()); ok {
		t.Errorf("FromContext(empty) = %v, true; want false", id)
	}
	if id, ok := identity.FromContext(identity.NewContext(t.Context(), identity.ID{})); ok {
		t.Errorf("FromContext(zero ID) = %v, true; want false", id)
	}
	if got, ok := identity.FromContext(identity.NewContext(t.Context(), nlGateway)); !ok || got != nlGateway {
		t.Errorf("FromContext() = %v, %v; want %v, true", got, ok, nlGateway)
	}
}
