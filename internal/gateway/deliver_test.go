package gateway_test

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/borderlink/borderlink/internal/gateway"
	"github.com/borderlink/borderlink/internal/release"
	"github.com/borderlink/borderlink/internal/store"
	"github.com/borderlink/borderlink/internal/store/storetest"
	"github.com/borderlink/borderlink/policies"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

func (f *federation) ingest(t *testing.T, domain string) blv1.IngestClient {
	return blv1.NewIngestClient(f.conn(t, domain, "spiffe://"+domain+"/system/cli", nil))
}

func (f *federation) admin(t *testing.T, domain string) blv1.AdminClient {
	return blv1.NewAdminClient(f.conn(t, domain, "spiffe://"+domain+"/system/cli", nil))
}

// waitSettled polls the sender's outbox until the entry leaves pending.
func waitSettled(t *testing.T, n *node, messageID string) store.OutboxEntry {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		e, err := n.store.GetOutbox(context.Background(), messageID)
		if err != nil {
			t.Fatal(err)
		}
		if e.State != store.OutboxPending {
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("outbox entry %s still pending after 20s: attempts %d, last error %q", messageID, e.Attempts, e.LastError)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPushDelivery(t *testing.T) {
	f := startFederation(t)
	ctx := context.Background()
	nl, sg, cn := f.nodes[nlDomain], f.nodes[sgDomain], f.nodes[cnDomain]

	// NL-1 is bound for SG: SG's alert grant covers it above 0.7; CN has no
	// alert grant at all.
	resp, err := f.ingest(t, nlDomain).PublishAlert(ctx, &blv1.PublishAlertRequest{RiskAssessment: storetest.RiskAssessment("NL-RA-HOT", "NL-1", 0.91)})
	if err != nil {
		t.Fatalf("PublishAlert: %v", err)
	}
	if len(resp.GetQueued()) != 1 || resp.GetQueued()[0].GetRecipient() != sgDomain || resp.GetQueued()[0].GetGrantId() != "nl-to-sg-alerts" {
		t.Fatalf("queued = %v, want one entry for %s under nl-to-sg-alerts", resp.GetQueued(), sgDomain)
	}
	id := resp.GetQueued()[0].GetMessageId()
	sent := waitSettled(t, nl, id)
	if sent.State != store.OutboxDelivered || sent.Receipt == "" {
		t.Fatalf("entry = %+v, want delivered with a receipt", sent)
	}

	t.Run("both sides audited the same release", func(t *testing.T) {
		prov, cons := auditOf(t, nl, id), auditOf(t, sg, id)
		if len(prov) != 1 || len(cons) != 1 {
			t.Fatalf("audit records for message %s: sender %d, receiver %d; want 1 each", id, len(prov), len(cons))
		}
		p, c := prov[0], cons[0]
		if p.GetAction() != "alert.deliver" || c.GetAction() != "alert.deliver" ||
			p.GetSide() != blv1.AuditSide_AUDIT_SIDE_PROVIDER || c.GetSide() != blv1.AuditSide_AUDIT_SIDE_CONSUMER {
			t.Errorf("records = %v / %v", p, c)
		}
		if p.GetReleaseSha256() == "" || p.GetReleaseSha256() != c.GetReleaseSha256() || p.GetPartnerReceipt() != sent.Receipt {
			t.Errorf("sender digest %q receipt %q; receiver digest %q", p.GetReleaseSha256(), p.GetPartnerReceipt(), c.GetReleaseSha256())
		}
		for _, r := range cons {
			if strings.Contains(r.GetPolicyInput(), "NL-1\"") {
				t.Errorf("receiver policy input names the sender's declaration: %s", r.GetPolicyInput())
			}
		}
	})

	t.Run("receiver keeps the alert with its provenance", func(t *testing.T) {
		in, err := sg.store.GetInbox(ctx, nlDomain, id)
		if err != nil {
			t.Fatal(err)
		}
		if in.RecordID != "NL-RA-HOT" || in.Agreement != "nl-sg-risk-2026" || in.RetainUntil.IsZero() || !strings.Contains(in.Obligations, `"retention_days":365`) {
			t.Errorf("inbox entry = %+v", in)
		}
		a := &blv1.Alert{}
		if err := proto.Unmarshal(in.Alert, a); err != nil {
			t.Fatal(err)
		}
		if a.GetRiskAssessment().GetScore() != 0.91 || len(a.GetRiskAssessment().GetIndicators()) == 0 || a.GetRiskAssessment().GetIndicators()[0].GetDescription() != "" {
			t.Errorf("received %v, want the released fields only (indicators.code, not description)", a.GetRiskAssessment())
		}
		if _, err := cn.store.GetInbox(ctx, nlDomain, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("CN inbox: %v, want not found (not entitled)", err)
		}
	})

	// The same alert, pushed again by NL's gateway identity.
	a := &blv1.Alert{}
	in, err := sg.store.GetInbox(ctx, nlDomain, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := proto.Unmarshal(in.Alert, a); err != nil {
		t.Fatal(err)
	}
	nlToSG := blv1.NewExchangeClient(f.conn(t, sgDomain, "spiffe://"+nlDomain+"/gateway", nil))

	t.Run("redelivery gets the same receipt and stores nothing", func(t *testing.T) {
		before := len(allAudit(t, sg))
		again, err := nlToSG.Deliver(ctx, &blv1.DeliverRequest{Alert: a})
		if err != nil {
			t.Fatalf("redeliver: %v", err)
		}
		if !again.GetDuplicate() || again.GetReceipt() != sent.Receipt {
			t.Errorf("duplicate=%v, receipt equal=%v; want the first receipt again", again.GetDuplicate(), again.GetReceipt() == sent.Receipt)
		}
		if after := len(allAudit(t, sg)); after != before {
			t.Errorf("redelivery added %d audit records", after-before)
		}
	})

	t.Run("same message ID with other content is a conflict", func(t *testing.T) {
		other := proto.CloneOf(a)
		other.Purpose = "risk-management"
		_, err := nlToSG.Deliver(ctx, &blv1.DeliverRequest{Alert: other})
		if status.Code(err) != codes.AlreadyExists || reasonCode(err) != "MESSAGE_CONFLICT" {
			t.Fatalf("err = %v (%s), want AlreadyExists MESSAGE_CONFLICT", err, reasonCode(err))
		}
		recs := auditOf(t, sg, id)
		last := recs[len(recs)-1]
		if len(recs) != 2 || last.GetDecision() != blv1.AuditDecision_AUDIT_DECISION_DENY || last.GetStatus() != "ALREADY_EXISTS" {
			t.Errorf("audit after conflict: %v", recs)
		}
	})

	t.Run("bad input is refused before anything is stored", func(t *testing.T) {
		fresh := func() *blv1.Alert {
			b := proto.CloneOf(a)
			b.MessageId = strings.Repeat("ab", 16)
			return b
		}
		oversized := fresh()
		oversized.RiskAssessment.ModelName = strings.Repeat("x", 70<<10)
		unknown := fresh()
		unknown.RiskAssessment.ProtoReflect().SetUnknown(protowire.AppendTag(nil, 99, protowire.BytesType))
		unknown.RiskAssessment.ProtoReflect().SetUnknown(protowire.AppendBytes(unknown.RiskAssessment.ProtoReflect().GetUnknown(), []byte("declaration")))
		badID := fresh()
		badID.MessageId = "../../etc"
		noRecord := fresh()
		noRecord.RiskAssessment = nil
		tampered := fresh()
		tampered.RiskAssessment.Score = 0.1
		extra := fresh()
		extra.RiskAssessment.Indicators[0].Description = "not released"
		digest, _ := release.Digest(extra.RiskAssessment)
		extra.Release.Sha256 = digest
		for _, tc := range []struct {
			name  string
			alert *blv1.Alert
		}{
			{"oversized", oversized},
			{"unknown record type", unknown},
			{"malformed message id", badID},
			{"no record", noRecord},
			{"digest does not match", tampered},
			{"fields outside the release", extra},
		} {
			t.Run(tc.name, func(t *testing.T) {
				before := len(allAudit(t, sg))
				_, err := nlToSG.Deliver(ctx, &blv1.DeliverRequest{Alert: tc.alert})
				if status.Code(err) != codes.InvalidArgument {
					t.Fatalf("err = %v, want InvalidArgument", err)
				}
				if after := len(allAudit(t, sg)); after != before {
					t.Errorf("refused input added %d audit records", after-before)
				}
			})
		}
	})

	t.Run("sender without an inbound agreement is refused and audited", func(t *testing.T) {
		b := proto.CloneOf(a)
		b.MessageId = strings.Repeat("cd", 16)
		cnToSG := blv1.NewExchangeClient(f.conn(t, sgDomain, "spiffe://"+cnDomain+"/gateway", nil))
		_, err := cnToSG.Deliver(ctx, &blv1.DeliverRequest{Alert: b})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("err = %v, want PermissionDenied", err)
		}
		recs := auditOf(t, sg, b.GetMessageId())
		if len(recs) != 1 || recs[0].GetDecision() != blv1.AuditDecision_AUDIT_DECISION_DENY {
			t.Errorf("audit = %v", recs)
		}
		if _, err := sg.store.GetInbox(ctx, cnDomain, b.GetMessageId()); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("refused alert was stored: %v", err)
		}
		agency := blv1.NewExchangeClient(f.conn(t, sgDomain, "spiffe://"+nlDomain+"/agency/health", nil))
		if _, err := agency.Deliver(ctx, &blv1.DeliverRequest{Alert: b}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("agency push: %v, want PermissionDenied", err)
		}
	})

	t.Run("below the threshold nothing is queued", func(t *testing.T) {
		resp, err := f.ingest(t, nlDomain).PublishAlert(ctx, &blv1.PublishAlertRequest{RiskAssessment: storetest.RiskAssessment("NL-RA-LOW", "NL-1", 0.4)})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetQueued()) != 0 {
			t.Errorf("queued = %v, want none", resp.GetQueued())
		}
		if _, err := nl.store.GetRiskAssessment(ctx, "NL-RA-LOW"); err != nil {
			t.Errorf("record not stored: %v", err)
		}
	})

	t.Run("operators see the queue", func(t *testing.T) {
		st, err := f.admin(t, nlDomain).DeliveryStatus(ctx, &blv1.DeliveryStatusRequest{Partner: sgDomain, ListLimit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(st.GetPartners()) != 1 || st.GetPartners()[0].GetDelivered() != 1 || st.GetPartners()[0].GetPending() != 0 || st.GetPartners()[0].GetBreaker() != "closed" {
			t.Errorf("status = %v", st)
		}
		if _, err := f.admin(t, nlDomain).RetryDelivery(ctx, &blv1.RetryDeliveryRequest{MessageId: id}); status.Code(err) != codes.FailedPrecondition {
			t.Errorf("retry of a delivered entry: %v, want FailedPrecondition", err)
		}
		if _, err := f.admin(t, nlDomain).CancelDelivery(ctx, &blv1.CancelDeliveryRequest{MessageId: strings.Repeat("0", 32)}); status.Code(err) != codes.NotFound {
			t.Errorf("cancel of an unknown entry: %v, want NotFound", err)
		}
	})
}

// rewrittenPolicies is the shipped policy set with old replaced by new in
// every file.
func rewrittenPolicies(t *testing.T, old, new string) fstest.MapFS {
	t.Helper()
	fsys := fstest.MapFS{}
	if err := fs.WalkDir(policies.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(policies.FS, p)
		fsys[p] = &fstest.MapFile{Data: []byte(strings.ReplaceAll(string(b), old, new))}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return fsys
}

// suspendedPolicies is the shipped policy set with every agreement
// suspended.
func suspendedPolicies(t *testing.T) fstest.MapFS {
	return rewrittenPolicies(t, "status: active", "status: suspended")
}

// TestPushRefused: SG's own copy of the agreement is suspended, so SG
// refuses NL's alert. NL settles it at once as refused (not retried for
// ever), audits the refusal with SG's signed receipt for it, and an
// operator can cancel it.
func TestPushRefused(t *testing.T) {
	f := startFederation(t)
	ctx := context.Background()
	nl, sg := f.nodes[nlDomain], f.nodes[sgDomain]
	if err := sg.engine.Reload(ctx, suspendedPolicies(t)); err != nil {
		t.Fatal(err)
	}
	resp, err := f.ingest(t, nlDomain).PublishAlert(ctx, &blv1.PublishAlertRequest{RiskAssessment: storetest.RiskAssessment("NL-RA-BAD", "NL-1", 0.9)})
	if err != nil || len(resp.GetQueued()) != 1 {
		t.Fatalf("PublishAlert: %v, %v", resp, err)
	}
	id := resp.GetQueued()[0].GetMessageId()
	e := waitSettled(t, nl, id)
	if e.State != store.OutboxRefused || !strings.Contains(e.LastError, "PermissionDenied") {
		t.Fatalf("entry = %+v, want refused with the receiver's reason", e)
	}
	recs := auditOf(t, nl, id)
	if len(recs) != 1 || recs[0].GetDecision() != blv1.AuditDecision_AUDIT_DECISION_DENY || recs[0].GetStatus() != "PERMISSION_DENIED" || recs[0].GetPartnerReceipt() == "" {
		t.Errorf("sender audit = %v, want one DENY with the receiver's receipt", recs)
	}
	if _, err := f.admin(t, nlDomain).CancelDelivery(ctx, &blv1.CancelDeliveryRequest{MessageId: id}); err != nil {
		t.Errorf("cancel refused entry: %v", err)
	}
	if e, _ := nl.store.GetOutbox(ctx, id); e.State != store.OutboxCancelled {
		t.Errorf("state after cancel = %v", e.State)
	}
	// The cancellation is audited with the operator who asked, so that it
	// outlives the outbox entry (pruned after keep_settled); the partner
	// does not see our operators.
	var cancels []*blv1.AuditRecord
	for _, r := range auditOf(t, nl, id) {
		if r.GetAction() == gateway.ActionAlertCancel {
			cancels = append(cancels, r)
		}
	}
	if len(cancels) != 1 || cancels[0].GetCallerId() != "spiffe://"+nlDomain+"/system/cli" || cancels[0].GetPeerId() != "spiffe://"+sgDomain+"/gateway" ||
		cancels[0].GetDecision() != blv1.AuditDecision_AUDIT_DECISION_DENY || cancels[0].GetResourceIds()[0] != "NL-RA-BAD" {
		t.Errorf("cancellation records = %v, want one naming the operator and the partner", cancels)
	}
	if got, err := nl.store.ListAudit(ctx, store.AuditQuery{Partner: sgDomain, Action: gateway.ActionAlertCancel}); err != nil || len(got) != 1 {
		t.Errorf("cancellations listed for partner %s: %d, %v; want 1", sgDomain, len(got), err)
	}
	sgAudit := blv1.NewAuditClient(f.conn(t, nlDomain, "spiffe://"+sgDomain+"/gateway", nil))
	list, err := sgAudit.ListRecords(ctx, &blv1.ListRecordsRequest{Filter: &blv1.AuditFilter{RequestId: id}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range list.GetRecords() {
		if r.GetAction() == gateway.ActionAlertCancel {
			t.Errorf("the partner sees our cancellation record: %v", r)
		}
	}
	// A second cancel finds nothing to cancel and writes nothing.
	if _, err := f.admin(t, nlDomain).CancelDelivery(ctx, &blv1.CancelDeliveryRequest{MessageId: id}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("second cancel: %v, want FailedPrecondition", err)
	}
	if n := len(auditOf(t, nl, id)); n != 2 {
		t.Errorf("records of %s after a failed second cancel: %d, want 2 (refusal, cancellation)", id, n)
	}
}

func TestSubscribe(t *testing.T) {
	f := startFederation(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nl := f.nodes[nlDomain]
	sgOnNL := blv1.NewExchangeClient(f.conn(t, nlDomain, "spiffe://"+sgDomain+"/gateway", nil))

	// NL-RA-1 (0.82, bound for SG) is stored by startFederation; add one SG
	// may see, one below the threshold and one about a consignment bound
	// elsewhere.
	mustPut(t, nl, nil, []*blv1.RiskAssessment{
		storetest.RiskAssessment("NL-RA-2", "NL-1", 0.95),
		storetest.RiskAssessment("NL-RA-3", "NL-1", 0.2),
		storetest.RiskAssessment("NL-RA-4", "NL-US", 0.99),
	})
	recv := func(cursor uint64, n int) ([]string, uint64) {
		t.Helper()
		sctx, scancel := context.WithCancel(ctx)
		defer scancel()
		stream, err := sgOnNL.Subscribe(sctx, &blv1.SubscribeRequest{Dataset: "risk_assessment", Purpose: "risk-assessment", Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for len(ids) < n {
			m, err := stream.Recv()
			if err != nil {
				t.Fatalf("after %v: %v", ids, err)
			}
			if m.GetCursor() <= cursor {
				t.Fatalf("cursor %d after %d: not increasing", m.GetCursor(), cursor)
			}
			cursor = m.GetCursor()
			if m.GetReceipt() == "" || m.GetRelease().GetGrantId() != "nl-to-sg-alerts" {
				t.Errorf("record %s: receipt %q grant %q", m.GetRiskAssessment().GetId(), m.GetReceipt(), m.GetRelease().GetGrantId())
			}
			ids = append(ids, m.GetRiskAssessment().GetId())
		}
		return ids, cursor
	}
	ids, cursor := recv(0, 2)
	if strings.Join(ids, ",") != "NL-RA-1,NL-RA-2" {
		t.Fatalf("first records = %v, want NL-RA-1,NL-RA-2 (entitled ones, commit order)", ids)
	}
	// A record committed while nobody is connected arrives on resume, once.
	mustPut(t, nl, nil, []*blv1.RiskAssessment{storetest.RiskAssessment("NL-RA-5", "NL-1", 0.88)})
	ids, _ = recv(cursor, 1)
	if strings.Join(ids, ",") != "NL-RA-5" {
		t.Fatalf("after resume = %v, want NL-RA-5", ids)
	}
	// An agency with no subscribe grant is refused.
	agency := blv1.NewExchangeClient(f.conn(t, nlDomain, "spiffe://"+nlDomain+"/agency/health", nil))
	stream, err := agency.Subscribe(ctx, &blv1.SubscribeRequest{Dataset: "risk_assessment", Purpose: "risk-assessment"})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("agency subscribe: %v, want PermissionDenied", err)
	}
}

// TestInboxRetention: a received alert is listed for the own systems with
// its provenance, and deleted (audited, provenance kept) when the sender's
// retention obligation ends.
func TestInboxRetention(t *testing.T) {
	var sgClock atomic.Int64
	sgClock.Store(decisionTime.UnixNano())
	f := startFederation(t, func(d string, o *gateway.Options) {
		if d == sgDomain {
			o.Now = func() time.Time { return time.Unix(0, sgClock.Load()).UTC() }
			o.Delivery.RetentionInterval = 20 * time.Millisecond
		}
	})
	ctx := context.Background()
	nl, sg := f.nodes[nlDomain], f.nodes[sgDomain]
	resp, err := f.ingest(t, nlDomain).PublishAlert(ctx, &blv1.PublishAlertRequest{RiskAssessment: storetest.RiskAssessment("NL-RA-RET", "NL-1", 0.9)})
	if err != nil || len(resp.GetQueued()) != 1 {
		t.Fatalf("PublishAlert: %v, %v", resp, err)
	}
	id := resp.GetQueued()[0].GetMessageId()
	if e := waitSettled(t, nl, id); e.State != store.OutboxDelivered {
		t.Fatalf("entry = %+v", e)
	}
	sgLocal := f.local(t, sgDomain)
	list, err := sgLocal.ListReceivedAlerts(ctx, &blv1.ListReceivedAlertsRequest{Sender: nlDomain})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetAlerts()) != 1 || list.GetAlerts()[0].GetAlert().GetRiskAssessment().GetId() != "NL-RA-RET" ||
		list.GetAlerts()[0].GetObligations().GetRetentionDays() != 365 || list.GetAlerts()[0].GetExpired() {
		t.Fatalf("received alerts = %v", list)
	}

	// A day before the end nothing happens; after it the payload goes.
	sgClock.Store(decisionTime.Add(364 * 24 * time.Hour).UnixNano())
	time.Sleep(100 * time.Millisecond)
	if in, _ := sg.store.GetInbox(ctx, nlDomain, id); in.Alert == nil {
		t.Fatal("payload deleted before its retention ended")
	}
	sgClock.Store(decisionTime.Add(366 * 24 * time.Hour).UnixNano())
	deadline := time.Now().Add(10 * time.Second)
	for {
		in, err := sg.store.GetInbox(ctx, nlDomain, id)
		if err != nil {
			t.Fatal(err)
		}
		if in.Alert == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("payload still stored 10s after its retention ended")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var deletions int
	for _, r := range auditOf(t, sg, id) {
		if r.GetAction() == "retention.delete" {
			deletions++
		}
	}
	if deletions != 1 {
		t.Errorf("retention.delete records for %s: %d, want 1", id, deletions)
	}
	list, err = sgLocal.ListReceivedAlerts(ctx, &blv1.ListReceivedAlertsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetAlerts()) != 1 || !list.GetAlerts()[0].GetExpired() || list.GetAlerts()[0].GetAlert() != nil || list.GetAlerts()[0].GetAgreementId() != "nl-sg-risk-2026" {
		t.Errorf("after retention: %v", list)
	}
}

// TestOnwardSharingRefused: an alert SG pushed to NL is not handed on by
// NL to CN, although NL's own policy would give CN a risk assessment: the
// NL–SG agreement forbids onward sharing. The refusal is audited.
func TestOnwardSharingRefused(t *testing.T) {
	f := startFederation(t)
	ctx := context.Background()
	nl, sg := f.nodes[nlDomain], f.nodes[sgDomain]
	resp, err := f.ingest(t, sgDomain).PublishAlert(ctx, &blv1.PublishAlertRequest{RiskAssessment: storetest.RiskAssessment("SG-RA-HOT", "SG-1", 0.93)})
	if err != nil || len(resp.GetQueued()) != 1 || resp.GetQueued()[0].GetRecipient() != nlDomain {
		t.Fatalf("PublishAlert: %v, %v", resp, err)
	}
	if e := waitSettled(t, sg, resp.GetQueued()[0].GetMessageId()); e.State != store.OutboxDelivered {
		t.Fatalf("entry = %+v", e)
	}
	_, err = f.local(t, cnDomain).GetPartnerRiskAssessment(ctx, &blv1.GetPartnerRiskAssessmentRequest{Partner: nlDomain, Id: "SG-RA-HOT", Purpose: "transit-security"})
	if status.Code(err) != codes.PermissionDenied || reasonCode(err) != "ONWARD_SHARING_NOT_ALLOWED" {
		t.Fatalf("err = %v (%s), want PermissionDenied ONWARD_SHARING_NOT_ALLOWED", err, reasonCode(err))
	}
	var refused int
	for _, r := range allAudit(t, nl) {
		if r.GetAction() == "risk.get" && r.GetResourceIds()[0] == "SG-RA-HOT" && r.GetDecision() == blv1.AuditDecision_AUDIT_DECISION_DENY {
			refused++
		}
	}
	if refused != 1 {
		t.Errorf("NL audit: %d refusals of SG-RA-HOT, want 1", refused)
	}
	// NL's own records are still served to CN as before.
	if _, err := f.local(t, cnDomain).GetPartnerRiskAssessment(ctx, &blv1.GetPartnerRiskAssessmentRequest{Partner: nlDomain, Id: "NL-RA-1", Purpose: "transit-security"}); err != nil {
		t.Errorf("own risk assessment: %v", err)
	}
}

// TestQueuedAlertRecheckedAndCancelled: while SG is unreachable, NL's
// queued alerts wait. One is cancelled by an operator: it is never sent
// and leaves no record. The agreement is then suspended: the other is
// decided again before its next attempt and refused locally, audited,
// instead of being sent under terms no longer in force.
func TestQueuedAlertRecheckedAndCancelled(t *testing.T) {
	f := startFederation(t, func(d string, o *gateway.Options) {
		if d == nlDomain {
			o.Peers[sgDomain] = "127.0.0.1:1" // nothing listens there
		}
	})
	ctx := context.Background()
	nl := f.nodes[nlDomain]
	publish := func(id string) string {
		t.Helper()
		resp, err := f.ingest(t, nlDomain).PublishAlert(ctx, &blv1.PublishAlertRequest{RiskAssessment: storetest.RiskAssessment(id, "NL-1", 0.9)})
		if err != nil || len(resp.GetQueued()) != 1 {
			t.Fatalf("PublishAlert %s: %v, %v", id, resp, err)
		}
		return resp.GetQueued()[0].GetMessageId()
	}
	cancelled, rechecked := publish("NL-RA-C1"), publish("NL-RA-C2")
	// Both are attempted and fail (SG unreachable) before anything else.
	deadline := time.Now().Add(20 * time.Second)
	for {
		a, _ := nl.store.GetOutbox(ctx, cancelled)
		b, _ := nl.store.GetOutbox(ctx, rechecked)
		if a.Attempts > 0 && b.Attempts > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failed attempts recorded: %+v %+v", a, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := f.admin(t, nlDomain).CancelDelivery(ctx, &blv1.CancelDeliveryRequest{MessageId: cancelled}); err != nil {
		t.Fatal(err)
	}
	// Suspend every agreement: the queued alert is no longer allowed.
	suspended := suspendedPolicies(t)
	if err := nl.engine.Reload(ctx, suspended); err != nil {
		t.Fatal(err)
	}
	if e := waitSettled(t, nl, rechecked); e.State != store.OutboxRefused || !strings.Contains(e.LastError, "no longer allowed") {
		t.Fatalf("rechecked entry = %+v, want refused locally", e)
	}
	recs := auditOf(t, nl, rechecked)
	if len(recs) != 1 || recs[0].GetDecision() != blv1.AuditDecision_AUDIT_DECISION_DENY || recs[0].GetPolicyRevision() != nl.engine.Revision() {
		t.Errorf("audit of the refused alert = %v", recs)
	}
	if e, _ := nl.store.GetOutbox(ctx, cancelled); e.State != store.OutboxCancelled {
		t.Errorf("cancelled entry is %v", e.State)
	}
	// Nothing was sent: its only record is the cancellation.
	if recs := auditOf(t, nl, cancelled); len(recs) != 1 || recs[0].GetAction() != gateway.ActionAlertCancel {
		t.Errorf("cancelled alert has audit records %v, want only its cancellation", recs)
	}
}

// TestQueuedAlertTermsChanged: an alert queued while SG is unreachable is
// not sent after the agreement narrowed what it releases: the old payload
// would go out under terms no longer in force.
func TestQueuedAlertTermsChanged(t *testing.T) {
	f := startFederation(t, func(d string, o *gateway.Options) {
		if d == nlDomain {
			o.Peers[sgDomain] = "127.0.0.1:1" // nothing listens there
		}
	})
	ctx := context.Background()
	nl := f.nodes[nlDomain]
	resp, err := f.ingest(t, nlDomain).PublishAlert(ctx, &blv1.PublishAlertRequest{RiskAssessment: storetest.RiskAssessment("NL-RA-T1", "NL-1", 0.9)})
	if err != nil || len(resp.GetQueued()) != 1 {
		t.Fatalf("PublishAlert: %v, %v", resp, err)
	}
	id := resp.GetQueued()[0].GetMessageId()
	narrowed := rewrittenPolicies(t, "fields: [id, declaration_id, score, level, indicators.code,", "fields: [id, declaration_id, score, level,")
	if err := nl.engine.Reload(ctx, narrowed); err != nil {
		t.Fatal(err)
	}
	e := waitSettled(t, nl, id)
	if e.State != store.OutboxRefused || !strings.Contains(e.LastError, "changed since publication") {
		t.Fatalf("entry = %+v, want refused locally: terms changed", e)
	}
}

// TestOutboxPruned: a delivered entry stays listed for delivery.keep_settled
// and is then deleted by the retention job; the audit record of the
// delivery, with the partner's receipt, stays.
func TestOutboxPruned(t *testing.T) {
	var nlClock atomic.Int64
	nlClock.Store(decisionTime.UnixNano())
	f := startFederation(t, func(d string, o *gateway.Options) {
		if d == nlDomain {
			o.Now = func() time.Time { return time.Unix(0, nlClock.Load()).UTC() }
			o.Delivery.RetentionInterval = 20 * time.Millisecond
			o.Delivery.KeepSettled = time.Hour
		}
	})
	ctx := context.Background()
	nl := f.nodes[nlDomain]
	resp, err := f.ingest(t, nlDomain).PublishAlert(ctx, &blv1.PublishAlertRequest{RiskAssessment: storetest.RiskAssessment("NL-RA-PRUNE", "NL-1", 0.9)})
	if err != nil || len(resp.GetQueued()) != 1 {
		t.Fatalf("PublishAlert: %v, %v", resp, err)
	}
	id := resp.GetQueued()[0].GetMessageId()
	if e := waitSettled(t, nl, id); e.State != store.OutboxDelivered {
		t.Fatalf("entry = %+v", e)
	}
	// Just before keep_settled ends the entry is still there.
	nlClock.Store(decisionTime.Add(59 * time.Minute).UnixNano())
	time.Sleep(100 * time.Millisecond)
	if _, err := nl.store.GetOutbox(ctx, id); err != nil {
		t.Fatalf("entry pruned before keep_settled ended: %v", err)
	}
	nlClock.Store(decisionTime.Add(61 * time.Minute).UnixNano())
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := nl.store.GetOutbox(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("delivered entry still in the outbox 10s after keep_settled ended")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var receipts int
	for _, r := range auditOf(t, nl, id) {
		if r.GetAction() == "alert.deliver" && r.GetPartnerReceipt() != "" {
			receipts++
		}
	}
	if receipts != 1 {
		t.Errorf("delivery records with the partner's receipt for %s: %d, want 1", id, receipts)
	}
}
