package gateway_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"golang.org/x/mod/sumdb/note"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/devca"
	"github.com/borderlink/borderlink/internal/gateway"
	"github.com/borderlink/borderlink/internal/identity"
	"github.com/borderlink/borderlink/internal/policy"
	"github.com/borderlink/borderlink/internal/release"
	"github.com/borderlink/borderlink/internal/store"
	"github.com/borderlink/borderlink/internal/store/sqlite"
	"github.com/borderlink/borderlink/internal/store/storetest"
	"github.com/borderlink/borderlink/policies"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

const (
	nlDomain = "nl.customs.example"
	sgDomain = "sg.customs.example"
	cnDomain = "cn.customs.example"
)

// decisionTime lies inside every shipped agreement's validity window, so
// the test does not depend on the day it runs.
var decisionTime = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// node is one administration: its CA, store, gateway and listener.
type node struct {
	domain  string
	ca      *devca.CA
	dbPath  string // the store's file
	store   *sqlite.Store
	audit   *failingAudit
	pseud   *release.Pseudonymizer
	addr    string
	rejects chan rejection
	// auditKey is the verifier key of the gateway's audit log,
	// auditKeySigner its signer key.
	auditKey, auditKeySigner string
	gw                       *gateway.Gateway
	engine                   *policy.Engine
}

type rejection struct {
	claimed string
	err     error
}

// failingAudit lets a test make audit appends fail, to prove nothing is
// released without a record. Everything else is the real SQLite store.
type failingAudit struct {
	*sqlite.Store
	mu   sync.Mutex
	fail bool
}

func (f *failingAudit) AppendAudit(ctx context.Context, rec *blv1.AuditRecord) (uint64, error) {
	f.mu.Lock()
	fail := f.fail
	f.mu.Unlock()
	if fail {
		return 0, errors.New("disk full")
	}
	return f.Store.AppendAudit(ctx, rec)
}

func (f *failingAudit) setFail(v bool) { f.mu.Lock(); f.fail = v; f.mu.Unlock() }

type federation struct {
	nodes   map[string]*node
	bundles *identity.Bundles
}

// startFederation runs three gateways in this process on loopback ports,
// with real mTLS, the shipped policy and agreements, and SQLite files.
// Tweaks change a gateway's options before it starts.
func startFederation(t *testing.T, tweaks ...func(domain string, o *gateway.Options)) *federation {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &federation{nodes: map[string]*node{}, bundles: identity.NewBundles()}
	listeners := map[string]net.Listener{}
	for _, d := range []string{nlDomain, sgDomain, cnDomain} {
		ca, err := devca.NewCA(d, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		f.bundles.Add(d, ca.Cert)
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		listeners[d] = lis
		f.nodes[d] = &node{domain: d, ca: ca, addr: lis.Addr().String(), rejects: make(chan rejection, 64)}
	}
	// Each administration's audit key; every gateway knows its partners'
	// verifier keys, so receipts verify.
	auditKeys, auditVKeys := map[string]string{}, map[string]string{}
	for d := range f.nodes {
		sk, vk, err := audit.GenerateKey(audit.Origin(d))
		if err != nil {
			t.Fatal(err)
		}
		auditKeys[d], auditVKeys[d] = sk, vk
	}
	var wg sync.WaitGroup
	for d, n := range f.nodes {
		n.dbPath = t.TempDir() + "/gateway.db"
		st, err := sqlite.Open(ctx, n.dbPath)
		if err != nil {
			t.Fatal(err)
		}
		n.store = st
		n.audit = &failingAudit{Store: st}
		engine, err := policy.NewEngine(ctx, d, policies.FS, nil)
		if err != nil {
			t.Fatal(err)
		}
		n.pseud, err = release.NewPseudonymizer([]byte(strings.Repeat(d[:2], 16)))
		if err != nil {
			t.Fatal(err)
		}
		cert, err := n.ca.IssueTLS(identity.GatewayID(d).String(), devca.LeafOptions{IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
		if err != nil {
			t.Fatal(err)
		}
		peers := map[string]string{}
		peerKeys := map[string]string{}
		for pd, p := range f.nodes {
			if pd != d {
				peers[pd] = p.addr
				peerKeys[pd] = auditVKeys[pd]
			}
		}
		signer, err := note.NewSigner(auditKeys[d])
		if err != nil {
			t.Fatal(err)
		}
		n.auditKey, n.auditKeySigner = auditVKeys[d], auditKeys[d]
		cosigner, err := audit.NewCosigner(auditKeys[d], audit.WitnessName(d), nil)
		if err != nil {
			t.Fatal(err)
		}
		rejects := n.rejects
		opts := gateway.Options{
			Self: d, KeyPair: identity.NewKeyPair(cert), Bundles: f.bundles, Store: n.audit,
			Policy: engine, Pseudonymizer: n.pseud, Peers: peers,
			Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return decisionTime },
			Audit: gateway.AuditOptions{Signer: signer, Cosigner: cosigner, PeerKeys: peerKeys, CheckpointInterval: 50 * time.Millisecond, WitnessInterval: 50 * time.Millisecond},
			OnReject: func(claimed string, err error) {
				select {
				case rejects <- rejection{claimed, err}:
				default:
				}
			},
		}
		for _, tw := range tweaks {
			tw(d, &opts)
		}
		g, err := gateway.New(opts)
		if err != nil {
			t.Fatal(err)
		}
		n.gw, n.engine = g, engine
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.Serve(ctx, listeners[d]); err != nil {
				t.Errorf("serve %s: %v", d, err)
			}
		}()
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		for _, n := range f.nodes {
			n.store.Close()
		}
	})

	nl := storetest.Declaration("NL-1", 0, "NL", "SG", "85044000", "8471300000")
	nlFood := storetest.Declaration("NL-FOOD", time.Hour, "NO", "NL", "03024200")
	nlUS := storetest.Declaration("NL-US", 2*time.Hour, "NL", "US", "85044000")
	nlArms := storetest.Declaration("NL-ARMS", 3*time.Hour, "NL", "SG", "93020000")
	for _, d := range []*blv1.Declaration{nl, nlFood, nlUS, nlArms} {
		d.Exporter.TaxId = "NL000111222B01"
		d.Importer.TaxId = "NL000111222B01" // same trader on both sides: pseudonyms must link
	}
	mustPut(t, f.nodes[nlDomain], []*blv1.Declaration{nl, nlFood, nlUS, nlArms},
		[]*blv1.RiskAssessment{storetest.RiskAssessment("NL-RA-1", "NL-1", 0.82)})
	mustPut(t, f.nodes[sgDomain], []*blv1.Declaration{storetest.Declaration("SG-1", 0, "SG", "NL", "85044000")}, nil)
	return f
}

