package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/identity"
	"github.com/borderlink/borderlink/internal/store"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// ReceiptTrailer carries the receipt of a SearchDeclarations call (binary
// metadata: the signed note is UTF-8 with newlines).
const ReceiptTrailer = "borderlink-receipt-bin"

// AuditOptions configure the verifiable audit log.
type AuditOptions struct {
	// Signer signs checkpoints and receipts; its name must be
	// audit.Origin(Self). If nil, New generates a key that lives only as
	// long as the Gateway: fine for tests, useless to partners and auditors
	// (Run always loads or creates a key file).
	Signer audit.Signer
	// PeerKeys maps partner trust domains to their audit verifier keys.
	// Calls to a partner without a key are refused (fail closed): its
	// receipts could not be verified.
	PeerKeys map[string]string
	// PeerRetiredKeys are partners' earlier audit verifier keys, from
	// before a key rotation: receipts and checkpoints they signed with
	// them still verify. New signatures must use PeerKeys.
	PeerRetiredKeys map[string][]string
	// CheckpointInterval is how often a checkpoint is signed when the log
	// has grown; 0 means audit.DefaultCheckpointInterval.
	CheckpointInterval time.Duration
	// Cosigner cosigns partners' checkpoints this gateway witnessed
	// (audit.NewCosigner, named audit.WitnessName(Self)); nil: witness
	// without cosigning.
	Cosigner note.Signer
	// WitnessInterval is how often partners' latest checkpoints are
	// fetched, verified and checked for consistency with the last one
	// accepted (audit.Witness); 0 means DefaultWitnessInterval, negative
	// turns witnessing off.
	WitnessInterval time.Duration
	// ReceiptKeys, if set, signs the receipts of live exchanges (pulls,
	// searches, subscriptions, refusals) with a short-lived receipt key
	// the log key certifies (keys.ReceiptKeys, ADR 0011), so that no
	// exchange waits for a remote log key. nil: the log key signs them.
	// Receipts of pushed alerts always use the log key: a redelivery is
	// answered with the receipt re-signed, and must get the same bytes
	// (ADR 0007).
	ReceiptKeys ReceiptSigner
}

// ReceiptSigner signs live receipts (keys.ReceiptKeys).
type ReceiptSigner interface {
	SignReceipt(audit.Receipt) (string, error)
}

// receiptKeySkew is how far outside its receipt key's validity a partner's
// live receipt may arrive: clocks of two administrations differ.
const receiptKeySkew = 5 * time.Minute

// DefaultWitnessInterval is how often partners' logs are witnessed.
const DefaultWitnessInterval = 10 * time.Second

// logStore is what the Audit service and the checkpointer need beyond
// Store; a Store without it still serves exchanges (and signs receipts)
// but has no checkpoints and no Audit service.
type logStore interface {
	audit.LogStore
	ListAudit(ctx context.Context, q store.AuditQuery) ([]*blv1.AuditRecord, error)
	AuditLeaves(ctx context.Context, start, count int64) ([][]byte, error)
}

type auditLog struct {
	origin      string
	signer      audit.Signer
	receiptKeys ReceiptSigner // nil: the log key signs live receipts too
	verifiers   map[string]note.Verifier
	store       logStore // nil if the Store cannot serve the log
	cp          *audit.Checkpointer
	interval    time.Duration
	log         *slog.Logger
	// witnessed keeps partners' accepted checkpoints (nil: no witnessing).
	witnessed       audit.WitnessState
	witnessInterval time.Duration
	cosigner        note.Signer
	// cosigVerifiers check partners' cosignatures of our checkpoints.
	cosigVerifiers map[string]note.Verifier

	// cosigned keeps, per partner, the last checkpoint this gateway
	// accepted and cosigned, with its cosignature appended, for gossip
	// (GetCheckpointResponse.witnessed). In memory: after a restart the
	// stored checkpoint is gossiped without the line until the next round.
	mu       sync.Mutex
	cosigned map[string][]byte
	// handed keeps, per partner, which checkpoint this gateway last
	// handed a cosignature of to the partner, and with which cosigner key:
	// a witness round cosigns the accepted checkpoint again when it is
	// not the one handed over last, or was cosigned with another key (the
	// cosigner rotated: the partner's latest checkpoint must carry the
	// current key's cosignature, though its log did not grow), or the
	// hand-over failed. In memory (under mu): after a restart the first
	// round cosigns again. The partner keeps one cosignature per witness
	// and checkpoint, the current key's (PutCosignature).
	handed map[string]cosigMark
	// unproven keeps, per partner, a gossiped checkpoint of its log whose
	// size differs from the one this gateway accepted and that the
	// partner has not proved consistent (it refused, failed or was
	// unreachable): a forking partner could otherwise defeat gossip by
	// refusing the proof. Retried every witnessing round; reported after
	// GossipUnprovenRounds rounds in a row. In memory (under mu).
	unproven map[string]*unprovenGossip
	// witnessUnproven keeps, per partner, a checkpoint the partner showed
	// this gateway itself, larger than the one accepted from it, that it
	// has not proved consistent with the accepted one (it refused, failed
	// or was unreachable): not accepted, not cosigned, and a forking
	// partner could otherwise hide the fork from its direct witnesses by
	// refusing the proof. Retried every witnessing round; reported after
	// GossipUnprovenRounds rounds in a row. In memory (under mu).
	witnessUnproven map[string]*unprovenWitness
}

// GossipUnprovenRounds is how many witnessing rounds in a row a partner
// may leave a gossiped checkpoint of its log unproven (no consistency
// proof with the one this gateway accepted) before it is reported at
// error level and counted in borderlink_audit_gossip_unproven. It is
// also how many rounds a partner may leave a larger checkpoint it showed
// this gateway itself unproven before that is reported (WITNESS
// UNPROVEN, borderlink_audit_witness_unproven).
const GossipUnprovenRounds = 3

// cosigMark names a checkpoint a cosignature was handed over for, and
// the cosigner key that made it.
type cosigMark struct {
	size    int64
	hash    tlog.Hash
	keyHash uint32
}

// unprovenGossip is a partner checkpoint another witness gossiped that
// the partner has not proved consistent with ours.
type unprovenGossip struct {
	note    []byte // as gossiped
	witness string // the gateway that gossiped it
	rounds  int    // consecutive rounds it stayed unproven
}

// unprovenWitness is a partner checkpoint the partner showed this
// gateway and has not proved consistent with the one accepted from it.
type unprovenWitness struct {
	note       []byte           // as the partner served it
	checkpoint audit.Checkpoint // note, opened
	accepted   int64            // size of the accepted checkpoint last compared with
	rounds     int              // consecutive rounds it stayed unproven
}

// cosigStore is what serving cosignatures needs from the store.
type cosigStore interface {
	AuditCheckpoint(ctx context.Context, size int64) ([]byte, error)
	PutCosignature(ctx context.Context, size int64, witness, line string, at time.Time) error
	Cosignatures(ctx context.Context, size int64) ([]string, error)
}

