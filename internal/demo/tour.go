package demo

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/client"
	"github.com/borderlink/borderlink/internal/store"
	"github.com/borderlink/borderlink/internal/store/sqlite"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

type printer struct{ w io.Writer }

func (p *printer) title(s string) {
	fmt.Fprintf(p.w, "\n== %s %s\n", s, strings.Repeat("=", max(0, 74-len(s))))
}

func (p *printer) line(format string, args ...any) { fmt.Fprintf(p.w, format+"\n", args...) }

func (p *printer) json(m proto.Message) {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  ", UseProtoNames: true}.Marshal(m)
	if err != nil {
		p.line("  (cannot print: %v)", err)
		return
	}
	for _, l := range strings.Split(string(b), "\n") {
		p.line("    %s", l)
	}
}

func (p *printer) release(r *blv1.Release) {
	p.line("  agreement:      %s (grant %s)", r.GetAgreementId(), r.GetGrantId())
	p.line("  policy:         %s", r.GetPolicyRevision())
	p.line("  released:       %s", strings.Join(r.GetFields(), ", "))
	p.line("  masked:         %s", orNone(r.GetMasked()))
	p.line("  pseudonymised:  %s", orNone(r.GetPseudonymized()))
	o := r.GetObligations()
	p.line("  obligations:    keep at most %d days, onward sharing %s", o.GetRetentionDays(), map[bool]string{true: "allowed", false: "not allowed"}[o.GetOnwardSharing()])
	p.line("  sha-256:        %s", r.GetSha256())
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "(none)"
	}
	return strings.Join(s, ", ")
}

type tour struct {
	p       *printer
	nodes   map[string]*node
	certDir string
	exe     string
	// keys, in the Vault variant, says where each gateway's keys come from.
	keys map[string]keySource
}