func mustPut(t *testing.T, n *node, decls []*blv1.Declaration, risks []*blv1.RiskAssessment) {
	t.Helper()
	if err := n.store.PutRecords(context.Background(), decls, risks); err != nil {
		t.Fatal(err)
	}
}

// conn dials domain's gateway as the identity id, with a certificate from
// the given CA (nil: the identity's own domain CA).
func (f *federation) conn(t *testing.T, domain string, id string, ca *devca.CA) *grpc.ClientConn {
	t.Helper()
	if ca == nil {
		u, err := url.Parse(id)
		if err != nil {
			t.Fatal(err)
		}
		ca = f.nodes[u.Host].ca
	}
	cert, err := ca.IssueTLS(id, devca.LeafOptions{ExtKeyUsage: nil})
	if err != nil {
		t.Fatal(err)
	}
	return f.dialWith(t, domain, &cert)
}

func (f *federation) dialWith(t *testing.T, domain string, cert *tls.Certificate) *grpc.ClientConn {
	t.Helper()
	conf := identity.ClientTLSConfig(identity.NewKeyPair(*cert), f.bundles, identity.GatewayID(domain))
	if cert.Certificate == nil {
		// Answer the server's certificate request with an empty chain.
		conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tls.Certificate{}, nil }
	}
	cc, err := grpc.NewClient(f.nodes[domain].addr, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func (f *federation) local(t *testing.T, domain string) blv1.LocalClient {
	return blv1.NewLocalClient(f.conn(t, domain, "spiffe://"+domain+"/system/cli", nil))
}

func auditOf(t *testing.T, n *node, requestID string) []*blv1.AuditRecord {
	t.Helper()
	recs, err := n.store.ListAudit(context.Background(), store.AuditQuery{RequestID: requestID})
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func allAudit(t *testing.T, n *node) []*blv1.AuditRecord {
	t.Helper()
	recs, err := n.store.ListAudit(context.Background(), store.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func TestExchangeEndToEnd(t *testing.T) {
	f := startFederation(t)
	ctx := context.Background()
	nl, sg := f.nodes[nlDomain], f.nodes[sgDomain]

	t.Run("partner gets a released declaration", func(t *testing.T) {
		resp, err := f.local(t, sgDomain).GetPartnerDeclaration(ctx, &blv1.GetPartnerDeclarationRequest{Partner: nlDomain, Id: "NL-1", Purpose: "risk-assessment"})
		if err != nil {
			t.Fatalf("GetPartnerDeclaration: %v", err)
		}
		d, rel := resp.GetDeclaration(), resp.GetRelease()
		if rel.GetAgreementId() != "nl-sg-risk-2026" || rel.GetGrantId() != "nl-to-sg" {
			t.Errorf("agreement/grant = %s/%s", rel.GetAgreementId(), rel.GetGrantId())
		}
		if got := d.GetDeclarant().GetName(); got != "***" {
			t.Errorf("declarant.name = %q, want masked", got)
		}
		wantPseudonym := nl.pseud.Pseudonym(identity.GatewayID(sgDomain).String(), "NL000111222B01")
		if got := d.GetExporter().GetTaxId(); got != wantPseudonym {
			t.Errorf("exporter.tax_id = %q, want pseudonym %q", got, wantPseudonym)
		}
		if d.GetImporter().GetTaxId() != "NL000111222B01" {
			t.Errorf("importer.tax_id = %q, want clear (released whole)", d.GetImporter().GetTaxId())
		}
		if len(d.GetDocuments()) != 0 || d.GetDeclarationOffice() != "" || d.GetExporter().GetAddress().GetCity() != "" {
			t.Errorf("fields outside the grant were released: documents=%v office=%q exporter city=%q",
				d.GetDocuments(), d.GetDeclarationOffice(), d.GetExporter().GetAddress().GetCity())
		}
		if !slices.Equal(rel.GetMasked(), []string{"declarant.name"}) || !slices.Equal(rel.GetPseudonymized(), []string{"exporter.tax_id"}) {
			t.Errorf("masked %v pseudonymized %v", rel.GetMasked(), rel.GetPseudonymized())
		}
		if rel.GetObligations().GetRetentionDays() != 365 {
			t.Errorf("obligations = %v", rel.GetObligations())
		}
		digest, _ := release.Digest(d)
		if rel.GetSha256() != digest {
			t.Errorf("release sha256 %s, digest of received record %s", rel.GetSha256(), digest)
		}

		prov, cons := auditOf(t, nl, resp.GetRequestId()), auditOf(t, sg, resp.GetRequestId())
		if len(prov) != 1 || len(cons) != 1 {
			t.Fatalf("audit records for request %s: provider %d, consumer %d; want 1 each", resp.GetRequestId(), len(prov), len(cons))
		}
		p, c := prov[0], cons[0]
		if p.GetSide() != blv1.AuditSide_AUDIT_SIDE_PROVIDER || c.GetSide() != blv1.AuditSide_AUDIT_SIDE_CONSUMER {
			t.Errorf("sides = %v, %v", p.GetSide(), c.GetSide())
		}
		for _, r := range []*blv1.AuditRecord{p, c} {
			if r.GetDecision() != blv1.AuditDecision_AUDIT_DECISION_ALLOW || r.GetReleaseSha256() != digest || r.GetAgreementId() != "nl-sg-risk-2026" ||
				!slices.Equal(r.GetReleasedFields(), rel.GetFields()) || r.GetPolicyRevision() != rel.GetPolicyRevision() || r.GetVersion() != 1 || r.GetStatus() != "OK" {
				t.Errorf("audit record does not match the release: %v", r)
			}
		}
		if in := p.GetPolicyInput(); !strings.Contains(in, `"action":"declaration.get"`) || !strings.Contains(in, `"hs_chapters":["84","85"]`) ||
			strings.Contains(in, "Importer Pte") || strings.Contains(in, "NL000111222B01") {
			t.Errorf("provider policy_input = %s, want the attributes and no payload", in)
		}
		if p.GetCallerId() != "spiffe://sg.customs.example/gateway" || c.GetCallerId() != "spiffe://sg.customs.example/system/cli" || c.GetPeerId() != "spiffe://nl.customs.example/gateway" {
			t.Errorf("identities: provider caller %s, consumer caller %s peer %s", p.GetCallerId(), c.GetCallerId(), c.GetPeerId())
		}
	})

	t.Run("a national rule withholds the traders of an arms consignment", func(t *testing.T) {
		resp, err := f.local(t, sgDomain).GetPartnerDeclaration(ctx, &blv1.GetPartnerDeclarationRequest{Partner: nlDomain, Id: "NL-ARMS", Purpose: "risk-assessment"})
		if err != nil {
			t.Fatal(err)
		}
		d := resp.GetDeclaration()
		if d.GetImporter() != nil || d.GetExporter() != nil || d.GetDeclarant() != nil || len(d.GetGoodsItems()) != 1 {
			t.Errorf("arms release = %v, want goods without parties", d)
		}
	})

	t.Run("agency gets a narrower release", func(t *testing.T) {
		ex := blv1.NewExchangeClient(f.conn(t, nlDomain, "spiffe://nl.customs.example/agency/health", nil))
		var header metadata.MD
		resp, err := ex.GetDeclaration(ctx, &blv1.GetDeclarationRequest{Id: "NL-FOOD", Purpose: "sanitary-control"}, grpc.Header(&header))
		if err != nil {
			t.Fatalf("GetDeclaration: %v", err)
		}
		if ids := header.Get(gateway.RequestIDHeader); len(ids) != 1 || len(auditOf(t, nl, ids[0])) != 1 {
			t.Errorf("request id header %v does not name the provider's audit record", ids)
		}
		d := resp.GetDeclaration()
		if d.GetExporter() != nil || d.GetDeclarant() != nil || d.GetInvoiceAmount() != nil || d.GetGoodsItems()[0].GetStatisticalValue() != nil {
			t.Errorf("agency got fields outside its grant: %v", d)
		}
		if got := d.GetGoodsItems()[0].GetHsCode(); got != "03024200" {
			t.Errorf("hs_code = %q", got)
		}
		agencyPseudonym := nl.pseud.Pseudonym("spiffe://nl.customs.example/agency/health", "NL000111222B01")
		sgPseudonym := nl.pseud.Pseudonym(identity.GatewayID(sgDomain).String(), "NL000111222B01")
		if d.GetImporter().GetTaxId() != agencyPseudonym || agencyPseudonym == sgPseudonym {
			t.Errorf("importer.tax_id = %q, want the agency's own pseudonym %q (≠ SG's %q)", d.GetImporter().GetTaxId(), agencyPseudonym, sgPseudonym)
		}
		if resp.GetRelease().GetAgreementId() != "nl-health-2026" {
			t.Errorf("agreement = %s", resp.GetRelease().GetAgreementId())
		}
	})

	denials := []struct {
		name     string
		from     string
		partner  string
		id       string
		purpose  string
		code     codes.Code
		reason   string
		info     string
		provider *node
	}{
		{"wrong purpose", sgDomain, nlDomain, "NL-1", "marketing", codes.PermissionDenied, `purpose "marketing" is not granted`, "PURPOSE_NOT_GRANTED", nl},
		{"no agreement", cnDomain, sgDomain, "SG-1", "risk-assessment", codes.PermissionDenied, "no agreement covers spiffe://cn.customs.example/gateway", "NO_AGREEMENT", sg},
		{"outside conditions", sgDomain, nlDomain, "NL-US", "risk-assessment", codes.PermissionDenied, "outside the conditions", "CONDITIONS_NOT_MET", nl},
		{"not found for an entitled partner", sgDomain, nlDomain, "NL-404", "risk-assessment", codes.NotFound, "record not found", "NOT_FOUND", nl},
		{"missing record hidden from an unentitled partner", cnDomain, nlDomain, "NL-404", "risk-assessment", codes.PermissionDenied, "not granted", "ACTION_NOT_GRANTED", nl},
	}
	for _, c := range denials {
		t.Run("denied: "+c.name, func(t *testing.T) {
			before := len(allAudit(t, c.provider))
			_, err := f.local(t, c.from).GetPartnerDeclaration(ctx, &blv1.GetPartnerDeclarationRequest{Partner: c.partner, Id: c.id, Purpose: c.purpose})
			if status.Code(err) != c.code || !strings.Contains(status.Convert(err).Message(), c.reason) {
				t.Fatalf("err = %v, want %v containing %q", err, c.code, c.reason)
			}
			if got := reasonCode(err); got != c.info {
				t.Errorf("reason code = %q, want %q", got, c.info)
			}
			provRecs := allAudit(t, c.provider)
			if len(provRecs) != before+1 {
				t.Fatalf("provider audit grew by %d, want 1", len(provRecs)-before)
			}
			p := provRecs[len(provRecs)-1]
			consRecs := auditOf(t, f.nodes[c.from], p.GetRequestId())
			if len(consRecs) != 1 {
				t.Fatalf("consumer has %d records for request %s, want 1", len(consRecs), p.GetRequestId())
			}
			for _, r := range []*blv1.AuditRecord{p, consRecs[0]} {
				if r.GetDecision() != blv1.AuditDecision_AUDIT_DECISION_DENY || r.GetReleaseSha256() != "" || len(r.GetReleasedFields()) != 0 {
					t.Errorf("audit record of a denial: %v", r)
				}
			}
		})
	}

	t.Run("search releases only matching records and both sides agree", func(t *testing.T) {
		stream, err := f.local(t, sgDomain).SearchPartnerDeclarations(ctx, &blv1.SearchPartnerDeclarationsRequest{Partner: nlDomain, Purpose: "risk-assessment", Filter: &blv1.DeclarationFilter{HsChapters: []string{"85"}}})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		var rels []*blv1.Release
		var reqID string
		for {
			it, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, it.GetDeclaration().GetId())
			rels = append(rels, it.GetRelease())
			reqID = it.GetRequestId()
		}
		if !slices.Equal(ids, []string{"NL-1"}) {
			t.Fatalf("search returned %v, want [NL-1] (NL-US is outside the conditions)", ids)
		}
		p, c := auditOf(t, nl, reqID), auditOf(t, sg, reqID)
		if len(p) != 1 || len(c) != 1 || p[0].GetReleaseSha256() != c[0].GetReleaseSha256() || p[0].GetReleaseSha256() != gateway.SearchDigest(rels) {
			t.Errorf("search audit: provider %v consumer %v", p, c)
		}
	})

	t.Run("risk assessment under a narrow pilot", func(t *testing.T) {
		resp, err := f.local(t, cnDomain).GetPartnerRiskAssessment(ctx, &blv1.GetPartnerRiskAssessmentRequest{Partner: nlDomain, Id: "NL-RA-1", Purpose: "transit-security"})
		if err != nil {
			t.Fatal(err)
		}
		if r := resp.GetRiskAssessment(); r.GetScore() != 0.82 || len(r.GetIndicators()) != 0 || r.GetModelVersion() != "" {
			t.Errorf("risk release = %v", r)
		}
	})

	t.Run("services admit only their caller kinds", func(t *testing.T) {
		agencyLocal := blv1.NewLocalClient(f.conn(t, nlDomain, "spiffe://nl.customs.example/agency/health", nil))
		_, err := agencyLocal.GetPartnerDeclaration(ctx, &blv1.GetPartnerDeclarationRequest{Partner: sgDomain, Id: "SG-1", Purpose: "risk-assessment"})
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("agency calling Local: %v, want PermissionDenied", err)
		}
		foreignSystem := blv1.NewIngestClient(f.conn(t, nlDomain, "spiffe://sg.customs.example/system/cli", nil))
		st, err := foreignSystem.Import(ctx)
		if err == nil {
			_, err = st.CloseAndRecv()
		}
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("SG system calling NL Ingest: %v, want PermissionDenied", err)
		}
		systemExchange := blv1.NewExchangeClient(f.conn(t, nlDomain, "spiffe://nl.customs.example/system/cli", nil))
		_, err = systemExchange.GetDeclaration(ctx, &blv1.GetDeclarationRequest{Id: "NL-1", Purpose: "risk-assessment"})
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("system calling Exchange: %v, want PermissionDenied", err)
		}
	})

	t.Run("a partner's request ID is kept, a malformed one replaced", func(t *testing.T) {
		ex := blv1.NewExchangeClient(f.conn(t, nlDomain, "spiffe://sg.customs.example/gateway", nil))
		for _, id := range []string{"0123456789abcdef0123456789abcdef", "not-an-id"} {
			octx := metadata.AppendToOutgoingContext(ctx, gateway.RequestIDHeader, id)
			if _, err := ex.GetDeclaration(octx, &blv1.GetDeclarationRequest{Id: "NL-1", Purpose: "risk-assessment"}); err != nil {
				t.Fatal(err)
			}
			recs := allAudit(t, nl)
			got := recs[len(recs)-1].GetRequestId()
			if wantKept := id != "not-an-id"; (got == id) != wantKept || len(got) != 32 {
				t.Errorf("sent %q, recorded %q", id, got)
			}
		}
	})

	t.Run("no audit, no release", func(t *testing.T) {
		nl.audit.setFail(true)
		defer nl.audit.setFail(false)
		ex := blv1.NewExchangeClient(f.conn(t, nlDomain, "spiffe://sg.customs.example/gateway", nil))
		resp, err := ex.GetDeclaration(ctx, &blv1.GetDeclarationRequest{Id: "NL-1", Purpose: "risk-assessment"})
		if status.Code(err) != codes.Unavailable || resp != nil {
			t.Fatalf("with a failing audit trail: resp %v err %v, want Unavailable and nothing", resp, err)
		}
		_, err = ex.GetDeclaration(ctx, &blv1.GetDeclarationRequest{Id: "NL-1", Purpose: "marketing"})
		if status.Code(err) != codes.Unavailable {
			t.Errorf("denial with a failing audit trail: %v, want Unavailable", err)
		}
	})
}

