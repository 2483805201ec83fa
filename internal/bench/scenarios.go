package bench

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/gateway"
	"github.com/borderlink/borderlink/internal/identity"
	"github.com/borderlink/borderlink/internal/policy"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

func (c *Config) dur() time.Duration { return time.Duration(c.Duration) }

// auditGoalLoad is the rate at which the audit issue bounds the latency
// audit adds to an exchange (p99 ≤ 2 ms).
const auditGoalLoad = 500.0

// runPull is scenario 1: GetDeclaration through the whole provider path
// against an echo of the same response bytes.
func runPull(ctx context.Context, cfg *Config, dir string, p *pki, sc *Scenario) error {
	f, err := newPullFixture(ctx, dir, p, pullPayloads, cfg.Records, true, nil)
	if err != nil {
		return err
	}
	defer f.close()
	gw, err := newClientPool(ctx, f.gw.addr, p.gatewayCreds(), cfg.Conns)
	if err != nil {
		return err
	}
	defer gw.close()
	bare, err := newClientPool(ctx, f.bare.addr, p.bareCreds(), cfg.Conns)
	if err != nil {
		return err
	}
	defer bare.close()

	call := func(pool *clientPool, pl *payload) op {
		return func(ctx context.Context) error {
			_, err := pool.exchange().GetDeclaration(ctx, &blv1.GetDeclarationRequest{Id: pl.id(), Purpose: purpose})
			return err
		}
	}
	for _, pl := range f.payloads {
		sc.note("payload %s: %d declarations, mean encoded size %d bytes (released response: same bytes from gateway and echo)", pl.name, len(pl.decls), pl.meanSize())
		gwOp, echoOp := call(gw, pl), call(bare, pl)
		warm(ctx, cfg, cfg.Concurrency, gwOp)
		warm(ctx, cfg, cfg.Concurrency, echoOp)
		res := map[string]*Result{}
		mk := func(target, key string, baseline bool, mode string, rate float64) *Result {
			r := &Result{ID: fmt.Sprintf("pull/%s/%s/%s", pl.name, target, key), Target: target, Baseline: baseline, Payload: pl.name, Mode: mode, Rate: rate, Unit: "req"}
			if mode == "open" {
				r.Primary = "p50_us"
			}
			res[target+"/"+strings.TrimPrefix(key, "open@")] = r
			return r
		}
		interleave(ctx, cfg, sc,
			measurement{mk("gateway", "closed", false, "closed", 0), closedLoop(cfg.Concurrency, cfg.dur(), gwOp)},
			measurement{mk("echo", "closed", true, "closed", 0), closedLoop(cfg.Concurrency, cfg.dur(), echoOp)})
		closedMax := func(target string) float64 {
			if r := res[target+"/closed"]; r != nil {
				return r.Median.Throughput
			}
			return 1
		}
		ks := []*kneeSearch{
			newKneeSearch(cfg, pl.name, "gateway", false, closedMax("gateway"), gwOp),
			newKneeSearch(cfg, pl.name, "echo", true, closedMax("echo"), echoOp),
		}
		knees := sweepKnees(ctx, cfg, sc, ks...)
		type rate struct {
			key      string
			gw, echo float64
		}
		var rates []rate
		var beyond []string
		for _, r := range cfg.Rates {
			// From the lowest rate the knee search saw fail (p99 over 3×
			// the low-load p99, or falling behind) the gateway is past
			// its knee, and an open run there mostly measures that; left
			// out, the run stays under its time budget on a slow host.
			// Without a failed step every rate is measured, and the
			// audit goal's rate always is.
			if b := ks[0].sw.Bound; b > 0 && r >= b && r != auditGoalLoad {
				beyond = append(beyond, fmt.Sprintf("%.0f", r))
				continue
			}
			rates = append(rates, rate{fmt.Sprintf("%.0f", r), r, r})
		}
		if len(beyond) > 0 {
			sc.note("%s: offered loads of %s req/s were not measured: they are at or above %.0f req/s, where the gateway's knee search saw its p99 exceed the knee's bound or its throughput fall behind in this run (knee %.0f req/s).", pl.name, strings.Join(beyond, ", "), ks[0].sw.Bound, ks[0].sw.Knee)
		}
		rates = append(rates, rate{"knee", knees[0], knees[1]})
		// How long each exchange waited for its audit record to be durable
		// (the answer leaves only after it), per run at the goal's rate.
		var auditWaits []float64
		// Where those waits went, by the store's own timings.
		var phases commitCount
		// The floors at the same rate, in the same rounds (gateway, the
		// gateway with a minimal journal, echo, raw fsync alone, beside the
		// gateway, in turn; see addFloors).
		var floors diskFloors
		// The Go scheduling latency's p99 (ms) in each of those rounds'
		// gateway and echo runs.
		var schedGateway, schedEcho []float64
		// The audit wait's p99 in the same rounds with the gateway at
		// Go's default GC target, unless the run already has it.
		var goDefaultGCWaits []float64
		for _, r := range rates {
			gwLoop := openLoop(r.gw, cfg.dur(), gwOp)
			if r.key == fmt.Sprintf("%.0f", auditGoalLoad) {
				loop := schedP99s(gwLoop, &schedGateway)
				gwLoop = phases.counting(f.st, f.appends.perRun(nil, loop, &auditWaits))
				rf, err := openRawFsync(dir, "raw-fsync.bin")
				if err != nil {
					return fmt.Errorf("%s: %w", pl.name, err)
				}
				jf, err := openJournalFloor(dir)
				if err != nil {
					return errors.Join(fmt.Errorf("%s: %w", pl.name, err), rf.close())
				}
				warm(ctx, cfg, 1, rf.op)
				if cfg.Warmup > 0 {
					var discard []float64
					f.appends.perRun(jf, closedLoop(cfg.Concurrency, time.Duration(cfg.Warmup), gwOp), &discard)(ctx)
				}
				// The gateway's runs beside the raw sync (their own figures
				// are not kept; the note says whether the load was there).
				var besideLoad []sample
				rawLoop := openLoop(auditGoalLoad, cfg.dur(), rf.op)
				raw := func(id, target string) *Result {
					return &Result{ID: fmt.Sprintf("pull/%s/%s/open@%s", pl.name, id, r.key), Target: target + " (timed from the intended start)",
						Baseline: true, Payload: pl.name, Mode: "open", Rate: auditGoalLoad, Unit: "fsync", Primary: "p99_us"}
				}
				// The journal's runs right after the gateway's, so that
				// the pairs compared run by run are neighbours.
				ms := []measurement{
					{mk("gateway", "open@"+r.key, false, "open", r.gw), gwLoop},
					{&Result{ID: fmt.Sprintf("pull/%s/gateway-journal-floor/open@%s", pl.name, r.key), Target: "gateway, audit made durable by a minimal plain-file journal instead",
						Baseline: true, Payload: pl.name, Mode: "open", Rate: r.gw, Unit: "req", Primary: "p50_us"},
						f.appends.perRun(jf, openLoop(r.gw, cfg.dur(), gwOp), &floors.journal)},
					{mk("echo", "open@"+r.key, true, "open", r.echo), schedP99s(openLoop(r.echo, cfg.dur(), echoOp), &schedEcho)},
					{raw("raw-fsync", "raw fsync, one page overwritten and fdatasynced in a plain file"),
						rf.perRun(rawLoop, &floors.raw)},
					{raw("raw-fsync-beside-gateway", fmt.Sprintf("raw fsync beside the gateway at %.0f req/s", r.gw)),
						rf.perRun(beside(rawLoop, openLoop(r.gw, cfg.dur(), gwOp), func(s sample) { besideLoad = append(besideLoad, s) }), &floors.besideGateway)},
				}
				if gateway.GCPercent() != goDefaultGCPercent {
					ms = append(ms, measurement{&Result{ID: fmt.Sprintf("pull/%s/gateway-gogc%d/open@%s", pl.name, goDefaultGCPercent, r.key),
						Target:   fmt.Sprintf("gateway at Go's default GC target (GOGC=%d)", goDefaultGCPercent),
						Baseline: true, Payload: pl.name, Mode: "open", Rate: r.gw, Unit: "req", Primary: "p50_us"},
						withGCPercent(goDefaultGCPercent, f.appends.perRun(nil, openLoop(r.gw, cfg.dur(), gwOp), &goDefaultGCWaits))})
				}
				interleave(ctx, cfg, sc, ms...)
				noteBesideLoad(sc, pl.name, r.gw, cfg.dur(), besideLoad)
				if err := errors.Join(rf.close(), jf.close()); err != nil {
					return fmt.Errorf("%s: %w", pl.name, err)
				}
				continue
			}
			interleave(ctx, cfg, sc,
				measurement{mk("gateway", "open@"+r.key, false, "open", r.gw), gwLoop},
				measurement{mk("echo", "open@"+r.key, true, "open", r.echo), openLoop(r.echo, cfg.dur(), echoOp)})
		}
		if waits := positive(auditWaits); len(waits) > 0 {
			med, spread := medianSpread(waits)
			sc.addRatio(fmt.Sprintf("%s: p99 of the wait for the audit record (AppendAudit, group commit + fsync) at %.0f req/s, ms (absolute; latency audit adds to the exchange)", pl.name, auditGoalLoad),
				med, spread, "<=", 2, "≤ 2 ms")
			addFloors(sc, pl.name, auditWaits, floors)
			addSchedLatency(sc, pl.name, schedGateway, schedEcho)
			addGCControl(sc, pl.name, auditWaits, goDefaultGCWaits)
			sc.note("%s: the gateway's audit appends at %.0f req/s, all timed runs together: %d commits, mean batch %.1f. %s", pl.name, auditGoalLoad, phases.Commits, phases.MeanBatch(), phases.phases())
		} else {
			sc.note("%s: the audit wait was not measured: %.0f req/s is not among this run's rates %v.", pl.name, auditGoalLoad, cfg.Rates)
		}
		sc.ratio(fmt.Sprintf("%s: throughput gateway / echo (closed loop, %d workers)", pl.name, cfg.Concurrency),
			res["gateway/closed"], res["echo/closed"], "throughput", ">=", 0.5, "≥ 0.5")
		sc.derived(fmt.Sprintf("%s: p99 added latency at 500 req/s, ms (gateway p99 − echo p99)", pl.name), res["gateway/500"], res["echo/500"], "p99_us",
			func(g, e float64) float64 { return (g - e) / 1000 }, "<=", 2, "≤ 2 ms")
		sc.ratio(fmt.Sprintf("%s: CPU per request gateway / echo", pl.name), res["gateway/closed"], res["echo/closed"], "cpu_us_per_op", "", 0, "")
		if g, e := ks[0].sw, ks[1].sw; g.Knee > 0 && e.Knee > 0 {
			// One sweep per target, not repeated: the spread shown is the
			// sweeps' step resolution (how far the first failing rate was
			// above each knee).
			sc.addRatio(fmt.Sprintf("%s: knee gateway / echo (open-loop knee search; spread = step resolution)", pl.name),
				g.Knee/e.Knee, g.Resolution()+e.Resolution(), "", 0, "")
		}
		if g := res["gateway/closed"]; g != nil {
			busy := g.Median.CPUPerOp * g.Median.Throughput / 1e6
			procs := float64(runtime.GOMAXPROCS(0))
			others := g.Median.OtherCPU
			bound := "the cores were saturated: the gateway was CPU-bound"
			if others > 0.3 {
				bound += " (partly by its neighbours)"
			}
			if busy+others < 0.8*procs {
				bound = "cores were left idle, so requests spent much of their time waiting (audit group commit and fsync, locks), and the CPU profile below is not the whole story"
			}
			sc.note("%s: at its closed-loop maximum this process (gateway + load generator) used %.2f of %.0f cores and other processes %.2f: %s.", pl.name, busy, procs, others, bound)
		}
	}
	sc.note("%s The spread of the knee ratio is the two sweeps' step resolution (first failing rate / knee − 1, summed), since each sweep runs once. Latency is measured from each call's intended start (no coordinated omission); arrivals beyond %d in flight count as errors. At the echo's rates (thousands of calls/s) the open-loop generator, one goroutine per call, shares the cores with the target, so its own scheduling delay is part of the latency there and the echo's knee is partly the load generator's.", kneeDefinition(*cfg), maxOutstanding)
	return profileScenario(ctx, cfg, sc, closedLoop(cfg.Concurrency, cfg.dur(), call(gw, f.payloads[0])))
}

