package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/delivery"
	"github.com/borderlink/borderlink/internal/devca"
	"github.com/borderlink/borderlink/internal/gateway"
	"github.com/borderlink/borderlink/internal/gen"
	"github.com/borderlink/borderlink/internal/identity"
	"github.com/borderlink/borderlink/internal/policy"
	"github.com/borderlink/borderlink/internal/release"
	"github.com/borderlink/borderlink/internal/store"
	"github.com/borderlink/borderlink/internal/store/sqlite"
	"github.com/borderlink/borderlink/policies"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// Goals of the push-delivery issue, checked as absolute numbers (the ratio
// against the bare call has no goal).
const (
	deliveryGoalRate  = 5000 // sustained delivered alerts/s
	deliveryGoalP99ms = 50   // p99 publish-to-receipt at deliveryGoalLoad, ms
	deliveryGoalLoad  = 1000 // offered alerts/s of the latency goal
)

// deliveryWait bounds how long one publisher waits for its alert's
// receipt; an alert not delivered by then is an error of its run (and the
// run then waits for the queue to drain, see settle).
const deliveryWait = 30 * time.Second

// deliveryDrainLimit bounds the wait for the outbox to empty after a run.
const deliveryDrainLimit = 60 * time.Second

// runDelivery is scenario 7: alerts published on nl's gateway
// (Ingest.PublishAlert: risk assessment and outbox entry in one
// transaction) and pushed by its deliverer to sg's gateway (Exchange.Deliver:
// inbox and audit record in one transaction, signed receipt), until nl has
// verified the receipt and recorded the delivery (ConfirmDelivery), against
// a bare grpc-go unary Deliver call carrying the same alert bytes.
func runDelivery(ctx context.Context, cfg *Config, dir string, p *pki, sc *Scenario) error {
	f, err := newDeliveryFixture(ctx, dir, p, cfg.Records, cfg.Conns)
	if err != nil {
		return err
	}
	defer f.close()
	startConfirmed := f.track.confirmed.Load()
	gwOp := f.publish
	bareReq := &blv1.DeliverRequest{Alert: f.alert}
	bareOp := func(ctx context.Context) error {
		_, err := f.bare.exchange().Deliver(ctx, bareReq)
		return err
	}
	sc.note("Two gateways in this process, built with `gateway.New` as `borderlink serve` builds them: nl.customs.example and sg.customs.example, each with its own CA (mutual TLS 1.3, SPIFFE IDs), SQLite file (WAL, synchronous=FULL), audit signing key (each knows the other's verifier key), the shipped policies, and the other as its only peer. nl stores %d generated declarations bound for SG; every op publishes a new risk assessment of one of them (score 0.91, so the shipped grant nl-to-sg-alerts entitles sg) through nl's Ingest.PublishAlert as spiffe://%s/system/bench over %d connection(s).",
		len(f.declIDs), provider, cfg.Conns)
	sc.note("One gateway op = PublishAlert (policy decision + release + risk assessment and outbox entry in one SQLite transaction) → nl's deliverer (%d lanes per partner) → sg's Exchange.Deliver (policy decision, inbox entry and audit record in one transaction, signed receipt) → nl verifies the receipt and commits the delivery with its audit record (ConfirmDelivery). The op ends, and its publish-to-receipt latency is taken, when the load generator sees that commit: the harness wraps nl's store and signals from ConfirmDelivery after it returns (an entry refused by sg fails its op at once). Only alerts whose delivery committed count; wake-up of the waiting publisher is included in the latency (pessimistic by microseconds).",
		delivery.DefaultLanes)
	sc.note("Alert on the wire: %d bytes (risk assessment released under nl-to-sg-alerts); receipt: %d bytes. Baseline: a bare grpc-go server (stdlib RequireAndVerifyClientCert, no identity, policy, store or audit) answering Exchange.Deliver with that receipt for that same alert, over one connection (a gateway keeps one connection per partner).",
		proto.Size(f.alert), len(f.receipt))

	warm(ctx, cfg, cfg.Concurrency, gwOp)
	if err := f.drain(ctx); err != nil {
		return err
	}
	warm(ctx, cfg, cfg.Concurrency, bareOp)

	res := map[string]*Result{}
	mk := func(target, key string, baseline bool, mode string, rate float64) *Result {
		unit := "alert"
		if baseline {
			unit = "call"
		}
		r := &Result{ID: "delivery/" + target + "/" + key, Target: target, Baseline: baseline, Mode: mode, Rate: rate, Unit: unit}
		if mode == "open" {
			r.Primary = "p99_us"
		}
		res[target+"/"+key] = r
		return r
	}
	interleave(ctx, cfg, sc,
		measurement{mk("gateway", "closed", false, "closed", 0), f.settle("gateway/closed", 0, closedLoop(cfg.Concurrency, cfg.dur(), gwOp))},
		measurement{mk("bare", "closed", true, "closed", 0), closedLoop(cfg.Concurrency, cfg.dur(), bareOp)})

	type rate struct {
		key string
		v   float64
	}
	var rates []rate
	// The configured rates: Full and Quick include the goal's 1,000/s;
	// Smoke does not (a backlog of a thousand alerts/s under the race
	// detector would take most of its time), nor may --rates.
	for _, v := range cfg.Rates {
		rates = append(rates, rate{fmt.Sprintf("%.0f", v), v})
	}
	knee := 1.0
	if g := res["gateway/closed"]; g != nil {
		knee = max(1, math.Round(cfg.KneeFactor*g.Median.Throughput))
	}
	rates = append(rates, rate{"knee", knee})
	for _, r := range rates {
		key := "open@" + r.key
		interleave(ctx, cfg, sc,
			measurement{mk("gateway", key, false, "open", r.v), f.settle("gateway/"+key, cfg.dur(), openLoop(r.v, cfg.dur(), gwOp))},
			measurement{mk("bare", key, true, "open", r.v), openLoop(r.v, cfg.dur(), bareOp)})
	}

	g, b := res["gateway/closed"], res["bare/closed"]
	sc.ratio(fmt.Sprintf("delivered alerts/s ÷ bare Deliver calls/s (closed loop, %d workers)", cfg.Concurrency), g, b, "throughput", "", 0, "")
	if g != nil && len(g.Runs) > 0 {
		sc.addRatio(fmt.Sprintf("sustained delivered alerts/s, end to end (closed loop, %d publishers; absolute)", cfg.Concurrency),
			g.Median.Throughput, g.Spread["throughput"], ">=", deliveryGoalRate, fmt.Sprintf("≥ %d/s", deliveryGoalRate))
	}
	goalKey := fmt.Sprintf("open@%d", deliveryGoalLoad)
	if r := res["gateway/"+goalKey]; r != nil && len(r.Runs) > 0 {
		p99 := r.Median.P99 / 1000
		if r.Median.Ops == 0 {
			// Nothing delivered within the publishers' wait: the p99 is at
			// least that wait (a finite number, so the JSON stays valid).
			p99 = float64(deliveryWait.Milliseconds())
		}
		sc.addRatio(fmt.Sprintf("p99 publish-to-receipt at %d alerts/s offered, ms (absolute; %.0f alerts/s delivered)", deliveryGoalLoad, r.Median.Throughput),
			p99, r.Spread["p99_us"], "<=", deliveryGoalP99ms, fmt.Sprintf("≤ %d ms", deliveryGoalP99ms))
	}
	if !slices.Contains(cfg.Rates, deliveryGoalLoad) {
		sc.note("The latency goal (p99 ≤ %d ms at %d alerts/s) was not checked: %d/s is not among this run's rates %v.", deliveryGoalP99ms, deliveryGoalLoad, deliveryGoalLoad, cfg.Rates)
	}
	sc.derived(fmt.Sprintf("p99 added latency at %d/s, ms (gateway publish-to-receipt p99 − bare call p99)", deliveryGoalLoad),
		res["gateway/"+goalKey], res["bare/"+goalKey], "p99_us", func(g, e float64) float64 { return (g - e) / 1000 }, "", 0, "")
	sc.ratio("CPU per op: delivered alert / bare call", g, b, "cpu_us_per_op", "", 0, "")

	for _, key := range f.drainKeys {
		ds := f.drains[key]
		if len(ds) == 0 {
			continue
		}
		sc.note("Drain, %s: after publishing stopped, the last receipt came %s (median of %d runs; max %s). It is inside the run's time, so the throughput above is delivered alerts ÷ (publishing + drain).",
			key, medianDuration(ds).Round(time.Millisecond), len(ds), slices.Max(ds).Round(time.Millisecond))
	}
	for _, n := range f.leftover {
		sc.note("%s", n)
	}
	sc.note("Knee: open-loop rate = %.1f × the gateway's closed-loop maximum (%.0f alerts/s); the bare call is offered the same rates. Open-loop latency is measured from each publish's intended start (no coordinated omission); arrivals beyond %d in flight count as errors.", cfg.KneeFactor, knee, maxOutstanding)

	err = profileScenario(ctx, cfg, sc, f.settle("profile", 0, closedLoop(cfg.Concurrency, cfg.dur(), gwOp)))
	if st, serr := f.nl.OutboxStats(ctx); serr == nil {
		var delivered, pending, refused uint64
		for _, s := range st {
			delivered += s.Count[store.OutboxDelivered]
			pending += s.Count[store.OutboxPending]
			refused += s.Count[store.OutboxRefused]
		}
		sc.note("Cross-check: nl's outbox holds %d delivered, %d pending and %d refused entries; the harness saw %d deliveries committed (%d during the measured, warm-up and profiled runs) and %d refusals.",
			delivered, pending, refused, f.track.confirmed.Load(), f.track.confirmed.Load()-startConfirmed, f.track.refused.Load())
	}
	return err
}

