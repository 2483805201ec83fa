package gateway

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/delivery"
	"github.com/borderlink/borderlink/internal/identity"
	"github.com/borderlink/borderlink/internal/store"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// maxListOutbox bounds DeliveryStatus.list_limit.
const maxListOutbox = 1000

// DeliveryStatus joins what the store knows (entries by state) with what
// the deliverer knows (breaker, retries, last error) per partner.
func (s *adminServer) DeliveryStatus(ctx context.Context, req *blv1.DeliveryStatusRequest) (*blv1.DeliveryStatusResponse, error) {
	g := s.g
	ds, err := g.deliveryStore()
	if err != nil {
		return nil, err
	}
	stats, err := ds.OutboxStats(ctx)
	if err != nil {
		g.log.Error("delivery status failed", "error", err)
		return nil, status.Error(codes.Internal, "outbox unavailable")
	}
	live := map[string]delivery.PartnerStats{}
	if g.deliverer != nil {
		for _, p := range g.deliverer.Stats() {
			live[p.Partner] = p
		}
	}
	byPartner := map[string]*blv1.PartnerQueue{}
	queue := func(p string) *blv1.PartnerQueue {
		q, ok := byPartner[p]
		if !ok {
			q = &blv1.PartnerQueue{Partner: p, Breaker: "none"}
			if l, ok := live[p]; ok {
				q.Retries, q.Breaker, q.LastError = l.Retries, l.Breaker, l.LastError
			}
			byPartner[p] = q
		}
		return q
	}
	now := g.now()
	for _, st := range stats {
		q := queue(st.Recipient)
		q.Pending = st.Count[store.OutboxPending]
		q.Delivered = st.Count[store.OutboxDelivered]
		q.Refused = st.Count[store.OutboxRefused]
		q.Cancelled = st.Count[store.OutboxCancelled]
		if !st.OldestPending.IsZero() {
			q.OldestPendingAge = durationpb.New(now.Sub(st.OldestPending))
		}
	}
	for p := range live {
		queue(p)
	}
	resp := &blv1.DeliveryStatusResponse{}
	for p, q := range byPartner {
		if req.GetPartner() == "" || req.GetPartner() == p {
			resp.Partners = append(resp.Partners, q)
		}
	}
	sort.Slice(resp.Partners, func(i, j int) bool { return resp.Partners[i].GetPartner() < resp.Partners[j].GetPartner() })
	if n := req.GetListLimit(); n > 0 {
		es, err := ds.ListOutbox(ctx, req.GetPartner(), int(min(n, maxListOutbox)))
		if err != nil {
			g.log.Error("delivery status failed", "error", err)
			return nil, status.Error(codes.Internal, "outbox unavailable")
		}
		for _, e := range es {
			resp.Entries = append(resp.Entries, &blv1.OutboxEntry{
				MessageId:       e.MessageID,
				Recipient:       e.Recipient,
				RecordId:        e.RecordID,
				State:           blv1.OutboxState(e.State),
				Attempts:        uint32(e.Attempts),
				CreatedTime:     timestamppb.New(e.Created),
				NextAttemptTime: timestamppb.New(e.NextAttempt),
				LastError:       e.LastError,
				AgreementId:     e.Agreement,
			})
		}
	}
	return resp, nil
}

func (s *adminServer) RetryDelivery(ctx context.Context, req *blv1.RetryDeliveryRequest) (*blv1.RetryDeliveryResponse, error) {
	e, err := s.moveDelivery(ctx, "retry", req.GetMessageId(), func(ds deliveryStore, id string, _ identity.ID) error {
		return ds.RetryOutbox(ctx, id, s.g.now())
	})
	if err != nil {
		return nil, err
	}
	if s.g.deliverer != nil {
		s.g.deliverer.Rescan(e.Recipient)
	}
	return &blv1.RetryDeliveryResponse{}, nil
}

func (s *adminServer) CancelDelivery(ctx context.Context, req *blv1.CancelDeliveryRequest) (*blv1.CancelDeliveryResponse, error) {
	if _, err := s.moveDelivery(ctx, "cancel", req.GetMessageId(), func(ds deliveryStore, id string, who identity.ID) error {
		e, err := ds.GetOutbox(ctx, id)
		if err != nil {
			return err
		}
		now := s.g.now()
		_, err = ds.CancelOutbox(ctx, id, now, &blv1.AuditRecord{
			Time:        timestamppb.New(now),
			Side:        blv1.AuditSide_AUDIT_SIDE_PROVIDER,
			RequestId:   id,
			CallerId:    who.String(),
			PeerId:      identity.GatewayID(e.Recipient).String(),
			Action:      ActionAlertCancel,
			ResourceIds: []string{e.RecordID},
			AgreementId: e.Agreement,
			Decision:    blv1.AuditDecision_AUDIT_DECISION_DENY,
			Status:      audit.StatusName(codes.Canceled),
			Reasons: []string{fmt.Sprintf("cancelled by %s after %d attempt(s); not sent again (an attempt already on its way may still complete, and is then audited as alert.deliver)",
				who, e.Attempts)},
		})
		return err
	}); err != nil {
		return nil, err
	}
	return &blv1.CancelDeliveryResponse{}, nil
}

// moveDelivery applies an operator's state change to one entry and logs
// who asked for it.
func (s *adminServer) moveDelivery(ctx context.Context, what, id string, move func(deliveryStore, string, identity.ID) error) (store.OutboxEntry, error) {
	g := s.g
	who, err := caller(ctx)
	if err != nil {
		return store.OutboxEntry{}, err
	}
	ds, err := g.deliveryStore()
	if err != nil {
		return store.OutboxEntry{}, err
	}
	if !messageIDPattern.MatchString(id) {
		return store.OutboxEntry{}, status.Errorf(codes.InvalidArgument, "message_id %q is not 32 lower-case hex digits (see borderlink delivery status --list)", id)
	}
	err = move(ds, id, who)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.OutboxEntry{}, status.Errorf(codes.NotFound, "no outbox entry %s", id)
	case errors.Is(err, store.ErrConflict):
		return store.OutboxEntry{}, status.Errorf(codes.FailedPrecondition, "cannot %s %s: %v", what, id, err)
	case err != nil:
		g.log.Error("outbox update failed", "action", what, "message_id", id, "error", err)
		return store.OutboxEntry{}, status.Error(codes.Internal, "outbox unavailable")
	}
	e, err := ds.GetOutbox(ctx, id)
	if err != nil {
		return store.OutboxEntry{}, status.Error(codes.Internal, "outbox unavailable")
	}
	g.log.Info("outbox entry "+what, "message_id", id, "recipient", e.Recipient, "by", who.String())
	return e, nil
}