// runSearch is scenario 4: records streamed per second by the gateway's
// SearchDeclarations (decision and release per record, one audit append
// per search) against the same records streamed unfiltered.
func runSearch(ctx context.Context, cfg *Config, dir string, p *pki, sc *Scenario) error {
	f, err := newPullFixture(ctx, dir, p, pullPayloads[:1], cfg.SearchRecs, false, nil)
	if err != nil {
		return err
	}
	defer f.close()
	limit := min(cfg.SearchRecs, 1000) // the gateway's default SearchMax
	var records atomic.Int64
	stream := func(pool *clientPool) op {
		return func(ctx context.Context) error {
			s, err := pool.exchange().SearchDeclarations(ctx, &blv1.SearchDeclarationsRequest{Purpose: purpose, Limit: uint32(limit)})
			if err != nil {
				return err
			}
			for {
				_, err := s.Recv()
				if errors.Is(err, io.EOF) {
					return nil
				}
				if err != nil {
					return err
				}
				records.Add(1)
			}
		}
	}
	perRecord := func(loop func(context.Context) sample) func(context.Context) sample {
		return func(ctx context.Context) sample {
			records.Store(0)
			s := loop(ctx)
			s.ops = records.Load()
			return s
		}
	}
	sc.note("%d declarations of ~1 KB (mean %d bytes) in the store, all releasable; each search asks for %d; 2 concurrent searches. Latency columns are per search call, the other columns per record.", len(f.payloads[0].decls), f.payloads[0].meanSize(), limit)
	gwPool, err := newClientPool(ctx, f.gw.addr, p.gatewayCreds(), 2)
	if err != nil {
		return err
	}
	defer gwPool.close()
	barePool, err := newClientPool(ctx, f.bare.addr, p.bareCreds(), 2)
	if err != nil {
		return err
	}
	defer barePool.close()
	gwOp, bareOp := stream(gwPool), stream(barePool)
	warm(ctx, cfg, 2, gwOp)
	warm(ctx, cfg, 2, bareOp)
	res := []*Result{
		{ID: "search/gateway", Target: "gateway", Payload: "1KB", Mode: "closed", Unit: "record"},
		{ID: "search/unfiltered", Target: "unfiltered", Baseline: true, Payload: "1KB", Mode: "closed", Unit: "record"},
	}
	interleave(ctx, cfg, sc, measurement{res[0], perRecord(closedLoop(2, cfg.dur(), gwOp))}, measurement{res[1], perRecord(closedLoop(2, cfg.dur(), bareOp))})
	defer func() { _ = profileScenario(ctx, cfg, sc, perRecord(closedLoop(2, cfg.dur(), gwOp))) }()
	sc.ratio("records/s gateway (decide + release per record) / unfiltered", res[0], res[1], "throughput", "", 0, "")
	return nil
}

