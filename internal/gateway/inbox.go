package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/identity"
	"github.com/borderlink/borderlink/internal/policy"
	"github.com/borderlink/borderlink/internal/store"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// ActionRetentionDelete is the audited deletion of a received alert's
// payload when the sender's retention obligation ends.
const ActionRetentionDelete = "retention.delete"

// retentionBatch bounds the deletions of one retention round.
const retentionBatch = 500

// inboxStore is what reading and expiring the inbox needs.
type inboxStore interface {
	ListInbox(ctx context.Context, sender string, since time.Time, limit int) ([]store.InboxEntry, error)
	ExpiredInbox(ctx context.Context, now time.Time, limit int) ([]store.InboxEntry, error)
	PurgeInbox(ctx context.Context, sender, messageID string, rec *blv1.AuditRecord) (uint64, error)
}

// expireInbox deletes the payload of every received alert whose retention
// ended, each with an audit record in the same transaction, and returns
// how many it deleted. The provenance (sender, message, agreement) stays:
// it is what an auditor needs to see that the obligation was honoured.
func (g *Gateway) expireInbox(ctx context.Context, is inboxStore) (int, error) {
	n := 0
	for {
		now := g.now()
		es, err := is.ExpiredInbox(ctx, now, retentionBatch)
		if err != nil {
			return n, err
		}
		for _, e := range es {
			sender := identity.GatewayID(e.Sender).String()
			rec := &blv1.AuditRecord{
				Time:        timestamppb.New(now),
				Side:        blv1.AuditSide_AUDIT_SIDE_CONSUMER,
				RequestId:   e.MessageID,
				CallerId:    identity.GatewayID(g.self).String(),
				PeerId:      sender,
				Action:      ActionRetentionDelete,
				ResourceIds: []string{e.RecordID},
				Decision:    blv1.AuditDecision_AUDIT_DECISION_ALLOW,
				AgreementId: e.Agreement,
				Reasons:     []string{fmt.Sprintf("retention obligation of %s ended at %s", e.Agreement, e.RetainUntil.Format(time.RFC3339))},
				Status:      audit.StatusName(codes.OK),
			}
			if _, err := is.PurgeInbox(ctx, e.Sender, e.MessageID, rec); err != nil && !errors.Is(err, store.ErrConflict) {
				return n, err
			}
			n++
		}
		if len(es) < retentionBatch {
			return n, nil
		}
	}
}

// outboxPruner deletes settled outbox entries.
type outboxPruner interface {
	PruneOutbox(ctx context.Context, cutoff time.Time, limit int) (int, error)
}

// pruneOutbox deletes the outbox entries settled more than keep ago, in
// rounds of retentionBatch so that no transaction holds the writer long.
// Nothing is audited: the delivery or refusal already is, with the
// partner's receipt, and the row only repeated it.
func (g *Gateway) pruneOutbox(ctx context.Context, p outboxPruner, keep time.Duration) (int, error) {
	cutoff := g.now().Add(-keep)
	n := 0
	for {
		k, err := p.PruneOutbox(ctx, cutoff, retentionBatch)
		n += k
		if err != nil || k < retentionBatch {
			return n, err
		}
	}
}

