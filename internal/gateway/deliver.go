package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/delivery"
	"github.com/borderlink/borderlink/internal/identity"
	"github.com/borderlink/borderlink/internal/policy"
	"github.com/borderlink/borderlink/internal/store"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// ActionAlertDeliver is the action of pushing a risk alert to a partner
// gateway; both the sender's and the receiver's policy decide it.
const ActionAlertDeliver = "alert.deliver"

// ActionAlertCancel is an operator's cancellation of an alert not yet
// delivered (borderlink delivery cancel): audited with the operator as
// caller and the partner as peer.
const ActionAlertCancel = "alert.cancel"

// DefaultAlertPurpose is the purpose alerts are pushed for when the
// publisher names none, and the purpose of risk assessments pushed because
// they were imported.
const DefaultAlertPurpose = "risk-assessment"

// MaxAlertBytes bounds one alert on the wire; a risk assessment is a few
// hundred bytes, so anything near this is not an alert.
const MaxAlertBytes = 64 << 10

// deliveryStore is what push delivery needs beyond Store. A Store without
// it serves pulls only: PublishAlert and Deliver answer Unimplemented.
type deliveryStore interface {
	delivery.Queue
	PutRecordsQueued(ctx context.Context, decls []*blv1.Declaration, risks []*blv1.RiskAssessment, entries []store.OutboxEntry) error
	PublishAlert(ctx context.Context, risk *blv1.RiskAssessment, entries []store.OutboxEntry) error
	ConfirmDelivery(ctx context.Context, messageID, receipt string, rec *blv1.AuditRecord) (uint64, error)
	RefuseDelivery(ctx context.Context, messageID, reason string, rec *blv1.AuditRecord) (uint64, error)
	GetInbox(ctx context.Context, sender, messageID string) (store.InboxEntry, error)
	AcceptAlert(ctx context.Context, e store.InboxEntry, rec *blv1.AuditRecord) (uint64, error)
	AuditLeaves(ctx context.Context, start, count int64) ([][]byte, error)
	OutboxStats(ctx context.Context) ([]store.OutboxStats, error)
	ListOutbox(ctx context.Context, recipient string, limit int) ([]store.OutboxEntry, error)
	GetOutbox(ctx context.Context, messageID string) (store.OutboxEntry, error)
	RetryOutbox(ctx context.Context, messageID string, now time.Time) error
	CancelOutbox(ctx context.Context, messageID string, now time.Time, rec *blv1.AuditRecord) (uint64, error)
}

func (g *Gateway) deliveryStore() (deliveryStore, error) {
	ds, ok := g.opts.Store.(deliveryStore)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "this gateway's store does not support push delivery")
	}
	return ds, nil
}