// deliveryFixture is the two gateways, the publishers' connections to nl
// and the bare baseline.
type deliveryFixture struct {
	nl      *trackedStore
	sg      *sqlite.Store
	track   *deliveryTracker
	pub     *clientPool // to nl, as spiffe://nl.customs.example/system/bench
	bare    *clientPool // to the bare server
	declIDs []string
	next    atomic.Uint64
	alert   *blv1.Alert // a delivered alert, as nl sent it
	receipt string      // sg's receipt for it
	closers []func()

	mu        sync.Mutex
	drains    map[string][]time.Duration
	drainKeys []string
	leftover  []string
}

func (f *deliveryFixture) close() {
	for i := len(f.closers) - 1; i >= 0; i-- {
		f.closers[i]()
	}
}

func newDeliveryFixture(ctx context.Context, dir string, p *pki, records, conns int) (_ *deliveryFixture, err error) {
	f := &deliveryFixture{track: newDeliveryTracker(), drains: map[string][]time.Duration{}}
	defer func() {
		if err != nil {
			f.close()
		}
	}()
	// Listeners first: each gateway needs the other's address.
	addrs := map[string]string{}
	lis := map[string]net.Listener{}
	for _, d := range []string{provider, recipient} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lis[d], addrs[d] = l, l.Addr().String()
		f.closers = append(f.closers, func() { l.Close() })
	}
	skeys, vkeys := map[string]string{}, map[string]string{}
	for _, d := range []string{provider, recipient} {
		if skeys[d], vkeys[d], err = audit.GenerateKey(audit.Origin(d)); err != nil {
			return nil, err
		}
	}
	sgCert, err := p.sgCA.IssueTLS(identity.GatewayID(recipient).String(), devca.LeafOptions{IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		return nil, err
	}
	nlStore, err := sqlite.Open(ctx, filepath.Join(dir, "nl.db"))
	if err != nil {
		return nil, err
	}
	f.closers = append(f.closers, func() { nlStore.Close() })
	f.nl = &trackedStore{Store: nlStore, t: f.track}
	if f.sg, err = sqlite.Open(ctx, filepath.Join(dir, "sg.db")); err != nil {
		return nil, err
	}
	f.closers = append(f.closers, func() { f.sg.Close() })

	// Declarations bound for SG, so the alerts about them are entitled.
	recs, err := gen.Generate(gen.Options{Domain: provider, Count: records, Seed: 7,
		Start: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), Partners: []string{"SG"}})
	if err != nil {
		return nil, err
	}
	var decls []*blv1.Declaration
	for _, r := range recs {
		if d := r.GetDeclaration(); d != nil {
			d.DestinationCountry = "SG"
			decls = append(decls, d)
			f.declIDs = append(f.declIDs, d.GetId())
		}
	}
	for chunk := range slices.Chunk(decls, 500) {
		if err := nlStore.PutRecords(ctx, chunk, nil); err != nil {
			return nil, err
		}
	}

	// sg first: nl's deliverer starts pushing as soon as nl serves.
	for _, side := range []struct {
		self, peer string
		kp         *identity.KeyPair
		st         gateway.Store
	}{
		{recipient, provider, identity.NewKeyPair(sgCert), f.sg},
		{provider, recipient, identity.NewKeyPair(p.server), f.nl},
	} {
		stop, err := serveDeliveryGateway(ctx, side.self, side.kp, p.bundles, side.st, lis[side.self],
			map[string]string{side.peer: addrs[side.peer]}, skeys[side.self], map[string]string{side.peer: vkeys[side.peer]})
		if err != nil {
			return nil, err
		}
		f.closers = append(f.closers, stop)
	}

	sys, err := p.nlCA.IssueTLS("spiffe://"+provider+"/system/bench", devca.LeafOptions{})
	if err != nil {
		return nil, err
	}
	if f.pub, err = newClientPool(ctx, addrs[provider], credentials.NewTLS(identity.ClientTLSConfig(identity.NewKeyPair(sys), p.bundles, identity.GatewayID(provider))), conns); err != nil {
		return nil, err
	}
	f.closers = append(f.closers, f.pub.close)

	// One delivery end to end, to prove the path works before anything is
	// timed, and to take the alert and receipt the baseline echoes.
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	id, err := f.publishID(cctx)
	if err != nil {
		return nil, fmt.Errorf("bench: first delivery: %w", err)
	}
	e, err := nlStore.GetOutbox(ctx, id)
	if err != nil {
		return nil, err
	}
	if e.State != store.OutboxDelivered || e.Receipt == "" {
		return nil, fmt.Errorf("bench: first delivery: outbox entry %s is %s (receipt %d bytes) after ConfirmDelivery returned", id, e.State, len(e.Receipt))
	}
	f.alert = &blv1.Alert{}
	if err := proto.Unmarshal(e.Alert, f.alert); err != nil {
		return nil, err
	}
	f.receipt = e.Receipt

	bare, err := serveBare(ctx, p, &bareDeliver{resp: &blv1.DeliverResponse{Receipt: f.receipt}})
	if err != nil {
		return nil, err
	}
	f.closers = append(f.closers, bare.stop)
	if f.bare, err = newClientPool(ctx, bare.addr, p.bareCreds(), 1); err != nil {
		return nil, err
	}
	f.closers = append(f.closers, f.bare.close)
	return f, nil
}

