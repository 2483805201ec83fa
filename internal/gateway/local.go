package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"

	"golang.org/x/mod/sumdb/note"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/identity"
	"github.com/borderlink/borderlink/internal/release"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// localServer is the consumer side: our own systems ask us, we ask the
// partner with our gateway identity, verify the answer, record our side and
// hand the release back.
type localServer struct {
	blv1.UnimplementedLocalServer
	g *Gateway
}

var domainPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$`)

// outbound is one call to a partner, from the local caller's request to
// the consumer-side audit record.
type outbound struct {
	g       *Gateway
	who     identity.ID
	partner string
	peer    identity.ID
	client  blv1.ExchangeClient
	reqID   string
	rec     *blv1.AuditRecord
	// verifier checks the partner's receipts.
	verifier note.Verifier
	// trailer receives the partner's trailer metadata: the receipt of a
	// refusal arrives there.
	trailer metadata.MD
}

func (s *localServer) start(ctx context.Context, partner, action, purpose string, ids []string) (context.Context, context.CancelFunc, *outbound, error) {
	g := s.g
	who, err := caller(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	if !domainPattern.MatchString(partner) {
		return nil, nil, nil, status.Errorf(codes.InvalidArgument, "partner %q is not a trust domain, e.g. sg.customs.example", partner)
	}
	if partner == g.self {
		return nil, nil, nil, status.Errorf(codes.InvalidArgument, "partner %s is this gateway's own trust domain", partner)
	}
	if err := checkPurpose(purpose); err != nil {
		return nil, nil, nil, err
	}
	client, peer, err := g.peers.exchange(partner)
	if err != nil {
		return nil, nil, nil, err
	}
	v, err := g.alog.verifier(partner)
	if err != nil {
		return nil, nil, nil, err
	}
	o := &outbound{g: g, who: who, partner: partner, peer: peer, client: client, reqID: newRequestID(), verifier: v}
	o.rec = &blv1.AuditRecord{
		Side:        blv1.AuditSide_AUDIT_SIDE_CONSUMER,
		RequestId:   o.reqID,
		CallerId:    who.String(),
		PeerId:      peer.String(),
		Action:      action,
		Purpose:     purpose,
		ResourceIds: ids,
	}
	octx, cancel := context.WithTimeout(ctx, g.opts.Limits.PeerTimeout)
	octx = metadata.AppendToOutgoingContext(octx, RequestIDHeader, o.reqID)
	return octx, cancel, o, nil
}

// fail records a refused or failed partner call and returns the status for
// the local caller, keeping the partner's code.
func (o *outbound) fail(ctx context.Context, err error) error {
	st := status.Convert(err)
	o.rec.Decision = blv1.AuditDecision_AUDIT_DECISION_ERROR
	// Refusals by the partner's policy or limits are denials on both sides,
	// so that reconciliation matches the two records.
	if st.Code() == codes.PermissionDenied || st.Code() == codes.NotFound || st.Code() == codes.ResourceExhausted {
		o.rec.Decision = blv1.AuditDecision_AUDIT_DECISION_DENY
	}
	o.rec.Status = audit.StatusName(st.Code())
	o.rec.Reasons = []string{st.Message()}
	o.g.keepRefusalReceipt(o.rec, o.trailer, o.verifier)
	if aerr := o.record(ctx); aerr != nil {
		return aerr
	}
	// Keep the partner's code and details (its reason code), prefix the
	// message so the person at the terminal knows who refused.
	p := st.Proto()
	p.Message = fmt.Sprintf("partner %s: %s", o.partner, st.Message())
	return status.FromProto(p).Err()
}

// invalid records an answer that failed verification.
func (o *outbound) invalid(ctx context.Context, err error) error {
	o.g.log.Error("partner answer failed verification", "partner", o.partner, "request_id", o.reqID, "error", err)
	return o.fail(ctx, status.Errorf(codes.DataLoss, "answer failed verification: %v", err))
}

// ok records an allowed, verified exchange.
func (o *outbound) ok(ctx context.Context, agreement, revision string, fields []string, digest string, ids []string) error {
	o.rec.Decision = blv1.AuditDecision_AUDIT_DECISION_ALLOW
	o.rec.Status = audit.StatusName(codes.OK)
	o.rec.AgreementId = agreement
	o.rec.PolicyRevision = revision
	o.rec.ReleasedFields = fields
	o.rec.ReleaseSha256 = digest
	if ids != nil {
		o.rec.ResourceIds = ids
	}
	return o.record(ctx)
}

func (o *outbound) record(ctx context.Context) error {
	o.rec.Time = timestamppb.New(o.g.now())
	return o.g.appendAudit(ctx, o.rec)
}

// verifyRelease checks that the partner's answer is what its release
// describes: no populated field outside the declared field list, and the
// declared digest matches the bytes we received.
func verifyRelease(msg proto.Message, rel *blv1.Release) error {
	if rel == nil {
		return fmt.Errorf("no release description")
	}
	if msg == nil || !msg.ProtoReflect().IsValid() {
		return fmt.Errorf("no record")
	}
	trimmed, _, err := release.Apply(msg, release.Rules{Fields: rel.GetFields()}, "", nil)
	if err != nil {
		return err
	}
	if !proto.Equal(trimmed, msg) {
		return fmt.Errorf("record carries fields outside its declared field list")
	}
	digest, err := release.Digest(msg)
	if err != nil {
		return err
	}
	if digest != rel.GetSha256() {
		return fmt.Errorf("release digest %s does not match received record %s", rel.GetSha256(), digest)
	}
	return nil
}

func (s *localServer) GetPartnerDeclaration(ctx context.Context, req *blv1.GetPartnerDeclarationRequest) (*blv1.GetPartnerDeclarationResponse, error) {
	d, rel, reqID, err := fetch(ctx, s, req.GetPartner(), ActionDeclarationGet, req.GetId(), req.GetPurpose(),
		func(ctx context.Context, c blv1.ExchangeClient, opts ...grpc.CallOption) (*blv1.Declaration, *blv1.Release, string, error) {
			resp, err := c.GetDeclaration(ctx, &blv1.GetDeclarationRequest{Id: req.GetId(), Purpose: req.GetPurpose()}, opts...)
			return resp.GetDeclaration(), resp.GetRelease(), resp.GetReceipt(), err
		})
	if err != nil {
		return nil, err
	}
	return &blv1.GetPartnerDeclarationResponse{Declaration: d, Release: rel, RequestId: reqID}, nil
}

func (s *localServer) GetPartnerRiskAssessment(ctx context.Context, req *blv1.GetPartnerRiskAssessmentRequest) (*blv1.GetPartnerRiskAssessmentResponse, error) {
	r, rel, reqID, err := fetch(ctx, s, req.GetPartner(), ActionRiskGet, req.GetId(), req.GetPurpose(),
		func(ctx context.Context, c blv1.ExchangeClient, opts ...grpc.CallOption) (*blv1.RiskAssessment, *blv1.Release, string, error) {
			resp, err := c.GetRiskAssessment(ctx, &blv1.GetRiskAssessmentRequest{Id: req.GetId(), Purpose: req.GetPurpose()}, opts...)
			return resp.GetRiskAssessment(), resp.GetRelease(), resp.GetReceipt(), err
		})
	if err != nil {
		return nil, err
	}
	return &blv1.GetPartnerRiskAssessmentResponse{RiskAssessment: r, Release: rel, RequestId: reqID}, nil
}

// fetch is the consumer flow for one record: call the partner, verify the
// answer against its release description and its receipt, record our side
// (with the receipt), return it.
func fetch[T proto.Message](ctx context.Context, s *localServer, partner, action, id, purpose string,
	call func(context.Context, blv1.ExchangeClient, ...grpc.CallOption) (T, *blv1.Release, string, error),
) (T, *blv1.Release, string, error) {
	var zero T
	if err := checkRequest(id, purpose); err != nil {
		return zero, nil, "", err
	}
	octx, cancel, o, err := s.start(ctx, partner, action, purpose, []string{id})
	if err != nil {
		return zero, nil, "", err
	}
	defer cancel()
	rec, rel, receipt, err := call(octx, o.client, grpc.Trailer(&o.trailer))
	if err != nil {
		return zero, nil, "", o.fail(ctx, err)
	}
	if err := verifyRelease(rec, rel); err != nil {
		return zero, nil, "", o.invalid(ctx, err)
	}
	if err := o.checkReceipt(receipt, rel.GetSha256()); err != nil {
		return zero, nil, "", o.invalid(ctx, fmt.Errorf("receipt: %w", err))
	}
	if err := o.ok(ctx, rel.GetAgreementId(), rel.GetPolicyRevision(), rel.GetFields(), rel.GetSha256(), nil); err != nil {
		return zero, nil, "", err
	}
	return rec, rel, o.reqID, nil
}

func (s *localServer) SearchPartnerDeclarations(req *blv1.SearchPartnerDeclarationsRequest, stream blv1.Local_SearchPartnerDeclarationsServer) error {
	ctx := stream.Context()
	g := s.g
	limit := int(req.GetLimit())
	if limit == 0 {
		limit = g.opts.Limits.SearchDefault
	}
	limit = min(limit, g.opts.Limits.SearchMax)
	octx, cancel, o, err := s.start(ctx, req.GetPartner(), ActionDeclarationSearch, req.GetPurpose(), nil)
	if err != nil {
		return err
	}
	defer cancel()
	rs, err := o.client.SearchDeclarations(octx, &blv1.SearchDeclarationsRequest{Filter: req.GetFilter(), Purpose: req.GetPurpose(), Limit: uint32(limit)})
	if err != nil {
		return o.fail(ctx, err)
	}
	// The whole answer is read and verified before any of it is passed on,
	// because our audit record must be written before we release anything.
	var items []*blv1.SearchDeclarationsResponse
	for {
		it, err := rs.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			o.trailer = rs.Trailer()
			return o.fail(ctx, err)
		}
		if len(items) >= limit {
			return o.invalid(ctx, fmt.Errorf("partner sent more than the %d results asked for", limit))
		}
		if err := verifyRelease(it.GetDeclaration(), it.GetRelease()); err != nil {
			return o.invalid(ctx, fmt.Errorf("result %d: %w", len(items)+1, err))
		}
		items = append(items, it)
	}
	rels := make([]*blv1.Release, len(items))
	ids := make([]string, len(items))
	revision := ""
	for i, it := range items {
		rels[i], ids[i] = it.GetRelease(), it.GetDeclaration().GetId()
		revision = it.GetRelease().GetPolicyRevision()
	}
	var receipt string
	if v := rs.Trailer().Get(ReceiptTrailer); len(v) == 1 {
		receipt = v[0]
	}
	if err := o.checkReceipt(receipt, SearchDigest(rels)); err != nil {
		return o.invalid(ctx, fmt.Errorf("receipt: %w", err))
	}
	if err := o.ok(ctx, joinAgreements(rels), revision, unionFields(rels), SearchDigest(rels), ids); err != nil {
		return err
	}
	for _, it := range items {
		if err := stream.Send(&blv1.SearchPartnerDeclarationsResponse{Declaration: it.GetDeclaration(), Release: it.GetRelease(), RequestId: o.reqID}); err != nil {
			return err
		}
	}
	return nil
}