// TestMTLSNegativeMatrix calls NL's gateway with each kind of bad client
// certificate over real gRPC: the call must fail in the handshake, the
// refusal must be reported with the identity the peer claimed and the exact
// reason, and no handler may run (the audit trail does not grow).
func TestMTLSNegativeMatrix(t *testing.T) {
	f := startFederation(t)
	nl := f.nodes[nlDomain]
	unknownCA, err := devca.NewCA("xx.customs.example", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	sgGateway := identity.GatewayID(sgDomain).String()
	cases := []struct {
		name        string
		ca          *devca.CA
		id          string
		opts        devca.LeafOptions
		noCert      bool
		wantErr     error
		wantClaimed string
	}{
		{name: "unknown trust domain", ca: unknownCA, id: "spiffe://xx.customs.example/gateway", wantErr: identity.ErrUnknownTrustDomain, wantClaimed: "spiffe://xx.customs.example/gateway"},
		{name: "SG identity signed by NL's CA", ca: nl.ca, id: sgGateway, wantErr: identity.ErrUntrusted, wantClaimed: sgGateway},
		{name: "SG identity signed by an unknown CA", ca: unknownCA, id: sgGateway, wantErr: identity.ErrUntrusted, wantClaimed: sgGateway},
		{name: "expired", ca: f.nodes[sgDomain].ca, id: sgGateway, opts: devca.LeafOptions{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}, wantErr: identity.ErrExpired, wantClaimed: sgGateway},
		{name: "no URI SAN", ca: f.nodes[sgDomain].ca, id: sgGateway, opts: devca.LeafOptions{NoURI: true}, wantErr: identity.ErrNoSPIFFEID, wantClaimed: ""},
		{name: "malformed SAN", ca: f.nodes[sgDomain].ca, id: sgGateway, opts: devca.LeafOptions{URIs: []string{"spiffe://SG.customs.example/gateway"}}, wantErr: identity.ErrMalformedID, wantClaimed: "spiffe://SG.customs.example/gateway"},
		{name: "not a SPIFFE URI", ca: f.nodes[sgDomain].ca, id: sgGateway, opts: devca.LeafOptions{URIs: []string{"https://sg.customs.example/gateway"}}, wantErr: identity.ErrMalformedID, wantClaimed: "https://sg.customs.example/gateway"},
		{name: "no client certificate", noCert: true, wantErr: identity.ErrNoCertificate, wantClaimed: ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(allAudit(t, nl))
			var cert tls.Certificate
			if !c.noCert {
				cert, err = c.ca.IssueTLS(c.id, c.opts)
				if err != nil {
					t.Fatal(err)
				}
			}
			cc := f.dialWith(t, nlDomain, &cert)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := blv1.NewExchangeClient(cc).GetDeclaration(ctx, &blv1.GetDeclarationRequest{Id: "NL-1", Purpose: "risk-assessment"})
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("call err = %v, want Unavailable (handshake refused)", err)
			}
			select {
			case r := <-nl.rejects:
				if !errors.Is(r.err, c.wantErr) {
					t.Errorf("refusal reason = %v, want %v", r.err, c.wantErr)
				}
				if r.claimed != c.wantClaimed {
					t.Errorf("claimed identity = %q, want %q", r.claimed, c.wantClaimed)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("gateway did not report the refusal")
			}
			// gRPC retries the handshake; drain the repeats.
			for len(nl.rejects) > 0 {
				<-nl.rejects
			}
			if after := len(allAudit(t, nl)); after != before {
				t.Errorf("audit trail grew from %d to %d: a handler ran", before, after)
			}
		})
	}
}

