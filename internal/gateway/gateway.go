// Package gateway serves Borderlink's gRPC API and wires identity, policy,
// release, store and audit together.
//
// Guarantees:
//   - No handler runs for a peer whose certificate did not verify against
//     the bundle of the trust domain it claims (identity.ServerTLSConfig),
//     and each service admits only the caller kinds it is for (authorize).
//   - Every call that reaches a policy decision is written to the audit
//     trail before anything is returned; if the audit write fails the call
//     fails and nothing is released.
//   - Nothing leaves the gateway that the policy did not allow: releases are
//     built from an empty message by package release from the decision.
//   - Every allowed answer carries a receipt signed over its audit leaf, and
//     the consumer side hands on nothing whose receipt does not verify with
//     the partner's audit key (docs/audit.md).
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/borderlink/borderlink/internal/delivery"
	"github.com/borderlink/borderlink/internal/identity"
	"github.com/borderlink/borderlink/internal/policy"
	"github.com/borderlink/borderlink/internal/release"
	"github.com/borderlink/borderlink/internal/store"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// Store is what the gateway needs from its storage backend.
type Store interface {
	GetDeclaration(ctx context.Context, id string) (*blv1.Declaration, error)
	GetRiskAssessment(ctx context.Context, id string) (*blv1.RiskAssessment, error)
	SearchDeclarations(ctx context.Context, q store.DeclarationQuery, fn func(*blv1.Declaration) error) error
	PutRecords(ctx context.Context, decls []*blv1.Declaration, risks []*blv1.RiskAssessment) error
	AppendAudit(ctx context.Context, rec *blv1.AuditRecord) (uint64, error)
}

// Limits bound the cost of one call.
type Limits struct {
	SearchDefault int
	SearchMax     int
	PeerTimeout   time.Duration
	ShutdownGrace time.Duration
}

// Options configure a Gateway. All fields but Logger, Now and OnReject are
// required.
type Options struct {
	Self          string // own trust domain
	KeyPair       *identity.KeyPair
	Bundles       *identity.Bundles
	Store         Store
	Policy        *policy.Engine
	Pseudonymizer *release.Pseudonymizer
	// Peers maps partner trust domains to their gateway addresses.
	Peers    map[string]string
	Limits   Limits
	Logger   *slog.Logger
	Now      func() time.Time
	OnReject identity.RejectFunc
	// Audit configures the verifiable audit log (auditlog.go).
	Audit AuditOptions
	// CrashAt arms a crash point for fault-injection tests (crash.go).
	CrashAt *CrashPoint
	// Delivery tunes push delivery and the inbox.
	Delivery DeliveryOptions
}

// DeliveryOptions tune push delivery; zero values take the defaults.
type DeliveryOptions struct {
	// Lanes is how many alerts may be on their way to one partner at once.
	Lanes int
	// RetentionInterval is how often received alerts whose retention
	// ended are deleted; default one minute.
	RetentionInterval time.Duration
	// KeepSettled is how long delivered, refused and cancelled outbox
	// entries are kept before the retention job prunes them; default
	// seven days.
	KeepSettled time.Duration
}

// Gateway is one administration's gateway.
type Gateway struct {
	self   string
	opts   Options
	log    *slog.Logger
	now    func() time.Time
	peers  *peers
	limits *limiters
	server *grpc.Server
	health *health.Server
	alog   *auditLog
	// deliverer pushes queued alerts (nil when the store cannot queue).
	deliverer *delivery.Deliverer
	commits   *commits
	metrics   *metrics
	// stopping is closed when a graceful stop begins, so that long-lived
	// streams (subscriptions) end instead of holding it up.
	stopping chan struct{}
}

// RequestIDHeader carries the correlation ID both sides of an exchange
// record in their audit trails.
const RequestIDHeader = "borderlink-request-id"

