package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/borderlink/borderlink/internal/policy"
	"github.com/borderlink/borderlink/internal/store"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// ActionSubscribe is the action of streaming records as they are committed.
const ActionSubscribe = "subscribe"

// subscribePage is how many positions of the commit order one read takes.
const subscribePage = 256

// subscribePoll is how often a caught-up subscription looks for new
// records when no commit of this gateway woke it (e.g. another process
// wrote to the store).
const subscribePoll = time.Second

// changeStore is what subscriptions need beyond Store.
type changeStore interface {
	Changes(ctx context.Context, recordType string, after uint64, limit int) ([]store.Change, error)
}

// commits wakes caught-up subscriptions when records are committed.
type commits struct {
	mu sync.Mutex
	ch chan struct{}
}

func newCommits() *commits { return &commits{ch: make(chan struct{})} }

// wait returns a channel closed at the next commit.
func (c *commits) wait() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ch
}

func (c *commits) notify() {
	c.mu.Lock()
	defer c.mu.Unlock()
	close(c.ch)
	c.ch = make(chan struct{})
}

// Subscribe streams the records of one type the caller is entitled to, in
// commit order, each released and audited like a get, with its receipt.
func (s *exchangeServer) Subscribe(req *blv1.SubscribeRequest, stream blv1.Exchange_SubscribeServer) error {
	ctx := stream.Context()
	g := s.g
	who, err := caller(ctx)
	if err != nil {
		return err
	}
	cs, ok := g.opts.Store.(changeStore)
	if !ok {
		return status.Error(codes.Unimplemented, "this gateway's store does not support subscriptions")
	}
	dataset := req.GetDataset()
	if dataset != "declaration" && dataset != "risk_assessment" {
		return status.Errorf(codes.InvalidArgument, "dataset %q is not one of declaration, risk_assessment", dataset)
	}
	if err := checkPurpose(req.GetPurpose()); err != nil {
		return err
	}
	base := policy.Input{Caller: who, Action: ActionSubscribe, Purpose: req.GetPurpose(), Resource: policy.Resource{Type: dataset}, Time: g.now()}
	pre, err := g.opts.Policy.Decide(ctx, base)
	if err != nil {
		g.log.Error("policy evaluation failed; denying", "action", ActionSubscribe, "caller", who.String(), "error", err)
	}
	if !pre.Entitled {
		return g.deny(ctx, g.providerRecord(ctx, base, nil, pre), codes.PermissionDenied, pre.Code, pre.Reasons)
	}
	cursor := req.GetCursor()
	for {
		// Take the wake-up channel before reading, so a commit between the
		// read and the wait is not missed.
		woken := g.commits.wait()
		page, err := cs.Changes(ctx, dataset, cursor, subscribePage)
		if err != nil {
			if ctx.Err() != nil {
				return status.FromContextError(ctx.Err()).Err()
			}
			g.log.Error("subscription read failed", "caller", who.String(), "error", err)
			return status.Error(codes.Unavailable, "store unavailable; resume from the last cursor")
		}
		for _, c := range page {
			if err := s.sendChange(ctx, stream, c, base); err != nil {
				return err
			}
			cursor = c.Seq
		}
		if len(page) == subscribePage {
			continue
		}
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-g.stopping:
			// Open streams would hold a graceful stop for its whole grace.
			return status.Error(codes.Unavailable, "gateway shutting down; resume from the last cursor")
		case <-woken:
		case <-time.After(subscribePoll):
		}
	}
}

// sendChange decides, releases, audits and sends one record of the commit
// order; records the caller is not entitled to are skipped silently (a
// subscriber learns nothing about them, not even that they exist).
func (s *exchangeServer) sendChange(ctx context.Context, stream blv1.Exchange_SubscribeServer, c store.Change, base policy.Input) error {
	g := s.g
	var (
		rec   proto.Message
		attrs policy.Attributes
		err   error
	)
	switch c.RecordType {
	case "declaration":
		var d *blv1.Declaration
		d, err = g.opts.Store.GetDeclaration(ctx, c.RecordID)
		rec, attrs = d, policy.DeclarationAttributes(d)
	case "risk_assessment":
		var r *blv1.RiskAssessment
		r, err = g.opts.Store.GetRiskAssessment(ctx, c.RecordID)
		if err == nil {
			attrs = g.riskAttributes(ctx, r)
		}
		rec = r
	default:
		return status.Errorf(codes.Internal, "unknown record type %q in commit order", c.RecordType)
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		g.log.Error("subscription read failed", "id", c.RecordID, "error", err)
		return status.Error(codes.Unavailable, "store unavailable; resume from the last cursor")
	}
	in := base
	in.Time = g.now()
	in.Resource = policy.Resource{Type: c.RecordType, ID: c.RecordID, Exists: true, Attributes: attrs}
	dec, err := g.opts.Policy.Decide(ctx, in)
	if err != nil {
		// Skipping would move the cursor past a record the caller may be
		// entitled to: a gap. End the stream instead; it resumes here.
		g.log.Error("policy evaluation failed; ending subscription", "action", ActionSubscribe, "caller", in.Caller.String(), "id", c.RecordID, "error", err)
		return status.Error(codes.Unavailable, "policy evaluation failed; resume from the last cursor")
	}
	if !dec.Allow {
		return nil
	}
	if !g.limits.allow(in.Caller.String(), dec, g.now()) {
		return g.deny(ctx, g.providerRecord(ctx, in, []string{c.RecordID}, dec), codes.ResourceExhausted, "RATE_LIMITED",
			[]string{fmt.Sprintf("rate limit of grant %s/%s exceeded; resume from the last cursor later", dec.Agreement, dec.Grant)})
	}
	out, rel, err := g.release(rec, dec, in.Caller)
	if err != nil {
		g.log.Error("release failed", "id", c.RecordID, "error", err)
		return status.Error(codes.Internal, "release failed; resume from the last cursor")
	}
	audit := g.providerRecord(ctx, in, []string{c.RecordID}, dec)
	audit.ReleasedFields = rel.GetFields()
	audit.ReleaseSha256 = rel.GetSha256()
	receipt, err := g.signedAnswer(ctx, audit)
	if err != nil {
		return err
	}
	resp := &blv1.SubscribeResponse{Cursor: c.Seq, Release: rel, Receipt: receipt}
	switch m := out.(type) {
	case *blv1.Declaration:
		resp.Record = &blv1.SubscribeResponse_Declaration{Declaration: m}
	case *blv1.RiskAssessment:
		resp.Record = &blv1.SubscribeResponse_RiskAssessment{RiskAssessment: m}
	default:
		return status.Error(codes.Internal, fmt.Sprintf("released %T", out))
	}
	return stream.Send(resp)
}
