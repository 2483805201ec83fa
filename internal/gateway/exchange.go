package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/identity"
	"github.com/borderlink/borderlink/internal/policy"
	"github.com/borderlink/borderlink/internal/release"
	"github.com/borderlink/borderlink/internal/store"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// Actions, as named in agreements and audit records.
const (
	ActionDeclarationGet    = "declaration.get"
	ActionDeclarationSearch = "declaration.search"
	ActionRiskGet           = "risk.get"
)

// maxScanFactor bounds how many stored records one search may examine per
// result asked for, so a caller entitled to almost nothing cannot make the
// gateway read its whole store.
const maxScanFactor = 20

// exchangeServer is the provider side: partners and agencies ask, we
// decide, release and audit.
type exchangeServer struct {
	blv1.UnimplementedExchangeServer
	g *Gateway
}

func (s *exchangeServer) GetDeclaration(ctx context.Context, req *blv1.GetDeclarationRequest) (*blv1.GetDeclarationResponse, error) {
	out, rel, receipt, err := provide(ctx, s.g, ActionDeclarationGet, "declaration", req.GetId(), req.GetPurpose(),
		s.g.opts.Store.GetDeclaration, func(_ context.Context, d *blv1.Declaration) policy.Attributes { return policy.DeclarationAttributes(d) }, nil)
	if err != nil {
		return nil, err
	}
	return &blv1.GetDeclarationResponse{Declaration: out, Release: rel, Receipt: receipt}, nil
}

func (s *exchangeServer) GetRiskAssessment(ctx context.Context, req *blv1.GetRiskAssessmentRequest) (*blv1.GetRiskAssessmentResponse, error) {
	load, attrs, onward := s.g.receivedRiskLoader(ctx, req.GetId())
	out, rel, receipt, err := provide(ctx, s.g, ActionRiskGet, "risk_assessment", req.GetId(), req.GetPurpose(),
		load, attrs, onward)
	if err != nil {
		return nil, err
	}
	return &blv1.GetRiskAssessmentResponse{RiskAssessment: out, Release: rel, Receipt: receipt}, nil
}

// provide is the whole provider flow for one record: load, decide, release,
// audit, answer with a receipt. The audit record is durable before the
// release is returned; a failed audit write fails the call. received is
// set when the record is one a partner pushed to us: its obligations must
// then allow sharing it onward with this caller, on top of our policy.
func provide[T proto.Message](ctx context.Context, g *Gateway, action, dataset, id, purpose string,
	load func(context.Context, string) (T, error), attrs func(context.Context, T) policy.Attributes, received *store.InboxEntry,
) (T, *blv1.Release, string, error) {
	var zero T
	who, err := caller(ctx)
	if err != nil {
		return zero, nil, "", err
	}
	if err := checkRequest(id, purpose); err != nil {
		return zero, nil, "", err
	}
	rec, err := load(ctx, id)
	exists := true
	switch {
	case errors.Is(err, store.ErrNotFound):
		exists = false
	case err != nil:
		g.log.Error("store read failed", "action", action, "id", id, "error", err)
		return zero, nil, "", status.Error(codes.Internal, "store unavailable")
	}
	in := policy.Input{
		Caller:   who,
		Action:   action,
		Purpose:  purpose,
		Resource: policy.Resource{Type: dataset, ID: id, Exists: exists},
		Time:     g.now(),
	}
	if exists {
		in.Resource.Attributes = attrs(ctx, rec)
	}
	dec, err := g.opts.Policy.Decide(ctx, in)
	if err != nil {
		g.log.Error("policy evaluation failed; denying", "action", action, "caller", who.String(), "error", err)
	}
	audit := g.providerRecord(ctx, in, []string{id}, dec)
	if !dec.Allow {
		code := codes.PermissionDenied
		if dec.Entitled && !exists {
			code = codes.NotFound
		}
		return zero, nil, "", g.deny(ctx, audit, code, dec.Code, dec.Reasons)
	}
	if received != nil {
		if refusal := onwardRefusal(*received, who); refusal != "" {
			// The caller learns that it may not have it, not from whom we
			// have it or under which terms: that is the sender's business.
			g.log.Info("onward sharing refused", "caller", who.String(), "id", id, "reason", refusal)
			return zero, nil, "", g.deny(ctx, audit, codes.PermissionDenied, "ONWARD_SHARING_NOT_ALLOWED",
				[]string{"this record was received from a partner whose terms do not allow sharing it with you"})
		}
		audit.Reasons = append(audit.Reasons, fmt.Sprintf("received from %s (message %s) under agreement %s; its obligations allow sharing it onward with %s",
			received.Sender, received.MessageID, received.Agreement, who))
	}
	if !g.limits.allow(who.String(), dec, g.now()) {
		audit.Decision = blv1.AuditDecision_AUDIT_DECISION_DENY
		return zero, nil, "", g.deny(ctx, audit, codes.ResourceExhausted, "RATE_LIMITED",
			[]string{fmt.Sprintf("rate limit of grant %s/%s exceeded; retry later", dec.Agreement, dec.Grant)})
	}
	out, rel, err := g.release(rec, dec, who)
	if err != nil {
		g.log.Error("release failed; denying", "action", action, "id", id, "error", err)
		return zero, nil, "", g.deny(ctx, audit, codes.Internal, "RELEASE_FAILED", []string{"release failed"})
	}
	audit.ReleasedFields = rel.GetFields()
	audit.ReleaseSha256 = rel.GetSha256()
	receipt, err := g.signedAnswer(ctx, audit)
	if err != nil {
		return zero, nil, "", err
	}
	return out.(T), rel, receipt, nil
}