// New checks the options and builds the gRPC server, whose stream workers
// run until Serve returns: a Gateway that is built must be served.
func New(opts Options) (*Gateway, error) {
	switch {
	case opts.Self == "":
		return nil, errors.New("gateway: Self (own trust domain) is required")
	case opts.KeyPair == nil, opts.Bundles == nil:
		return nil, errors.New("gateway: KeyPair and Bundles are required")
	case opts.Store == nil:
		return nil, errors.New("gateway: Store is required")
	case opts.Policy == nil:
		return nil, errors.New("gateway: Policy is required")
	case opts.Pseudonymizer == nil:
		return nil, errors.New("gateway: Pseudonymizer is required")
	}
	own, err := opts.KeyPair.ID()
	if err != nil {
		return nil, fmt.Errorf("gateway: own certificate: %w", err)
	}
	if want := identity.GatewayID(opts.Self); own != want {
		return nil, fmt.Errorf("gateway: own certificate names %s, want %s", own, want)
	}
	if !opts.Bundles.Has(opts.Self) {
		return nil, fmt.Errorf("gateway: no trust bundle for own trust domain %s", opts.Self)
	}
	if opts.Limits.SearchDefault <= 0 {
		opts.Limits.SearchDefault = 100
	}
	if opts.Limits.SearchMax <= 0 {
		opts.Limits.SearchMax = 1000
	}
	if opts.Limits.PeerTimeout <= 0 {
		opts.Limits.PeerTimeout = 10 * time.Second
	}
	if opts.Limits.ShutdownGrace <= 0 {
		opts.Limits.ShutdownGrace = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	g := &Gateway{
		self:     opts.Self,
		opts:     opts,
		log:      opts.Logger,
		now:      opts.Now,
		peers:    newPeers(opts.KeyPair, opts.Bundles, opts.Peers),
		limits:   newLimiters(),
		health:   health.NewServer(),
		commits:  newCommits(),
		stopping: make(chan struct{}),
	}
	if g.alog, err = newAuditLog(opts); err != nil {
		return nil, err
	}
	g.metrics = newMetrics(g)
	// A gateway without partners has nobody to push to; alerts it
	// publishes still queue and wait for a partner to be configured.
	if ds, ok := opts.Store.(deliveryStore); ok && len(opts.Peers) > 0 {
		g.deliverer, err = delivery.New(delivery.Options{
			Queue:    ds,
			Sender:   alertSender{g: g, ds: ds},
			Partners: g.peers.domains(),
			Lanes:    opts.Delivery.Lanes,
			// Backoff and breaker run on the real clock, whatever clock
			// decisions are made on.
			Logger: opts.Logger.With("component", "delivery"),
		})
		if err != nil {
			return nil, fmt.Errorf("gateway: delivery: %w", err)
		}
	}
	tlsConf := identity.ServerTLSConfig(opts.KeyPair, opts.Bundles, opts.Logger, opts.OnReject)
	g.server = grpc.NewServer(
		grpc.Creds(credentials.NewTLS(tlsConf)),
		// A goroutine per call starts with a small stack that policy
		// evaluation (deep recursion in OPA) grows by copying, every call
		// again: 11-16% of a pull's CPU in runtime.newstack in the bench's
		// profiles, 1-8% with workers. Workers keep their grown stacks;
		// when all are busy grpc-go starts a goroutine as before.
		grpc.NumStreamWorkers(streamWorkers()),
		grpc.ChainUnaryInterceptor(g.unaryInterceptor),
		grpc.ChainStreamInterceptor(g.streamInterceptor),
	)
	blv1.RegisterExchangeServer(g.server, &exchangeServer{g: g})
	blv1.RegisterLocalServer(g.server, &localServer{g: g})
	blv1.RegisterIngestServer(g.server, &ingestServer{g: g})
	blv1.RegisterAdminServer(g.server, &adminServer{g: g})
	blv1.RegisterAuditServer(g.server, &auditServer{g: g})
	healthpb.RegisterHealthServer(g.server, g.health)
	reflection.Register(g.server)
	return g, nil
}

// streamWorkers is how many goroutines serve calls: more than the calls in
// flight at a few thousand per second while each waits a few milliseconds
// for its audit record to be durable, so that the fallback (a goroutine of
// its own, growing its stack again) stays rare.
func streamWorkers() uint32 { return uint32(max(64, 32*runtime.GOMAXPROCS(0))) }

// Serve answers on lis until ctx is cancelled, then stops gracefully: new
// calls are refused, running calls get Limits.ShutdownGrace to finish.
func (g *Gateway) Serve(ctx context.Context, lis net.Listener) error {
	g.log.Info("gateway serving", "trust_domain", g.self, "address", lis.Addr().String(), "policy_revision", g.opts.Policy.Revision())
	if err := g.noteAuditKeyRotation(ctx); err != nil {
		// Not fatal: the checkpointer keeps the old key's checkpoint
		// until the log grows, which the next exchange does.
		g.log.Error("audit key rotation not recorded", "error", err)
	}
	stopCheckpoints := g.alog.start(ctx, g.witnessPartners)
	stopDelivery := g.startDelivery(ctx)
	defer stopDelivery()
	// The witness loop dials partners: stop it before closing the peer
	// connections, or it opens new ones that nobody closes.
	stopOnce := sync.OnceFunc(stopCheckpoints)
	defer stopOnce()
	errc := make(chan error, 1)
	go func() { errc <- g.server.Serve(lis) }()
	select {
	case err := <-errc:
		// Stop also ends the stream workers grpc.NewServer started and
		// the connections already accepted.
		g.server.Stop()
		stopDelivery()
		stopOnce()
		g.peers.close()
		return fmt.Errorf("serve %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}
	g.log.Info("gateway shutting down", "grace", g.opts.Limits.ShutdownGrace)
	g.health.Shutdown()
	close(g.stopping)
	done := make(chan struct{})
	go func() { g.server.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(g.opts.Limits.ShutdownGrace):
		g.log.Warn("grace period over, closing remaining calls")
		g.server.Stop()
		<-done
	}
	stopDelivery()
	stopOnce()
	g.peers.close()
	<-errc
	return nil
}

// Services a caller kind may use. Exchange is for partner gateways and
// agencies (the policy decides what they get); Local and Ingest only for
// the administration's own systems.
func (g *Gateway) authorize(ctx context.Context, fullMethod string) (context.Context, error) {
	id, err := identity.PeerFromContext(ctx)
	if err != nil {
		return ctx, status.Error(codes.Unauthenticated, "no verified client identity")
	}
	svc, _, _ := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	ok := false
	switch svc {
	case "borderlink.v1.Exchange":
		ok = id.Kind == identity.KindGateway || id.Kind == identity.KindAgency
	case "borderlink.v1.Local", "borderlink.v1.Ingest", "borderlink.v1.Admin":
		ok = id.Kind == identity.KindSystem && id.TrustDomain == g.self
	case "borderlink.v1.Audit": // auditServer narrows partners to their own records
		ok = id.Kind == identity.KindAuditor && id.TrustDomain == g.self || id.Kind == identity.KindGateway || id.Kind == identity.KindAgency
	case "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection":
		ok = true
	}
	if !ok {
		g.log.Warn("call refused: identity not admitted to service", "caller", id.String(), "method", fullMethod)
		return ctx, status.Errorf(codes.PermissionDenied, "%s may not call %s", id, svc)
	}
	return identity.NewContext(ctx, id), nil
}

func (g *Gateway) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	ctx, err := g.authorize(ctx, info.FullMethod)
	if err != nil {
		g.metrics.call(info.FullMethod, status.Code(err))
		return nil, err
	}
	resp, err := handler(ctx, req)
	g.logCall(ctx, info.FullMethod, start, err)
	return resp, err
}

func (g *Gateway) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	ctx, err := g.authorize(ss.Context(), info.FullMethod)
	if err != nil {
		g.metrics.call(info.FullMethod, status.Code(err))
		return err
	}
	err = handler(srv, &wrappedStream{ServerStream: ss, ctx: ctx})
	g.logCall(ctx, info.FullMethod, start, err)
	return err
}

func (g *Gateway) logCall(ctx context.Context, method string, start time.Time, err error) {
	id, _ := identity.FromContext(ctx)
	level := slog.LevelInfo
	code := status.Code(err)
	g.metrics.call(method, code)
	if code == codes.Internal || code == codes.Unknown || code == codes.DataLoss {
		level = slog.LevelError
	}
	g.log.LogAttrs(ctx, level, "call", slog.String("method", method), slog.String("caller", id.String()),
		slog.String("code", code.String()), slog.Duration("elapsed", time.Since(start)))
}

type wrappedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (w *wrappedStream) Context() context.Context { return w.ctx }

// caller returns the identity the interceptor verified. Handlers are only
// reachable through the interceptor, so a missing identity is a bug: deny.
func caller(ctx context.Context) (identity.ID, error) {
	id, ok := identity.FromContext(ctx)
	if !ok {
		return identity.ID{}, status.Error(codes.Unauthenticated, "no verified client identity")
	}
	return id, nil
}