// alertRecipients are the partner gateways that could be entitled to
// alerts: every configured partner and every trust domain a grant of ours
// pushes to. The policy decides for each.
func (g *Gateway) alertRecipients() []string {
	set := map[string]bool{}
	for _, d := range g.peers.domains() {
		set[d] = true
	}
	for _, a := range g.opts.Policy.Agreements() {
		for _, gr := range a.Grants {
			if gr.Provider == g.self && slices.Contains(gr.Actions, ActionAlertDeliver) && domainPattern.MatchString(gr.Recipient) {
				set[gr.Recipient] = true
			}
		}
	}
	delete(set, g.self)
	out := make([]string, 0, len(set))
	for d := range set {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// queueAlert decides, for every possible recipient, whether it is entitled
// to the risk assessment and builds the outbox entry of each one that is,
// released under its own grant. Denials are not entries and not audit
// records: nothing is sent to those partners and they asked for nothing.
//
// decl, when not nil, is the declaration the risk assessment is about,
// from the same import (it is not in the store yet); otherwise the store's
// is used.
//
// recipients are alertRecipients(), computed once per call of the caller:
// an import queues thousands of records against the same agreements.
func (g *Gateway) queueAlert(ctx context.Context, recipients []string, risk *blv1.RiskAssessment, decl *blv1.Declaration, purpose string, now time.Time) ([]store.OutboxEntry, error) {
	attrs := policy.RiskAttributes(risk, decl)
	if decl == nil {
		attrs = g.riskAttributes(ctx, risk)
	}
	var (
		entries   []store.OutboxEntry
		published []byte // the record as published, kept with each entry
	)
	for _, recipient := range recipients {
		who := identity.GatewayID(recipient)
		in := policy.Input{
			Caller:   who,
			Action:   ActionAlertDeliver,
			Purpose:  purpose,
			Resource: policy.Resource{Type: "risk_assessment", ID: risk.GetId(), Exists: true, Attributes: attrs},
			Time:     now,
		}
		dec, err := g.opts.Policy.Decide(ctx, in)
		if err != nil {
			// Fail closed for this recipient, loudly: an alert it may have
			// been entitled to is not sent.
			g.log.Error("policy evaluation failed; alert not queued for partner", "recipient", recipient, "risk_id", risk.GetId(), "error", err)
			continue
		}
		if !dec.Allow {
			continue
		}
		out, rel, err := g.release(risk, dec, who)
		if err != nil {
			return nil, fmt.Errorf("release alert %s for %s: %w", risk.GetId(), recipient, err)
		}
		alert := &blv1.Alert{
			MessageId:      newRequestID(),
			RiskAssessment: out.(*blv1.RiskAssessment),
			Release:        rel,
			Purpose:        purpose,
			PublishedTime:  timestamppb.New(now),
		}
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(alert)
		if err != nil {
			return nil, fmt.Errorf("encode alert %s for %s: %w", risk.GetId(), recipient, err)
		}
		if published == nil {
			if published, err = (proto.MarshalOptions{Deterministic: true}).Marshal(risk); err != nil {
				return nil, fmt.Errorf("encode record %s: %w", risk.GetId(), err)
			}
		}
		entries = append(entries, store.OutboxEntry{
			MessageID: alert.GetMessageId(),
			Recipient: recipient,
			RecordID:  risk.GetId(),
			Agreement: dec.Agreement,
			Grant:     dec.Grant,
			Alert:     b,
			Record:    published,
			Created:   now,
		})
	}
	return entries, nil
}

// PublishAlert stores a risk assessment and queues its deliveries in one
// transaction.
func (s *ingestServer) PublishAlert(ctx context.Context, req *blv1.PublishAlertRequest) (*blv1.PublishAlertResponse, error) {
	g := s.g
	who, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	ds, err := g.deliveryStore()
	if err != nil {
		return nil, err
	}
	purpose := req.GetPurpose()
	if purpose == "" {
		purpose = DefaultAlertPurpose
	}
	if err := checkPurpose(purpose); err != nil {
		return nil, err
	}
	rec := &blv1.IngestRecord{Kind: &blv1.IngestRecord_RiskAssessment{RiskAssessment: req.GetRiskAssessment()}}
	if err := validateOne(rec); err != nil {
		return nil, err
	}
	entries, err := g.queueAlert(ctx, g.alertRecipients(), req.GetRiskAssessment(), nil, purpose, g.now())
	if err != nil {
		g.log.Error("alert not published", "caller", who.String(), "risk_id", req.GetRiskAssessment().GetId(), "error", err)
		return nil, status.Error(codes.Internal, "alert could not be prepared; nothing was stored")
	}
	if err := ds.PublishAlert(ctx, req.GetRiskAssessment(), entries); err != nil {
		g.log.Error("alert not published", "caller", who.String(), "risk_id", req.GetRiskAssessment().GetId(), "error", err)
		return nil, status.Error(codes.Internal, "store write failed; nothing was stored")
	}
	g.commits.notify()
	resp := &blv1.PublishAlertResponse{}
	for _, e := range entries {
		resp.Queued = append(resp.Queued, &blv1.QueuedAlert{MessageId: e.MessageID, Recipient: e.Recipient, AgreementId: e.Agreement, GrantId: e.Grant})
		g.notifyDelivery(e.Recipient)
	}
	g.log.Info("alert published", "caller", who.String(), "risk_id", req.GetRiskAssessment().GetId(), "recipients", len(entries))
	return resp, nil
}

// startDelivery runs the deliverer and the inbox retention until ctx ends
// or stop is called; stop waits for them, so that no delivery dials a
// partner after the peer connections are closed. An entry interrupted by
// the stop stays pending.
func (g *Gateway) startDelivery(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	if g.deliverer != nil {
		wg.Go(func() {
			if err := g.deliverer.Run(ctx); err != nil {
				g.log.Error("deliverer stopped", "error", err)
			}
		})
	}
	if is, ok := g.opts.Store.(inboxStore); ok {
		every := g.opts.Delivery.RetentionInterval
		if every <= 0 {
			every = time.Minute
		}
		wg.Go(func() { g.runRetention(ctx, is, every) })
	}
	return sync.OnceFunc(func() {
		cancel()
		wg.Wait()
	})
}

func (g *Gateway) notifyDelivery(recipient string) {
	if g.deliverer != nil {
		g.deliverer.Notify(recipient)
	}
}

// alertSender settles outbox entries: it pushes one alert to its
// recipient, checks the receipt and records the delivery (or the
// recipient's refusal) atomically with the entry's new state.
type alertSender struct {
	g  *Gateway
	ds deliveryStore
}

// permanentRefusal are the recipient's answers that retrying cannot change
// without an operator: its policy refuses, the alert is malformed for it,
// or the message ID is taken by other content.
func permanentRefusal(c codes.Code) bool {
	switch c {
	case codes.PermissionDenied, codes.InvalidArgument, codes.AlreadyExists, codes.OutOfRange:
		return true
	}
	return false
}

func (s alertSender) Send(ctx context.Context, e store.OutboxEntry) error {
	g := s.g
	alert := &blv1.Alert{}
	if err := proto.Unmarshal(e.Alert, alert); err != nil {
		// Our own bytes: corruption. Keep it pending and visible.
		return fmt.Errorf("outbox entry %s: decode alert: %w", e.MessageID, err)
	}
	client, peer, err := g.peers.exchange(e.Recipient)
	if err != nil {
		return fmt.Errorf("partner %s: %w", e.Recipient, err)
	}
	v, err := g.alog.verifier(e.Recipient)
	if err != nil {
		return fmt.Errorf("partner %s: %w", e.Recipient, err)
	}
	rec := &blv1.AuditRecord{
		Side:           blv1.AuditSide_AUDIT_SIDE_PROVIDER,
		RequestId:      e.MessageID,
		CallerId:       peer.String(),
		PeerId:         peer.String(),
		Action:         ActionAlertDeliver,
		Purpose:        alert.GetPurpose(),
		ResourceIds:    []string{e.RecordID},
		AgreementId:    alert.GetRelease().GetAgreementId(),
		PolicyRevision: alert.GetRelease().GetPolicyRevision(),
	}
	// The lane may have held this entry while an operator cancelled it.
	cur, err := s.ds.GetOutbox(ctx, e.MessageID)
	if err != nil {
		return fmt.Errorf("outbox entry %s: %w", e.MessageID, err)
	}
	if cur.State != store.OutboxPending {
		return nil
	}
	// The release was decided when the alert was published; the agreement
	// may have been suspended or may have expired since (a partner down for
	// days). Ask again, and refuse locally what is no longer allowed.
	refusal, err := s.stillAllowed(ctx, e, alert, peer)
	if err != nil {
		// Not decided (store or policy unavailable, or shutting down):
		// not sent, tried again later.
		return err
	}
	if refusal != "" {
		rec.Time = timestamppb.New(g.now())
		rec.Decision = blv1.AuditDecision_AUDIT_DECISION_DENY
		rec.Status = audit.StatusName(codes.PermissionDenied)
		rec.PolicyRevision = g.opts.Policy.Revision()
		// An earlier attempt that timed out or was cut by a crash may have
		// reached the partner; only its log can tell.
		rec.Reasons = []string{refusal, "not sent now; an earlier attempt cut short by a timeout or crash may have reached the partner (its audit log shows it)"}
		if _, err := s.ds.RefuseDelivery(ctx, e.MessageID, refusal, rec); err != nil && !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("record local refusal of %s: %w", e.MessageID, err)
		}
		g.log.Warn("queued alert no longer allowed; not sent", "message_id", e.MessageID, "recipient", e.Recipient, "reason", refusal)
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, g.opts.Limits.PeerTimeout)
	defer cancel()
	cctx = metadata.AppendToOutgoingContext(cctx, RequestIDHeader, e.MessageID)
	var trailer metadata.MD
	resp, err := client.Deliver(cctx, &blv1.DeliverRequest{Alert: alert}, grpc.Trailer(&trailer))
	if err != nil {
		st := status.Convert(err)
		if !permanentRefusal(st.Code()) {
			return fmt.Errorf("deliver to %s: %s: %s", e.Recipient, st.Code(), st.Message())
		}
		rec.Time = timestamppb.New(g.now())
		rec.Decision = blv1.AuditDecision_AUDIT_DECISION_DENY
		rec.Status = audit.StatusName(st.Code())
		rec.Reasons = []string{st.Message()}
		// The recipient signs its refusals too; keep the receipt as
		// evidence when it verifies.
		g.keepRefusalReceipt(rec, trailer, v)
		reason := fmt.Sprintf("refused by %s: %s: %s", e.Recipient, st.Code(), st.Message())
		_, err := s.ds.RefuseDelivery(ctx, e.MessageID, reason, rec)
		if err := s.settle(ctx, e, rec, err); err != nil {
			return fmt.Errorf("record refusal of %s by %s: %w", e.MessageID, e.Recipient, err)
		}
		g.log.Warn("alert refused by partner", "message_id", e.MessageID, "recipient", e.Recipient, "code", st.Code().String(), "reason", st.Message())
		return nil
	}
	if err := g.checkPartnerReceipt(v, resp.GetReceipt(), e.MessageID, alert.GetRelease().GetSha256()); err != nil {
		// Not delivered as far as we can prove: keep it pending, so that an
		// operator sees it and the partner is asked again.
		return fmt.Errorf("receipt from %s for %s failed verification: %w", e.Recipient, e.MessageID, err)
	}
	g.opts.CrashAt.reach("receipt-received")
	rec.Time = timestamppb.New(g.now())
	rec.Decision = blv1.AuditDecision_AUDIT_DECISION_ALLOW
	rec.Status = audit.StatusName(codes.OK)
	rec.ReleasedFields = alert.GetRelease().GetFields()
	rec.ReleaseSha256 = alert.GetRelease().GetSha256()
	rec.PartnerReceipt = resp.GetReceipt()
	_, err = s.ds.ConfirmDelivery(ctx, e.MessageID, resp.GetReceipt(), rec)
	if err := s.settle(ctx, e, rec, err); err != nil {
		return fmt.Errorf("record delivery of %s to %s: %w", e.MessageID, e.Recipient, err)
	}
	return nil
}

// settle handles the outcome of recording a delivery or refusal together
// with its entry's new state. If the entry had left pending meanwhile (an
// operator cancelled it while this attempt was on the wire), the exchange
// still happened and is recorded on its own: nothing goes unaudited.
func (s alertSender) settle(ctx context.Context, e store.OutboxEntry, rec *blv1.AuditRecord, err error) error {
	if !errors.Is(err, store.ErrConflict) {
		return err
	}
	rec.Reasons = append(rec.Reasons, "the outbox entry had left pending (cancelled) while this attempt was under way")
	// The entry is no longer pending, so a retry of this Send would skip
	// it: the record must be written now, however long it takes.
	for try := 1; ; try++ {
		_, err := s.g.opts.Store.AppendAudit(context.WithoutCancel(ctx), rec)
		if err == nil {
			break
		}
		s.g.log.Error("audit record of a completed alert attempt not written; retrying", "message_id", e.MessageID, "try", try, "error", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("audit record of %s not written before shutdown: %w", e.MessageID, err)
		case <-time.After(time.Second):
		}
	}
	s.g.log.Warn("alert attempt completed after its entry was cancelled; recorded", "message_id", e.MessageID, "recipient", e.Recipient, "decision", rec.GetDecision().String())
	return nil
}

// stillAllowed decides the alert again for its recipient, on the record as
// it was published (a later version of the record has its own alert); it
// returns why it is no longer allowed ("" when it is). An error means it
// could not be decided: the entry must wait, neither sent nor refused.
func (s alertSender) stillAllowed(ctx context.Context, e store.OutboxEntry, alert *blv1.Alert, peer identity.ID) (string, error) {
	g := s.g
	risk := &blv1.RiskAssessment{}
	if err := proto.Unmarshal(e.Record, risk); err != nil || risk.GetId() != e.RecordID {
		return "", fmt.Errorf("recheck %s: the record as published is not in the outbox entry (%v)", e.MessageID, err)
	}
	dec, err := g.opts.Policy.Decide(ctx, policy.Input{
		Caller:   peer,
		Action:   ActionAlertDeliver,
		Purpose:  alert.GetPurpose(),
		Resource: policy.Resource{Type: "risk_assessment", ID: e.RecordID, Exists: true, Attributes: g.riskAttributes(ctx, risk)},
		Time:     g.now(),
	})
	if err == nil {
		// The record's attributes read with a cancelled context would be
		// incomplete, and the decision a false refusal.
		err = ctx.Err()
	}
	if err != nil {
		return "", fmt.Errorf("recheck %s: %w", e.MessageID, err)
	}
	if !dec.Allow {
		return fmt.Sprintf("no longer allowed under policy revision %s: %s", dec.Revision, strings.Join(dec.Reasons, "; ")), nil
	}
	// Allowed is not enough: what was released at publication must be what
	// would be released now (fields, masking, goods items, obligations),
	// or the old payload would go out under terms no longer in force.
	_, rel, err := g.release(risk, dec, peer)
	if err != nil {
		return "", fmt.Errorf("recheck %s: release: %w", e.MessageID, err)
	}
	if rel.GetSha256() != alert.GetRelease().GetSha256() || !proto.Equal(rel.GetObligations(), alert.GetRelease().GetObligations()) ||
		dec.Agreement != alert.GetRelease().GetAgreementId() {
		return fmt.Sprintf("its release terms changed since publication (now %s/%s under policy revision %s); publish it again",
			dec.Agreement, dec.Grant, dec.Revision), nil
	}
	return "", nil
}

var messageIDPattern = requestIDPattern

// Deliver is the receiving side of a push.
func (s *exchangeServer) Deliver(ctx context.Context, req *blv1.DeliverRequest) (*blv1.DeliverResponse, error) {
	g := s.g
	who, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if who.Kind != identity.KindGateway {
		return nil, status.Errorf(codes.PermissionDenied, "only partner gateways push alerts; %s is not one", who)
	}
	ds, err := g.deliveryStore()
	if err != nil {
		return nil, err
	}
	alert := req.GetAlert()
	if err := checkAlert(alert); err != nil {
		return nil, err
	}
	// The deterministic encoding is what is stored, and its digest is what
	// "the same message" means for a redelivery.
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(alert)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "alert cannot be encoded: %v", err)
	}
	sum := sha256.Sum256(raw)
	content := hex.EncodeToString(sum[:])
	sender := who.TrustDomain
	risk := alert.GetRiskAssessment()
	rel := alert.GetRelease()
	now := g.now()

	rec := &blv1.AuditRecord{
		Time:        timestamppb.New(now),
		Side:        blv1.AuditSide_AUDIT_SIDE_CONSUMER,
		RequestId:   alert.GetMessageId(),
		CallerId:    who.String(),
		PeerId:      who.String(),
		Action:      ActionAlertDeliver,
		Purpose:     alert.GetPurpose(),
		ResourceIds: []string{risk.GetId()},
		AgreementId: rel.GetAgreementId(),
		Status:      audit.StatusName(codes.OK),
	}
	if prev, err := ds.GetInbox(ctx, sender, alert.GetMessageId()); err == nil {
		return g.redelivery(ctx, ds, prev, content, rec)
	} else if !errors.Is(err, store.ErrNotFound) {
		g.log.Error("inbox read failed", "sender", sender, "message_id", alert.GetMessageId(), "error", err)
		return nil, status.Error(codes.Unavailable, "inbox unavailable; try again")
	}

	// Our own copy of the agreement must let the sender push this to us.
	// Conditions on the consignment are the sender's to apply (we do not
	// hold its declaration); being entitled to the action and purpose under
	// an agreement in force is ours to check.
	in := policy.Input{
		Provider: sender,
		Caller:   identity.GatewayID(g.self),
		Action:   ActionAlertDeliver,
		Purpose:  alert.GetPurpose(),
		Resource: policy.Resource{Type: "risk_assessment", ID: risk.GetId(), Exists: true, Attributes: policy.RiskAttributes(risk, nil)},
		Time:     now,
	}
	// Decided to the end even if the sender hangs up: a sender killed
	// mid-call would otherwise leave a POLICY_ERROR record here for an
	// alert its retry then delivers, two records for one message. The
	// retry finds the stored alert and gets the receipt.
	dec, err := g.opts.Policy.Decide(context.WithoutCancel(ctx), in)
	if err != nil {
		g.log.Error("policy evaluation failed; refusing alert", "sender", sender, "error", err)
	}
	rec.PolicyRevision = dec.Revision
	if input, err := json.Marshal(g.opts.Policy.InputDocument(in)); err == nil {
		rec.PolicyInput = string(input)
	}
	if !dec.Allow && !dec.Entitled {
		code := dec.Code
		if code == "" {
			code = "NO_AGREEMENT"
		}
		reasons := []string{fmt.Sprintf("no agreement in force lets %s push %s alerts to %s", sender, alert.GetPurpose(), g.self)}
		return nil, g.deny(ctx, rec, codes.PermissionDenied, code, reasons)
	}

	retention := rel.GetObligations().GetRetentionDays()
	var retainUntil time.Time
	if retention > 0 {
		retainUntil = now.Add(time.Duration(retention) * 24 * time.Hour)
	}
	obligations, err := json.Marshal(obligationsOf(rel.GetObligations()))
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encode obligations: %v", err)
	}
	rec.Decision = blv1.AuditDecision_AUDIT_DECISION_ALLOW
	rec.ReleasedFields = rel.GetFields()
	rec.ReleaseSha256 = rel.GetSha256()
	entry := store.InboxEntry{
		Sender:        sender,
		MessageID:     alert.GetMessageId(),
		ContentSHA256: content,
		RecordID:      risk.GetId(),
		Agreement:     rel.GetAgreementId(),
		Obligations:   string(obligations),
		Received:      now,
		RetainUntil:   retainUntil,
		Alert:         raw,
	}
	if _, err := ds.AcceptAlert(context.WithoutCancel(ctx), entry, rec); err != nil {
		if errors.Is(err, store.ErrConflict) {
			// A concurrent redelivery won the race; answer as it would.
			prev, gerr := ds.GetInbox(ctx, sender, alert.GetMessageId())
			if gerr == nil {
				return g.redelivery(ctx, ds, prev, content, rec)
			}
		}
		g.log.Error("inbox write failed; alert not accepted", "sender", sender, "message_id", alert.GetMessageId(), "error", err)
		return nil, status.Error(codes.Unavailable, "inbox or audit trail unavailable; nothing was accepted, try again")
	}
	g.opts.CrashAt.reach("inbox-stored")
	receipt, err := g.alog.receipt(rec)
	if err != nil {
		// Stored and audited: the sender's retry gets the receipt.
		g.log.Error("receipt signing failed", "sender", sender, "message_id", alert.GetMessageId(), "error", err)
		return nil, status.Error(codes.Unavailable, "receipt signing unavailable; the alert is stored, deliver it again for the receipt")
	}
	g.log.Info("alert received", "sender", sender, "message_id", alert.GetMessageId(), "risk_id", risk.GetId(), "agreement", rel.GetAgreementId())
	return &blv1.DeliverResponse{Receipt: receipt}, nil
}