func newAuditLog(opts Options) (*auditLog, error) {
	a := &auditLog{origin: audit.Origin(opts.Self), signer: opts.Audit.Signer, receiptKeys: opts.Audit.ReceiptKeys, verifiers: map[string]note.Verifier{},
		interval: opts.Audit.CheckpointInterval, log: opts.Logger, witnessInterval: opts.Audit.WitnessInterval,
		cosigner: opts.Audit.Cosigner, cosigVerifiers: map[string]note.Verifier{}, cosigned: map[string][]byte{}, handed: map[string]cosigMark{}, unproven: map[string]*unprovenGossip{},
		witnessUnproven: map[string]*unprovenWitness{}}
	if a.witnessInterval == 0 {
		a.witnessInterval = DefaultWitnessInterval
	}
	if ws, ok := opts.Store.(audit.WitnessState); ok && a.witnessInterval > 0 {
		a.witnessed = ws
	}
	if a.signer == nil {
		skey, _, err := audit.GenerateKey(a.origin)
		if err != nil {
			return nil, fmt.Errorf("gateway: audit key: %w", err)
		}
		if a.signer, err = note.NewSigner(skey); err != nil {
			return nil, fmt.Errorf("gateway: audit key: %w", err)
		}
		if a.cosigner == nil {
			if a.cosigner, err = audit.NewCosigner(skey, audit.WitnessName(opts.Self), nil); err != nil {
				return nil, fmt.Errorf("gateway: audit key: %w", err)
			}
		}
	}
	if a.signer.Name() != a.origin {
		return nil, fmt.Errorf("gateway: audit key is named %q, want %q", a.signer.Name(), a.origin)
	}
	for d, k := range opts.Audit.PeerKeys {
		ring := append(slices.Clone(opts.Audit.PeerRetiredKeys[d]), k)
		v, err := audit.NewKeyRing(audit.Origin(d), ring)
		if err != nil {
			return nil, fmt.Errorf("gateway: audit keys of partner %s: %w", d, err)
		}
		// The whole ring opens what was signed before a rotation (kept
		// receipts, the checkpoint accepted last). Witnessing and gossip
		// (audit.Witness, audit.CheckGossip) accept a new checkpoint
		// only under the ring's current key: a retired key may have
		// leaked, and whoever holds it must not get a forged checkpoint
		// cosigned or reported as the partner's split view.
		a.verifiers[d] = v
		// New cosignatures only with the partner's current key: keys are
		// retired because they may be compromised, and a retired key must
		// not vouch for checkpoints from now on. Cosignatures it made
		// before stay stored and served; they verify with the partner's
		// cosignature key ring (audit.NewCosignatureKeyRing).
		if a.cosigVerifiers[d], err = audit.NewCosignatureVerifier(k, audit.WitnessName(d)); err != nil {
			return nil, fmt.Errorf("gateway: audit key of partner %s: %w", d, err)
		}
	}
	if ls, ok := opts.Store.(logStore); ok {
		a.store = ls
		cp, err := audit.NewCheckpointer(ls, a.signer, a.origin, opts.Logger)
		if err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
		a.cp = cp
	}
	return a, nil
}

// start runs the periodic checkpointer and witness until ctx is cancelled
// or the returned stop is called; stop waits for them.
func (a *auditLog) start(ctx context.Context, witness func(context.Context)) (stop func()) {
	if a.cp == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { a.cp.Run(ctx, a.interval) })
	if a.witnessed != nil {
		wg.Go(func() {
			t := time.NewTicker(a.witnessInterval)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					witness(ctx)
				}
			}
		})
	}
	return func() {
		cancel()
		wg.Wait()
		// A last checkpoint covers the records of the final calls.
		if _, err := a.cp.Sign(context.Background()); err != nil && !errors.Is(err, audit.ErrNoCheckpoint) {
			a.log.Error("final audit checkpoint failed", "error", err)
		}
	}
}

// receipt signs the receipt of an appended (sequenced) provider record.
func (a *auditLog) receipt(rec *blv1.AuditRecord) (string, error) {
	r, err := a.receiptOf(rec)
	if err != nil {
		return "", err
	}
	return audit.SignReceipt(a.signer, r)
}

// liveReceipt signs the receipt of a live exchange: with the receipt key
// when there is one, else with the log key.
func (a *auditLog) liveReceipt(rec *blv1.AuditRecord) (string, error) {
	if a.receiptKeys == nil {
		return a.receipt(rec)
	}
	r, err := a.receiptOf(rec)
	if err != nil {
		return "", err
	}
	return a.receiptKeys.SignReceipt(r)
}

func (a *auditLog) receiptOf(rec *blv1.AuditRecord) (audit.Receipt, error) {
	h, err := audit.LeafHash(rec)
	if err != nil {
		return audit.Receipt{}, err
	}
	return audit.Receipt{
		Origin:    a.origin,
		Index:     int64(rec.GetSeq()) - 1,
		LeafHash:  h,
		Time:      rec.GetTime().AsTime(),
		Release:   rec.GetReleaseSha256(),
		RequestID: rec.GetRequestId(),
		Caller:    rec.GetCallerId(),
	}, nil
}

// verifier is the partner's receipt verifier, or FailedPrecondition.
func (a *auditLog) verifier(partner string) (note.Verifier, error) {
	v, ok := a.verifiers[partner]
	if !ok {
		return nil, status.Errorf(codes.FailedPrecondition, "no audit key for partner %q: its receipts cannot be verified; add peers.%s.audit_key to the gateway config", partner, partner)
	}
	return v, nil
}

// signedAnswer appends a provider record of an allowed exchange and signs
// its receipt. Nothing may be released if either fails.
func (g *Gateway) signedAnswer(ctx context.Context, rec *blv1.AuditRecord) (string, error) {
	if err := g.appendAudit(ctx, rec); err != nil {
		return "", err
	}
	r, err := g.alog.liveReceipt(rec)
	if err != nil {
		g.log.Error("receipt signing failed; failing the call", "request_id", rec.GetRequestId(), "seq", rec.GetSeq(), "error", err)
		// The ALLOW record above is durable but nothing goes out: say so in
		// the log itself, citing it, so that an auditor does not count a
		// release that never happened.
		follow := &blv1.AuditRecord{
			Time:           timestamppb.New(g.now()),
			Side:           rec.GetSide(),
			RequestId:      rec.GetRequestId(),
			CallerId:       rec.GetCallerId(),
			PeerId:         rec.GetPeerId(),
			Action:         rec.GetAction(),
			Purpose:        rec.GetPurpose(),
			ResourceIds:    rec.GetResourceIds(),
			Decision:       blv1.AuditDecision_AUDIT_DECISION_ERROR,
			AgreementId:    rec.GetAgreementId(),
			PolicyRevision: rec.GetPolicyRevision(),
			Reasons:        []string{fmt.Sprintf("receipt for record %d could not be signed; nothing was released", rec.GetSeq())},
			Status:         audit.StatusName(codes.Unavailable),
		}
		if aerr := g.appendAudit(ctx, follow); aerr != nil {
			return "", aerr
		}
		return "", status.Error(codes.Unavailable, "receipt signing unavailable; nothing was released")
	}
	return r, nil
}

// checkReceipt verifies a partner's receipt for this exchange and keeps it
// in the consumer record (also when it fails: it is evidence).
func (o *outbound) checkReceipt(receipt, release string) error {
	o.rec.PartnerReceipt = receipt
	if receipt == "" {
		return errors.New("no receipt")
	}
	return o.g.checkPartnerReceipt(o.verifier, receipt, o.reqID, release)
}