func (t *tour) run(ctx context.Context) error {
	nl, sg, cn := t.nodes[NL], t.nodes[SG], t.nodes[CN]

	toSG := findDeclaration(nl.recs, func(d *blv1.Declaration) bool { return d.GetDestinationCountry() == "SG" })
	if toSG == nil {
		return fmt.Errorf("demo data has no NL declaration bound for SG")
	}
	food := findDeclaration(nl.recs, func(d *blv1.Declaration) bool {
		for _, it := range d.GetGoodsItems() {
			if it.GetHsCode() < "25" {
				return true
			}
		}
		return false
	})
	if food == nil {
		return fmt.Errorf("demo data has no NL declaration of food or agricultural goods")
	}
	sgDecl := findDeclaration(sg.recs, func(*blv1.Declaration) bool { return true })

	if t.keys != nil {
		t.p.title("Where the gateways' keys come from: Vault")
		for _, d := range domains {
			k := t.keys[d]
			t.p.line("  %-20s certificate %s issued by Vault PKI (%s), expires in %s;", d, k.serial, k.pki, roughly(time.Until(k.notAfter)))
			t.p.line("  %-20s audit signing key Vault transit %s, verifier key %s", "", k.transit, shortKey(k.verifier))
		}
		t.p.line("  No gateway private key, audit signing key or pseudonymisation key is on disk; the tour's")
		t.p.line("  client identities (system/cli, agency/health, auditor/dpa) are still files under certs/.")
	}

	// 1. A partner administration, through its own gateway.
	t.p.title("1. Allowed: Singapore asks the Netherlands for a declaration (purpose risk-assessment)")
	t.p.line("An SG officer's tool calls SG's gateway (Local API, identity spiffe://sg.customs.example/system/cli);")
	t.p.line("SG's gateway calls NL's gateway over mTLS as spiffe://sg.customs.example/gateway.")
	t.p.line("$ borderlink query declaration --peer %s --purpose risk-assessment %s", NL, toSG.GetId())
	resp, err := blv1.NewLocalClient(sg.conn).GetPartnerDeclaration(ctx, &blv1.GetPartnerDeclarationRequest{Partner: NL, Id: toSG.GetId(), Purpose: "risk-assessment"})
	if err != nil {
		return fmt.Errorf("tour step 1: %w", err)
	}
	t.p.line("  request id:     %s (recorded by both gateways)", resp.GetRequestId())
	t.p.release(resp.GetRelease())
	t.p.line("  what SG received:")
	t.p.json(resp.GetDeclaration())
	t.p.line("  (declarant.name is masked; exporter.tax_id is a pseudonym only SG gets; the importer, an SG")
	t.p.line("   trader, is released whole; the exporter's address except its country, the declaration")
	t.p.line("   office and the documents were not released at all.)")

	t.p.title("2. Allowed: Singapore searches NL declarations of HS chapter 85 bound for SG")
	t.p.line("$ borderlink query search --peer %s --purpose risk-assessment --hs-chapter 85 --limit 5", NL)
	stream, err := blv1.NewLocalClient(sg.conn).SearchPartnerDeclarations(ctx, &blv1.SearchPartnerDeclarationsRequest{
		Partner: NL, Purpose: "risk-assessment", Limit: 5, Filter: &blv1.DeclarationFilter{HsChapters: []string{"85"}},
	})
	if err != nil {
		return fmt.Errorf("tour step 2: %w", err)
	}
	n := 0
	for {
		it, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("tour step 2: %w", err)
		}
		n++
		t.p.line("  %s  %s → %s  %d goods item(s)  %d fields released", it.GetDeclaration().GetId(), it.GetDeclaration().GetExportCountry(),
			it.GetDeclaration().GetDestinationCountry(), len(it.GetDeclaration().GetGoodsItems()), len(it.GetRelease().GetFields()))
	}
	t.p.line("  %d result(s); NL's policy skipped every declaration not bound for SG.", n)

	// 2. A national agency, directly (agencies have no gateway of their own).
	t.p.title("3. Narrower: the Dutch health agency asks NL for a food declaration (purpose sanitary-control)")
	t.p.line("The agency calls NL's Exchange API directly as spiffe://nl.customs.example/agency/health.")
	cc, _, err := client.Dial(ctx, client.Options{
		Address:    nl.addr,
		CertFile:   filepath.Join(t.certDir, NL, "agency-health.pem"),
		KeyFile:    filepath.Join(t.certDir, NL, "agency-health-key.pem"),
		BundleFile: filepath.Join(t.certDir, "bundle", NL+".pem"),
	})
	if err != nil {
		return fmt.Errorf("tour step 3: %w", err)
	}
	defer cc.Close()
	ag, err := blv1.NewExchangeClient(cc).GetDeclaration(ctx, &blv1.GetDeclarationRequest{Id: food.GetId(), Purpose: "sanitary-control"})
	if err != nil {
		return fmt.Errorf("tour step 3: %w", err)
	}
	t.p.release(ag.GetRelease())
	t.p.line("  what the agency received:")
	t.p.json(ag.GetDeclaration())

	// 3. Refusals.
	t.p.title("4. Denied: Singapore asks for the same declaration for another purpose")
	t.p.line("$ borderlink query declaration --peer %s --purpose marketing %s", NL, toSG.GetId())
	_, err = blv1.NewLocalClient(sg.conn).GetPartnerDeclaration(ctx, &blv1.GetPartnerDeclarationRequest{Partner: NL, Id: toSG.GetId(), Purpose: "marketing"})
	if err := t.expectDenied(err); err != nil {
		return fmt.Errorf("tour step 4: %w", err)
	}

	t.p.title("5. Denied: China asks Singapore, with which it has no agreement")
	t.p.line("$ borderlink query declaration --peer %s --purpose risk-assessment %s", SG, sgDecl.GetId())
	_, err = blv1.NewLocalClient(cn.conn).GetPartnerDeclaration(ctx, &blv1.GetPartnerDeclarationRequest{Partner: SG, Id: sgDecl.GetId(), Purpose: "risk-assessment"})
	if err := t.expectDenied(err); err != nil {
		return fmt.Errorf("tour step 5: %w", err)
	}

	t.p.title("6. Allowed, narrowly: China gets NL's risk assessment of a consignment (purpose transit-security)")
	riskID := findRisk(nl.recs, toSG.GetId())
	t.p.line("$ borderlink query risk --peer %s --purpose transit-security %s", NL, riskID)
	rr, err := blv1.NewLocalClient(cn.conn).GetPartnerRiskAssessment(ctx, &blv1.GetPartnerRiskAssessmentRequest{Partner: NL, Id: riskID, Purpose: "transit-security"})
	if err != nil {
		return fmt.Errorf("tour step 6: %w", err)
	}
	t.p.release(rr.GetRelease())
	t.p.json(rr.GetRiskAssessment())

	if err := t.push(ctx, toSG); err != nil {
		return fmt.Errorf("tour step 7: %w", err)
	}

	// 4. Both sides' audit trails.
	for _, d := range domains {
		n := t.nodes[d]
		t.p.title("Audit trail of " + d)
		st, err := sqlite.Open(ctx, filepath.Join(n.dir, "gateway.db"))
		if err != nil {
			return fmt.Errorf("open audit trail of %s: %w", d, err)
		}
		recs, err := st.ListAudit(ctx, store.AuditQuery{Limit: 5000})
		st.Close()
		if err != nil {
			return fmt.Errorf("read audit trail of %s: %w", d, err)
		}
		// The pushes of step 7 would fill the table; they are counted.
		pushes := 0
		recs = slices.DeleteFunc(recs, func(r *blv1.AuditRecord) bool {
			if r.GetAction() == "alert.deliver" && r.GetDecision() == blv1.AuditDecision_AUDIT_DECISION_ALLOW {
				pushes++
				return true
			}
			return false
		})
		if err := audit.WriteTable(t.p.w, recs); err != nil {
			return err
		}
		if pushes > 0 {
			t.p.line("  (+ %d alert deliveries, not shown: borderlink audit list --action alert.deliver)", pushes)
		}
	}
	t.p.line("\nRecords with the same REQUEST on two gateways are the two sides of one exchange; their SHA-256")
	t.p.line("columns match because both sides hashed the same released bytes. Payloads are never logged.")
	t.p.line("The same tables: borderlink audit list --config <dir>/<domain>/gateway.yaml")

	// 5. An auditor who trusts nothing but NL's published key checks NL's log.
	t.p.title("8. The Dutch data-protection auditor verifies NL's audit log")
	args := []string{"audit", "verify", "--sign-now",
		"--gateway", nl.addr,
		"--cert", filepath.Join(t.certDir, NL, "auditor-dpa.pem"),
		"--key", filepath.Join(t.certDir, NL, "auditor-dpa-key.pem"),
		"--bundle", filepath.Join(t.certDir, "bundle", NL+".pem"),
		"--verifier", "@" + nl.verifierFile}
	t.p.line("$ borderlink audit verify --sign-now --gateway %s --verifier @%s (as spiffe://%s/auditor/dpa)", nl.addr, nl.verifierFile, NL)
	out, err := exec.CommandContext(ctx, t.exe, args...).CombinedOutput()
	for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		t.p.line("  %s", l)
	}
	if err != nil {
		return fmt.Errorf("tour step 8: audit verify: %w", err)
	}
	return nil
}