// reasonCode is the stable reason code of a refusal (ErrorInfo detail).
func reasonCode(err error) string {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == gateway.ErrorDomain {
			return info.GetReason()
		}
	}
	return ""
}

// TestAuditServicePartnerView: a partner reading its own records on our
// Audit service must not learn, from a refused request's stored policy
// input, the attributes the refusal withheld.
func TestAuditServicePartnerView(t *testing.T) {
	f := startFederation(t)
	ctx := context.Background()
	_, err := f.local(t, sgDomain).GetPartnerDeclaration(ctx, &blv1.GetPartnerDeclarationRequest{Partner: nlDomain, Id: "NL-US", Purpose: "risk-assessment"})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("setup: %v", err)
	}
	if _, err := f.local(t, sgDomain).GetPartnerDeclaration(ctx, &blv1.GetPartnerDeclarationRequest{Partner: nlDomain, Id: "NL-1", Purpose: "risk-assessment"}); err != nil {
		t.Fatalf("setup: %v", err)
	}
	partner := blv1.NewAuditClient(f.conn(t, nlDomain, "spiffe://sg.customs.example/gateway", nil))
	resp, err := partner.ListRecords(ctx, &blv1.ListRecordsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetRecords()) != 2 {
		t.Fatalf("partner sees %d records, want its 2", len(resp.GetRecords()))
	}
	// Neither refused nor allowed records show the partner our policy
	// input: it holds attributes a refusal withheld or a grant did not
	// release.
	for _, r := range resp.GetRecords() {
		if r.GetPolicyInput() != "" || strings.Contains(r.String(), "accepted_ns") || strings.Contains(r.String(), "hs_headings") {
			t.Errorf("partner's record shows attributes: %v", r)
		}
		got, err := partner.GetRecord(ctx, &blv1.GetRecordRequest{Seq: r.GetSeq()})
		if err != nil {
			t.Fatal(err)
		}
		if got.GetRecord().GetPolicyInput() != "" || len(got.GetLeaf()) != 0 {
			t.Errorf("GetRecord returns input or leaf to the partner: %v", got)
		}
	}
	auditor := blv1.NewAuditClient(f.conn(t, nlDomain, "spiffe://nl.customs.example/auditor/dpa", nil))
	all, err := auditor.ListRecords(ctx, &blv1.ListRecordsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range all.GetRecords() {
		if r.GetPolicyInput() == "" {
			t.Errorf("auditor sees a record without its policy input: %v", r)
		}
	}
	if _, err := partner.GetLeaves(ctx, &blv1.GetLeavesRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("partner GetLeaves: %v, want PermissionDenied", err)
	}
}