// release applies a decision to one record and describes the result.
func (g *Gateway) release(rec proto.Message, dec policy.Decision, who identity.ID) (proto.Message, *blv1.Release, error) {
	out, res, err := release.Apply(rec, release.Rules{Fields: dec.Fields, Mask: dec.Mask, Pseudonymize: dec.Pseudonymize, Withhold: dec.Withhold,
		GoodsItems: release.ItemFilter{HSChapters: dec.GoodsItems.HSChapters, HSHeadings: dec.GoodsItems.HSHeadings}}, who.String(), g.opts.Pseudonymizer)
	if err != nil {
		return nil, nil, fmt.Errorf("apply decision: %w", err)
	}
	digest, err := release.Digest(out)
	if err != nil {
		return nil, nil, fmt.Errorf("digest release: %w", err)
	}
	return out, &blv1.Release{
		AgreementId:    dec.Agreement,
		GrantId:        dec.Grant,
		PolicyRevision: dec.Revision,
		Fields:         res.Fields,
		Masked:         res.Masked,
		Pseudonymized:  res.Pseudonymized,
		Sha256:         digest,
		Obligations: &blv1.Obligations{
			RetentionDays:    dec.Obligations.RetentionDays,
			OnwardSharing:    dec.Obligations.OnwardSharing,
			OnwardRecipients: dec.Obligations.OnwardRecipients,
			Attribution:      dec.Obligations.Attribution,
		},
	}, nil
}

type searchItem struct {
	decl *blv1.Declaration
	rel  *blv1.Release
}

func (s *exchangeServer) SearchDeclarations(req *blv1.SearchDeclarationsRequest, stream blv1.Exchange_SearchDeclarationsServer) error {
	ctx := stream.Context()
	g := s.g
	who, err := caller(ctx)
	if err != nil {
		return err
	}
	if err := checkPurpose(req.GetPurpose()); err != nil {
		return err
	}
	q, err := declarationQuery(req.GetFilter())
	if err != nil {
		return err
	}
	limit := int(req.GetLimit())
	if limit == 0 {
		limit = g.opts.Limits.SearchDefault
	}
	limit = min(limit, g.opts.Limits.SearchMax)

	// Ask first whether the caller may search at all, so that a caller
	// with no grant learns nothing, not even that nothing matched.
	base := policy.Input{Caller: who, Action: ActionDeclarationSearch, Purpose: req.GetPurpose(),
		Resource: policy.Resource{Type: "declaration"}, Time: g.now()}
	pre, err := g.opts.Policy.Decide(ctx, base)
	if err != nil {
		g.log.Error("policy evaluation failed; denying", "action", ActionDeclarationSearch, "caller", who.String(), "error", err)
	}
	if !pre.Entitled {
		audit := g.providerRecord(ctx, base, nil, pre)
		return g.deny(ctx, audit, codes.PermissionDenied, pre.Code, pre.Reasons)
	}

	var (
		items   []searchItem
		scanned int
		// Each grant's max_results caps what it releases in one search;
		// each grant used takes one token of its rate limit.
		perGrant = map[string]int{}
		used     = map[string]policy.Decision{}
	)
	err = g.opts.Store.SearchDeclarations(ctx, q, func(d *blv1.Declaration) error {
		scanned++
		if scanned > limit*maxScanFactor {
			return store.ErrStop
		}
		in := base
		in.Resource = policy.Resource{Type: "declaration", ID: d.GetId(), Exists: true, Attributes: policy.DeclarationAttributes(d)}
		dec, err := g.opts.Policy.Decide(ctx, in)
		if err != nil {
			return fmt.Errorf("decide %s: %w", d.GetId(), err)
		}
		if !dec.Allow {
			return nil
		}
		grant := dec.Agreement + "/" + dec.Grant
		if dec.MaxResults > 0 && perGrant[grant] >= dec.MaxResults {
			return nil
		}
		out, rel, err := g.release(d, dec, who)
		if err != nil {
			return fmt.Errorf("release %s: %w", d.GetId(), err)
		}
		perGrant[grant]++
		used[grant] = dec
		items = append(items, searchItem{decl: out.(*blv1.Declaration), rel: rel})
		if len(items) >= limit {
			return store.ErrStop
		}
		return nil
	})
	if err != nil {
		g.log.Error("search failed", "caller", who.String(), "error", err)
		audit := g.providerRecord(ctx, base, nil, policy.Decision{Reasons: []string{"search failed"}, Revision: pre.Revision})
		return g.deny(ctx, audit, codes.Internal, "SEARCH_FAILED", []string{"search failed"})
	}

	for grant, dec := range used {
		if !g.limits.allow(who.String(), dec, g.now()) {
			audit := g.providerRecord(ctx, base, nil, policy.Decision{Revision: pre.Revision})
			return g.deny(ctx, audit, codes.ResourceExhausted, "RATE_LIMITED",
				[]string{fmt.Sprintf("rate limit of grant %s exceeded; retry later", grant)})
		}
	}

	rels := make([]*blv1.Release, len(items))
	ids := make([]string, len(items))
	for i, it := range items {
		rels[i], ids[i] = it.rel, it.decl.GetId()
	}
	audit := g.providerRecord(ctx, base, ids, policy.Decision{Allow: true, Revision: pre.Revision})
	audit.AgreementId = joinAgreements(rels)
	audit.ReleasedFields = unionFields(rels)
	audit.ReleaseSha256 = SearchDigest(rels)
	receipt, err := g.signedAnswer(ctx, audit)
	if err != nil {
		return err
	}
	stream.SetTrailer(metadata.Pairs(ReceiptTrailer, receipt))
	for _, it := range items {
		if err := stream.Send(&blv1.SearchDeclarationsResponse{Declaration: it.decl, Release: it.rel}); err != nil {
			return err
		}
	}
	return nil
}