// push shows alerts reaching a partner without being asked for: the risk
// assessments NL imported were queued for SG where the agreement says so
// (bound for SG, score at least 0.7), and one more is published by hand.
func (t *tour) push(ctx context.Context, toSG *blv1.Declaration) error {
	nl, sg := t.nodes[NL], t.nodes[SG]
	t.p.title("7. Pushed: NL's risk alerts reach Singapore by themselves (agreement grant nl-to-sg-alerts)")
	t.p.line("Importing risk assessments queued one alert per entitled partner in the same transaction;")
	t.p.line("NL's deliverer pushes them to SG's Exchange.Deliver, SG stores each once and signs a receipt.")
	hot := &blv1.RiskAssessment{Id: "NL-RA-DEMO-HOT", DeclarationId: toSG.GetId(), Score: 0.97, Level: blv1.RiskLevel_RISK_LEVEL_HIGH,
		Indicators: []*blv1.RiskIndicator{{Code: "UNDERVALUATION", Description: "declared value far below reference price", Weight: 0.7}},
		ModelName:  "demo-risk", ModelVersion: "1", AssessedTime: timestamppb.Now()}
	t.p.line("$ borderlink publish hot-risk.json   (score 0.97, consignment %s bound for SG)", toSG.GetId())
	pub, err := blv1.NewIngestClient(nl.conn).PublishAlert(ctx, &blv1.PublishAlertRequest{RiskAssessment: hot})
	if err != nil {
		return err
	}
	for _, q := range pub.GetQueued() {
		t.p.line("  queued for %s under %s/%s (message %s)", q.GetRecipient(), q.GetAgreementId(), q.GetGrantId(), q.GetMessageId())
	}
	admin := blv1.NewAdminClient(nl.conn)
	deadline := time.Now().Add(30 * time.Second)
	var st *blv1.DeliveryStatusResponse
	for {
		if st, err = admin.DeliveryStatus(ctx, &blv1.DeliveryStatusRequest{}); err != nil {
			return err
		}
		pending := uint64(0)
		for _, p := range st.GetPartners() {
			pending += p.GetPending()
		}
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d alert(s) still pending after 30s", pending)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.p.line("$ borderlink delivery status   (on NL)")
	for _, p := range st.GetPartners() {
		t.p.line("  %s  delivered %d  pending %d  refused %d  breaker %s", p.GetPartner(), p.GetDelivered(), p.GetPending(), p.GetRefused(), p.GetBreaker())
	}
	list, err := blv1.NewLocalClient(sg.conn).ListReceivedAlerts(ctx, &blv1.ListReceivedAlertsRequest{Sender: NL, Limit: 1000})
	if err != nil {
		return err
	}
	t.p.line("$ borderlink inbox --sender %s   (on SG: %d alert(s); the last three)", NL, len(list.GetAlerts()))
	for _, a := range list.GetAlerts()[max(0, len(list.GetAlerts())-3):] {
		r := a.GetAlert().GetRiskAssessment()
		t.p.line("  %s  score %.2f  %-16s agreement %s, keep until %s", r.GetId(), r.GetScore(), r.GetLevel(), a.GetAgreementId(), a.GetRetainUntil().AsTime().Format("2006-01-02"))
	}
	t.p.line("  (indicator descriptions were not released to SG: only indicators.code is in the grant.)")
	return nil
}

func (t *tour) expectDenied(err error) error {
	if err == nil {
		return fmt.Errorf("expected a refusal, got data")
	}
	st := status.Convert(err)
	t.p.line("  refused: %s", audit.StatusName(st.Code()))
	t.p.line("  reason:  %s", st.Message())
	return nil
}

func findDeclaration(recs []*blv1.IngestRecord, ok func(*blv1.Declaration) bool) *blv1.Declaration {
	i := slices.IndexFunc(recs, func(r *blv1.IngestRecord) bool { return r.GetDeclaration() != nil && ok(r.GetDeclaration()) })
	if i < 0 {
		return nil
	}
	return recs[i].GetDeclaration()
}

func findRisk(recs []*blv1.IngestRecord, declID string) string {
	for _, r := range recs {
		if ra := r.GetRiskAssessment(); ra != nil && ra.GetDeclarationId() == declID {
			return ra.GetId()
		}
	}
	return ""
}