// checkPartnerReceipt verifies a receipt a partner signed for a call this
// gateway made: its signature with the partner's key, and that it names
// the request, this gateway as the caller and the release digest (""
// for a refusal). Errors wrap audit.ErrVerify.
func (g *Gateway) checkPartnerReceipt(v note.Verifier, receipt, requestID, release string) error {
	r, err := audit.OpenReceipt(receipt, v)
	if err != nil {
		return err
	}
	if now := g.now(); !r.KeyValidAt(now, receiptKeySkew) {
		return fmt.Errorf("receipt signed with a receipt key valid %s to %s, not now (%s): %w", r.Key.NotBefore.Format(time.RFC3339),
			r.Key.NotAfter.Format(time.RFC3339), now.UTC().Format(time.RFC3339), audit.ErrVerify)
	}
	return r.Check(audit.Expect{RequestID: requestID, Caller: identity.GatewayID(g.self).String(), Release: release})
}

// keepRefusalReceipt stores the partner's receipt for its refusal (from
// the call's trailer) in rec, our record of the refused call, when it
// verifies: it must name this request, this gateway and no release. One
// that does not verify is noted in the reasons, not kept as evidence.
func (g *Gateway) keepRefusalReceipt(rec *blv1.AuditRecord, trailer metadata.MD, v note.Verifier) {
	got := trailer.Get(ReceiptTrailer)
	if len(got) != 1 {
		return
	}
	if err := g.checkPartnerReceipt(v, got[0], rec.GetRequestId(), ""); err != nil {
		g.log.Warn("partner's receipt for a refusal failed verification", "partner", rec.GetPeerId(), "request_id", rec.GetRequestId(), "error", err)
		rec.Reasons = append(rec.Reasons, fmt.Sprintf("the partner's receipt for this refusal failed verification: %v", err))
		return
	}
	rec.PartnerReceipt = got[0]
}

// auditServer is the Audit service (docs/audit.md).
type auditServer struct {
	blv1.UnimplementedAuditServer
	g *Gateway
}

// auditAccess tells what the caller may read: everything (an auditor of
// the own domain) or only records where it was the caller.
func (s *auditServer) access(ctx context.Context) (full bool, who identity.ID, ls logStore, err error) {
	who, err = caller(ctx)
	if err != nil {
		return false, who, nil, err
	}
	if s.g.alog.store == nil {
		return false, who, nil, status.Error(codes.Unimplemented, "this gateway's store does not serve the audit log")
	}
	full = who.Kind == identity.KindAuditor && who.TrustDomain == s.g.self
	return full, who, s.g.alog.store, nil
}

func auditorOnly(full bool) error {
	if !full {
		return status.Error(codes.PermissionDenied, "only auditors of this administration may call this")
	}
	return nil
}

func (s *auditServer) ListRecords(ctx context.Context, req *blv1.ListRecordsRequest) (*blv1.ListRecordsResponse, error) {
	full, who, ls, err := s.access(ctx)
	if err != nil {
		return nil, err
	}
	f := req.GetFilter()
	limit := int(req.GetLimit())
	if limit == 0 {
		limit = 100
	}
	q := store.AuditQuery{
		RequestID: f.GetRequestId(), Partner: f.GetPartner(), Agreement: f.GetAgreementId(), Action: f.GetAction(),
		Decision: int32(f.GetDecision()), Side: int32(f.GetSide()), AfterSeq: req.GetAfterSeq(), Limit: min(limit, 1000),
	}
	if f.GetSince() != nil {
		q.Since = f.GetSince().AsTime()
	}
	if f.GetUntil() != nil {
		q.Until = f.GetUntil().AsTime()
	}
	if !full {
		// A partner's own records are those of the calls it made to us:
		// its pulls (provider side) and the alerts it pushed to us
		// (consumer side). Our calls to it carry our callers' IDs.
		q.CallerID = who.String()
	}
	recs, err := ls.ListAudit(ctx, q)
	if err != nil {
		return nil, s.internal("list", err)
	}
	if !full {
		for i, r := range recs {
			recs[i] = redactForPartner(r)
		}
	}
	return &blv1.ListRecordsResponse{Records: recs}, nil
}

// redactForPartner removes what a partner must not learn from its own
// records: the policy input holds our record's attributes (countries, HS
// codes, acceptance time, whether it exists at all), also those its grant
// did not release or a refusal withheld. Partners match and prove their
// records by request ID, release digest and the leaf hash their receipt
// names (an inclusion proof), so they need neither the input nor the leaf
// bytes it is part of.
func redactForPartner(r *blv1.AuditRecord) *blv1.AuditRecord {
	if r.GetPolicyInput() == "" {
		return r
	}
	c := proto.Clone(r).(*blv1.AuditRecord)
	c.PolicyInput = ""
	return c
}

func (s *auditServer) internal(what string, err error) error {
	if errors.Is(err, store.ErrInvalid) {
		return status.Errorf(codes.InvalidArgument, "%v", err)
	}
	s.g.log.Error("audit service failed", "call", what, "error", err)
	return status.Error(codes.Internal, "audit log unavailable")
}

// leaf reads one leaf and, for a partner, checks it may see it.
func (s *auditServer) leaf(ctx context.Context, full bool, who identity.ID, ls logStore, index int64) (*blv1.AuditRecord, []byte, error) {
	leaves, err := ls.AuditLeaves(ctx, index, 1)
	if err != nil {
		return nil, nil, s.internal("leaf", err)
	}
	if len(leaves) != 1 {
		return nil, nil, status.Errorf(codes.NotFound, "no record at index %d", index)
	}
	rec, err := audit.ParseLeaf(index, leaves[0])
	if err != nil {
		return nil, nil, s.internal("leaf", err)
	}
	if !full && rec.GetCallerId() != who.String() {
		// Same answer as a missing record: partners learn nothing of
		// others' exchanges.
		return nil, nil, status.Errorf(codes.NotFound, "no record at index %d", index)
	}
	return rec, leaves[0], nil
}

func (s *auditServer) GetRecord(ctx context.Context, req *blv1.GetRecordRequest) (*blv1.GetRecordResponse, error) {
	full, who, ls, err := s.access(ctx)
	if err != nil {
		return nil, err
	}
	if req.GetSeq() == 0 || req.GetSeq() > 1<<62 {
		return nil, status.Error(codes.InvalidArgument, "seq must be at least 1")
	}
	rec, leaf, err := s.leaf(ctx, full, who, ls, int64(req.GetSeq())-1)
	if err != nil {
		return nil, err
	}
	if !full {
		// No leaf bytes either: they would reveal the policy input.
		return &blv1.GetRecordResponse{Record: redactForPartner(rec)}, nil
	}
	return &blv1.GetRecordResponse{Record: rec, Leaf: leaf}, nil
}

func (s *auditServer) GetCheckpoint(ctx context.Context, req *blv1.GetCheckpointRequest) (*blv1.GetCheckpointResponse, error) {
	full, who, ls, err := s.access(ctx)
	if err != nil {
		return nil, err
	}
	if req.GetSignNow() {
		if err := auditorOnly(full); err != nil {
			return nil, err
		}
		msg, err := s.g.alog.cp.Sign(ctx)
		if errors.Is(err, audit.ErrNoCheckpoint) {
			return nil, status.Error(codes.FailedPrecondition, "the audit log is empty")
		}
		if errors.Is(err, audit.ErrVerify) {
			// Only auditors get here, and this is what they are for: the
			// stored log failed the check made before signing (ADR 0017).
			s.g.log.Error("audit service failed", "call", "sign checkpoint", "error", err)
			return nil, status.Errorf(codes.DataLoss, "%v", err)
		}
		if err != nil {
			return nil, s.internal("sign checkpoint", err)
		}
		return &blv1.GetCheckpointResponse{Checkpoint: string(msg), Witnessed: s.gossip(ctx, full, who)}, nil
	}
	_, msg, err := ls.LatestAuditCheckpoint(ctx)
	if errors.Is(err, audit.ErrNoCheckpoint) {
		return nil, status.Error(codes.NotFound, "no checkpoint signed yet")
	}
	if err != nil {
		return nil, s.internal("checkpoint", err)
	}
	return &blv1.GetCheckpointResponse{Checkpoint: string(s.withCosignatures(ctx, msg)), Witnessed: s.gossip(ctx, full, who)}, nil
}

