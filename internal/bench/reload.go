package bench

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/borderlink/borderlink/internal/policy"
)

// runReload is scenario 8: how long a policy reload takes with many
// agreements (policy.Compile, which Engine.Reload runs before its atomic
// swap), against compiling the shipped policy and agreements alone; and
// what back-to-back reloads do to the latency of decisions made meanwhile.
func runReload(ctx context.Context, cfg *Config, dir string, p *pki, sc *Scenario) error {
	// On disk, as the gateway reloads them (os.DirFS of the policy dir).
	many, err := policyDir(filepath.Join(dir, "generated"), cfg.Agreements)
	if err != nil {
		return err
	}
	shipped, err := policyDir(filepath.Join(dir, "shipped"), 0)
	if err != nil {
		return err
	}
	// The engine's first compile of the generated set is also that
	// compile's warm-up.
	engine, err := policy.NewEngine(ctx, provider, many, nil)
	if err != nil {
		return err
	}
	setShipped, err := policy.Compile(ctx, shipped)
	if err != nil {
		return err
	}
	nMany, nShipped := len(engine.Agreements()), len(setShipped.Agreements())
	compile := func(fsys fs.FS) op {
		return func(ctx context.Context) error {
			_, err := policy.Compile(ctx, fsys)
			return err
		}
	}
	compileMany, compileShipped := compile(many), compile(shipped)
	warm(ctx, cfg, 1, compileShipped)
	cMany := &Result{ID: "reload/compile/generated", Target: fmt.Sprintf("policy.Compile, %d agreements (%d generated)", nMany, cfg.Agreements), Mode: "closed", Unit: "compile", Primary: "p50_us"}
	cShipped := &Result{ID: "reload/compile/shipped", Target: fmt.Sprintf("policy.Compile, shipped %d agreements", nShipped), Baseline: true, Mode: "closed", Unit: "compile", Primary: "p50_us"}
	interleave(ctx, cfg, sc,
		measurement{cMany, closedLoop(1, cfg.dur(), compileMany)},
		measurement{cShipped, closedLoop(1, cfg.dur(), compileShipped)})
	sc.ratio(fmt.Sprintf("compile time, %d agreements / shipped %d (p50 per compile)", nMany, nShipped), cMany, cShipped, "p50_us", "", 0, "")

	// Decisions while the engine reloads the same files back to back.
	pl, err := makePayload("1KB", 1024, 1, 1)
	if err != nil {
		return err
	}
	in := decisionInput(pl.decls[0])
	if dec, err := engine.Decide(ctx, in); err != nil || !dec.Allow {
		return fmt.Errorf("bench: the benchmark input is not allowed (%v, %v): fix decisionInput", dec.Reasons, err)
	}
	decide := func(ctx context.Context) error {
		_, err := engine.Decide(ctx, in)
		return err
	}
	var (
		mu      sync.Mutex
		reloads []float64 // completed reloads per measured run
	)
	reloading := func(loop func(context.Context) sample) func(context.Context) sample {
		return func(ctx context.Context) sample {
			rctx, cancel := context.WithCancel(ctx)
			var n atomic.Int64
			var wg sync.WaitGroup
			wg.Go(func() {
				for rctx.Err() == nil {
					if engine.Reload(rctx, many) == nil {
						n.Add(1)
					}
				}
			})
			s := loop(ctx)
			cancel()
			wg.Wait() // a reload in progress finishes inside this run's CPU account
			mu.Lock()
			reloads = append(reloads, float64(n.Load()))
			mu.Unlock()
			return s
		}
	}
	warm(ctx, cfg, 1, decide)
	during := &Result{ID: "reload/decide/reloading", Target: "Engine.Decide during back-to-back Reloads", Mode: "closed", Unit: "decision", Primary: "p99_us"}
	idle := &Result{ID: "reload/decide/steady", Target: "Engine.Decide, no reload", Baseline: true, Mode: "closed", Unit: "decision", Primary: "p99_us"}
	interleave(ctx, cfg, sc,
		measurement{during, reloading(closedLoop(1, cfg.dur(), decide))},
		measurement{idle, closedLoop(1, cfg.dur(), decide)})
	sc.ratio("decision p99 during back-to-back reloads / without reloads", during, idle, "p99_us", "", 0, "")
	sc.ratio("decisions/s during back-to-back reloads / without reloads", during, idle, "throughput", "", 0, "")

	sc.note("Compile: policy.Compile of the shipped exchange.rego and national rules with the shipped agreements plus %d generated ones (%d in all), read from files on disk (os.DirFS, as the gateway's reload reads its policy dir); baseline: the same Rego with the shipped %d agreements only. Engine.Reload is this compile plus an atomic pointer swap. Each run compiles back to back on one goroutine for %s (at least once); the primary metric is the p50 compile time per run, and the ratio is the median of the per-run ratios.", cfg.Agreements, nMany, nShipped, cfg.Duration)
	sc.note("Decisions during reload: one goroutine decides back to back (the policy scenario's input, %d agreements loaded) while another calls Engine.Reload on the same %d-agreement files back to back, so every reload swaps in a freshly compiled set (reloads completed per run: median %.0f); the baseline is the same decision loop without reloads, run in turn with it. This is the worst case (a real reload happens when a file changes): it shows what a reload costs the decisions in flight (CPU and GC shared on %d cores), not how often.", nMany, nMany, median(reloads), runtime.GOMAXPROCS(0))
	return profileScenario(ctx, cfg, sc, closedLoop(1, cfg.dur(), compileMany))
}

// policyDir writes the shipped policy and agreements plus n generated
// agreements (policyFS) to dir and returns it as the gateway reads it.
func policyDir(dir string, n int) (fs.FS, error) {
	src, err := policyFS(n)
	if err != nil {
		return nil, err
	}
	err = fs.WalkDir(src, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, filepath.FromSlash(path))
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := fs.ReadFile(src, path)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		return nil, fmt.Errorf("bench: write policy dir: %w", err)
	}
	return os.DirFS(dir), nil
}