// SearchDigest is the release digest of a whole search: SHA-256 over the
// concatenated raw SHA-256 digests of the released records, in stream order.
// Both sides compute it, so their audit records can be matched.
func SearchDigest(rels []*blv1.Release) string {
	h := sha256.New()
	for _, r := range rels {
		b, err := hex.DecodeString(r.GetSha256())
		if err != nil || len(b) != sha256.Size {
			// An undecodable digest still has to change the result.
			b = []byte(r.GetSha256())
		}
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func joinAgreements(rels []*blv1.Release) string {
	set := map[string]bool{}
	for _, r := range rels {
		set[r.GetAgreementId()] = true
	}
	out := make([]string, 0, len(set))
	for a := range set {
		out = append(out, a)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

func unionFields(rels []*blv1.Release) []string {
	set := map[string]bool{}
	for _, r := range rels {
		for _, f := range r.GetFields() {
			set[f] = true
		}
	}
	out := make([]string, 0, len(set))
	for f := range set {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}

// providerRecord starts the audit record of an answered call. It keeps
// the policy input (attributes, never the record) so the decision can be
// replayed under another policy set.
func (g *Gateway) providerRecord(ctx context.Context, in policy.Input, ids []string, dec policy.Decision) *blv1.AuditRecord {
	d := blv1.AuditDecision_AUDIT_DECISION_DENY
	if dec.Allow {
		d = blv1.AuditDecision_AUDIT_DECISION_ALLOW
	}
	reqID := incomingRequestID(ctx)
	// Agencies call Exchange directly and have no audit trail of their own:
	// the header tells them the ID to quote to our auditors.
	_ = grpc.SetHeader(ctx, metadata.Pairs(RequestIDHeader, reqID))
	input, err := json.Marshal(g.opts.Policy.InputDocument(in))
	if err != nil {
		// The input is built from strings and numbers; this cannot fail.
		g.log.Error("encode policy input", "error", err)
	}
	return &blv1.AuditRecord{
		Time:           timestamppb.New(g.now()),
		Side:           blv1.AuditSide_AUDIT_SIDE_PROVIDER,
		RequestId:      reqID,
		CallerId:       in.Caller.String(),
		PeerId:         in.Caller.String(),
		Action:         in.Action,
		Purpose:        in.Purpose,
		ResourceIds:    ids,
		Decision:       d,
		AgreementId:    dec.Agreement,
		PolicyRevision: dec.Revision,
		Reasons:        slices.Clone(dec.Reasons),
		Status:         audit.StatusName(codes.OK),
		PolicyInput:    string(input),
	}
}

// deny records a refusal and returns the status the caller gets: the
// policy's reasons as the message and its stable reason code as an
// ErrorInfo detail. If even the refusal cannot be recorded, the caller gets
// Unavailable: a call that reached a decision must never go unaudited.
func (g *Gateway) deny(ctx context.Context, rec *blv1.AuditRecord, code codes.Code, reason string, reasons []string) error {
	rec.Decision = blv1.AuditDecision_AUDIT_DECISION_DENY
	if code == codes.Internal || reason == "POLICY_ERROR" {
		rec.Decision = blv1.AuditDecision_AUDIT_DECISION_ERROR
	}
	rec.Status = audit.StatusName(code)
	rec.ReleasedFields = nil
	rec.ReleaseSha256 = ""
	if err := g.appendAudit(ctx, rec); err != nil {
		return err
	}
	// A refusal gets a receipt too, in the trailer: the caller can prove we
	// refused, and reconciliation can match refusals like releases. Failing
	// to sign it releases nothing, so the refusal still goes out.
	if receipt, err := g.alog.liveReceipt(rec); err != nil {
		g.log.Error("receipt for a refusal could not be signed", "request_id", rec.GetRequestId(), "error", err)
	} else if err := grpc.SetTrailer(ctx, metadata.Pairs(ReceiptTrailer, receipt)); err != nil {
		g.log.Warn("receipt for a refusal not sent", "request_id", rec.GetRequestId(), "error", err)
	}
	msg := strings.Join(reasons, "; ")
	if msg == "" {
		msg = "denied by policy"
	}
	st := status.New(code, msg)
	if reason != "" {
		if withInfo, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain}); err == nil {
			st = withInfo
		}
	}
	return st.Err()
}

// ErrorDomain names Borderlink in ErrorInfo details; the reason codes are
// listed in docs/policies.md.
const ErrorDomain = "borderlink.dev"

func (g *Gateway) appendAudit(ctx context.Context, rec *blv1.AuditRecord) error {
	// The audit write must finish even if the caller hung up: the decision
	// has been made and possibly acted on.
	if _, err := g.opts.Store.AppendAudit(context.WithoutCancel(ctx), rec); err != nil {
		g.log.Error("audit append failed; failing the call", "request_id", rec.GetRequestId(), "action", rec.GetAction(), "error", err)
		return status.Error(codes.Unavailable, "audit trail unavailable; nothing was released")
	}
	return nil
}

var requestIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// incomingRequestID takes the caller's correlation ID when it is well
// formed; otherwise the exchange gets a fresh one.
func incomingRequestID(ctx context.Context) string {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(RequestIDHeader); len(v) == 1 && requestIDPattern.MatchString(v[0]) {
			return v[0]
		}
	}
	return newRequestID()
}

func newRequestID() string { return audit.NewRequestID(time.Now()) }

var purposePattern = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

func checkPurpose(purpose string) error {
	if !purposePattern.MatchString(purpose) {
		return status.Errorf(codes.InvalidArgument, "purpose %q is missing or invalid: use the purpose named in the agreement, e.g. risk-assessment", purpose)
	}
	return nil
}

func checkRequest(id, purpose string) error {
	if id == "" || len(id) > 64 {
		return status.Error(codes.InvalidArgument, "id is required (at most 64 characters)")
	}
	return checkPurpose(purpose)
}

var chapterPattern = regexp.MustCompile(`^[0-9]{2}$`)

func declarationQuery(f *blv1.DeclarationFilter) (store.DeclarationQuery, error) {
	q := store.DeclarationQuery{
		HSChapters:         f.GetHsChapters(),
		ExportCountry:      f.GetExportCountry(),
		DestinationCountry: f.GetDestinationCountry(),
	}
	for _, c := range q.HSChapters {
		if !chapterPattern.MatchString(c) {
			return q, status.Errorf(codes.InvalidArgument, "filter.hs_chapters: %q is not a two-digit HS chapter", c)
		}
	}
	if f.GetAcceptedAfter() != nil {
		q.AcceptedAfter = f.GetAcceptedAfter().AsTime()
	}
	if f.GetAcceptedBefore() != nil {
		q.AcceptedBefore = f.GetAcceptedBefore().AsTime()
	}
	return q, nil
}

// riskAttributes describe a risk assessment by the declaration it is about
// (when we hold it) and by its score.
func (g *Gateway) riskAttributes(ctx context.Context, r *blv1.RiskAssessment) policy.Attributes {
	d, err := g.opts.Store.GetDeclaration(ctx, r.GetDeclarationId())
	if err != nil {
		d = nil
		if !errors.Is(err, store.ErrNotFound) {
			g.log.Warn("declaration of risk assessment unreadable; conditions on it will not match", "risk_id", r.GetId(), "error", err)
		}
	}
	return policy.RiskAttributes(r, d)
}
