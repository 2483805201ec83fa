// Package bench is Borderlink's benchmark harness: it measures the gateway
// and, in the same process and run, a baseline for every scenario, and
// reports ratios against those baselines (docs/benchmarks.md).
//
// Guarantees:
//   - Every scenario measures its target and its baseline with the same
//     payloads, the same certificates and the same load generator, in the
//     same run, so a ratio is meaningful on a shared, noisy machine where
//     absolute numbers are not.
//   - Every result is the median of Config.Runs timed runs after a warm-up;
//     the spread is kept, and a result whose primary metric spreads more
//     than SpreadLimit is flagged.
//   - Open-loop latency is measured from each call's intended start, so a
//     target that falls behind shows its queueing delay.
//   - The harness never changes what it measures: the gateway is built with
//     gateway.New exactly as `borderlink serve` builds it, on loopback mTLS
//     and a real SQLite file.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/borderlink/borderlink/internal/config"
	"github.com/borderlink/borderlink/internal/gateway"
)

// Config says what to measure and for how long. Start from Full, Quick or
// Smoke and override.
type Config struct {
	Runs          int       `json:"runs"`        // timed repetitions per result (median reported)
	Duration      Duration  `json:"duration"`    // length of one timed run
	Warmup        Duration  `json:"warmup"`      // untimed load before the runs of each target
	Scenarios     []string  `json:"scenarios"`   // subset of ScenarioNames
	Concurrency   int       `json:"concurrency"` // closed-loop workers (pull)
	Conns         int       `json:"conns"`       // client connections (pull, search)
	Rates         []float64 `json:"rates"`       // open-loop offered loads, req/s; the knee is added
	KneeFactor    float64   `json:"knee_factor"` // delivery: knee = KneeFactor × closed-loop max (pull searches for it)
	KneeSteps     int       `json:"knee_steps"`  // geometric steps of the knee search, from KneeLow × to 1 × the closed-loop max (pull)
	KneeRefine    int       `json:"knee_refine"` // bisection steps between the last passing and the first failing rate
	KneeStep      Duration  `json:"knee_step"`   // length of one knee-search step (one run, not repeated)
	Records       int       `json:"records"`     // declarations per payload size (pull)
	SearchRecs    int       `json:"search_records"`
	Agreements    int       `json:"agreements"` // generated agreements for the policy scenario
	MemAgreements []int     `json:"mem_agreements"`
	AuditRecs     int       `json:"audit_records"` // audit records for the memory scenario
	Appenders     int       `json:"appenders"`     // concurrent AppendAudit callers
	ChurnWorkers  int       `json:"churn_workers"`

	// OPA is the upstream opa binary; empty resolves it with
	// `go tool -modfile=tools/opa/go.mod -n opa` from the repository root.
	OPA string `json:"opa,omitempty"`
	// VaultBin is the Vault binary the vault scenario runs as a dev
	// server; empty uses $BORDERLINK_VAULT_BIN. Without either, that
	// scenario fails.
	VaultBin string `json:"vault_bin,omitempty"`
	// Exe, if set, is this binary: memory cases then run in child
	// processes (`Exe bench mem-child ...`) for a clean RSS.
	Exe string `json:"-"`
	// WorkDir holds databases and policy files; empty uses a temp dir that
	// is removed afterwards.
	WorkDir string `json:"-"`
	// ProfileDir receives one CPU profile per scenario.
	ProfileDir string `json:"-"`
	// Log receives progress lines; nil discards.
	Log io.Writer `json:"-"`
}

// ScenarioNames are the scenarios in the order they run. Memory runs last:
// filling its large audit log grows this process, which would show in the
// RSS column of every scenario after it.
var ScenarioNames = []string{"pull", "policy", "reload", "audit", "search", "churn", "delivery", "vault", "memory"}

// Full is `make bench`: under 10 minutes on 2 cores.
func Full() Config {
	return Config{
		Runs: 3, Duration: Duration(2 * time.Second), Warmup: Duration(time.Second),
		Scenarios: ScenarioNames, Concurrency: 32, Conns: 4,
		Rates: []float64{100, 500, 1000}, KneeFactor: 0.7, KneeSteps: 6, KneeRefine: 2, KneeStep: Duration(time.Second),
		Records: 64, SearchRecs: 1000, Agreements: 1000, MemAgreements: []int{1000, 10000},
		AuditRecs: 1_000_000, Appenders: 16, ChurnWorkers: 4,
	}
}