// TestRateLimitAndMaxResults: a grant's rate limit refuses the call that
// exceeds it (audited, RATE_LIMITED) and its max_results caps a search.
func TestRateLimitAndMaxResults(t *testing.T) {
	src, err := policies.FS.ReadFile("agreements/nl-sg-risk-2026.yaml")
	if err != nil {
		t.Fatal(err)
	}
	limited := strings.Replace(string(src), "  - id: nl-to-sg\n", "  - id: nl-to-sg\n    max_results: 1\n    rate_limit: {requests: 2, per: 1h}\n", 1)
	if limited == string(src) {
		t.Fatal("agreement fixture changed: cannot add limits")
	}
	fsys := fstest.MapFS{"agreements/nl-sg-risk-2026.yaml": {Data: []byte(limited)}}
	for _, name := range []string{"exchange.rego", "national.rego"} {
		b, _ := policies.FS.ReadFile(name)
		fsys[name] = &fstest.MapFile{Data: b}
	}
	f := startFederation(t, func(domain string, o *gateway.Options) {
		e, err := policy.NewEngine(context.Background(), domain, fsys, nil)
		if err != nil {
			t.Fatal(err)
		}
		o.Policy = e
	})
	ctx := context.Background()
	local := f.local(t, sgDomain)

	// NL-1 and NL-ARMS are both bound for SG; the grant allows one per search.
	stream, err := local.SearchPartnerDeclarations(ctx, &blv1.SearchPartnerDeclarationsRequest{Partner: nlDomain, Purpose: "risk-assessment"})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		_, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 1 {
		t.Errorf("search returned %d results, want 1 (max_results)", n)
	}
	// The search took one token of two; one get succeeds, the next is refused.
	if _, err := local.GetPartnerDeclaration(ctx, &blv1.GetPartnerDeclarationRequest{Partner: nlDomain, Id: "NL-1", Purpose: "risk-assessment"}); err != nil {
		t.Fatalf("second call within the limit: %v", err)
	}
	_, err = local.GetPartnerDeclaration(ctx, &blv1.GetPartnerDeclarationRequest{Partner: nlDomain, Id: "NL-1", Purpose: "risk-assessment"})
	if status.Code(err) != codes.ResourceExhausted || reasonCode(err) != "RATE_LIMITED" {
		t.Fatalf("third call: %v (code %q), want RESOURCE_EXHAUSTED / RATE_LIMITED", err, reasonCode(err))
	}
	recs := allAudit(t, f.nodes[nlDomain])
	last := recs[len(recs)-1]
	if last.GetStatus() != "RESOURCE_EXHAUSTED" || last.GetDecision() != blv1.AuditDecision_AUDIT_DECISION_DENY || last.GetReleaseSha256() != "" {
		t.Errorf("audit record of the refused call = %v", last)
	}
	cons := auditOf(t, f.nodes[sgDomain], last.GetRequestId())
	if len(cons) != 1 || cons[0].GetDecision() != blv1.AuditDecision_AUDIT_DECISION_DENY {
		t.Errorf("consumer record of the refused call = %v, want one DENY (so reconcile matches both sides)", cons)
	}
}