// runChurn is scenario 5: a new mTLS connection and one health check per
// op, then close.
func runChurn(ctx context.Context, cfg *Config, dir string, p *pki, sc *Scenario) error {
	f, err := newPullFixture(ctx, dir, p, pullPayloads[:1], 1, false, nil)
	if err != nil {
		return err
	}
	defer f.close()
	connect := func(addr string, gwCreds bool) op {
		return func(ctx context.Context) error {
			creds := p.bareCreds()
			if gwCreds {
				creds = p.gatewayCreds()
			}
			cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
			if err != nil {
				return err
			}
			defer cc.Close()
			_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
			return err
		}
	}
	gwOp, bareOp := connect(f.gw.addr, true), connect(f.bare.addr, false)
	warm(ctx, cfg, cfg.ChurnWorkers, gwOp)
	warm(ctx, cfg, cfg.ChurnWorkers, bareOp)
	res := []*Result{
		{ID: "churn/gateway", Target: "gateway", Mode: "closed", Unit: "conn"},
		{ID: "churn/bare", Target: "bare", Baseline: true, Mode: "closed", Unit: "conn"},
	}
	interleave(ctx, cfg, sc, measurement{res[0], closedLoop(cfg.ChurnWorkers, cfg.dur(), gwOp)}, measurement{res[1], closedLoop(cfg.ChurnWorkers, cfg.dur(), bareOp)})
	sc.note("Each op: grpc.NewClient, TLS 1.3 handshake with ECDSA P-256 client and server certificates, one health check, close; %d concurrent workers. The gateway verifies SPIFFE IDs against per-domain bundles; the baseline uses stdlib RequireAndVerifyClientCert.", cfg.ChurnWorkers)
	sc.ratio("connections/s gateway / bare grpc-go", res[0], res[1], "throughput", "", 0, "")
	return profileScenario(ctx, cfg, sc, closedLoop(cfg.ChurnWorkers, cfg.dur(), connect(f.gw.addr, true)))
}

