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
	// auditConns are separate connections for witnessing, so that a
	// witness round against a partner that is not up yet cannot put the
	// exchange connection into reconnect backoff.
	auditConns map[string]*grpc.ClientConn
}

func newPeers(kp *identity.KeyPair, bundles *identity.Bundles, addrs map[string]string) *peers {
	return &peers{kp: kp, bundles: bundles, addrs: addrs, conns: map[string]*grpc.ClientConn{}, auditConns: map[string]*grpc.ClientConn{}}
}

func (p *peers) exchange(domain string) (blv1.ExchangeClient, identity.ID, error) {
	cc, want, err := p.conn(p.conns, domain)
	if err != nil {
		return nil, want, err
	}
	return blv1.NewExchangeClient(cc), want, nil
}

// audit is the partner's Audit service, for witnessing.
func (p *peers) audit(domain string) (blv1.AuditClient, error) {
	cc, _, err := p.conn(p.auditConns, domain)
	if err != nil {
		return nil, err
	}
	return blv1.NewAuditClient(cc), nil
}

// domains are the partners with an address.
func (p *peers) domains() []string {
	out := make([]string, 0, len(p.addrs))
	for d := range p.addrs {
		out = append(out, d)
	}
	return out
}

func (p *peers) conn(conns map[string]*grpc.ClientConn, domain string) (*grpc.ClientConn, identity.ID, error) {
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
	if cc, ok := conns[domain]; ok {
		return cc, want, nil
	}
	creds := credentials.NewTLS(identity.ClientTLSConfig(p.kp, p.bundles, want))
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, want, status.Errorf(codes.Internal, "dial partner %s at %s: %v", domain, addr, err)
	}
	conns[domain] = cc
	return cc, want, nil
}

func (p *peers) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, conns := range []map[string]*grpc.ClientConn{p.conns, p.auditConns} {
		for d, cc := range conns {
			// Close only fails for a connection already closed; nothing to do.
			_ = cc.Close()
			delete(conns, d)
		}
	}
}