// gossip is the latest checkpoint this gateway accepted from each partner
// it witnesses, with its cosignature when it made one: any gateway that
// witnesses the same partner can compare them with what it was shown
// (audit.CheckGossip). It tells which partners this gateway exchanges
// with and how fast their logs grow, so it goes only to auditors of the
// own administration (all of it) and to the partner gateways configured
// as peers of this one (all but the caller's own log, which it knows);
// agencies, and gateways that are not peers, get none. Never records.
func (s *auditServer) gossip(ctx context.Context, full bool, who identity.ID) []string {
	a := s.g.alog
	if a.witnessed == nil {
		return nil
	}
	if !full {
		if _, peer := s.g.peers.addrs[who.TrustDomain]; who.Kind != identity.KindGateway || !peer {
			return nil
		}
	}
	var out []string
	for _, d := range slices.Sorted(maps.Keys(a.verifiers)) {
		if !full && d == who.TrustDomain {
			continue
		}
		msg, err := a.witnessed.LastWitnessed(ctx, audit.Origin(d))
		if errors.Is(err, audit.ErrNoCheckpoint) {
			continue
		}
		if err != nil {
			s.g.log.Warn("witnessed checkpoint unreadable; not gossiped", "partner", d, "error", err)
			continue
		}
		a.mu.Lock()
		cosigned := a.cosigned[d]
		a.mu.Unlock()
		if cosigned != nil && bytes.HasPrefix(cosigned, msg) {
			msg = cosigned
		}
		out = append(out, string(msg))
	}
	return out
}

// signedSize refuses a partner's proof at a tree size this gateway never
// signed a checkpoint for. A proof holds leaf hashes at the edges of its
// trees — a consistency proof from n to n+1 holds leaf n's hash — and a
// partner that could pick the sizes could collect the leaf hashes of
// records that are not its own, as from tiles (GetTile). Witnesses and
// audit reconcile only ask between checkpoints.
func (s *auditServer) signedSize(ctx context.Context, size int64) error {
	cs, ok := s.g.opts.Store.(cosigStore)
	if !ok {
		return status.Error(codes.PermissionDenied, "only auditors of this administration may ask for proofs from this gateway's store")
	}
	_, err := cs.AuditCheckpoint(ctx, size)
	if errors.Is(err, audit.ErrNoCheckpoint) {
		return status.Errorf(codes.FailedPrecondition, "no checkpoint of size %d was signed: partners may ask for proofs between signed checkpoints only", size)
	}
	if err != nil {
		return s.internal("checkpoint", err)
	}
	return nil
}

// treeSize resolves a requested size: 0 is the latest checkpoint's.
func (s *auditServer) treeSize(ctx context.Context, ls logStore, size uint64) (int64, error) {
	if size == 0 {
		n, _, err := ls.LatestAuditCheckpoint(ctx)
		if errors.Is(err, audit.ErrNoCheckpoint) {
			return 0, status.Error(codes.NotFound, "no checkpoint signed yet")
		}
		if err != nil {
			return 0, s.internal("checkpoint", err)
		}
		return n, nil
	}
	n, err := ls.AuditTreeSize(ctx)
	if err != nil {
		return 0, s.internal("tree size", err)
	}
	if size > uint64(n) {
		return 0, status.Errorf(codes.OutOfRange, "tree size %d is larger than the log (%d)", size, n)
	}
	return int64(size), nil
}

func (s *auditServer) GetInclusionProof(ctx context.Context, req *blv1.GetInclusionProofRequest) (*blv1.GetInclusionProofResponse, error) {
	full, who, ls, err := s.access(ctx)
	if err != nil {
		return nil, err
	}
	size, err := s.treeSize(ctx, ls, req.GetTreeSize())
	if err != nil {
		return nil, err
	}
	if req.GetIndex() >= uint64(size) {
		return nil, status.Errorf(codes.OutOfRange, "index %d is not in a tree of size %d", req.GetIndex(), size)
	}
	if !full && req.GetTreeSize() != 0 {
		if err := s.signedSize(ctx, size); err != nil {
			return nil, err
		}
	}
	index := int64(req.GetIndex())
	if _, _, err := s.leaf(ctx, full, who, ls, index); err != nil {
		return nil, err
	}
	r := audit.HashReader(ctx, ls)
	proof, err := proveRecord(size, index, r)
	if err != nil {
		return nil, s.internal("inclusion proof", err)
	}
	lh, err := r.ReadHashes([]int64{storedLeafIndex(index)})
	if err != nil {
		return nil, s.internal("inclusion proof", err)
	}
	return &blv1.GetInclusionProofResponse{TreeSize: uint64(size), LeafHash: lh[0][:], Hashes: hashBytes(proof)}, nil
}

func (s *auditServer) GetConsistencyProof(ctx context.Context, req *blv1.GetConsistencyProofRequest) (*blv1.GetConsistencyProofResponse, error) {
	full, _, ls, err := s.access(ctx)
	if err != nil {
		return nil, err
	}
	size, err := s.treeSize(ctx, ls, req.GetNewSize())
	if err != nil {
		return nil, err
	}
	if req.GetOldSize() == 0 {
		return nil, status.Error(codes.InvalidArgument, "old_size must be at least 1 (every tree extends the empty one)")
	}
	if req.GetOldSize() > uint64(size) {
		return nil, status.Errorf(codes.OutOfRange, "old size %d is larger than new size %d", req.GetOldSize(), size)
	}
	if !full {
		for _, n := range []int64{int64(req.GetOldSize()), size} {
			if err := s.signedSize(ctx, n); err != nil {
				return nil, err
			}
		}
	}
	proof, err := proveTree(size, int64(req.GetOldSize()), audit.HashReader(ctx, ls))
	if err != nil {
		return nil, s.internal("consistency proof", err)
	}
	return &blv1.GetConsistencyProofResponse{OldSize: req.GetOldSize(), NewSize: uint64(size), Hashes: hashBytes(proof)}, nil
}

func (s *auditServer) GetLeaves(ctx context.Context, req *blv1.GetLeavesRequest) (*blv1.GetLeavesResponse, error) {
	full, _, ls, err := s.access(ctx)
	if err != nil {
		return nil, err
	}
	if err := auditorOnly(full); err != nil {
		return nil, err
	}
	count := int64(req.GetCount())
	if count == 0 {
		count = 1000
	}
	if req.GetStart() > 1<<62 {
		return nil, status.Error(codes.InvalidArgument, "start out of range")
	}
	leaves, err := ls.AuditLeaves(ctx, int64(req.GetStart()), min(count, 10000))
	if err != nil {
		return nil, s.internal("leaves", err)
	}
	return &blv1.GetLeavesResponse{Start: req.GetStart(), Leaves: leaves}, nil
}

