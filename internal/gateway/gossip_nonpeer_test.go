package gateway_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/devca"
	"github.com/borderlink/borderlink/internal/identity"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// TestGossipNotToNonPeerGateway: a gateway of a trust domain nl trusts
// (its bundle is known, so mTLS and the Audit service's authorization
// admit it) but that is not one of nl's configured peers gets nl's own
// checkpoint, as any partner does, and no gossip (docs/audit.md, "What a
// partner sees"; ADR 0009): gossip tells whom nl exchanges with and how
// fast their logs grow. TestGossipOnlyToPeers covers auditors, peers and
// agencies; only this case needs the peer check in auditServer.gossip,
// not just the caller's kind.
func TestGossipNotToNonPeerGateway(t *testing.T) {
	const xxDomain = "xx.customs.example"
	f := startFederation(t)
	ctx := context.Background()
	nl := f.nodes[nlDomain]

	// The gateways share f.bundles by pointer and verify client
	// certificates against it at every handshake, so a bundle added now
	// is trusted from the next connection on. xx is in no Options.Peers.
	xxCA, err := devca.NewCA(xxDomain, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	f.bundles.Add(xxDomain, xxCA.Cert)

	// sg pulls from nl: a record on both sides, so both sign checkpoints
	// and nl witnesses sg's log, which gives nl gossip to hand out. Wait
	// for nl's own checkpoint too: without one GetCheckpoint is NotFound.
	if _, err := f.local(t, sgDomain).GetPartnerDeclaration(ctx, &blv1.GetPartnerDeclarationRequest{Partner: nlDomain, Id: "NL-1", Purpose: "risk-assessment"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, werr := nl.store.LastWitnessed(ctx, audit.Origin(sgDomain))
		_, _, cerr := nl.store.LatestAuditCheckpoint(ctx)
		if werr == nil && cerr == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: nl witnessed sg: %v; nl signed a checkpoint: %v", werr, cerr)
		}
		time.Sleep(20 * time.Millisecond)
	}

	for _, tt := range []struct {
		name   string
		id     string
		ca     *devca.CA // nil: the identity's own domain CA from the federation
		gossip bool      // whether sg's checkpoint must be in the gossip
	}{
		// Control: a configured peer gets sg's checkpoint, so the test
		// can fail, and nl had gossip to give when xx asked.
		{"configured peer", identity.GatewayID(cnDomain).String(), nil, true},
		{"trusted non-peer gateway", identity.GatewayID(xxDomain).String(), xxCA, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := blv1.NewAuditClient(f.conn(t, nlDomain, tt.id, tt.ca)).GetCheckpoint(ctx, &blv1.GetCheckpointRequest{})
			// Both are answered: a non-peer is not refused (no
			// PERMISSION_DENIED), it gets nl's checkpoint without gossip.
			if err != nil {
				t.Fatalf("GetCheckpoint as %s: %v", tt.id, err)
			}
			if c, err := audit.OpenCheckpoint([]byte(resp.GetCheckpoint()), verifierOf(t, nl)); err != nil || c.Size < 1 {
				t.Errorf("nl's checkpoint for %s: size %d, %v", tt.id, c.Size, err)
			}
			origins := gossipOrigins(t, resp)
			if tt.gossip && !slices.Contains(origins, audit.Origin(sgDomain)) {
				t.Errorf("nl gossips %q to its peer %s, want sg's log among them", origins, tt.id)
			}
			if !tt.gossip && len(resp.GetWitnessed()) != 0 {
				t.Errorf("nl gossips %q to %s, which is not its peer; want none", origins, tt.id)
			}
		})
	}
}
