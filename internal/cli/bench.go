package cli

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/borderlink/borderlink/internal/bench"
)

const benchUsage = `bench [flags] | bench compare OLD.json NEW.json

Measures the gateway against its baselines in one run and writes
docs/benchmarks.md, docs/benchmarks/*.svg and docs/benchmarks/results.json
(see docs/benchmarks.md). --quick runs the short version (about 1½ minutes) and writes to a
temp directory unless --out is given.`

func runBench(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "compare":
			return runBenchCompare(e, args[1:])
		case "mem-child":
			// Internal: one memory case in a fresh process (see bench.MemChild).
			return bench.MemChild(ctx, args[1:], e.stdout)
		}
	}
	fs := newFlagSet(e, "bench", benchUsage)
	full := bench.Full()
	quick := fs.Bool("quick", false, "short version (about 1½ minutes): shorter runs, smaller audit log, 1,000 agreements only")
	out := fs.String("out", "docs/benchmarks.md", "Markdown report (with --quick: a temp dir unless set)")
	jsonOut := fs.String("json", "", "raw results JSON (default: benchmarks/results.json next to --out); SVG plots go next to it")
	scenarios := fs.String("scenarios", strings.Join(bench.ScenarioNames, ","), "comma-separated scenarios to run")
	runs := fs.Int("runs", full.Runs, "timed runs per result; the median is reported")
	duration := fs.Duration("duration", time.Duration(full.Duration), "length of one timed run (quick: 300ms)")
	warmup := fs.Duration("warmup", time.Duration(full.Warmup), "untimed load before each target's runs (quick: 150ms)")
	concurrency := fs.Int("concurrency", full.Concurrency, "closed-loop workers for the pull scenario")
	conns := fs.Int("conns", full.Conns, "client connections for the pull scenario")
	rates := fs.String("rates", "100,500,1000", "open-loop offered loads in req/s (the knee is added)")
	records := fs.Int("records", full.Records, "declarations per payload size in the pull scenario")
	agreements := fs.Int("agreements", full.Agreements, "generated agreements in the policy scenario")
	memAgreements := fs.String("mem-agreements", "1000,10000", "agreement counts for the memory scenario (quick: 1000)")
	auditRecords := fs.Int("audit-records", full.AuditRecs, "audit records for the memory scenario, a tenth for the audit scenario's grown log (quick: 100000)")
	appenders := fs.Int("appenders", full.Appenders, "concurrent AppendAudit callers in the audit scenario")
	opa := fs.String("opa", "", "upstream opa binary (default: built from tools/opa/go.mod with go tool)")
	vaultBin := fs.String("vault-bin", "", "Vault binary for the vault scenario's dev server (default: $"+bench.EnvVaultBin+"; make bench builds bin/vault); without one that scenario fails")
	profileDir := fs.String("profile-dir", "", "where CPU profiles go (default: a new temp dir, named in the output)")
	workDir := fs.String("work-dir", "", "databases and policy files (default: a temp dir, removed afterwards)")
	inProcMem := fs.Bool("in-process-memory", false, "measure memory in this process instead of child processes")

	var doc bytes.Buffer
	fs.SetOutput(&doc)
	fs.PrintDefaults()
	fs.SetOutput(e.stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("bench: unexpected argument %q (subcommands: compare)", fs.Arg(0))
	}
	cfg := full
	if *quick {
		cfg = bench.Quick()
	}
	var perr error
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "scenarios":
			cfg.Scenarios = strings.Split(*scenarios, ",")
		case "runs":
			cfg.Runs = *runs
		case "duration":
			cfg.Duration = bench.Duration(*duration)
		case "warmup":
			cfg.Warmup = bench.Duration(*warmup)
		case "concurrency":
			cfg.Concurrency = *concurrency
		case "conns":
			cfg.Conns = *conns
		case "rates":
			cfg.Rates, perr = floats(*rates)
		case "records":
			cfg.Records = *records
		case "agreements":
			cfg.Agreements = *agreements
		case "mem-agreements":
			var v []float64
			v, perr = floats(*memAgreements)
			cfg.MemAgreements = nil
			for _, x := range v {
				cfg.MemAgreements = append(cfg.MemAgreements, int(x))
			}
		case "audit-records":
			cfg.AuditRecs = *auditRecords
		case "appenders":
			cfg.Appenders = *appenders
		}
	})
	if perr != nil {
		return usagef("bench: %v", perr)
	}
	cfg.OPA, cfg.WorkDir, cfg.Log = *opa, *workDir, e.stderr
	cfg.VaultBin = *vaultBin
	if cfg.VaultBin == "" {
		cfg.VaultBin = e.getenv(bench.EnvVaultBin)
	}
	if !*inProcMem {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("bench: find own binary: %w", err)
		}
		cfg.Exe = exe
	}
	outSet := false
	fs.Visit(func(f *flag.Flag) { outSet = outSet || f.Name == "out" })
	mdPath := *out
	if *quick && !outSet {
		dir, err := os.MkdirTemp("", "borderlink-bench-quick-")
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		mdPath = filepath.Join(dir, "benchmarks.md")
	}
	jsonPath := *jsonOut
	if jsonPath == "" {
		jsonPath = filepath.Join(filepath.Dir(mdPath), "benchmarks", "results.json")
	}
	cfg.ProfileDir = *profileDir
	if cfg.ProfileDir == "" {
		dir, err := os.MkdirTemp("", "borderlink-bench-profiles-")
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		cfg.ProfileDir = dir
	}
	if err := cfg.Validate(); err != nil {
		return usagef("%v", err)
	}
	rep, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if err := bench.Publish(rep, mdPath, jsonPath, doc.String()); err != nil {
		return err
	}
	failed := 0
	for _, sc := range rep.Scenarios {
		for _, r := range sc.Ratios {
			met := ""
			if r.Met != nil {
				met = map[bool]string{true: "  [goal " + r.Goal + ": met]", false: "  [goal " + r.Goal + ": MISSED]"}[*r.Met]
			}
			fmt.Fprintf(e.stdout, "%-7s %-90s %8.3f%s\n", sc.Name, r.Name, r.Value, met)
		}
		if sc.Error != "" {
			failed++
			fmt.Fprintf(e.stdout, "%-7s FAILED: %s\n", sc.Name, sc.Error)
		}
	}
	fmt.Fprintf(e.stdout, "\nwrote %s, %s (and SVG plots next to it); CPU profiles in %s; took %s\n", mdPath, jsonPath, cfg.ProfileDir, time.Duration(rep.Elapsed))
	if failed > 0 {
		return fmt.Errorf("bench: %d scenario(s) failed; see %s", failed, mdPath)
	}
	return nil
}

func runBenchCompare(e *env, args []string) error {
	fs := newFlagSet(e, "bench compare", "bench compare OLD.json NEW.json\n\nPrints each metric's old and new median and the change; '!' marks changes beyond the two runs' combined spread.")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return usagef("bench compare: want two results files: bench compare OLD.json NEW.json")
	}
	old, err := bench.ReadReport(fs.Arg(0))
	if err != nil {
		return err
	}
	cur, err := bench.ReadReport(fs.Arg(1))
	if err != nil {
		return err
	}
	bench.Compare(e.stdout, old, cur)
	return nil
}

func floats(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, v)
	}
	return out, nil
}