// GetTile serves the log as C2SP tlog-tiles, for the tree of the latest
// checkpoint, to auditors of this administration only. Entry bundles are
// the leaves themselves — every partner's records and our policy inputs.
// Hash tiles are no safer for partners: level 0 holds the leaf hash of
// every record, and a partner knows every field of our records of our
// calls to it but the caller and the time, few enough guesses to find by
// hashing which of our systems asked. Partners prove their own records
// with GetInclusionProof and GetConsistencyProof.
func (s *auditServer) GetTile(ctx context.Context, req *blv1.GetTileRequest) (*blv1.GetTileResponse, error) {
	full, _, ls, err := s.access(ctx)
	if err != nil {
		return nil, err
	}
	if !full {
		return nil, status.Error(codes.PermissionDenied, "tiles hold every record's leaf hash (entry bundles: every record): only auditors of this administration may read them; partners prove their own records with GetInclusionProof and GetConsistencyProof")
	}
	tile, err := audit.ParseTilePath(req.GetPath())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "path %q: %v", req.GetPath(), err)
	}
	size, err := s.treeSize(ctx, ls, 0)
	if err != nil {
		return nil, err
	}
	if !audit.TileInTree(tile, size) {
		return nil, status.Errorf(codes.NotFound, "%s is not in the tree of the latest checkpoint (size %d)", req.GetPath(), size)
	}
	if tile.L >= 0 {
		data, err := tlog.ReadTileData(tile, audit.HashReader(ctx, ls))
		if err != nil {
			return nil, s.internal("tile", err)
		}
		return &blv1.GetTileResponse{Data: data}, nil
	}
	start := tile.N << audit.TileHeight
	leaves, err := ls.AuditLeaves(ctx, start, int64(tile.W))
	if err != nil {
		return nil, s.internal("entry bundle", err)
	}
	if len(leaves) != tile.W {
		return nil, s.internal("entry bundle", fmt.Errorf("%d leaves from index %d, want %d", len(leaves), start, tile.W))
	}
	data, err := audit.EntryBundle(leaves)
	if err != nil {
		// C2SP frames entries with 16-bit lengths; GetLeaves has no limit.
		return nil, status.Errorf(codes.FailedPrecondition, "%s: %v; read these leaves with GetLeaves", req.GetPath(), err)
	}
	return &blv1.GetTileResponse{Data: data}, nil
}

func proveRecord(size, index int64, r tlog.HashReader) (tlog.RecordProof, error) {
	return tlog.ProveRecord(size, index, r)
}

func proveTree(size, old int64, r tlog.HashReader) (tlog.TreeProof, error) {
	return tlog.ProveTree(size, old, r)
}

func storedLeafIndex(index int64) int64 { return tlog.StoredHashIndex(0, index) }

func hashBytes(hs []tlog.Hash) [][]byte {
	out := make([][]byte, len(hs))
	for i := range hs {
		out[i] = hs[i][:]
	}
	return out
}

// witnessPartners witnesses every partner with an address and an audit
// key once (audit.Witness). A split view is logged as an error and its
// evidence kept (keepSplitView); an unreachable partner or an empty log
// is only a warning. A larger checkpoint the partner does not prove
// consistent is kept and asked about again every round
// (trackUnprovenWitness). The accepted checkpoint is cosigned when it is
// new, or not yet handed over with this gateway's current cosigner key
// (cosignAccepted). Then gossip left unproven is asked about again
// (retryUnprovenGossip).
//
// ctx is done only when the gateway shuts down. Each partner's work in a
// round — fetch, proof, cosignature, retries, the checks of the gossip it
// sent — runs under a budget of WitnessBudgetTimeouts × Limits.PeerTimeout
// (witnessBudget, derived from ctx), and every call to a partner has its
// own Limits.PeerTimeout within it (auditSource, cosign): a partner that
// stalls one call — a consistency proof above all — does not use up the
// time of the calls after it, a partner (or a witness gossiping about a
// stalled one) cannot hold up the witnessing of the others for longer
// than its budget, and a stalled proof is unproven (kept, asked again,
// reported after GossipUnprovenRounds rounds), not skipped as if the
// gateway were shutting down. Work the budget leaves undone is done in a
// later round.
func (g *Gateway) witnessPartners(ctx context.Context) {
	for _, d := range g.peers.domains() {
		if ctx.Err() != nil {
			return
		}
		v, ok := g.alog.verifiers[d]
		if !ok {
			continue
		}
		client, err := g.peers.audit(d)
		if err != nil {
			continue
		}
		pctx, cancel := g.witnessBudget(ctx)
		g.witnessPartner(pctx, d, v, client)
		cancel()
	}
	g.retryUnprovenGossip(ctx)
}

// WitnessBudgetTimeouts is how many Limits.PeerTimeout one partner's
// witnessing work in a round may take in all (witnessPartners).
const WitnessBudgetTimeouts = 2

// errWitnessBudget is the cause of a partner's witnessing context
// (witnessBudget) ending when its budget for the round is used up.
var errWitnessBudget = errors.New("the partner's witnessing budget for this round is used up")

// witnessBudget derives from the round's ctx the context of one
// partner's witnessing work: done after WitnessBudgetTimeouts ×
// Limits.PeerTimeout (cause errWitnessBudget), or when ctx is.
func (g *Gateway) witnessBudget(ctx context.Context) (context.Context, context.CancelFunc) {
	t := g.opts.Limits.PeerTimeout
	if t <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeoutCause(ctx, WitnessBudgetTimeouts*t, errWitnessBudget)
}

// shuttingDown tells whether a partner's witnessing context (witnessBudget)
// is done because the gateway shuts down, not because the budget is used up.
func shuttingDown(ctx context.Context) bool {
	return ctx.Err() != nil && !errors.Is(context.Cause(ctx), errWitnessBudget)
}

// witnessPartner is one partner's witnessing work in a round; ctx holds
// its budget (witnessBudget). A proof the budget cuts short is unproven,
// like one the partner stalls past its own PeerTimeout; the steps the
// budget leaves no time for are skipped, and done in a later round.
func (g *Gateway) witnessPartner(ctx context.Context, d string, v note.Verifier, client blv1.AuditClient) {
	src := g.auditSource(client)
	w, werr := audit.Witness(ctx, src, v, g.alog.witnessed, time.Now())
	err := werr
	if err == nil && g.alog.cosigner != nil && ctx.Err() == nil {
		err = g.cosignAccepted(ctx, d, client, w)
	}
	// The partner's own checkpoints first, then what it gossips.
	tracked := g.trackUnprovenWitness(ctx, d, v, client, w, werr)
	g.checkGossip(ctx, d, src.gossip)
	switch {
	case errors.Is(err, audit.ErrSplitView):
		g.log.Error("SPLIT VIEW: partner audit log is not consistent with what it showed before", "partner", d, "error", err)
		g.keepSplitView(ctx, d, "", err)
	case status.Code(err) == codes.NotFound:
		// The partner has not signed a checkpoint yet.
	case tracked:
		// Logged by trackUnprovenWitness.
	case err != nil && !shuttingDown(ctx):
		g.log.Warn("witnessing partner audit log failed", "partner", d, "error", err)
	case w.New:
		g.log.Debug("partner audit checkpoint witnessed", "partner", d, "size", w.Size)
	}
	if ctx.Err() != nil && !shuttingDown(ctx) {
		g.log.Debug("partner witnessing budget used up; the rest is done next round", "partner", d,
			"budget", WitnessBudgetTimeouts*g.opts.Limits.PeerTimeout)
	}
}

