package gateway_test

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/devca"
	"github.com/borderlink/borderlink/internal/gateway"
	"github.com/borderlink/borderlink/internal/identity"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// serveFakeNL serves fake as nl's Audit service (nl's certificate) on lis.
func serveFakeNL(t *testing.T, f *federation, lis net.Listener, fake *forkingLog) {
	t.Helper()
	cert, err := f.nodes[nlDomain].ca.IssueTLS(identity.GatewayID(nlDomain).String(), devca.LeafOptions{IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(identity.ServerTLSConfig(identity.NewKeyPair(cert), f.bundles, nil, nil))))
	blv1.RegisterAuditServer(srv, fake)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
}

// TestSplitViewThroughGossip: nl (fakes serving nl's Audit service with
// nl's real key) shows sg one history and cn another. Each witness alone
// sees a consistent log; cn, which never saw the history nl showed sg,
// catches nl through the checkpoint sg gossips with its own, and the
// reverse; each keeps both checkpoints as evidence, once.
func TestSplitViewThroughGossip(t *testing.T) {
	tests := []struct {
		name           string
		sgSize, cnSize int64
	}{
		{"same size, two roots", 8, 8},
		{"different sizes, no consistency proof", 8, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lisSG, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			lisCN, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			logs := map[string]*syncBuffer{sgDomain: {}, cnDomain: {}}
			f := startFederation(t, func(d string, o *gateway.Options) {
				switch d {
				case sgDomain:
					o.Peers[nlDomain] = lisSG.Addr().String()
				case cnDomain:
					o.Peers[nlDomain] = lisCN.Addr().String()
				default:
					return
				}
				o.Logger = slog.New(slog.NewTextHandler(logs[d], nil))
			})
			nl := f.nodes[nlDomain]
			signer, err := note.NewSigner(nl.auditKeySigner)
			if err != nil {
				t.Fatal(err)
			}
			toSG, toCN := &forkingLog{signer: signer}, &forkingLog{signer: signer}
			forked := forkTree(t, 12, 3) // rewrites index 3 onwards
			toSG.show(forkTree(t, 12, 12), tt.sgSize)
			toCN.show(forked, tt.cnSize)
			serveFakeNL(t, f, lisSG, toSG)
			serveFakeNL(t, f, lisCN, toCN)
			// Gossip rides with a gateway's own checkpoint: give sg and cn
			// a record each (a refused exchange is logged on both sides).
			f.local(t, sgDomain).GetPartnerDeclaration(context.Background(), &blv1.GetPartnerDeclarationRequest{Partner: cnDomain, Id: "CN-NONE", Purpose: "risk-assessment"})

			for _, tc := range []struct{ at, witness string }{{cnDomain, sgDomain}, {sgDomain, cnDomain}} {
				want := "partner audit log is not consistent with what another witness was shown"
				deadline := time.Now().Add(10 * time.Second)
				for !strings.Contains(logs[tc.at].String(), want) {
					if time.Now().After(deadline) {
						t.Fatalf("%s reported no split view through %s's gossip after 10s:\n%s", tc.at, tc.witness, logs[tc.at])
					}
					time.Sleep(20 * time.Millisecond)
				}
				out := logs[tc.at].String()
				if !strings.Contains(out, "partner="+nlDomain) || !strings.Contains(out, "witness="+tc.witness) || !strings.Contains(out, "another witness accepted size") {
					t.Errorf("%s's split view report lacks the partner, the witness or the evidence:\n%s", tc.at, out)
				}
				// Each witness alone saw a consistent log.
				if strings.Contains(out, "what it showed before") {
					t.Errorf("%s's own witnessing reported a split view it could not see alone:\n%s", tc.at, out)
				}
				// The evidence: what nl showed this gateway, and what it
				// showed the witness (cn is shown the larger, forked tree).
				ev := audit.SplitView{Detection: audit.DetectedGossip, Witness: tc.witness,
					Accepted: audit.Checkpoint{Size: tt.sgSize}, Conflicting: audit.Checkpoint{Size: tt.cnSize}}
				if tc.at == cnDomain {
					ev.Accepted, ev.Conflicting = ev.Conflicting, ev.Accepted
				}
				checkSplitViewKept(t, f, tc.at, logs[tc.at], ev, forked)
			}
			// Gossip is served with the checkpoint, carrying the witness's
			// cosignature of what it accepted.
			resp, err := blv1.NewAuditClient(f.conn(t, sgDomain, "spiffe://cn.customs.example/gateway", nil)).GetCheckpoint(context.Background(), &blv1.GetCheckpointRequest{})
			if err != nil {
				t.Fatal(err)
			}
			cv, _ := audit.NewCosignatureVerifier(f.nodes[sgDomain].auditKey, audit.WitnessName(sgDomain))
			found := false
			for _, g := range resp.GetWitnessed() {
				if c, err := audit.OpenCheckpoint([]byte(g), verifierOf(t, nl)); err == nil && c.Size == tt.sgSize {
					_, _, err := audit.OpenCosigned([]byte(g), cv)
					found = err == nil
				}
			}
			if !found {
				t.Errorf("sg's checkpoint response gossips no cosigned nl checkpoint of size %d: %q", tt.sgSize, resp.GetWitnessed())
			}
		})
	}
}
