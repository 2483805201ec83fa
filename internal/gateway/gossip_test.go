package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

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
			forked := forkTree(t, 12, 3) // rewrites index 3 onwards
			f, logs := forkedNLWitnesses(t, nil, func(toSG, toCN *forkingLog) {
				toSG.show(forkTree(t, 12, 12), tt.sgSize)
				toCN.show(forked, tt.cnSize)
			})
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
				if c, err := audit.OpenCheckpoint([]byte(g), verifierOf(t, f.nodes[nlDomain])); err == nil && c.Size == tt.sgSize {
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

// serveFake serves srv as domain's Audit service (domain's gateway
// certificate) on lis.
func serveFake(t *testing.T, f *federation, lis net.Listener, domain string, srv blv1.AuditServer) {
	t.Helper()
	cert, err := f.nodes[domain].ca.IssueTLS(identity.GatewayID(domain).String(), devca.LeafOptions{IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(identity.ServerTLSConfig(identity.NewKeyPair(cert), f.bundles, nil, nil))))
	blv1.RegisterAuditServer(s, srv)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
}

// gossipingLog is a witness's Audit service (cn's, with cn's real key)
// that serves a constant checkpoint of its own log and the gossip the
// test picks.
type gossipingLog struct {
	blv1.UnimplementedAuditServer
	checkpoint string
	gossip     []string
	mu         sync.Mutex
	fetched    []time.Time // when its checkpoint was fetched
}

func (g *gossipingLog) GetCheckpoint(context.Context, *blv1.GetCheckpointRequest) (*blv1.GetCheckpointResponse, error) {
	g.mu.Lock()
	g.fetched = append(g.fetched, time.Now())
	g.mu.Unlock()
	return &blv1.GetCheckpointResponse{Checkpoint: g.checkpoint, Witnessed: g.gossip}, nil
}

func (g *gossipingLog) AddCosignature(context.Context, *blv1.AddCosignatureRequest) (*blv1.AddCosignatureResponse, error) {
	return &blv1.AddCosignatureResponse{}, nil
}

// waitWitnessed polls until witness has accepted a checkpoint of
// partner's log, failing with the witness's log after within.
func waitWitnessed(t *testing.T, witness *node, partner string, within time.Duration, logs *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if _, err := witness.store.LastWitnessed(context.Background(), audit.Origin(partner)); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not witness %s within %v:\n%s", witness.domain, partner, within, logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitLog waits until the log holds want.
func waitLog(t *testing.T, logs *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q logged after 10s:\n%s", want, logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metricsOf scrapes a gateway's metrics.
func metricsOf(n *node) string {
	rec := httptest.NewRecorder()
	n.gw.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

// TestWitnessRefusesRetiredKey: nl rotated its audit key and sg knows
// the retired one (peers.nl.retired_audit_keys). A checkpoint signed with
// the retired key — by whoever may hold it now — is not accepted, not
// cosigned, and not a split view.
func TestWitnessRefusesRetiredKey(t *testing.T) {
	retiredSK, retiredVK, err := audit.GenerateKey(audit.Origin(nlDomain))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	f := startFederation(t, func(d string, o *gateway.Options) {
		if d == sgDomain {
			o.Peers[nlDomain] = lis.Addr().String()
			o.Audit.PeerRetiredKeys = map[string][]string{nlDomain: {retiredVK}}
			o.Logger = slog.New(slog.NewTextHandler(logs, nil))
		}
	})
	retired, err := note.NewSigner(retiredSK)
	if err != nil {
		t.Fatal(err)
	}
	fake := &forkingLog{signer: retired}
	fake.show(forkTree(t, 12, 12), 8)
	serveFake(t, f, lis, nlDomain, fake)

	waitLog(t, logs, "witnessing partner audit log failed")
	time.Sleep(200 * time.Millisecond) // a few more rounds
	out := logs.String()
	if !strings.Contains(out, "partner="+nlDomain) || strings.Contains(out, "SPLIT VIEW") {
		t.Errorf("sg's log:\n%s", out)
	}
	if msg, err := f.nodes[sgDomain].store.LastWitnessed(context.Background(), audit.Origin(nlDomain)); !errors.Is(err, audit.ErrNoCheckpoint) {
		t.Errorf("sg accepted a checkpoint signed with nl's retired key: %s %v", msg, err)
	}
}

// TestGossipWithRetiredKey: cn (a fake with cn's real key) gossips nl
// checkpoints signed with nl's retired key that contradict what sg
// accepted from nl. Whoever holds a leaked retired key could forge them:
// sg reports a verification failure, not a split view, and keeps no
// evidence against nl.
func TestGossipWithRetiredKey(t *testing.T) {
	retiredSK, retiredVK, err := audit.GenerateKey(audit.Origin(nlDomain))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	f := startFederation(t, func(d string, o *gateway.Options) {
		switch d {
		case sgDomain:
			o.Peers[cnDomain] = lis.Addr().String()
			o.Audit.PeerRetiredKeys = map[string][]string{nlDomain: {retiredVK}}
			o.Logger = slog.New(slog.NewTextHandler(logs, nil))
			// cn is not served until nl has been witnessed: its calls
			// hang, and cn comes first in each round, so with the
			// default 10s its budget (2 × PeerTimeout) outlasted the wait
			// below whenever a round started before cn was served.
			o.Limits.PeerTimeout = 2 * time.Second
		case nlDomain:
			o.Audit.CheckpointInterval = time.Hour // only the size-1 checkpoint below
		}
	})
	ctx := context.Background()
	sg, cn := f.nodes[sgDomain], f.nodes[cnDomain]
	if _, err := f.local(t, sgDomain).GetPartnerDeclaration(ctx, &blv1.GetPartnerDeclarationRequest{Partner: nlDomain, Id: "NL-1", Purpose: "risk-assessment"}); err != nil {
		t.Fatal(err)
	}
	auditor := blv1.NewAuditClient(f.conn(t, nlDomain, "spiffe://nl.customs.example/auditor/dpa", nil))
	if _, err := auditor.GetCheckpoint(ctx, &blv1.GetCheckpointRequest{SignNow: true}); err != nil {
		t.Fatal(err)
	}
	waitWitnessed(t, sg, nlDomain, 30*time.Second, logs)

	retired, _ := note.NewSigner(retiredSK)
	cnSigner, _ := note.NewSigner(cn.auditKeySigner)
	sign := func(s note.Signer, c audit.Checkpoint) string {
		msg, err := audit.SignCheckpoint(s, c)
		if err != nil {
			t.Fatal(err)
		}
		return string(msg)
	}
	fake := &gossipingLog{
		checkpoint: sign(cnSigner, audit.Checkpoint{Origin: audit.Origin(cnDomain), Size: 1, Hash: tlog.RecordHash([]byte("cn"))}),
		gossip: []string{
			sign(retired, audit.Checkpoint{Origin: audit.Origin(nlDomain), Size: 1, Hash: tlog.RecordHash([]byte("forged"))}),
			sign(retired, audit.Checkpoint{Origin: audit.Origin(nlDomain), Size: 2, Hash: tlog.RecordHash([]byte("forged"))}),
		},
	}
	serveFake(t, f, lis, cnDomain, fake)

	waitLog(t, logs, "checking witness gossip failed")
	time.Sleep(300 * time.Millisecond) // a few more rounds
	out := logs.String()
	if strings.Contains(out, "SPLIT VIEW") || strings.Contains(out, "GOSSIP UNPROVEN") || !strings.Contains(out, "witness="+cnDomain) {
		t.Errorf("sg's log:\n%s", out)
	}
	if views, err := sg.store.SplitViews(ctx, "", 0); err != nil || len(views) != 0 {
		t.Errorf("sg kept evidence against nl from gossip signed with its retired key: %+v %v", views, err)
	}
	if m := metricsOf(sg); !strings.Contains(m, `borderlink_audit_split_views{origin="`+audit.Origin(nlDomain)+`"} 0`) ||
		!strings.Contains(m, `borderlink_audit_gossip_unproven{origin="`+audit.Origin(nlDomain)+`"} 0`) {
		t.Errorf("sg's metrics:\n%s", m)
	}
}

// TestGossipFloodBounded: cn (a fake with cn's real key) gossips 50
// distinct checkpoints of nl, all validly signed by nl, and nl (a fake
// with nl's real key) stalls every consistency proof. sg checks only the
// largest of them, within cn's witnessing budget, and keeps them from
// holding up its rounds: it still witnesses cn and nl every round, and
// still reports the unproven gossip. Asking about each of them every
// round (one stalled proof, PeerTimeout, each) took ~50 × PeerTimeout a
// round.
func TestGossipFloodBounded(t *testing.T) {
	const peerTimeout = 200 * time.Millisecond
	lis := map[string]net.Listener{}
	for _, d := range []string{nlDomain, cnDomain} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lis[d] = l
	}
	logs := &syncBuffer{}
	f := startFederation(t, func(d string, o *gateway.Options) {
		if d != sgDomain {
			return
		}
		o.Peers[nlDomain] = lis[nlDomain].Addr().String()
		o.Peers[cnDomain] = lis[cnDomain].Addr().String()
		o.Limits.PeerTimeout = peerTimeout
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	sg := f.nodes[sgDomain]
	nlSigner, err := note.NewSigner(f.nodes[nlDomain].auditKeySigner)
	if err != nil {
		t.Fatal(err)
	}
	tree := forkTree(t, 60, 60)
	nl := &forkingLog{signer: nlSigner}
	nl.show(tree, 8)
	nl.stallProofs(true)
	serveFakeNL(t, f, lis[nlDomain], nl)
	waitWitnessed(t, sg, nlDomain, 10*time.Second, logs)

	cnSigner, err := note.NewSigner(f.nodes[cnDomain].auditKeySigner)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(s note.Signer, c audit.Checkpoint) string {
		msg, err := audit.SignCheckpoint(s, c)
		if err != nil {
			t.Fatal(err)
		}
		return string(msg)
	}
	cn := &gossipingLog{checkpoint: sign(cnSigner, audit.Checkpoint{Origin: audit.Origin(cnDomain), Size: 1, Hash: tlog.RecordHash([]byte("cn"))})}
	for n := int64(9); n < 59; n++ {
		root, err := tree.Root(n)
		if err != nil {
			t.Fatal(err)
		}
		cn.gossip = append(cn.gossip, sign(nlSigner, audit.Checkpoint{Origin: audit.Origin(nlDomain), Size: n, Hash: root}))
	}
	serveFake(t, f, lis[cnDomain], cnDomain, cn)
	waitLog(t, logs, "witness gossip not proven consistent by the partner")

	// Watch a few rounds: each partner is witnessed every round, and a
	// round takes at most its partners' budgets (2 × PeerTimeout each)
	// and the retry of the unproven gossip; the bound is generous.
	const window, maxGap = 4 * time.Second, 5*peerTimeout + time.Second
	from := time.Now()
	time.Sleep(window)
	to := time.Now()
	for _, p := range []struct {
		name    string
		mu      *sync.Mutex
		fetched *[]time.Time
	}{{cnDomain, &cn.mu, &cn.fetched}, {nlDomain, &nl.mu, &nl.fetched}} {
		p.mu.Lock()
		times := []time.Time{from}
		for _, at := range *p.fetched {
			if at.After(from) && at.Before(to) {
				times = append(times, at)
			}
		}
		p.mu.Unlock()
		times = append(times, to)
		var longest time.Duration
		for i := 1; i < len(times); i++ {
			longest = max(longest, times[i].Sub(times[i-1]))
		}
		if rounds := len(times) - 2; rounds < 3 || longest > maxGap {
			t.Errorf("sg witnessed %s %d times in %v, at most %v apart (want 3 or more, at most %v apart)", p.name, rounds, window, longest, maxGap)
		}
	}
	// The stalled gossip is still reported.
	waitLog(t, logs, "GOSSIP UNPROVEN")
	if m := metricsOf(sg); !strings.Contains(m, `borderlink_audit_gossip_unproven{origin="`+audit.Origin(nlDomain)+`"} 1`+"\n") {
		t.Errorf("sg's metrics lack the unproven gossip:\n%s", m)
	}
	if out := logs.String(); strings.Contains(out, "SPLIT VIEW") {
		t.Errorf("sg reported a split view it could not prove:\n%s", out)
	}
}

// TestGossipUnprovenReported: nl shows sg and cn trees of different sizes
// that fork, and refuses every consistency proof — or stalls it until
// the caller gives up, which must count the same — so that neither can
// prove a split view from the other's gossip. Each keeps the gossip,
// asks again every round, and after GossipUnprovenRounds rounds reports
// it at error level and in borderlink_audit_gossip_unproven; once nl
// answers, the split view is found and the report clears.
func TestGossipUnprovenReported(t *testing.T) {
	for _, mode := range []string{"refuses", "stalls"} {
		t.Run(mode, func(t *testing.T) { testGossipUnprovenReported(t, mode == "stalls") })
	}
}

func testGossipUnprovenReported(t *testing.T, stall bool) {
	var fakes []*forkingLog
	f, logs := forkedNLWitnesses(t, func(o *gateway.Options) {
		if stall {
			// Each stalled proof takes this long: keep rounds short.
			o.Limits.PeerTimeout = time.Second
		}
	}, func(toSG, toCN *forkingLog) {
		toSG.show(forkTree(t, 12, 12), 8)
		toCN.show(forkTree(t, 12, 3), 10)
		fakes = []*forkingLog{toSG, toCN}
		for _, fake := range fakes {
			if stall {
				fake.stallProofs(true)
			} else {
				fake.refuseProofs(true)
			}
		}
	})
	toSG, toCN := fakes[0], fakes[1]
	// Gossip rides with a gateway's own checkpoint.
	f.local(t, sgDomain).GetPartnerDeclaration(context.Background(), &blv1.GetPartnerDeclarationRequest{Partner: cnDomain, Id: "CN-NONE", Purpose: "risk-assessment"})

	origin := audit.Origin(nlDomain)
	for _, d := range []string{sgDomain, cnDomain} {
		waitLog(t, logs[d], "GOSSIP UNPROVEN")
		out := logs[d].String()
		first := out[strings.Index(out, "GOSSIP UNPROVEN"):]
		first = first[:strings.Index(first, "\n")]
		if !strings.Contains(first, "partner="+nlDomain) || !strings.Contains(first, fmt.Sprintf("rounds=%d", gateway.GossipUnprovenRounds)) {
			t.Errorf("%s's first report: %s", d, first)
		}
		if stall && !strings.Contains(first, "DeadlineExceeded") {
			t.Errorf("%s's first report does not name the stalled proof: %s", d, first)
		}
		if strings.Contains(out, "SPLIT VIEW") {
			t.Errorf("%s reported a split view it could not prove:\n%s", d, out)
		}
		if m := metricsOf(f.nodes[d]); !strings.Contains(m, `borderlink_audit_gossip_unproven{origin="`+origin+`"} 1`+"\n") {
			t.Errorf("%s's metrics lack the unproven gossip:\n%s", d, m)
		}
	}
	// nl answers again: the proofs fail, the split view is kept, and the
	// unproven gossip is no longer counted.
	for _, fake := range []*forkingLog{toSG, toCN} {
		fake.refuseProofs(false)
		fake.stallProofs(false)
	}
	for _, d := range []string{sgDomain, cnDomain} {
		waitLog(t, logs[d], "SPLIT VIEW: partner audit log is not consistent with what another witness was shown")
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(metricsOf(f.nodes[d]), `borderlink_audit_gossip_unproven{origin="`+origin+`"} 0`+"\n") {
			if time.Now().After(deadline) {
				t.Fatalf("%s still counts the unproven gossip after nl answered:\n%s", d, metricsOf(f.nodes[d]))
			}
			time.Sleep(20 * time.Millisecond)
		}
		// The report is logged before the evidence is stored.
		var (
			views []audit.KeptSplitView
			err   error
		)
		for {
			views, err = f.nodes[d].store.SplitViews(context.Background(), origin, 0)
			if err != nil || len(views) > 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil || len(views) != 1 {
			t.Errorf("%s's evidence: %+v, %v", d, views, err)
		}
	}
}

// TestWitnessUnprovenReported: nl (a fake serving nl's Audit service
// with nl's real key) shows sg, its direct witness, a checkpoint larger
// than the one sg accepted and refuses every consistency proof (or stalls
// it until sg gives up, which must count the same). sg does
// not accept or cosign it, asks again every round, and after
// GossipUnprovenRounds rounds reports it at error level and in
// borderlink_audit_witness_unproven. Once nl answers, the report clears:
// a consistent checkpoint is accepted and cosigned; a forked one is a
// split view, kept as evidence — also when nl meanwhile shows a larger
// checkpoint that extends the accepted one (moving on does not clear a
// checkpoint it showed and did not prove).
func TestWitnessUnprovenReported(t *testing.T) {
	tests := []struct {
		name string
		// shown while proofs are refused, and then once nl answers.
		shown, after int64
		tree         func(t *testing.T) *audit.Tree // the tree shown is signed from
		splitView    bool
		stall        bool // stall proofs instead of refusing them
	}{
		{"consistent", 8, 8, func(t *testing.T) *audit.Tree { return forkTree(t, 12, 12) }, false, false},
		{"forked", 10, 10, func(t *testing.T) *audit.Tree { return forkTree(t, 12, 3) }, true, false},
		{"forked, then moves on", 10, 12, func(t *testing.T) *audit.Tree { return forkTree(t, 12, 3) }, true, false},
		{"forked, stalls", 10, 10, func(t *testing.T) *audit.Tree { return forkTree(t, 12, 3) }, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			logs := &syncBuffer{}
			f := startFederation(t, func(d string, o *gateway.Options) {
				if d == sgDomain {
					o.Peers[nlDomain] = lis.Addr().String()
					o.Logger = slog.New(slog.NewTextHandler(logs, nil))
					if tt.stall {
						// Each stalled proof takes this long: keep rounds short.
						o.Limits.PeerTimeout = time.Second
					}
				}
			})
			ctx := context.Background()
			nl, sg := f.nodes[nlDomain], f.nodes[sgDomain]
			signer, err := note.NewSigner(nl.auditKeySigner)
			if err != nil {
				t.Fatal(err)
			}
			origin := audit.Origin(nlDomain)
			honest := forkTree(t, 12, 12)
			fake := &forkingLog{signer: signer}
			fake.show(honest, 5)
			serveFake(t, f, lis, nlDomain, fake)
			accepted := func() int64 {
				msg, err := sg.store.LastWitnessed(ctx, origin)
				if err != nil {
					return 0
				}
				c, err := audit.OpenCheckpoint(msg, verifierOf(t, nl))
				if err != nil {
					t.Fatal(err)
				}
				return c.Size
			}
			waitAccepted := func(size int64) {
				t.Helper()
				deadline := time.Now().Add(10 * time.Second)
				for accepted() != size || !fake.cosignedSize(size) {
					if time.Now().After(deadline) {
						t.Fatalf("sg did not accept and cosign nl's checkpoint of size %d (accepted %d):\n%s", size, accepted(), logs)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			metric := func(v int) string {
				return fmt.Sprintf("borderlink_audit_witness_unproven{origin=%q} %d\n", origin, v)
			}
			waitAccepted(5)
			if m := metricsOf(sg); !strings.Contains(m, metric(0)) {
				t.Errorf("sg's metrics lack %q:\n%s", metric(0), m)
			}

			if tt.stall {
				fake.stallProofs(true)
			} else {
				fake.refuseProofs(true)
			}
			fake.show(tt.tree(t), tt.shown)
			waitLog(t, logs, "WITNESS UNPROVEN")
			out := logs.String()
			first := out[strings.Index(out, "WITNESS UNPROVEN"):]
			first = first[:strings.Index(first, "\n")]
			for _, want := range []string{"partner=" + nlDomain, "origin=" + origin, "accepted_size=5", fmt.Sprintf("size=%d", tt.shown),
				fmt.Sprintf("rounds=%d", gateway.GossipUnprovenRounds)} {
				if !strings.Contains(first, want) {
					t.Errorf("sg's first report lacks %q: %s", want, first)
				}
			}
			if strings.Contains(out, "SPLIT VIEW") {
				t.Errorf("sg reported a split view it could not prove:\n%s", out)
			}
			if m := metricsOf(sg); !strings.Contains(m, metric(1)) || !strings.Contains(m, fmt.Sprintf("borderlink_audit_gossip_unproven{origin=%q} 0\n", origin)) {
				t.Errorf("sg's metrics lack the unproven checkpoint (and only as not gossip):\n%s", m)
			}
			if got := accepted(); got != 5 || fake.cosignedSize(tt.shown) {
				t.Errorf("sg accepted nl's checkpoint of size %d (cosigned the unproven one: %v)", got, fake.cosignedSize(tt.shown))
			}

			// nl answers again.
			if tt.after != tt.shown {
				fake.show(honest, tt.after)
			}
			fake.refuseProofs(false)
			fake.stallProofs(false)
			deadline := time.Now().Add(10 * time.Second)
			for !strings.Contains(metricsOf(sg), metric(0)) {
				if time.Now().After(deadline) {
					t.Fatalf("sg still reports the unproven checkpoint after nl answered:\n%s\n%s", metricsOf(sg), logs)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if !tt.splitView {
				waitAccepted(tt.shown)
				if out := logs.String(); strings.Contains(out, "SPLIT VIEW") {
					t.Errorf("sg reported a split view of a consistent log:\n%s", out)
				}
				return
			}
			waitLog(t, logs, "SPLIT VIEW: partner audit log is not consistent with what it showed before")
			if tt.after == tt.shown {
				// nl still shows the forked checkpoint: detected every round.
				checkSplitViewKept(t, f, sgDomain, logs, audit.SplitView{
					Detection: audit.DetectedDirect, Accepted: audit.Checkpoint{Size: 5}, Conflicting: audit.Checkpoint{Size: tt.shown},
				}, tt.tree(t))
				if got := accepted(); got != 5 {
					t.Errorf("sg accepted nl's forked checkpoint of size %d", got)
				}
				return
			}
			// nl moved on to a checkpoint that extends the accepted one: it
			// is accepted, and the forked one it showed before is a split
			// view against it.
			waitAccepted(tt.after)
			var views []audit.KeptSplitView
			deadline = time.Now().Add(10 * time.Second)
			for {
				// The report is logged before the evidence is stored.
				views, err = sg.store.SplitViews(ctx, origin, 0)
				if err != nil || len(views) > 0 || time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err != nil || len(views) != 1 {
				t.Fatalf("sg's evidence: %+v, %v", views, err)
			}
			if v := views[0]; v.Detection != audit.DetectedDirect || v.Accepted.Size != tt.after || v.Conflicting.Size != tt.shown {
				t.Errorf("sg's evidence: detection %q, sizes %d, %d; want direct, %d, %d\n%s", v.Detection, v.Accepted.Size, v.Conflicting.Size, tt.after, tt.shown, logs)
			}
		})
	}
}

// TestGossipOnlyToPeers: a gateway gossips the partner checkpoints it
// accepted to its auditors (all) and to the partner gateways configured
// as its peers (all but their own log's), not to agencies.
func TestGossipOnlyToPeers(t *testing.T) {
	f := startFederation(t)
	ctx := context.Background()
	for _, from := range []string{sgDomain, cnDomain} {
		// Records on sg, cn and nl, so that each signs checkpoints (a
		// refusal is audited on both sides too).
		f.local(t, from).GetPartnerDeclaration(ctx, &blv1.GetPartnerDeclarationRequest{Partner: nlDomain, Id: "NL-1", Purpose: "risk-assessment"})
	}
	origins := func(c blv1.AuditClient) []string {
		t.Helper()
		resp, err := c.GetCheckpoint(ctx, &blv1.GetCheckpointRequest{})
		if status.Code(err) == codes.NotFound {
			return nil // sg has not signed a checkpoint yet
		}
		if err != nil {
			t.Fatal(err)
		}
		return gossipOrigins(t, resp)
	}
	auditor := blv1.NewAuditClient(f.conn(t, sgDomain, "spiffe://sg.customs.example/auditor/dpa", nil))
	deadline := time.Now().Add(10 * time.Second)
	for len(origins(auditor)) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("sg gossips %q to its auditor after 10s, want nl's and cn's logs", origins(auditor))
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, tt := range []struct {
		id   string
		want []string
	}{
		{"spiffe://sg.customs.example/auditor/dpa", []string{audit.Origin(cnDomain), audit.Origin(nlDomain)}},
		{identity.GatewayID(cnDomain).String(), []string{audit.Origin(nlDomain)}},
		{identity.GatewayID(nlDomain).String(), []string{audit.Origin(cnDomain)}},
		{"spiffe://nl.customs.example/agency/health", nil},
		{"spiffe://cn.customs.example/agency/health", nil},
	} {
		got := origins(blv1.NewAuditClient(f.conn(t, sgDomain, tt.id, nil)))
		if !slices.Equal(got, tt.want) {
			t.Errorf("sg gossips %q to %s, want %q", got, tt.id, tt.want)
		}
	}
}

// forkedNLWitnesses starts a federation whose sg and cn witness a fake nl
// (one forkingLog each, signed with nl's real key, served on loopback)
// instead of the real one, with their logs captured; tweak adjusts sg's
// and cn's options, setup sets what each fake shows before it is served.
func forkedNLWitnesses(t *testing.T, tweak func(*gateway.Options), setup func(toSG, toCN *forkingLog)) (*federation, map[string]*syncBuffer) {
	t.Helper()
	lis := map[string]net.Listener{}
	for _, d := range []string{sgDomain, cnDomain} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lis[d] = l
	}
	logs := map[string]*syncBuffer{sgDomain: {}, cnDomain: {}}
	f := startFederation(t, func(d string, o *gateway.Options) {
		if d != sgDomain && d != cnDomain {
			return
		}
		o.Peers[nlDomain] = lis[d].Addr().String()
		o.Logger = slog.New(slog.NewTextHandler(logs[d], nil))
		if tweak != nil {
			tweak(o)
		}
	})
	signer, err := note.NewSigner(f.nodes[nlDomain].auditKeySigner)
	if err != nil {
		t.Fatal(err)
	}
	toSG, toCN := &forkingLog{signer: signer}, &forkingLog{signer: signer}
	setup(toSG, toCN)
	serveFakeNL(t, f, lis[sgDomain], toSG)
	serveFakeNL(t, f, lis[cnDomain], toCN)
	return f, logs
}

// gossipOrigins lists the origins of the partner checkpoints a
// GetCheckpoint answer gossips.
func gossipOrigins(t *testing.T, resp *blv1.GetCheckpointResponse) []string {
	t.Helper()
	var out []string
	for _, g := range resp.GetWitnessed() {
		body, err := audit.CheckpointText([]byte(g))
		if err != nil {
			t.Fatal(err)
		}
		c, err := audit.ParseCheckpoint(body)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c.Origin)
	}
	return out
}