// trackUnprovenWitness keeps the checkpoint a partner showed this
// gateway in this round's audit.Witness (w, werr) when the partner did
// not prove it consistent with the one accepted (audit.ErrWitnessUnproven),
// and asks again about the one kept from earlier rounds: Proven, it is
// dropped (and accepted and cosigned when it is larger than the accepted
// one); a proof that fails is a split view, kept as evidence; still
// unproven after GossipUnprovenRounds rounds in a row, it is logged at
// error level every round (WITNESS UNPROVEN) and counted in
// borderlink_audit_witness_unproven until the partner proves it. One is
// kept per partner, the first: showing another checkpoint does not clear
// it. When this round's Witness already asked about the kept checkpoint
// (the partner still shows it), its answer counts and nothing is asked
// twice. It reports whether it logged werr itself.
func (g *Gateway) trackUnprovenWitness(ctx context.Context, d string, v note.Verifier, client blv1.AuditClient, w audit.Witnessed, werr error) (logged bool) {
	a := g.alog
	unproven := errors.Is(werr, audit.ErrWitnessUnproven)
	if shuttingDown(ctx) {
		return unproven
	}
	a.mu.Lock()
	u := a.witnessUnproven[d]
	if u == nil && unproven {
		a.witnessUnproven[d] = &unprovenWitness{note: w.Note, checkpoint: w.Checkpoint, accepted: w.Accepted.Size, rounds: 1}
	}
	a.mu.Unlock()
	if u == nil {
		if unproven {
			g.log.Warn("partner did not prove its audit checkpoint consistent with the one accepted from it; not accepted, asking again every round",
				"partner", d, "origin", w.Origin, "accepted_size", w.Accepted.Size, "size", w.Size, "error", werr)
		}
		return unproven
	}

	// This round's Witness asked about the kept checkpoint itself (the
	// partner still shows it): its answer counts, and it logged any
	// error but an unproven one.
	asked := w.Checkpoint == u.checkpoint
	res, err := w, werr
	if !asked {
		if ctx.Err() != nil {
			// The partner's budget is used up: asked next round.
			return false
		}
		// The proof has its own PeerTimeout (auditSource), within the
		// partner's budget (ctx): one the partner stalls past either is
		// unproven, like one it refuses.
		res, err = audit.RetryWitness(ctx, g.auditSource(client), v, a.witnessed, u.note, time.Now())
		// A cosignature the budget leaves no time for is handed over
		// next round (cosignAccepted).
		if err == nil && res.New && a.cosigner != nil && ctx.Err() == nil {
			if cerr := g.cosign(ctx, d, client, res.Note); cerr != nil && ctx.Err() == nil {
				g.log.Warn("witnessing partner audit log failed", "partner", d, "error", cerr)
			}
		}
		if shuttingDown(ctx) {
			return false
		}
		if err != nil && ctx.Err() != nil && !errors.Is(err, audit.ErrWitnessUnproven) && !errors.Is(err, audit.ErrSplitView) {
			// Not asked (the store read failed as the budget ran
			// out): asked next round.
			return false
		}
	}
	stillUnproven := errors.Is(err, audit.ErrWitnessUnproven)
	a.mu.Lock()
	switch {
	case err == nil, errors.Is(err, audit.ErrSplitView), errors.Is(err, audit.ErrVerify):
		// Proven consistent (accepted if larger); or a split view, kept
		// below; or no longer signed with the partner's current key (it
		// rotated), which says nothing about it.
		delete(a.witnessUnproven, d)
	case stillUnproven:
		u.rounds++
		u.accepted = res.Accepted.Size
	}
	rounds, accepted := u.rounds, u.accepted
	a.mu.Unlock()
	switch {
	case err == nil:
		g.log.Info("partner proved its audit checkpoint consistent with the one accepted from it", "partner", d, "origin", u.checkpoint.Origin,
			"size", u.checkpoint.Size, "accepted", res.New, "unproven_rounds", rounds)
	case asked && !stillUnproven:
		// A split view or another failure of this round's Witness: the
		// caller logs it (and keeps the evidence).
	case errors.Is(err, audit.ErrSplitView):
		g.log.Error("SPLIT VIEW: partner audit log is not consistent with what it showed before", "partner", d, "error", err)
		g.keepSplitView(ctx, d, "", err)
	case stillUnproven && rounds >= GossipUnprovenRounds:
		g.log.Error("WITNESS UNPROVEN: partner has not proved its audit log consistent with a checkpoint it showed this gateway",
			"partner", d, "origin", u.checkpoint.Origin, "accepted_size", accepted, "size", u.checkpoint.Size, "rounds", rounds, "error", err)
	case stillUnproven:
		g.log.Warn("partner still has not proved its audit checkpoint consistent with the one accepted from it",
			"partner", d, "origin", u.checkpoint.Origin, "accepted_size", accepted, "size", u.checkpoint.Size, "rounds", rounds, "error", err)
	default:
		g.log.Warn("witnessing partner audit log failed", "partner", d, "error", err)
	}
	return asked && unproven
}

// checkGossip compares the partner checkpoints a witness gossiped with
// its own (audit.CheckGossip) with those this gateway accepted itself: a
// partner that showed the gossiping witness another tree is caught here,
// though this gateway never saw that tree. Gossip about this gateway's own
// log, about the witness itself, or about logs that are not of this
// gateway's partners (it has no key for them) is skipped. Of the rest
// only one checkpoint per partner is checked, the largest: a witness
// that sends many checkpoints of a partner (that stalls its proofs)
// cannot have this gateway ask about each of them every round. Gossip
// kept as unproven already is skipped too: retryUnprovenGossip asks
// about it this round. ctx is the gossiping witness's witnessing context
// (witnessBudget): done when the gateway shuts down or the witness's
// budget for the round is used up, which leaves the rest for the next
// round. Each proof has its own PeerTimeout (auditSource) within the
// budget; one the partner stalls past either is unproven.
func (g *Gateway) checkGossip(ctx context.Context, witness string, gossip []string) {
	largest := map[string]audit.Checkpoint{}
	notes := map[string]string{}
	for _, msg := range gossip {
		body, err := audit.CheckpointText([]byte(msg))
		if err != nil {
			continue
		}
		c, err := audit.ParseCheckpoint(body)
		if err != nil {
			continue
		}
		d, ok := strings.CutSuffix(c.Origin, "/borderlink/audit")
		_, known := g.alog.verifiers[d]
		if !ok || !known || d == witness || d == g.self {
			continue
		}
		if l, seen := largest[d]; seen && l.Size >= c.Size {
			continue
		}
		largest[d], notes[d] = c, msg
	}
	if ignored := len(gossip) - len(notes); ignored > 0 {
		g.log.Debug("witness gossip ignored: only the largest checkpoint of each partner is checked", "witness", witness,
			"gossiped", len(gossip), "checked", len(notes), "ignored", ignored)
	}
	for _, d := range slices.Sorted(maps.Keys(notes)) {
		msg, v := notes[d], g.alog.verifiers[d]
		if ctx.Err() != nil {
			return // shutting down, or the budget is used up: next round
		}
		g.alog.mu.Lock()
		kept := g.alog.unproven[d]
		g.alog.mu.Unlock()
		if kept != nil && bytes.Equal(kept.note, []byte(msg)) {
			continue
		}
		// The partner itself must prove sizes that differ consistent.
		var src audit.WitnessSource
		if client, err := g.peers.audit(d); err == nil {
			src = g.auditSource(client)
		}
		err := audit.CheckGossip(ctx, src, v, g.alog.witnessed, []byte(msg))
		switch {
		case errors.Is(err, audit.ErrSplitView):
			g.log.Error("SPLIT VIEW: partner audit log is not consistent with what another witness was shown", "partner", d, "witness", witness, "error", err)
			g.keepSplitView(ctx, d, witness, err)
		case shuttingDown(ctx):
			return
		case ctx.Err() != nil && !errors.Is(err, audit.ErrGossipUnproven):
			return // not asked: the budget is used up; next round
		case errors.Is(err, audit.ErrGossipUnproven):
			// Kept and asked again every round (retryUnprovenGossip):
			// a partner that forked could refuse the proof for good.
			g.alog.mu.Lock()
			if _, ok := g.alog.unproven[d]; !ok {
				g.alog.unproven[d] = &unprovenGossip{note: []byte(msg), witness: witness}
				g.log.Warn("witness gossip not proven consistent by the partner; asking again every round", "partner", d, "witness", witness, "error", err)
			}
			g.alog.mu.Unlock()
		case err != nil:
			g.log.Warn("checking witness gossip failed", "partner", d, "witness", witness, "error", err)
		}
	}
}

