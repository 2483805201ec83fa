package identity_test

import (
	"fmt"
	"log/slog"
	"path/filepath"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/borderlink/borderlink/internal/identity"
)

func ExampleParse() {
	id, err := identity.Parse("spiffe://nl.customs.example/agency/health")
	fmt.Println(id.TrustDomain, id.Kind, id.Name, err)

	_, err = identity.Parse("spiffe://NL.customs.example/gateway")
	fmt.Println(err)
	// Output:
	// nl.customs.example agency health <nil>
	// identity: malformed SPIFFE ID "spiffe://NL.customs.example/gateway": trust domain contains 'N' (allowed: a-z 0-9 - .)
}

// A gateway serves its partners and calls one of them, with one key pair and
// one set of bundles, laid out as `borderlink certs dev` writes them.
func Example_gateway() {
	dir := "certs/dev"
	kp, err := identity.LoadKeyPair(filepath.Join(dir, "nl.customs.example", "gateway.pem"), filepath.Join(dir, "nl.customs.example", "gateway-key.pem"))
	if err != nil {
		fmt.Println(err)
		return
	}
	bundles := identity.NewBundles()
	for _, domain := range []string{"nl.customs.example", "sg.customs.example"} {
		if err := bundles.AddPEMFile(domain, filepath.Join(dir, "bundle", domain+".pem")); err != nil {
			fmt.Println(err)
			return
		}
	}

	server := grpc.NewServer(grpc.Creds(credentials.NewTLS(
		identity.ServerTLSConfig(kp, bundles, slog.Default(), nil))))
	defer server.Stop()

	conn, err := grpc.NewClient("sg-gateway.example:8443", grpc.WithTransportCredentials(credentials.NewTLS(
		identity.ClientTLSConfig(kp, bundles, identity.GatewayID("sg.customs.example")))))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
}
