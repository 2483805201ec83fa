package gateway

import (
	"context"
	"encoding/json"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/borderlink/borderlink/internal/identity"
	"github.com/borderlink/borderlink/internal/policy"
	"github.com/borderlink/borderlink/internal/store"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// adminServer answers operators' questions about the current policy.
type adminServer struct {
	blv1.UnimplementedAdminServer
	g *Gateway
}

func (s *adminServer) PolicyStatus(context.Context, *blv1.PolicyStatusRequest) (*blv1.PolicyStatusResponse, error) {
	st := s.g.opts.Policy.Status()
	resp := &blv1.PolicyStatusResponse{Revision: st.Revision, Agreements: uint32(st.Agreements), LastError: st.LastError}
	if !st.LoadedAt.IsZero() {
		resp.LoadedTime = timestamppb.New(st.LoadedAt)
	}
	if !st.LastErrorAt.IsZero() {
		resp.LastErrorTime = timestamppb.New(st.LastErrorAt)
	}
	return resp, nil
}

func (s *adminServer) ExplainDecision(ctx context.Context, req *blv1.ExplainDecisionRequest) (*blv1.ExplainDecisionResponse, error) {
	if req.GetTime() == nil {
		req.Time = timestamppb.New(s.g.now())
	}
	resp, err := Explain(ctx, s.g.opts.Policy, s.g.opts.Store, req)
	if status.Code(err) == codes.Internal {
		s.g.log.Error("explain failed", "error", err)
	}
	return resp, err
}

// RecordReader is what explaining a stored record needs from a store.
type RecordReader interface {
	GetDeclaration(ctx context.Context, id string) (*blv1.Declaration, error)
	GetRiskAssessment(ctx context.Context, id string) (*blv1.RiskAssessment, error)
}

// Explain evaluates engine's current policy for a hypothetical request,
// describing the record exactly as the Exchange service would. st may be
// nil when the record is given inline. `borderlink policy explain` calls
// it locally; Admin.ExplainDecision calls it in the running gateway, so
// both print the same.
func Explain(ctx context.Context, engine *policy.Engine, st RecordReader, req *blv1.ExplainDecisionRequest) (*blv1.ExplainDecisionResponse, error) {
	caller, err := identity.Parse(req.GetCaller())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "caller: %v", err)
	}
	in := policy.Input{Caller: caller, Action: req.GetAction(), Purpose: req.GetPurpose(), Time: req.GetTime().AsTime()}
	declarationOf := func(id string) *blv1.Declaration {
		if st == nil {
			return nil
		}
		d, _ := st.GetDeclaration(ctx, id)
		return d
	}
	switch r := req.GetRecord().(type) {
	case *blv1.ExplainDecisionRequest_Declaration:
		in.Resource = policy.Resource{Type: "declaration", ID: r.Declaration.GetId(), Exists: true, Attributes: policy.DeclarationAttributes(r.Declaration)}
	case *blv1.ExplainDecisionRequest_RiskAssessment:
		in.Resource = policy.Resource{Type: "risk_assessment", ID: r.RiskAssessment.GetId(), Exists: true,
			Attributes: policy.RiskAttributes(r.RiskAssessment, declarationOf(r.RiskAssessment.GetDeclarationId()))}
	case *blv1.ExplainDecisionRequest_RecordId:
		if st == nil {
			return nil, status.Error(codes.InvalidArgument, "record_id needs a store")
		}
		in.Resource = policy.Resource{Type: datasetOf(in.Action), ID: r.RecordId}
		var err error
		if in.Resource.Type == "risk_assessment" {
			var ra *blv1.RiskAssessment
			if ra, err = st.GetRiskAssessment(ctx, r.RecordId); err == nil {
				in.Resource.Exists, in.Resource.Attributes = true, policy.RiskAttributes(ra, declarationOf(ra.GetDeclarationId()))
			}
		} else {
			var d *blv1.Declaration
			if d, err = st.GetDeclaration(ctx, r.RecordId); err == nil {
				in.Resource.Exists, in.Resource.Attributes = true, policy.DeclarationAttributes(d)
			}
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, status.Errorf(codes.Internal, "read record %s: %v", r.RecordId, err)
		}
	default:
		in.Resource = policy.Resource{Type: datasetOf(in.Action)}
	}
	x, err := engine.Explain(ctx, in)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "policy evaluation failed: %v", err)
	}
	return ExplanationProto(x)
}

func datasetOf(action string) string {
	if action == ActionRiskGet {
		return "risk_assessment"
	}
	return "declaration"
}

// ExplanationProto converts an explanation for the wire; the CLI turns it
// back with ExplanationFromProto so local and remote explain print alike.
func ExplanationProto(x policy.Explanation) (*blv1.ExplainDecisionResponse, error) {
	input, err := json.Marshal(x.Input)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encode policy input: %v", err)
	}
	d := x.Decision
	resp := &blv1.ExplainDecisionResponse{
		PolicyInput: string(input),
		Decision: &blv1.PolicyDecision{
			Allow: d.Allow, Entitled: d.Entitled, AgreementId: d.Agreement, GrantId: d.Grant,
			Fields: d.Fields, Mask: d.Mask, Pseudonymize: d.Pseudonymize, Withhold: d.Withhold, Code: d.Code, Reasons: d.Reasons,
			Obligations: &blv1.Obligations{RetentionDays: d.Obligations.RetentionDays, OnwardSharing: d.Obligations.OnwardSharing,
				OnwardRecipients: d.Obligations.OnwardRecipients, Attribution: d.Obligations.Attribution},
			PolicyRevision: d.Revision, MaxResults: uint32(d.MaxResults),
		},
	}
	if d.RateLimit.PerSecond > 0 {
		resp.Decision.RateLimit = &blv1.RateLimit{PerSecond: d.RateLimit.PerSecond, Burst: uint32(d.RateLimit.Burst)}
	}
	for _, c := range x.Grants {
		resp.Grants = append(resp.Grants, &blv1.GrantCheck{AgreementId: c.Agreement, GrantId: c.Grant, Failed: c.Failed})
	}
	return resp, nil
}

// ExplanationFromProto is the inverse of ExplanationProto.
func ExplanationFromProto(resp *blv1.ExplainDecisionResponse) (policy.Explanation, error) {
	var x policy.Explanation
	if err := json.Unmarshal([]byte(resp.GetPolicyInput()), &x.Input); err != nil {
		return x, err
	}
	d := resp.GetDecision()
	x.Decision = policy.Decision{
		Allow: d.GetAllow(), Entitled: d.GetEntitled(), Agreement: d.GetAgreementId(), Grant: d.GetGrantId(),
		Fields: d.GetFields(), Mask: d.GetMask(), Pseudonymize: d.GetPseudonymize(), Withhold: d.GetWithhold(), Code: d.GetCode(), Reasons: d.GetReasons(),
		Obligations: policy.Obligations{RetentionDays: d.GetObligations().GetRetentionDays(), OnwardSharing: d.GetObligations().GetOnwardSharing(),
			OnwardRecipients: d.GetObligations().GetOnwardRecipients(), Attribution: d.GetObligations().GetAttribution()},
		RateLimit: policy.Rate{PerSecond: d.GetRateLimit().GetPerSecond(), Burst: int(d.GetRateLimit().GetBurst())},
		Revision:  d.GetPolicyRevision(), MaxResults: int(d.GetMaxResults()),
	}
	for _, c := range resp.GetGrants() {
		x.Grants = append(x.Grants, policy.GrantCheck{Agreement: c.GetAgreementId(), Grant: c.GetGrantId(), Failed: c.GetFailed()})
	}
	return x, nil
}