// failingSigner signs checkpoints and receipts until broken is set, like a
// Vault transit key whose server went away.
type failingSigner struct {
	audit.Signer
	broken atomic.Bool
}

func (s *failingSigner) Sign(msg []byte) ([]byte, error) {
	if s.broken.Load() {
		return nil, errors.New("transit unreachable")
	}
	return s.Signer.Sign(msg)
}

// TestReceiptSigningFailure: when the receipt cannot be signed the partner
// gets nothing, and the log records, after the durable ALLOW, an ERROR
// record saying that nothing was released.
func TestReceiptSigningFailure(t *testing.T) {
	var fs *failingSigner
	f := startFederation(t, func(domain string, o *gateway.Options) {
		if domain == nlDomain {
			fs = &failingSigner{Signer: o.Audit.Signer}
			o.Audit.Signer = fs
		}
	})
	fs.broken.Store(true)
	resp, err := f.local(t, sgDomain).GetPartnerDeclaration(context.Background(), &blv1.GetPartnerDeclarationRequest{Partner: nlDomain, Id: "NL-1", Purpose: "risk-assessment"})
	if status.Code(err) != codes.Unavailable || resp != nil {
		t.Fatalf("resp %v err %v, want Unavailable and nothing", resp, err)
	}
	recs := allAudit(t, f.nodes[nlDomain])
	if len(recs) < 2 {
		t.Fatalf("provider log has %d records, want the ALLOW and its ERROR follow-up", len(recs))
	}
	allow, follow := recs[len(recs)-2], recs[len(recs)-1]
	if allow.GetDecision() != blv1.AuditDecision_AUDIT_DECISION_ALLOW || follow.GetDecision() != blv1.AuditDecision_AUDIT_DECISION_ERROR ||
		follow.GetRequestId() != allow.GetRequestId() || !strings.Contains(strings.Join(follow.GetReasons(), " "), fmt.Sprintf("record %d", allow.GetSeq())) {
		t.Errorf("records: %v\n%v", allow, follow)
	}
}