// retryUnprovenGossip asks each partner again to prove the gossiped
// checkpoint of its log kept as unproven consistent with the one this
// gateway accepted. Proven, it is dropped; a proof that fails is a split
// view; still unproven after GossipUnprovenRounds rounds in a row, it is
// logged at error level every round and counted in
// borderlink_audit_gossip_unproven until the partner proves it.
func (g *Gateway) retryUnprovenGossip(ctx context.Context) {
	a := g.alog
	a.mu.Lock()
	pending := maps.Clone(a.unproven)
	a.mu.Unlock()
	for _, d := range slices.Sorted(maps.Keys(pending)) {
		if ctx.Err() != nil {
			return
		}
		u := pending[d]
		v, ok := a.verifiers[d]
		if !ok {
			continue
		}
		var src audit.WitnessSource
		if client, err := g.peers.audit(d); err == nil {
			src = g.auditSource(client)
		}
		// The proof has its own PeerTimeout (auditSource), within a
		// budget for the partner (witnessBudget): a stalled one is
		// unproven; only a shutdown (ctx) skips the rest.
		pctx, cancel := g.witnessBudget(ctx)
		err := audit.CheckGossip(pctx, src, v, a.witnessed, u.note)
		cancel()
		if ctx.Err() != nil {
			return
		}
		a.mu.Lock()
		switch {
		case err == nil, errors.Is(err, audit.ErrSplitView), errors.Is(err, audit.ErrVerify):
			// Proven consistent; or a split view, kept below; or no
			// longer signed with the partner's current key (it
			// rotated), which says nothing about it.
			delete(a.unproven, d)
		case errors.Is(err, audit.ErrGossipUnproven):
			u.rounds++
		}
		rounds := u.rounds
		a.mu.Unlock()
		switch {
		case errors.Is(err, audit.ErrSplitView):
			g.log.Error("SPLIT VIEW: partner audit log is not consistent with what another witness was shown", "partner", d, "witness", u.witness, "error", err)
			g.keepSplitView(ctx, d, u.witness, err)
		case errors.Is(err, audit.ErrGossipUnproven) && rounds >= GossipUnprovenRounds:
			g.log.Error("GOSSIP UNPROVEN: partner has not proved its audit log consistent with what another witness was shown", "partner", d, "witness", u.witness, "rounds", rounds, "error", err)
		case err != nil && !errors.Is(err, audit.ErrGossipUnproven):
			g.log.Warn("checking witness gossip failed", "partner", d, "witness", u.witness, "error", err)
		}
	}
}

// unprovenReported tells, per witnessed partner, whether a gossiped
// checkpoint of its log (gossip; borderlink_audit_gossip_unproven) and
// whether a checkpoint it showed this gateway itself (direct;
// borderlink_audit_witness_unproven) has stayed unproven for
// GossipUnprovenRounds rounds or more.
func (a *auditLog) unprovenReported() (gossip, direct map[string]bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	gossip, direct = map[string]bool{}, map[string]bool{}
	for d, u := range a.unproven {
		gossip[d] = u.rounds >= GossipUnprovenRounds
	}
	for d, u := range a.witnessUnproven {
		direct[d] = u.rounds >= GossipUnprovenRounds
	}
	return gossip, direct
}

// splitViewStore keeps the evidence of split views (audit_split_views).
type splitViewStore interface {
	PutSplitView(ctx context.Context, sv audit.SplitView, at time.Time) (isNew bool, err error)
	SplitViewCounts(ctx context.Context) (map[string]audit.SplitViewTally, error)
	SplitViewsAfter(ctx context.Context, origin string, afterID int64, limit int) ([]audit.KeptSplitView, error)
}

// ListSplitViews serves the kept split-view evidence to auditors of this
// administration. Partners are refused: evidence about one partner is
// not another's to read (and the partner it is about signed it anyway).
func (s *auditServer) ListSplitViews(ctx context.Context, req *blv1.ListSplitViewsRequest) (*blv1.ListSplitViewsResponse, error) {
	full, _, _, err := s.access(ctx)
	if err != nil {
		return nil, err
	}
	if err := auditorOnly(full); err != nil {
		return nil, err
	}
	ss, ok := s.g.opts.Store.(splitViewStore)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "this gateway's store does not keep split-view evidence")
	}
	if req.GetAfterId() > 1<<62 {
		return nil, status.Error(codes.InvalidArgument, "after_id out of range")
	}
	limit := int(req.GetLimit())
	if limit == 0 {
		limit = 100
	}
	views, err := ss.SplitViewsAfter(ctx, req.GetOrigin(), int64(req.GetAfterId()), min(limit, 1000))
	if err != nil {
		return nil, s.internal("split views", err)
	}
	resp := &blv1.ListSplitViewsResponse{}
	for _, v := range views {
		resp.SplitViews = append(resp.SplitViews, &blv1.SplitView{
			Id: uint64(v.ID), Origin: v.Origin, AcceptedCheckpoint: string(v.AcceptedNote), ConflictingCheckpoint: string(v.ConflictingNote),
			Reason: v.Reason, Detection: v.Detection, Witness: v.Witness,
			FirstSeen: timestamppb.New(v.FirstSeen), LastSeen: timestamppb.New(v.LastSeen), Count: uint64(v.Count),
			LatestAcceptedCheckpoint: string(v.Latest.AcceptedNote), LatestConflictingCheckpoint: string(v.Latest.ConflictingNote), LatestReason: v.Latest.Reason,
		})
	}
	return resp, nil
}

// splitViewStoreTimeout bounds keeping one piece of evidence.
const splitViewStoreTimeout = 5 * time.Second