// serveDeliveryGateway starts one of the two gateways on lis, with peer as
// its only partner; stop shuts it down.
func serveDeliveryGateway(ctx context.Context, self string, kp *identity.KeyPair, bundles *identity.Bundles, st gateway.Store, lis net.Listener,
	peers map[string]string, skey string, peerKeys map[string]string) (stop func(), err error) {
	engine, err := policy.NewEngine(ctx, self, policies.FS, nil)
	if err != nil {
		return nil, err
	}
	pseud, err := release.NewPseudonymizer([]byte(fmt.Sprintf("%-32.32s", "borderlink-bench-"+self)))
	if err != nil {
		return nil, err
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, err
	}
	cosigner, err := audit.NewCosigner(skey, audit.WitnessName(self), nil)
	if err != nil {
		return nil, err
	}
	// New starts the stream workers that serve calls: they take the
	// profile labels of this goroutine.
	var g *gateway.Gateway
	pprof.Do(ctx, serverLabels, func(context.Context) {
		g, err = gateway.New(gateway.Options{
			Self: self, KeyPair: kp, Bundles: bundles, Store: st, Policy: engine, Pseudonymizer: pseud, Peers: peers,
			Logger: slog.New(slog.DiscardHandler), Limits: gateway.Limits{ShutdownGrace: 2 * time.Second},
			Audit: gateway.AuditOptions{Signer: signer, Cosigner: cosigner, PeerKeys: peerKeys},
		})
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go pprof.Do(ctx, serverLabels, func(ctx context.Context) {
		defer close(done)
		if err := g.Serve(ctx, lis); err != nil && !errors.Is(err, net.ErrClosed) {
			slog.Error("bench: gateway stopped", "trust_domain", self, "error", err)
		}
	})
	return func() { cancel(); <-done }, nil
}

// nextRisk is a new risk assessment (new ID, so each alert is its own
// record and the deliverer spreads them over its lanes) of one of the
// stored declarations bound for SG.
func (f *deliveryFixture) nextRisk() *blv1.RiskAssessment {
	n := f.next.Add(1)
	return &blv1.RiskAssessment{
		Id: fmt.Sprintf("NL-RA-BENCH-%09d", n), DeclarationId: f.declIDs[n%uint64(len(f.declIDs))],
		Score: 0.91, Level: blv1.RiskLevel_RISK_LEVEL_HIGH,
		Indicators: []*blv1.RiskIndicator{
			{Code: "R-ROUTE", Description: "routed through a transshipment hub", Weight: 0.5},
			{Code: "R-UNDERVAL", Description: "declared value far below the reference price", Weight: 0.41},
		},
		ModelName: gen.ModelName, ModelVersion: gen.ModelVersion,
		AssessedTime: timestamppb.New(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)),
	}
}

// publishID publishes one alert and waits until its delivery is committed.
func (f *deliveryFixture) publishID(ctx context.Context) (string, error) {
	risk := f.nextRisk()
	resp, err := f.pub.ingest().PublishAlert(ctx, &blv1.PublishAlertRequest{RiskAssessment: risk, Purpose: purpose})
	if err != nil {
		return "", err
	}
	q := resp.GetQueued()
	if len(q) != 1 || q[0].GetRecipient() != recipient {
		return "", fmt.Errorf("bench: alert %s queued as %v, want one delivery to %s", risk.GetId(), q, recipient)
	}
	id := q[0].GetMessageId()
	ctx, cancel := context.WithTimeout(ctx, deliveryWait)
	defer cancel()
	return id, f.track.wait(ctx, id)
}

// publish is the gateway op.
func (f *deliveryFixture) publish(ctx context.Context) error {
	_, err := f.publishID(ctx)
	return err
}

// pending counts nl's outbox entries not yet settled.
func (f *deliveryFixture) pending(ctx context.Context) (uint64, error) {
	st, err := f.nl.OutboxStats(ctx)
	if err != nil {
		return 0, err
	}
	var n uint64
	for _, s := range st {
		n += s.Count[store.OutboxPending]
	}
	return n, nil
}

// drain waits until nl's outbox has no pending entry.
func (f *deliveryFixture) drain(ctx context.Context) error {
	deadline := time.Now().Add(deliveryDrainLimit)
	for {
		n, err := f.pending(ctx)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: %d outbox entries still pending after %s", n, deliveryDrainLimit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// settle wraps a gateway load loop so that a run ends with an empty
// outbox: what the loop left pending (publishers that gave up waiting) is
// waited for, and the wait is added to the run's time, never dropped; the
// undelivered ops are already counted as errors. publishFor > 0 records,
// per key, how long after publishing stopped the run ended (the drain of
// an open loop).
func (f *deliveryFixture) settle(key string, publishFor time.Duration, loop func(context.Context) sample) func(context.Context) sample {
	return func(ctx context.Context) sample {
		s := loop(ctx)
		t0 := time.Now()
		n, err := f.pending(ctx)
		if err == nil && n > 0 {
			err = f.drain(ctx)
			s.elapsed += time.Since(t0)
			f.mu.Lock()
			f.leftover = append(f.leftover, fmt.Sprintf("Run of %s left %d alerts pending when its publishers stopped waiting; draining them took %s more, added to the run's time (result: %v).",
				key, n, time.Since(t0).Round(time.Millisecond), errString(err)))
			f.mu.Unlock()
		} else if err != nil {
			f.mu.Lock()
			f.leftover = append(f.leftover, fmt.Sprintf("Run of %s: outbox state unreadable after the run: %v", key, err))
			f.mu.Unlock()
		}
		if publishFor > 0 {
			f.mu.Lock()
			if _, ok := f.drains[key]; !ok {
				f.drainKeys = append(f.drainKeys, key)
			}
			f.drains[key] = append(f.drains[key], max(0, s.elapsed-publishFor))
			f.mu.Unlock()
		}
		return s
	}
}

func errString(err error) string {
	if err == nil {
		return "drained"
	}
	return err.Error()
}

func medianDuration(ds []time.Duration) time.Duration {
	v := make([]float64, len(ds))
	for i, d := range ds {
		v[i] = float64(d)
	}
	return time.Duration(median(v))
}

// trackedStore is nl's SQLite store with a hook: a committed delivery or
// refusal is signalled to the publisher waiting for it. Everything else is
// the store itself (methods promoted), so the gateway finds every
// interface it looks for.
type trackedStore struct {
	*sqlite.Store
	t *deliveryTracker
}

func (s *trackedStore) ConfirmDelivery(ctx context.Context, messageID, receipt string, rec *blv1.AuditRecord) (uint64, error) {
	seq, err := s.Store.ConfirmDelivery(ctx, messageID, receipt, rec)
	if err == nil {
		s.t.confirmed.Add(1)
		s.t.settle(messageID, nil)
	}
	return seq, err
}

func (s *trackedStore) RefuseDelivery(ctx context.Context, messageID, reason string, rec *blv1.AuditRecord) (uint64, error) {
	seq, err := s.Store.RefuseDelivery(ctx, messageID, reason, rec)
	if err == nil {
		s.t.refused.Add(1)
		s.t.settle(messageID, fmt.Errorf("bench: alert %s refused: %s", messageID, reason))
	}
	return seq, err
}

// deliveryTracker hands settlements to the publishers waiting for them. A
// settlement can commit before its publisher has even read the
// PublishAlert response (the deliverer is notified inside the call), so
// one that finds no waiter is kept until it is asked for.
type deliveryTracker struct {
	mu        sync.Mutex
	waiting   map[string]chan error
	early     map[string]error
	confirmed atomic.Int64
	refused   atomic.Int64
}

func newDeliveryTracker() *deliveryTracker {
	return &deliveryTracker{waiting: map[string]chan error{}, early: map[string]error{}}
}

func (t *deliveryTracker) settle(id string, err error) {
	t.mu.Lock()
	ch, ok := t.waiting[id]
	if ok {
		delete(t.waiting, id)
	} else {
		t.early[id] = err
	}
	t.mu.Unlock()
	if ok {
		ch <- err
	}
}

func (t *deliveryTracker) wait(ctx context.Context, id string) error {
	t.mu.Lock()
	if err, ok := t.early[id]; ok {
		delete(t.early, id)
		t.mu.Unlock()
		return err
	}
	ch := make(chan error, 1)
	t.waiting[id] = ch
	t.mu.Unlock()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		t.mu.Lock()
		delete(t.waiting, id)
		t.mu.Unlock()
		// Settled meanwhile? Then the answer is in ch.
		select {
		case err := <-ch:
			return err
		default:
		}
		return fmt.Errorf("bench: alert %s not delivered: %w", id, ctx.Err())
	}
}

// bareDeliver is the delivery baseline: grpc-go with plain mTLS answering
// Deliver with a fixed receipt, nothing checked or stored.
type bareDeliver struct {
	blv1.UnimplementedExchangeServer
	resp *blv1.DeliverResponse
}

func (b *bareDeliver) Deliver(context.Context, *blv1.DeliverRequest) (*blv1.DeliverResponse, error) {
	return b.resp, nil
}

func (cp *clientPool) ingest() blv1.IngestClient {
	return blv1.NewIngestClient(cp.conns[cp.next.Add(1)%uint64(len(cp.conns))])
}