// decisionInput is the input of a typical pull: sg's gateway asking for
// one of nl's declarations.
func decisionInput(d *blv1.Declaration) policy.Input {
	return policy.Input{
		Caller:   identity.GatewayID(recipient),
		Action:   "declaration.get",
		Purpose:  purpose,
		Resource: policy.Resource{Type: "declaration", ID: d.GetId(), Exists: true, Attributes: policy.DeclarationAttributes(d)},
		Time:     time.Now(),
	}
}

// auditTemplate is an audit record shaped like the gateway's provider
// record of an allowed pull.
func auditTemplate(engine *policy.Engine, d *blv1.Declaration) (*blv1.AuditRecord, error) {
	in := decisionInput(d)
	doc, err := jsonMarshal(engine.InputDocument(in))
	if err != nil {
		return nil, err
	}
	return &blv1.AuditRecord{
		Time: timestamppb.Now(), Side: blv1.AuditSide_AUDIT_SIDE_PROVIDER, RequestId: newRequestID(),
		CallerId: in.Caller.String(), PeerId: in.Caller.String(), Action: in.Action, Purpose: in.Purpose,
		ResourceIds: []string{d.GetId()}, Decision: blv1.AuditDecision_AUDIT_DECISION_ALLOW,
		AgreementId: "nl-sg-risk-2026", PolicyRevision: engine.Revision(), Status: "OK", PolicyInput: string(doc),
		ReleasedFields: []string{"acceptance_time", "destination_country", "export_country", "exporter.name", "exporter.tax_id",
			"goods_items", "gross_mass_kg", "id", "importer", "invoice_amount", "transport.mode", "type"},
		ReleaseSha256: hex.EncodeToString(make([]byte, 32)),
	}, nil
}

func freshAudit(tmpl *blv1.AuditRecord) *blv1.AuditRecord {
	r := proto.CloneOf(tmpl)
	r.Time = timestamppb.Now()
	r.RequestId = newRequestID()
	return r
}

// newRequestID makes IDs as the gateways do (time-ordered).
func newRequestID() string { return audit.NewRequestID(time.Now()) }