// redelivery answers a message ID seen before: the same content gets the
// receipt over the first receipt's audit record again (Ed25519 signatures
// are deterministic, so it is byte for byte the receipt first sent);
// other content under the same ID is refused and audited as a conflict.
func (g *Gateway) redelivery(ctx context.Context, ds deliveryStore, prev store.InboxEntry, content string, rec *blv1.AuditRecord) (*blv1.DeliverResponse, error) {
	if prev.ContentSHA256 != content {
		rec.Reasons = []string{fmt.Sprintf("message %s was received before with other content", prev.MessageID)}
		return nil, g.deny(ctx, rec, codes.AlreadyExists, "MESSAGE_CONFLICT",
			[]string{fmt.Sprintf("message ID %s was already used for other content; a new alert needs a new message ID", prev.MessageID)})
	}
	leaves, err := ds.AuditLeaves(ctx, int64(prev.AuditSeq)-1, 1)
	if err != nil || len(leaves) != 1 {
		g.log.Error("audit record of earlier receipt unreadable", "sender", prev.Sender, "message_id", prev.MessageID, "seq", prev.AuditSeq, "error", err)
		return nil, status.Error(codes.Unavailable, "audit trail unavailable; try again")
	}
	first, err := audit.ParseLeaf(int64(prev.AuditSeq)-1, leaves[0])
	if err != nil {
		g.log.Error("audit record of earlier receipt unreadable", "seq", prev.AuditSeq, "error", err)
		return nil, status.Error(codes.DataLoss, "audit record of the earlier receipt is unreadable")
	}
	receipt, err := g.alog.receipt(first)
	if err != nil {
		g.log.Error("receipt signing failed", "sender", prev.Sender, "message_id", prev.MessageID, "error", err)
		return nil, status.Error(codes.Unavailable, "receipt signing unavailable; try again")
	}
	return &blv1.DeliverResponse{Receipt: receipt, Duplicate: true}, nil
}