// keepSplitView stores the evidence a split-view error carries (both
// checkpoints as the partner signed them), one row per incident (origin,
// detection, witness: a later detection bumps its count and latest pair),
// for `audit split-views` and the borderlink_audit_split_views metric;
// witness names the gateway whose gossip carried the conflicting
// checkpoint ("" for direct detection). The detection was already
// logged: a store that fails is logged too, and the next witnessing
// round, which detects the split view again, retries.
func (g *Gateway) keepSplitView(ctx context.Context, partner, witness string, err error) {
	var sv *audit.SplitViewError
	ss, ok := g.opts.Store.(splitViewStore)
	if !ok || !errors.As(err, &sv) {
		return
	}
	if sv.Detection == audit.DetectedGossip {
		sv.Witness = witness
	}
	// Not under the round's peer deadline, nor cancelled by a shutdown:
	// evidence found is worth the few milliseconds of a write.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), splitViewStoreTimeout)
	defer cancel()
	isNew, perr := ss.PutSplitView(ctx, sv.SplitView, time.Now())
	if perr != nil {
		g.log.Error("split view evidence not stored; the next witnessing round retries", "partner", partner, "error", perr)
		return
	}
	if isNew {
		g.log.Warn("split view evidence stored; read it with borderlink audit split-views", "partner", partner,
			"detection", sv.Detection, "accepted_size", sv.Accepted.Size, "conflicting_size", sv.Conflicting.Size)
	}
}

// auditSource is a partner's Audit service as a witness source. It keeps
// the gossip served with the last checkpoint it fetched.
type auditSource struct {
	c blv1.AuditClient
	// timeout bounds each call on its own (Limits.PeerTimeout), within
	// the caller's context: a stalled call fails without using up the
	// time of the others.
	timeout time.Duration
	gossip  []string
}

// auditSource is client as a witness source whose calls each have
// Limits.PeerTimeout.
func (g *Gateway) auditSource(client blv1.AuditClient) *auditSource {
	return &auditSource{c: client, timeout: g.opts.Limits.PeerTimeout}
}

func (s *auditSource) call(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.timeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.timeout)
}

func (s *auditSource) Checkpoint(ctx context.Context) ([]byte, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	resp, err := s.c.GetCheckpoint(ctx, &blv1.GetCheckpointRequest{})
	if err != nil {
		return nil, err
	}
	s.gossip = resp.GetWitnessed()
	return []byte(resp.GetCheckpoint()), nil
}

func (s *auditSource) ConsistencyProof(ctx context.Context, old, n int64) (tlog.TreeProof, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	resp, err := s.c.GetConsistencyProof(ctx, &blv1.GetConsistencyProofRequest{OldSize: uint64(old), NewSize: uint64(n)})
	if err != nil {
		return nil, err
	}
	proof := make(tlog.TreeProof, len(resp.GetHashes()))
	for i, h := range resp.GetHashes() {
		if len(h) != tlog.HashSize {
			return nil, fmt.Errorf("consistency proof hash %d has %d bytes", i, len(h))
		}
		copy(proof[i][:], h)
	}
	return proof, nil
}

// cosignAccepted cosigns the checkpoint this round's audit.Witness
// accepted (w.New), or found unchanged when this gateway has not handed
// the partner a cosignature of it made with its current cosigner key yet
// (alog.handed): after the cosigner's key rotated (or the gateway
// restarted, or the hand-over failed) the partner's latest checkpoint
// gets a cosignature the current key verifies, though its log did not
// grow.
func (g *Gateway) cosignAccepted(ctx context.Context, partner string, c blv1.AuditClient, w audit.Witnessed) error {
	msg := w.Note
	if !w.New {
		a := g.alog
		a.mu.Lock()
		done := a.handed[partner] == cosigMark{size: w.Size, hash: w.Hash, keyHash: a.cosigner.KeyHash()}
		a.mu.Unlock()
		if done {
			return nil
		}
		// The accepted note as stored (and gossiped), which has the same
		// body as the one served now.
		last, err := a.witnessed.LastWitnessed(ctx, w.Origin)
		if err != nil {
			return err
		}
		msg = last
	}
	return g.cosign(ctx, partner, c, msg)
}

// cosign cosigns a witnessed partner checkpoint, hands the cosignature
// to the partner (with its own PeerTimeout) and keeps it for gossip.
func (g *Gateway) cosign(ctx context.Context, partner string, c blv1.AuditClient, msg []byte) error {
	body, err := audit.CheckpointText(msg)
	if err != nil {
		return err
	}
	cp, err := audit.ParseCheckpoint(body)
	if err != nil {
		return err
	}
	// The key hash before signing: if the cosigner rotates in between,
	// the mark names the older key and the next round cosigns again.
	mark := cosigMark{size: cp.Size, hash: cp.Hash, keyHash: g.alog.cosigner.KeyHash()}
	line, err := audit.Cosign(g.alog.cosigner, body)
	if err != nil {
		return err
	}
	cosigned := append(append([]byte{}, msg...), line...)
	g.alog.mu.Lock()
	g.alog.cosigned[partner] = cosigned
	g.alog.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, g.opts.Limits.PeerTimeout)
	defer cancel()
	if _, err := c.AddCosignature(ctx, &blv1.AddCosignatureRequest{Checkpoint: string(cosigned)}); err != nil {
		return fmt.Errorf("hand over cosignature: %w", err)
	}
	g.alog.mu.Lock()
	g.alog.handed[partner] = mark
	g.alog.mu.Unlock()
	return nil
}

func (s *auditServer) AddCosignature(ctx context.Context, req *blv1.AddCosignatureRequest) (*blv1.AddCosignatureResponse, error) {
	_, who, _, err := s.access(ctx)
	if err != nil {
		return nil, err
	}
	cs, ok := s.g.opts.Store.(cosigStore)
	wv, known := s.g.alog.cosigVerifiers[who.TrustDomain]
	switch {
	case !ok:
		return nil, status.Error(codes.Unimplemented, "this gateway's store does not keep cosignatures")
	case who.Kind != identity.KindGateway || !known:
		return nil, status.Error(codes.PermissionDenied, "only partner gateways with a configured audit key may cosign")
	}
	body, line, err := audit.OpenCosigned([]byte(req.GetCheckpoint()), wv)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	c, err := audit.ParseCheckpoint(body)
	if err != nil || c.Origin != s.g.alog.origin {
		return nil, status.Error(codes.InvalidArgument, "not a checkpoint of this gateway's log")
	}
	ours, err := cs.AuditCheckpoint(ctx, c.Size)
	if errors.Is(err, audit.ErrNoCheckpoint) {
		return nil, status.Errorf(codes.NotFound, "no checkpoint of size %d", c.Size)
	}
	if err != nil {
		return nil, s.internal("cosignature", err)
	}
	if t, err := audit.CheckpointText(ours); err != nil || t != body {
		return nil, status.Errorf(codes.InvalidArgument, "the cosigned checkpoint of size %d is not the one this gateway signed", c.Size)
	}
	// One per witness and checkpoint: made with another key than the one
	// stored (the witness rotated its key; wv is its current one), it
	// replaces it; made with the same key, it is ignored.
	if err := cs.PutCosignature(ctx, c.Size, wv.Name(), line, time.Now()); err != nil {
		return nil, s.internal("cosignature", err)
	}
	return &blv1.AddCosignatureResponse{}, nil
}

// withCosignatures appends the stored cosignature lines of a checkpoint.
func (s *auditServer) withCosignatures(ctx context.Context, msg []byte) []byte {
	cs, ok := s.g.opts.Store.(cosigStore)
	if !ok {
		return msg
	}
	body, err := audit.CheckpointText(msg)
	if err != nil {
		return msg
	}
	c, err := audit.ParseCheckpoint(body)
	if err != nil {
		return msg
	}
	lines, err := cs.Cosignatures(ctx, c.Size)
	if err != nil {
		s.g.log.Warn("cosignatures unreadable; serving the checkpoint without them", "error", err)
		return msg
	}
	out := append([]byte{}, msg...)
	for _, l := range lines {
		out = append(out, l...)
	}
	return out
}