// runRetention expires the inbox, and prunes settled outbox entries,
// every interval until ctx ends.
func (g *Gateway) runRetention(ctx context.Context, is inboxStore, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	keep := g.opts.Delivery.KeepSettled
	if keep <= 0 {
		keep = 7 * 24 * time.Hour
	}
	p, _ := is.(outboxPruner)
	for {
		if n, err := g.expireInbox(ctx, is); err != nil {
			if ctx.Err() != nil {
				return
			}
			g.log.Error("retention of received alerts failed; retrying next round", "error", err)
		} else if n > 0 {
			g.log.Info("received alerts deleted at the end of their retention", "count", n)
		}
		if p != nil {
			if n, err := g.pruneOutbox(ctx, p, keep); err != nil {
				if ctx.Err() != nil {
					return
				}
				g.log.Error("pruning settled outbox entries failed; retrying next round", "error", err)
			} else if n > 0 {
				g.log.Info("settled outbox entries pruned", "count", n, "settled_before", g.now().Add(-keep).Format(time.RFC3339))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// receivedRiskLoader is how GetRiskAssessment loads id: from our own
// records, or, when we have none by that id, from the alerts partners
// pushed to us (then the entry is returned too, so that its obligations
// are checked before anything is shared onward). A received record is
// described by its own attributes only: its declaration id is the
// sender's, and looking it up among our declarations could match an
// unrelated one of ours.
func (g *Gateway) receivedRiskLoader(ctx context.Context, id string) (
	load func(context.Context, string) (*blv1.RiskAssessment, error),
	attrs func(context.Context, *blv1.RiskAssessment) policy.Attributes,
	received *store.InboxEntry,
) {
	own := g.opts.Store.GetRiskAssessment
	rs, ok := g.opts.Store.(interface {
		ReceivedRecord(ctx context.Context, recordID string, now time.Time) (store.InboxEntry, error)
	})
	if !ok {
		return own, g.riskAttributes, nil
	}
	// Read once: provide loads through the returned function, which hands
	// back this read instead of repeating it.
	rec, ownErr := own(ctx, id)
	read := func(context.Context, string) (*blv1.RiskAssessment, error) { return rec, ownErr }
	if !errors.Is(ownErr, store.ErrNotFound) {
		return read, g.riskAttributes, nil
	}
	e, err := rs.ReceivedRecord(ctx, id, g.now())
	if err != nil {
		if errors.Is(err, store.ErrConflict) {
			g.log.Warn("received record is ambiguous; not shared onward", "id", id, "error", err)
		}
		return read, g.riskAttributes, nil
	}
	a := &blv1.Alert{}
	if err := proto.Unmarshal(e.Alert, a); err != nil || a.GetRiskAssessment().GetId() != id {
		g.log.Error("received alert unreadable; not shared onward", "sender", e.Sender, "message_id", e.MessageID, "error", err)
		return read, g.riskAttributes, nil
	}
	return func(context.Context, string) (*blv1.RiskAssessment, error) { return a.GetRiskAssessment(), nil },
		func(_ context.Context, r *blv1.RiskAssessment) policy.Attributes {
			return policy.RiskAttributes(r, nil)
		},
		&e
}

// onwardRefusal says why the obligations of a received alert forbid
// sharing it with who ("" when they allow it): onward sharing must be
// allowed, and when the sender named onward recipients, who (its trust
// domain or its SPIFFE ID) must be one of them. Giving the record back to
// the administration it came from is not onward sharing.
func onwardRefusal(e store.InboxEntry, who identity.ID) string {
	if who.TrustDomain == e.Sender {
		return ""
	}
	var o policy.Obligations
	if err := json.Unmarshal([]byte(e.Obligations), &o); err != nil {
		return fmt.Sprintf("record was received from %s with obligations this gateway cannot read; it is not shared onward", e.Sender)
	}
	if !o.OnwardSharing {
		return fmt.Sprintf("record was received from %s under agreement %s, which does not allow sharing it onward", e.Sender, e.Agreement)
	}
	if len(o.OnwardRecipients) == 0 {
		return ""
	}
	for _, r := range o.OnwardRecipients {
		if r == who.String() || (who.Kind == identity.KindGateway && r == who.TrustDomain) {
			return ""
		}
	}
	return fmt.Sprintf("record was received from %s under agreement %s, which allows sharing it onward only with %s", e.Sender, e.Agreement, strings.Join(o.OnwardRecipients, ", "))
}

// maxListInbox bounds one ListReceivedAlerts answer.
const maxListInbox = 1000

// ListReceivedAlerts shows the own systems what partners pushed.
func (s *localServer) ListReceivedAlerts(ctx context.Context, req *blv1.ListReceivedAlertsRequest) (*blv1.ListReceivedAlertsResponse, error) {
	g := s.g
	is, ok := g.opts.Store.(inboxStore)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "this gateway's store does not keep received alerts")
	}
	if p := req.GetSender(); p != "" && !domainPattern.MatchString(p) {
		return nil, status.Errorf(codes.InvalidArgument, "sender %q is not a trust domain, e.g. sg.customs.example", p)
	}
	limit := int(req.GetLimit())
	if limit == 0 {
		limit = 100
	}
	limit = min(limit, maxListInbox)
	var since time.Time
	if req.GetSince() != nil {
		since = req.GetSince().AsTime()
	}
	es, err := is.ListInbox(ctx, req.GetSender(), since, limit)
	if err != nil {
		g.log.Error("inbox read failed", "error", err)
		return nil, status.Error(codes.Unavailable, "inbox unavailable")
	}
	resp := &blv1.ListReceivedAlertsResponse{}
	now := g.now()
	for _, e := range es {
		// Past its retention an alert is not shown, even before the
		// retention job has deleted it.
		if !e.RetainUntil.IsZero() && !now.Before(e.RetainUntil) {
			e.Alert = nil
		}
		ra := &blv1.ReceivedAlert{
			Sender:       e.Sender,
			MessageId:    e.MessageID,
			ReceivedTime: timestamppb.New(e.Received),
			AgreementId:  e.Agreement,
			Expired:      e.Alert == nil,
		}
		if !e.RetainUntil.IsZero() {
			ra.RetainUntil = timestamppb.New(e.RetainUntil)
		}
		var o policy.Obligations
		if err := json.Unmarshal([]byte(e.Obligations), &o); err == nil {
			ra.Obligations = &blv1.Obligations{RetentionDays: o.RetentionDays, OnwardSharing: o.OnwardSharing, OnwardRecipients: o.OnwardRecipients, Attribution: o.Attribution}
		}
		if e.Alert != nil {
			a := &blv1.Alert{}
			if err := proto.Unmarshal(e.Alert, a); err != nil {
				g.log.Error("stored alert unreadable", "sender", e.Sender, "message_id", e.MessageID, "error", err)
				return nil, status.Error(codes.DataLoss, "a stored alert is unreadable")
			}
			ra.Alert = a
		}
		resp.Alerts = append(resp.Alerts, ra)
	}
	return resp, nil
}