// checkAlert refuses what cannot be a well-formed alert before anything is
// decided or stored.
func checkAlert(a *blv1.Alert) error {
	switch {
	case a == nil:
		return status.Error(codes.InvalidArgument, "alert is required")
	case proto.Size(a) > MaxAlertBytes:
		return status.Errorf(codes.InvalidArgument, "alert is %d bytes; at most %d are accepted", proto.Size(a), MaxAlertBytes)
	case !messageIDPattern.MatchString(a.GetMessageId()):
		return status.Errorf(codes.InvalidArgument, "alert.message_id %q is not 32 lower-case hex digits", a.GetMessageId())
	case a.GetRiskAssessment() == nil:
		return status.Error(codes.InvalidArgument, "alert.risk_assessment is required: alerts carry risk assessments only")
	case a.GetRiskAssessment().GetId() == "" || len(a.GetRiskAssessment().GetId()) > 64:
		return status.Error(codes.InvalidArgument, "alert.risk_assessment.id is required (at most 64 characters)")
	case a.GetPublishedTime().CheckValid() != nil:
		return status.Error(codes.InvalidArgument, "alert.published_time is required")
	}
	if err := checkPurpose(a.GetPurpose()); err != nil {
		return status.Errorf(codes.InvalidArgument, "alert.%s", status.Convert(err).Message())
	}
	if path := unknownFields(a.ProtoReflect()); path != "" {
		return status.Errorf(codes.InvalidArgument, "alert carries fields this gateway does not know (at %s): an unknown record type or a newer schema", path)
	}
	if err := verifyRelease(a.GetRiskAssessment(), a.GetRelease()); err != nil {
		return status.Errorf(codes.InvalidArgument, "alert.release does not describe the risk assessment: %v", err)
	}
	return nil
}

// unknownFields names the first message carrying fields outside our
// schema ("" if none): such data could not be released or audited field by
// field, so it is refused rather than stored blind.
func unknownFields(m protoreflect.Message) string {
	if len(m.GetUnknown()) > 0 {
		return string(m.Descriptor().FullName())
	}
	var found string
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
			return true
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len() && found == ""; i++ {
				found = unknownFields(l.Get(i).Message())
			}
		case fd.IsMap():
			if fd.MapValue().Kind() == protoreflect.MessageKind {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					found = unknownFields(mv.Message())
					return found == ""
				})
			}
		default:
			found = unknownFields(v.Message())
		}
		return found == ""
	})
	return found
}

func obligationsOf(o *blv1.Obligations) policy.Obligations {
	return policy.Obligations{
		RetentionDays:    o.GetRetentionDays(),
		OnwardSharing:    o.GetOnwardSharing(),
		OnwardRecipients: o.GetOnwardRecipients(),
		Attribution:      o.GetAttribution(),
	}
}
