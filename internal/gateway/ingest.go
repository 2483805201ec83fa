package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/borderlink/borderlink/internal/store"
	"github.com/borderlink/borderlink/internal/validate"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// MaxImportRecords bounds one Import stream, which is held in memory and
// committed as one transaction.
const MaxImportRecords = 200_000

// maxDetailViolations bounds the BadRequest detail so the status stays
// well under gRPC's header size limits; the count of all errors is in the
// message.
const maxDetailViolations = 200

type ingestServer struct {
	blv1.UnimplementedIngestServer
	g *Gateway
}

// Import validates every record and stores the valid ones in one
// transaction; see the Ingest service documentation for the all-or-nothing
// rule.
func (s *ingestServer) Import(stream blv1.Ingest_ImportServer) error {
	ctx := stream.Context()
	who, err := caller(ctx)
	if err != nil {
		return err
	}
	var (
		decls    []*blv1.Declaration
		risks    []*blv1.RiskAssessment
		errs     []*blv1.RecordError
		skip     bool
		first    = true
		received uint64
		skipped  uint64
	)
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if first {
			skip, first = req.GetSkipInvalid(), false
		}
		received++
		if received > MaxImportRecords {
			return status.Errorf(codes.ResourceExhausted, "more than %d records in one import: split the file", MaxImportRecords)
		}
		line := req.GetLine()
		if line == 0 {
			line = received
		}
		id, ferrs := validate.Record(req.GetRecord())
		if len(ferrs) > 0 {
			skipped++
			for _, fe := range ferrs {
				errs = append(errs, &blv1.RecordError{Line: line, RecordId: id, Field: fe.Field, Reason: fe.Reason})
			}
			continue
		}
		switch r := req.GetRecord().GetKind().(type) {
		case *blv1.IngestRecord_Declaration:
			decls = append(decls, r.Declaration)
		case *blv1.IngestRecord_RiskAssessment:
			risks = append(risks, r.RiskAssessment)
		}
	}
	if len(errs) > 0 && !skip {
		s.g.log.Warn("import refused: invalid records", "caller", who.String(), "invalid", skipped, "received", received)
		return invalidImport(errs, skipped)
	}
	queued, err := s.put(ctx, decls, risks)
	if err != nil {
		s.g.log.Error("import failed", "caller", who.String(), "error", err)
		return status.Error(codes.Internal, "store write failed; nothing was imported")
	}
	s.g.log.Info("import stored", "caller", who.String(), "declarations", len(decls), "risk_assessments", len(risks), "skipped", skipped, "alerts_queued", queued)
	return stream.SendAndClose(&blv1.ImportResponse{Imported: uint64(len(decls) + len(risks)), Skipped: skipped, Errors: errs})
}

// put stores an import. When the store can queue deliveries, every risk
// assessment imported is also offered for push (action alert.deliver,
// purpose DefaultAlertPurpose) in the same transaction: the agreements
// decide which partners get it, e.g. only above a grant's min_risk_score.
func (s *ingestServer) put(ctx context.Context, decls []*blv1.Declaration, risks []*blv1.RiskAssessment) (int, error) {
	g := s.g
	// Subscriptions waiting for new records look again.
	defer g.commits.notify()
	ds, err := g.deliveryStore()
	if err != nil || len(risks) == 0 {
		return 0, g.opts.Store.PutRecords(ctx, decls, risks)
	}
	now := g.now()
	batch := make(map[string]*blv1.Declaration, len(decls))
	for _, d := range decls {
		batch[d.GetId()] = d
	}
	recipients := g.alertRecipients()
	var entries []store.OutboxEntry
	for _, r := range risks {
		es, err := g.queueAlert(ctx, recipients, r, batch[r.GetDeclarationId()], DefaultAlertPurpose, now)
		if err != nil {
			return 0, err
		}
		entries = append(entries, es...)
	}
	if err := ds.PutRecordsQueued(ctx, decls, risks, entries); err != nil {
		return 0, err
	}
	for _, e := range entries {
		g.notifyDelivery(e.Recipient)
	}
	return len(entries), nil
}

// validateOne checks a single record as Import does, as one status.
func validateOne(rec *blv1.IngestRecord) error {
	id, ferrs := validate.Record(rec)
	if len(ferrs) == 0 {
		return nil
	}
	errs := make([]*blv1.RecordError, len(ferrs))
	for i, fe := range ferrs {
		errs[i] = &blv1.RecordError{Line: 1, RecordId: id, Field: fe.Field, Reason: fe.Reason}
	}
	return invalidImport(errs, 1)
}

func invalidImport(errs []*blv1.RecordError, invalid uint64) error {
	first := errs[0]
	st := status.New(codes.InvalidArgument, fmt.Sprintf("%d invalid record(s), nothing imported; first: line %d (%s) %s: %s",
		invalid, first.GetLine(), first.GetRecordId(), first.GetField(), first.GetReason()))
	br := &errdetails.BadRequest{}
	for i, e := range errs {
		if i == maxDetailViolations {
			break
		}
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
			Field:       fmt.Sprintf("line %d (%s) %s", e.GetLine(), e.GetRecordId(), e.GetField()),
			Description: e.GetReason(),
		})
	}
	if withDetails, err := st.WithDetails(br); err == nil {
		st = withDetails
	}
	return st.Err()
}
