package bench

import (
	"bytes"
	"cmp"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Publish writes the report's JSON, plots and Markdown: results to
// jsonPath, SVGs next to it, Markdown to mdPath (image links relative to
// it). flagsDoc documents the command's flags, as its usage prints them.
func Publish(rep *Report, mdPath, jsonPath, flagsDoc string) error {
	assets := filepath.Dir(jsonPath)
	if err := os.MkdirAll(assets, 0o755); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	for _, sc := range rep.Scenarios {
		if sc.Name != "pull" {
			continue
		}
		sc.Plots = nil
		for _, pl := range pullPayloads {
			path := filepath.Join(assets, "pull-"+pl.name+"-latency.svg")
			ok, err := latencyPlot(sc, pl.name, path)
			if err != nil {
				return err
			}
			if ok {
				rel, err := filepath.Rel(filepath.Dir(mdPath), path)
				if err != nil {
					rel = path
				}
				sc.Plots = append(sc.Plots, filepath.ToSlash(rel))
			}
		}
	}
	if err := rep.WriteJSON(jsonPath); err != nil {
		return err
	}
	rel, err := filepath.Rel(filepath.Dir(mdPath), jsonPath)
	if err != nil {
		rel = jsonPath
	}
	if err := os.WriteFile(mdPath, []byte(markdown(rep, filepath.ToSlash(rel), flagsDoc)), 0o644); err != nil {
		return fmt.Errorf("bench: write %s: %w", mdPath, err)
	}
	return nil
}

// latencyPlot draws p50 and p99 latency against offered load for the
// gateway and the echo of one payload size.
func latencyPlot(sc *Scenario, payload, path string) (bool, error) {
	p := plot.New()
	p.Title.Text = "Pull " + payload + ": latency vs offered load"
	p.X.Label.Text = "offered load (req/s, log)"
	p.Y.Label.Text = "latency (ms, log)"
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.X.Tick.Marker, p.Y.Tick.Marker = plot.LogTicks{Prec: -1}, plot.LogTicks{Prec: -1}
	p.Legend.Top = true
	p.Legend.Left = true
	colors := map[string]color.Color{"gateway": color.RGBA{R: 200, G: 30, B: 30, A: 255}, "echo": color.RGBA{B: 200, G: 80, A: 255}}
	any := false
	for _, target := range []string{"gateway", "echo"} {
		var rs []*Result
		for _, r := range sc.Results {
			if r.Payload == payload && r.Target == target && r.Mode == "open" && r.Median.Ops > 0 {
				rs = append(rs, r)
			}
		}
		slices.SortFunc(rs, func(a, b *Result) int { return int(a.Rate - b.Rate) })
		for _, q := range []struct {
			name  string
			get   func(Stats) float64
			dash  []vg.Length
			shape draw.GlyphDrawer
		}{{"p50", func(r Stats) float64 { return r.P50 }, nil, draw.CircleGlyph{}}, {"p99", func(r Stats) float64 { return r.P99 }, []vg.Length{vg.Points(4), vg.Points(3)}, draw.TriangleGlyph{}}} {
			var xys plotter.XYs
			for _, r := range rs {
				if v := q.get(r.Median) / 1000; v > 0 {
					xys = append(xys, plotter.XY{X: r.Rate, Y: v})
				}
			}
			if len(xys) == 0 {
				continue
			}
			line, points, err := plotter.NewLinePoints(xys)
			if err != nil {
				return false, fmt.Errorf("bench: plot: %w", err)
			}
			line.Color, line.Dashes = colors[target], q.dash
			points.Color, points.Shape = colors[target], q.shape
			p.Add(line, points)
			p.Legend.Add(target+" "+q.name, line, points)
			any = true
		}
	}
	for _, sw := range sc.Sweeps {
		if sw.Payload != payload {
			continue
		}
		var xys plotter.XYs
		for _, pt := range sw.Points {
			if pt.P99 > 0 {
				xys = append(xys, plotter.XY{X: pt.Offered, Y: pt.P99 / 1000})
			}
		}
		if len(xys) == 0 {
			continue
		}
		slices.SortFunc(xys, func(a, b plotter.XY) int { return cmp.Compare(a.X, b.X) })
		line, points, err := plotter.NewLinePoints(xys)
		if err != nil {
			return false, fmt.Errorf("bench: plot: %w", err)
		}
		line.Color, line.Width, line.Dashes = colors[sw.Target], vg.Points(0.5), []vg.Length{vg.Points(1), vg.Points(2)}
		points.Color, points.Shape, points.Radius = colors[sw.Target], draw.CrossGlyph{}, vg.Points(3)
		p.Add(line, points)
		p.Legend.Add(fmt.Sprintf("%s knee search p99 (knee %.0f/s)", sw.Target, sw.Knee), line, points)
		any = true
	}
	if !any {
		return false, nil
	}
	p.Add(plotter.NewGrid())
	p.Y.Max *= 8 // headroom for the legend (log scale)
	if err := p.Save(16*vg.Centimeter, 10*vg.Centimeter, path); err != nil {
		return false, fmt.Errorf("bench: save plot %s: %w", path, err)
	}
	return true, nil
}

func fmtLatency(us float64) string {
	switch {
	case us == 0:
		return "–"
	case us < 1000:
		return fmt.Sprintf("%.0f µs", us)
	case us < 1e6:
		return fmt.Sprintf("%.2f ms", us/1000)
	}
	return fmt.Sprintf("%.2f s", us/1e6)
}

func fmtNum(v float64) string {
	switch {
	case v == 0:
		return "–"
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func fmtBytes(b float64) string {
	switch {
	case b == 0:
		return "–"
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	}
	return fmt.Sprintf("%.0f B", b)
}

func verdict(r Ratio) string {
	switch {
	case r.Met == nil:
		return ""
	case *r.Met:
		return "met"
	}
	return "**missed**"
}

func markdown(rep *Report, jsonRel, flagsDoc string) string {
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m := rep.Machine
	w("# Benchmarks\n\n")
	w("Generated by `make bench` (`borderlink bench`) on %s in %s. Do not edit by hand: rerun it. Raw results: [%s](%s) (compare two runs with `borderlink bench compare OLD.json NEW.json`).\n\n",
		rep.Date.Format("2006-01-02 15:04 UTC"), rep.Elapsed, jsonRel, jsonRel)
	w("Performance claims count only as **ratios against baselines measured on the same machine in the same run**: the machines are shared and noisy and absolute numbers drift. Every result is the median of %d runs of %s after a %s warm-up; the spread is (max − min) / median of the primary metric, and a result spreading more than %.0f%% is flagged ⚠.\n\n",
		rep.Config.Runs, rep.Config.Duration, rep.Config.Warmup, 100*SpreadLimit)

	var others []float64
	for _, sc := range rep.Scenarios {
		for _, r := range sc.Results {
			if r.Median.Seconds > 0 {
				others = append(others, r.Median.OtherCPU)
			}
		}
	}
	if o := median(others); o > NoisyCores {
		w("> **Noisy run:** other processes kept a median of %.2f of the machine's %d cores busy during the measured runs (column *others' CPU*). The target and its baseline shared that noise run by run, so the ratios stand, with the spreads shown; absolute numbers and open-loop latencies near saturation are pessimistic. Rerun on a quieter machine for tighter spreads.\n\n", o, m.NumCPU)
	}
	w("## Machine\n\n| | |\n|---|---|\n")
	w("| CPU | %s |\n| cores (nproc) | %d |\n| GOMAXPROCS | %d |\n| CPUs allowed (taskset) | %s |\n| Go | %s %s/%s |\n| GC target (GOGC) | %s |\n| kernel | %s |\n| load average at start | %s |\n| date (UTC) | %s |\n\n",
		m.CPUModel, m.NumCPU, m.GOMAXPROCS, m.CPUsAllowed, m.GoVersion, m.OS, m.Arch, gcTargetCell(m), m.Kernel, m.LoadAvg, rep.Date.Format("2006-01-02 15:04:05"))

	w("## Headline: ratios against baselines\n\n| scenario | ratio | value | goal | | spread |\n|---|---|---:|---|---|---:|\n")
	for _, sc := range rep.Scenarios {
		for _, r := range sc.Ratios {
			w("| %s | %s | %s | %s | %s | %.0f%% |\n", sc.Name, r.Name, fmtNum(r.Value), r.Goal, verdict(r), 100*r.Spread)
		}
	}
	w("\nA target and its baseline are run in turn, run by run (A B A B …), so a change in the machine's load hits both; a ratio is the median of the per-run ratios and its spread is theirs ((max − min) / median). A change between two runs of the harness smaller than the spread is noise.\n\n")

	w("## Method\n\n")
	w("- The gateway is built with `gateway.New` in the benchmark process, as `borderlink serve` builds it: loopback gRPC with mutual TLS 1.3 (devca certificates, ECDSA P-256), the shipped policy and agreements (plus generated ones where stated), a real SQLite file (WAL, synchronous=FULL) in a temp dir. The partner is `spiffe://sg.customs.example/gateway`; it asks `nl.customs.example` for declarations released under the shipped nl-sg agreement.\n")
	w("- Baselines use the same certificates, payloads and load generator in the same run: a bare grpc-go server with stdlib `RequireAndVerifyClientCert` that returns the exact response bytes the gateway released (pull), streams the same stored records unfiltered (search), or answers a health check (churn). A policy reload with generated agreements is compared with compiling the shipped policy and agreements alone, and decisions during back-to-back reloads with the same decisions without (reload).\n")
	w("- The load generator runs in the same process. *CPU/op* is the whole process (getrusage user+sys: load generator and target together), so compare it only as a ratio. The profiled run of each scenario reports how much of the CPU the load generator itself took (goroutines labelled `side=client`).\n")
	w("- Closed loop: a fixed number of workers call back to back (maximum throughput). Open loop: calls start at a fixed rate whether or not earlier calls finished; latency is measured from each call's intended start (no coordinated omission). %s Delivery: the knee is %.1f × the gateway's closed-loop maximum.\n", kneeDefinition(rep.Config), rep.Config.KneeFactor)
	w("- Allocations/op and B/op come from runtime.MemStats (process-wide); RSS is VmRSS at the end of the run. *Others' CPU* is how many cores other processes kept busy during the run (system-wide busy time from /proc/stat minus this process's): the noise a ratio has to survive.\n")
	w("- Vault (scenario 9): a real Vault dev server (the binary `make vault-bin` builds, passed with `--vault-bin`) on loopback, another process sharing the cores; its CPU is reported per op on its own and left out of *others' CPU*.\n")
	w("- One extra, unmeasured run per scenario is CPU-profiled; profiles are in `%s` (open with `go tool pprof -http=: FILE`).\n\n", rep.ProfileDir)

	for _, sc := range rep.Scenarios {
		w("## %s\n\n", sc.Title)
		if sc.Error != "" {
			w("**Failed:** %s\n\n", sc.Error)
		}
		if sc.Name == "vault" {
			writeVaultSummary(w, sc)
		}
		if len(sc.Results) > 0 {
			if sc.Name == "memory" {
				w("| case | RSS (median) | spread |\n|---|---:|---:|\n")
				for _, r := range sc.Results {
					w("| %s | %.1f MiB | %.0f%%%s |\n", r.Target, r.Median.Value, 100*r.Spread[r.Primary], warn(r))
				}
			} else {
				w("| result | mode | offered | throughput | p50 | p90 | p99 | max | CPU/op | allocs/op | B/op | RSS | errors | others' CPU | spread |\n")
				w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
				for _, r := range sc.Results {
					name := r.Target
					if r.Payload != "" {
						name = r.Payload + " " + name
					}
					if r.Baseline {
						name += " (baseline)"
					}
					offered := ""
					if r.Rate > 0 {
						offered = fmt.Sprintf("%.0f/s", r.Rate)
						if strings.HasSuffix(r.ID, "@knee") {
							offered += " (knee)"
						}
					}
					tp := fmt.Sprintf("%s %s/s", fmtNum(r.Median.Throughput), r.Unit)
					if r.Mode == "single" && r.Median.Value > 0 {
						tp += fmt.Sprintf(" (%.1f µs/op)", r.Median.Value)
					}
					w("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d | %.2f | %.0f%% %s%s |\n",
						name, r.Mode, offered, tp, fmtLatency(r.Median.P50), fmtLatency(r.Median.P90), fmtLatency(r.Median.P99), fmtLatency(r.Median.Max),
						fmtLatency(r.Median.CPUPerOp), fmtNum(r.Median.AllocsOp), fmtBytes(r.Median.BytesOp), fmtRSS(r.Median.RSS), r.Median.Errors, r.Median.OtherCPU,
						100*r.Spread[r.Primary], r.Primary, warn(r))
				}
			}
			w("\n")
		}
		if len(sc.Ratios) > 0 {
			for _, r := range sc.Ratios {
				goal := ""
				if r.Goal != "" {
					goal = fmt.Sprintf(" (goal %s: %s)", r.Goal, strings.Trim(verdict(r), "*"))
				}
				w("- **%s: %s**%s, spread %.0f%%\n", r.Name, fmtNum(r.Value), goal, 100*r.Spread)
			}
			w("\n")
		}
		if len(sc.Sweeps) > 0 {
			writeSweeps(w, sc.Sweeps)
		}
		for _, n := range sc.Notes {
			w("- %s\n", n)
		}
		if len(sc.Notes) > 0 {
			w("\n")
		}
		for _, p := range sc.Plots {
			w("![%s](%s)\n\n", p, p)
		}
		if len(sc.TopCosts) > 0 {
			what := "CPU of the system under test by stage"
			if sc.Name == "pull" {
				what = "**Top 5 costs of the pull path** (1 KB, closed loop): CPU of the gateway by stage — the list to attack next"
			}
			w("%s; profile `%s`; the load generator took %.0f%% of all CPU samples in that run, excluded below.\n\n", what, sc.Profile, 100*sc.LoadGenShare)
			w("| # | stage | share |\n|---:|---|---:|\n")
			for i, c := range sc.TopCosts {
				if i == 5 {
					break
				}
				w("| %d | %s | %.1f%% |\n", i+1, c.Name, 100*c.Share)
			}
			w("\n")
			if len(sc.HotFunctions) > 0 {
				w("<details><summary>Hottest functions (self time, share of the system under test)</summary>\n\n| function | share |\n|---|---:|\n")
				for _, c := range sc.HotFunctions {
					w("| `%s` | %.1f%% |\n", c.Name, 100*c.Share)
				}
				w("\n</details>\n\n")
			}
		}
	}

	w("## How to rerun\n\n")
	w("```\nmake bench          # full run, < 10 minutes on 2 cores: rewrites this page, docs/benchmarks/*.svg and results.json\nmake bench-quick    # about 1½ minutes, same scenarios with short runs, written to a temp dir\n")
	w("borderlink bench compare OLD.json NEW.json   # per-metric old/new/delta; flags changes beyond the combined spread\n```\n\n")
	w("For steadier numbers pin the process and match GOMAXPROCS to the pinned cores, e.g. `make bench BENCHRUN=\"taskset -c 0,1 env GOMAXPROCS=2\"` or `taskset -c 0,1 env GOMAXPROCS=2 ./bin/borderlink bench`; on a shared 2-core machine, pinning cannot keep neighbours off the cores, which is why only same-run ratios count. The machine table above records GOMAXPROCS and the allowed CPUs of the run.\n\n")
	w("Flags of `borderlink bench`:\n\n```\n%s```\n", flagsDoc)
	return b.String()
}

// writeVaultSummary writes the vault scenario's results side by side: one
// row per signer, signature rates and what the signer does to the pull
// exchange. The full rows follow in the scenario's usual table.
func writeVaultSummary(w func(string, ...any), sc *Scenario) {
	targets := []struct{ id, name string }{
		{"local", "local Ed25519 key (baseline)"},
		{"transit", "transit, one request per signature"},
		{"batched", "transit, batched (`vault.BatchSigner`; `serve` signs checkpoints so, and receipts with `receipt_key_ttl: 0`)"},
		{"delegated", "receipt key certified by transit (what `serve` does for receipts, ADR 0011)"},
	}
	open := fmt.Sprintf("open@%d", vaultRate)
	w("| signer |")
	for _, c := range vaultSignConcurrency {
		w(" signatures/s, %d signer(s) |", c)
	}
	last := vaultSignConcurrency[len(vaultSignConcurrency)-1]
	w(" pull at %d req/s: p50 | p99 | p99 added | pull, closed loop | Vault CPU per signature (%d signers) | Vault CPU per exchange at %d req/s |\n|---|", vaultRate, last, vaultRate)
	for range vaultSignConcurrency {
		w("---:|")
	}
	w("---:|---:|---:|---:|---:|---:|\n")
	base := sc.find("vault/pull/local/" + open)
	for _, t := range targets {
		w("| %s |", t.name)
		for _, c := range vaultSignConcurrency {
			if r := sc.find(fmt.Sprintf("vault/sign/%s/c%d", t.id, c)); r != nil {
				w(" %s |", fmtNum(r.Median.Throughput))
			} else {
				w(" – |")
			}
		}
		if r := sc.find("vault/pull/" + t.id + "/" + open); r != nil {
			added := "–"
			if base != nil && t.id != "local" {
				added = fmt.Sprintf("%+.2f ms", (r.Median.P99-base.Median.P99)/1000)
			}
			w(" %s | %s | %s |", fmtLatency(r.Median.P50), fmtLatency(r.Median.P99), added)
		} else {
			w(" – | – | – |")
		}
		if r := sc.find("vault/pull/" + t.id + "/closed"); r != nil {
			w(" %s req/s |", fmtNum(r.Median.Throughput))
		} else {
			w(" – |")
		}
		for _, id := range []string{fmt.Sprintf("vault/sign/%s/c%d", t.id, last), "vault/pull/" + t.id + "/" + open} {
			if r := sc.find(id); r != nil && t.id != "local" {
				w(" %s |", fmtLatency(r.Median.Value))
			} else {
				w(" – |")
			}
		}
		w("\n")
	}
	w("\n*p99 added* here is the difference of the medians; the headline's is the median of the run-by-run differences. *Vault CPU* is the Vault server process's user + system time (/proc/PID/stat) during the timed runs, per signature or per exchange: Vault runs on the same cores, so on this machine its CPU competes with the gateway's.\n\n")
}

// writeSweeps writes the knee searches: the knees, then every step.
func writeSweeps(w func(string, ...any), sws []*Sweep) {
	w("**Knee search** (see the note below for the definition):\n\n")
	w("| payload | target | closed-loop max | knee | knee / max | first failing rate | low-load p99 | p99 at the knee |\n|---|---|---:|---:|---:|---:|---:|---:|\n")
	for _, sw := range sws {
		knee, frac, atKnee := "none passed", "", ""
		if sw.Knee > 0 {
			knee, frac = fmt.Sprintf("%.0f/s", sw.Knee), fmt.Sprintf("%.2f", sw.Knee/sw.Max)
			for _, pt := range sw.Points {
				if pt.Offered == sw.Knee {
					atKnee = fmtLatency(pt.P99)
				}
			}
		}
		bound := "none (≥ knee)"
		if sw.Bound > 0 {
			bound = fmt.Sprintf("%.0f/s", sw.Bound)
		}
		w("| %s | %s | %.0f/s | %s | %s | %s | %s | %s |\n", sw.Payload, sw.Target, sw.Max, knee, frac, bound, fmtLatency(sw.BaseP99), atKnee)
	}
	w("\n<details><summary>Knee search steps (one open-loop run each, in the order run)</summary>\n\n")
	w("| payload | target | offered | achieved | achieved / offered | p50 | p99 | p99 / low-load p99 | max | errors | |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, sw := range sws {
		for _, pt := range sw.Points {
			verdict := "pass"
			if !pt.Pass {
				verdict = "fail: " + pt.Why
			}
			if pt.Offered == sw.Knee {
				verdict += " (knee)"
			}
			rel := ""
			if pt.RefP99 > 0 {
				rel = fmt.Sprintf("%.2f", pt.P99/pt.RefP99)
			}
			w("| %s | %s | %.0f/s | %.0f/s | %.2f | %s | %s | %s | %s | %d | %s |\n", sw.Payload, sw.Target, pt.Offered, pt.Achieved, pt.Achieved/pt.Offered,
				fmtLatency(pt.P50), fmtLatency(pt.P99), rel, fmtLatency(pt.Max), pt.Errors, verdict)
		}
	}
	w("\n</details>\n\n")
}

// NoisyCores is the median load from other processes, in cores, above
// which the report warns that the run shared the machine.
const NoisyCores = 0.5

func warn(r *Result) string {
	if r.Flagged {
		return " ⚠"
	}
	return ""
}

func fmtRSS(mib float64) string {
	if mib == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f MiB", mib)
}

// gcTargetCell says what GC target the run had and why.
func gcTargetCell(m Machine) string {
	if m.GCTargetFrom == "GOGC" {
		return m.GCTarget + " (GOGC set in the environment)"
	}
	return gcTargetOf(m) + " (the gateway's default `runtime.gc_percent`, as `borderlink serve` sets it)"
}
