package gateway

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/identity"
	"github.com/borderlink/borderlink/internal/store"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// ActionAuditKeyRotated records that the gateway signs its audit log with
// a new key from now on.
const ActionAuditKeyRotated = "audit.key_rotated"

// noteAuditKeyRotation appends an audit.key_rotated record when the latest
// checkpoint carries no signature by the current audit key (the key was
// rotated while the gateway was down). Checkpoint sizes only grow, so
// without a new record a quiet log would keep serving the old key's
// checkpoint, which partners that already moved that key to
// retired_audit_keys refuse (ADR 0010). The record also dates the
// rotation in the log itself.
func (g *Gateway) noteAuditKeyRotation(ctx context.Context) error {
	if g.alog.cp == nil {
		return nil
	}
	current, size, err := g.alog.cp.SignedByCurrentKey(ctx)
	if err != nil || current {
		return err
	}
	// Recorded once: a restart before the new key signed a checkpoint
	// (transit unavailable, say) finds the record after that checkpoint.
	since, err := g.alog.store.ListAudit(ctx, store.AuditQuery{Action: ActionAuditKeyRotated, AfterSeq: uint64(size)})
	if err != nil {
		return fmt.Errorf("look for an earlier key rotation record: %w", err)
	}
	if len(since) > 0 {
		return nil
	}
	self := identity.GatewayID(g.self).String()
	rec := &blv1.AuditRecord{
		Time:      timestamppb.New(g.now()),
		Side:      blv1.AuditSide_AUDIT_SIDE_PROVIDER,
		RequestId: newRequestID(),
		CallerId:  self,
		PeerId:    self,
		Action:    ActionAuditKeyRotated,
		Decision:  blv1.AuditDecision_AUDIT_DECISION_ALLOW,
		Status:    audit.StatusName(codes.OK),
		Reasons: []string{fmt.Sprintf("checkpoints of %s are signed with key %s+%08x from now on; the latest checkpoint (size %d) was signed with another key",
			g.alog.origin, g.alog.signer.Name(), g.alog.signer.KeyHash(), size)},
	}
	if _, err := g.opts.Store.AppendAudit(ctx, rec); err != nil {
		return fmt.Errorf("record the audit key rotation: %w", err)
	}
	g.log.Info("audit key rotated: recorded, the next checkpoint is signed with the new key", "origin", g.alog.origin, "previous_checkpoint_size", size)
	return nil
}
