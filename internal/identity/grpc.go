package identity

import (
	"context"
	"crypto/tls"
	"fmt"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// PeerFromContext returns the SPIFFE ID of the gRPC peer of ctx. It trusts
// the handshake: the server must use credentials built from
// [ServerTLSConfig], which verified the chain before the RPC existed. Errors
// wrap ErrNoCertificate when there is no TLS peer certificate.
func PeerFromContext(ctx context.Context) (ID, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ID{}, fmt.Errorf("%w: no gRPC peer in context", ErrNoCertificate)
	}
	var state tls.ConnectionState
	switch ai := p.AuthInfo.(type) {
	case credentials.TLSInfo:
		state = ai.State
	case *credentials.TLSInfo:
		if ai != nil {
			state = ai.State
		}
	default:
		return ID{}, fmt.Errorf("%w: peer %v did not use TLS (auth info %T)", ErrNoCertificate, p.Addr, p.AuthInfo)
	}
	if !state.HandshakeComplete || len(state.PeerCertificates) == 0 {
		return ID{}, fmt.Errorf("%w: peer %v presented no certificate", ErrNoCertificate, p.Addr)
	}
	return FromCertificate(state.PeerCertificates[0])
}

type contextKey struct{}

// NewContext returns a copy of ctx carrying id, for interceptors that
// authenticate once and hand the caller to handlers.
func NewContext(ctx context.Context, id ID) context.Context {
	return context.WithValue(ctx, contextKey{}, id)
}

// FromContext returns the ID stored by NewContext; false if there is none or
// it is the zero ID.
func FromContext(ctx context.Context) (ID, bool) {
	id, ok := ctx.Value(contextKey{}).(ID)
	return id, ok && !id.IsZero()
}
