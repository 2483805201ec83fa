package gateway

import (
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/borderlink/borderlink/internal/identity"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// peers holds one client connection per partner gateway, dialled on first
// use. Each connection verifies that the server is exactly
// spiffe://<partner>/gateway, chained to that partner's own bundle.
type peers struct {
	kp      *identity.KeyPair
	bundles *identity.Bundles
	addrs   map[string]string

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func newPeers(kp *identity.KeyPair, bundles *identity.Bundles, addrs map[string]string) *peers {
	return &peers{kp: kp, bundles: bundles, addrs: addrs, conns: map[string]*grpc.ClientConn{}}
}

func (p *peers) exchange(domain string) (blv1.ExchangeClient, identity.ID, error) {
	want := identity.GatewayID(domain)
	addr, ok := p.addrs[domain]
	if !ok {
		return nil, want, status.Errorf(codes.FailedPrecondition, "no partner gateway configured for %q: add peers.%s.address to the gateway config", domain, domain)
	}
	if !p.bundles.Has(domain) {
		return nil, want, status.Errorf(codes.FailedPrecondition, "no trust bundle for partner %q: add trust_bundles.%s to the gateway config", domain, domain)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if cc, ok := p.conns[domain]; ok {
		return blv1.NewExchangeClient(cc), want, nil
	}
	creds := credentials.NewTLS(identity.ClientTLSConfig(p.kp, p.bundles, want))
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, want, status.Errorf(codes.Internal, "dial partner %s at %s: %v", domain, addr, err)
	}
	p.conns[domain] = cc
	return blv1.NewExchangeClient(cc), want, nil
}

func (p *peers) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for d, cc := range p.conns {
		// Close only fails for a connection already closed; nothing to do.
		_ = cc.Close()
		delete(p.conns, d)
	}
}