// Quick is `make bench-quick`: about a minute, same shape, shorter runs and
// a smaller audit log.
func Quick() Config {
	c := Full()
	c.Duration, c.Warmup = Duration(300*time.Millisecond), Duration(150*time.Millisecond)
	c.AuditRecs = 100_000
	c.MemAgreements = []int{1000}
	c.KneeSteps, c.KneeRefine, c.KneeStep = 4, 1, Duration(250*time.Millisecond)
	return c
}

// Smoke runs every scenario in a tiny configuration so the harness cannot
// rot; it asserts nothing about timing.
func Smoke() Config {
	c := Full()
	c.Runs = 2
	c.Duration, c.Warmup = Duration(60*time.Millisecond), Duration(20*time.Millisecond)
	c.Concurrency, c.Conns = 4, 1
	c.Rates = []float64{100}
	c.Records, c.SearchRecs, c.Agreements = 4, 20, 20
	c.MemAgreements = []int{20}
	c.AuditRecs = 500
	c.Appenders, c.ChurnWorkers = 2, 1
	c.KneeSteps, c.KneeRefine, c.KneeStep = 2, 0, Duration(40*time.Millisecond)
	return c
}

// Validate checks the configuration; errors name the field.
func (c *Config) Validate() error {
	switch {
	case c.Runs < 1:
		return errors.New("bench: runs must be at least 1 (3 or more for a spread)")
	case c.Duration <= 0:
		return errors.New("bench: duration must be positive")
	case c.Concurrency < 1, c.Conns < 1, c.Appenders < 1, c.ChurnWorkers < 1:
		return errors.New("bench: concurrency, conns, appenders and churn workers must be at least 1")
	case c.Records < 1, c.SearchRecs < 1:
		return errors.New("bench: records and search records must be at least 1")
	case c.KneeSteps < 2, c.KneeRefine < 0, c.KneeStep <= 0:
		return errors.New("bench: the knee search needs at least 2 steps, no negative refinement and a positive step length")
	}
	for _, s := range c.Scenarios {
		if !slices.Contains(ScenarioNames, s) {
			return fmt.Errorf("bench: unknown scenario %q: use %v", s, ScenarioNames)
		}
	}
	return nil
}

func (c *Config) logf(format string, args ...any) {
	if c.Log != nil {
		fmt.Fprintf(c.Log, "bench: "+format+"\n", args...)
	}
}