// TestAdminAuthorization: only the gateway's own systems may ask it to
// explain decisions (which reads stored records' attributes) or for its
// policy status.
func TestAdminAuthorization(t *testing.T) {
	f := startFederation(t)
	ctx := context.Background()
	req := &blv1.ExplainDecisionRequest{Caller: "spiffe://sg.customs.example/gateway", Action: "declaration.get", Purpose: "risk-assessment",
		Record: &blv1.ExplainDecisionRequest_RecordId{RecordId: "NL-US"}}
	for _, id := range []string{"spiffe://sg.customs.example/gateway", "spiffe://nl.customs.example/agency/health", "spiffe://nl.customs.example/auditor/dpa", "spiffe://sg.customs.example/system/cli"} {
		admin := blv1.NewAdminClient(f.conn(t, nlDomain, id, nil))
		if _, err := admin.ExplainDecision(ctx, req); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s ExplainDecision: %v, want PermissionDenied", id, err)
		}
		if _, err := admin.PolicyStatus(ctx, &blv1.PolicyStatusRequest{}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s PolicyStatus: %v, want PermissionDenied", id, err)
		}
	}
	own := blv1.NewAdminClient(f.conn(t, nlDomain, "spiffe://nl.customs.example/system/cli", nil))
	x, err := own.ExplainDecision(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	// Two grants of nl-sg-risk-2026 go to SG: the pull grant fails on the
	// destination, the alert grant on the action.
	if x.GetDecision().GetAllow() || x.GetDecision().GetCode() != "CONDITIONS_NOT_MET" || len(x.GetGrants()) != 2 ||
		x.GetGrants()[0].GetFailed() == "" || x.GetGrants()[1].GetFailed() == "" {
		t.Errorf("explanation = %v", x)
	}
	st, err := own.PolicyStatus(ctx, &blv1.PolicyStatusRequest{})
	if err != nil || !strings.HasPrefix(st.GetRevision(), "sha256:") || st.GetLastError() != "" {
		t.Errorf("PolicyStatus = %v, %v", st, err)
	}
}
