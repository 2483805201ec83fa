// Package client connects a person's or a system's tools to their own
// administration's gateway over mTLS, verifying that the server is that
// administration's gateway (spiffe://<own domain>/gateway).
package client

import (
	"context"
	"errors"
	"fmt"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/borderlink/borderlink/internal/identity"
)

// Options name the caller's certificate and the gateway to call.
type Options struct {
	// Address of the gateway, host:port.
	Address string
	// CertFile and KeyFile are the caller's certificate (a system or agency
	// SPIFFE ID) and key.
	CertFile, KeyFile string
	// BundleFile holds the CA certificates of the gateway's trust domain.
	BundleFile string
	// Server is the gateway's trust domain; empty means the caller's own.
	Server string
}

// Environment variables that fill empty options.
const (
	EnvAddress = "BORDERLINK_GATEWAY"
	EnvCert    = "BORDERLINK_CERT"
	EnvKey     = "BORDERLINK_KEY"
	EnvBundle  = "BORDERLINK_BUNDLE"
)

// FromEnv fills empty options from the environment.
func (o Options) FromEnv() Options {
	fill := func(v *string, env string) {
		if *v == "" {
			*v = os.Getenv(env)
		}
	}
	fill(&o.Address, EnvAddress)
	fill(&o.CertFile, EnvCert)
	fill(&o.KeyFile, EnvKey)
	fill(&o.BundleFile, EnvBundle)
	return o
}

// ErrMissingOption marks a Dial error caused by an option left empty
// (a usage error), as opposed to a file that cannot be read.
var ErrMissingOption = errors.New("missing option")

// Dial returns a connection to the gateway. The connection is lazy: TLS
// problems surface on the first call.
func Dial(_ context.Context, o Options) (*grpc.ClientConn, identity.ID, error) {
	var missing []error
	if o.Address == "" {
		missing = append(missing, fmt.Errorf("gateway address: set --gateway or %s", EnvAddress))
	}
	if o.CertFile == "" || o.KeyFile == "" {
		missing = append(missing, fmt.Errorf("client certificate: set --cert and --key (or %s and %s)", EnvCert, EnvKey))
	}
	if o.BundleFile == "" {
		missing = append(missing, fmt.Errorf("trust bundle of the gateway's domain: set --bundle or %s", EnvBundle))
	}
	if err := errors.Join(missing...); err != nil {
		return nil, identity.ID{}, fmt.Errorf("%w: %w", ErrMissingOption, err)
	}
	kp, err := identity.LoadKeyPair(o.CertFile, o.KeyFile)
	if err != nil {
		return nil, identity.ID{}, err
	}
	me, err := kp.ID()
	if err != nil {
		return nil, identity.ID{}, fmt.Errorf("client certificate %s: %w", o.CertFile, err)
	}
	server := o.Server
	if server == "" {
		server = me.TrustDomain
	}
	bundles := identity.NewBundles()
	if err := bundles.AddPEMFile(server, o.BundleFile); err != nil {
		return nil, identity.ID{}, err
	}
	creds := credentials.NewTLS(identity.ClientTLSConfig(kp, bundles, identity.GatewayID(server)))
	cc, err := grpc.NewClient(o.Address, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, identity.ID{}, fmt.Errorf("dial gateway %s: %w", o.Address, err)
	}
	return cc, me, nil
}