// Run measures every configured scenario and returns the report. A
// scenario that fails is reported with its error; the others still run.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	work := cfg.WorkDir
	if work == "" {
		d, err := os.MkdirTemp("", "borderlink-bench-")
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		defer os.RemoveAll(d)
		work = d
	}
	if cfg.ProfileDir == "" {
		cfg.ProfileDir = filepath.Join(work, "profiles")
	}
	if err := os.MkdirAll(cfg.ProfileDir, 0o755); err != nil {
		return nil, fmt.Errorf("bench: profile dir: %w", err)
	}
	p, err := newPKI()
	if err != nil {
		return nil, fmt.Errorf("bench: certificates: %w", err)
	}
	rep := &Report{Version: SchemaVersion, Date: start.UTC().Truncate(time.Second), Machine: machine(), Config: cfg, ProfileDir: cfg.ProfileDir}
	// The gateway runs in this process: give it the collector's target
	// serve gives it (the baselines share it; it is the process's).
	gc := gateway.SetGCTarget(config.DefaultGCPercent)
	rep.Machine.GCTarget, rep.Machine.GCTargetFrom = gc.Percent, gc.From
	cfg.logf("machine: %s, %d CPUs, GOMAXPROCS %d, CPUs allowed %s, %s", rep.Machine.CPUModel, rep.Machine.NumCPU, rep.Machine.GOMAXPROCS, rep.Machine.CPUsAllowed, rep.Machine.GoVersion)
	runners := map[string]func(context.Context, *Config, string, *pki, *Scenario) error{
		"pull": runPull, "policy": runPolicy, "reload": runReload, "audit": runAudit,
		"search": runSearch, "churn": runChurn, "delivery": runDelivery, "vault": runVault, "memory": runMemory,
	}
	titles := map[string]string{
		"pull":     "1. Pull exchange end to end vs bare grpc-go mTLS echo",
		"policy":   "2. Policy decision in-process vs OPA REST server and opa bench",
		"audit":    "3. Audit append vs bare SQLite insert loop",
		"search":   "4. Search streaming with release vs unfiltered stream",
		"churn":    "5. Connection churn: new mTLS connections/s",
		"memory":   "6. Memory (RSS)",
		"delivery": "7. Push delivery between two gateways (durable outbox and inbox) vs bare grpc-go unary call",
		"reload":   "8. Policy reload: compile with generated agreements vs the shipped set alone, and decisions during reloads",
		"vault":    "9. Audit signatures in Vault transit (one request each, batched) vs a local Ed25519 key, and their cost to the pull exchange",
	}
	for _, name := range ScenarioNames {
		if !slices.Contains(cfg.Scenarios, name) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		sc := &Scenario{Name: name, Title: titles[name]}
		dir := filepath.Join(work, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		t0 := time.Now()
		cfg.logf("scenario %s ...", name)
		if err := runners[name](ctx, &cfg, dir, p, sc); err != nil {
			sc.Error = err.Error()
			cfg.logf("scenario %s failed: %v", name, err)
		}
		cfg.logf("scenario %s done in %s", name, time.Since(t0).Round(time.Second))
		rep.Scenarios = append(rep.Scenarios, sc)
		runtime.GC()
	}
	rep.Elapsed = Duration(time.Since(start).Round(time.Second))
	return rep, nil
}

// repeat measures one configuration Runs times and adds it to sc.
func repeat(ctx context.Context, cfg *Config, sc *Scenario, r *Result, loop func(context.Context) sample) *Result {
	for range cfg.Runs {
		if ctx.Err() != nil {
			break
		}
		r.Runs = append(r.Runs, measure(ctx, loop))
	}
	r.summarize()
	sc.Results = append(sc.Results, r)
	logResult(cfg, r)
	return r
}

func logResult(cfg *Config, r *Result) {
	if r.Mode == "single" {
		cfg.logf("  %-36s %10.0f %s/s  spread %4.1f%%%s", r.ID, r.Median.Throughput, r.Unit, 100*r.Spread[r.Primary], flagMark(r.Flagged))
		return
	}
	cfg.logf("  %-36s %10.0f %s/s  p50 %8.0fµs  p99 %8.0fµs  cpu %7.1fµs/op  spread %4.1f%%%s",
		r.ID, r.Median.Throughput, r.Unit, r.Median.P50, r.Median.P99, r.Median.CPUPerOp, 100*r.Spread[r.Primary], flagMark(r.Flagged))
}

func flagMark(b bool) string {
	if b {
		return "  FLAGGED"
	}
	return ""
}

// measurement is one configuration to time.
type measurement struct {
	r    *Result
	loop func(context.Context) sample
}

// interleave times several configurations run by run in turn (A B A B …),
// so that a change in the machine's load hits the target and its baseline
// alike, and marks them as one group: ratios between them are then taken
// run by run (see Scenario.ratio).
func interleave(ctx context.Context, cfg *Config, sc *Scenario, ms ...measurement) {
	group := ms[0].r.ID
	for range cfg.Runs {
		for _, m := range ms {
			if ctx.Err() != nil {
				return
			}
			m.r.Runs = append(m.r.Runs, measure(ctx, m.loop))
		}
	}
	for _, m := range ms {
		m.r.Group = group
		m.r.summarize()
		sc.Results = append(sc.Results, m.r)
		logResult(cfg, m.r)
	}
}

// warm runs o untimed.
func warm(ctx context.Context, cfg *Config, workers int, o op) {
	if cfg.Warmup > 0 {
		closedLoop(workers, time.Duration(cfg.Warmup), o)(ctx)
	}
}
