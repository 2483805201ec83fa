package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing/fstest"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/borderlink/borderlink/internal/freeport"
	"github.com/borderlink/borderlink/internal/policy"
	"github.com/borderlink/borderlink/policies"
)

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// policyFS is the shipped policy and agreements plus n generated
// agreements between nl and n other administrations: enough data that a
// decision which scanned every agreement would show it.
func policyFS(n int) (fs.FS, error) {
	m := fstest.MapFS{}
	err := fs.WalkDir(policies.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(policies.FS, path)
		m[path] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		return nil, err
	}
	for i := range n {
		b, err := yaml.Marshal(generatedAgreement(i))
		if err != nil {
			return nil, err
		}
		m[fmt.Sprintf("agreements/gen-%05d.yaml", i)] = &fstest.MapFile{Data: b}
	}
	return m, nil
}

func generatedAgreement(i int) policy.Agreement {
	partner := fmt.Sprintf("p%05d.customs.example", i)
	return policy.Agreement{
		ID: fmt.Sprintf("gen-%05d", i), Title: "Generated benchmark agreement", LegalBasis: "benchmark (fictitious)",
		Parties: []string{provider, partner}, Status: "active",
		Valid: policy.Window{From: "2026-01-01T00:00:00Z", Until: "2030-01-01T00:00:00Z"},
		Grants: []policy.Grant{{
			ID: "nl-to-partner", Provider: provider, Recipient: partner,
			Actions: []string{"declaration.get", "declaration.search"}, Purposes: []string{purpose},
			Conditions: policy.Conditions{HSChapters: []string{fmt.Sprintf("%02d", 1+i%97)}},
			Release:    map[string]policy.ReleaseRules{"declaration": {Fields: []string{"id", "type", "export_country", "goods_items.hs_code"}}},
		}},
	}
}

// writePolicyFiles writes the *.rego modules of fsys and the data document
// OPA sees (data.borderlink, as policy.Data builds it) for upstream OPA.
func writePolicyFiles(dir string, fsys fs.FS, set *policy.Set) (files []string, err error) {
	regos, err := fs.Glob(fsys, "*.rego")
	if err != nil {
		return nil, err
	}
	for _, r := range regos {
		if strings.HasSuffix(r, "_test.rego") {
			continue
		}
		b, err := fs.ReadFile(fsys, r)
		if err != nil {
			return nil, err
		}
		p := filepath.Join(dir, r)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return nil, err
		}
		files = append(files, p)
	}
	data, err := json.Marshal(map[string]any{"borderlink": policy.Data(set.Agreements())})
	if err != nil {
		return nil, err
	}
	p := filepath.Join(dir, "data.json")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		return nil, err
	}
	return append(files, p), nil
}

// resolveOPA finds the upstream opa binary built from tools/opa/go.mod
// (the OPA version the gateway embeds).
func resolveOPA(ctx context.Context, configured string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "go", "tool", "-modfile=tools/opa/go.mod", "-n", "opa")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("resolve upstream opa (go tool -modfile=tools/opa/go.mod -n opa in %s): %w", root, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// repoRoot walks up from the working directory to the directory holding
// tools/opa/go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "tools", "opa", "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the Borderlink repository (no tools/opa/go.mod above the working directory); pass --opa")
		}
		dir = parent
	}
}

// opaServer runs `opa run --server` on a free loopback port until stop.
type opaServer struct {
	url  string
	cmd  *exec.Cmd
	done chan error
}

func startOPAServer(ctx context.Context, bin string, files []string, logFile string) (*opaServer, error) {
	addr, err := freeport.Addr()
	if err != nil {
		return nil, err
	}
	args := append([]string{"run", "--server", "--addr", addr, "--log-level", "error", "--disable-telemetry"}, files...)
	cmd := exec.Command(bin, args...)
	lf, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start opa: %w", err)
	}
	s := &opaServer{url: "http://" + addr, cmd: cmd, done: make(chan error, 1)}
	go func() { s.done <- cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(s.url + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		select {
		case err := <-s.done:
			return nil, fmt.Errorf("opa server exited: %v (log: %s)", err, logFile)
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("opa server not healthy after 60s (log: %s)", logFile)
		}
	}
}

func (s *opaServer) stop() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

// opaBenchResult is `opa bench --format json` output (a Go
// testing.BenchmarkResult).
type opaBenchResult struct {
	N         int64              `json:"N"`
	T         int64              `json:"T"` // total nanoseconds
	MemAllocs uint64             `json:"MemAllocs"`
	MemBytes  uint64             `json:"MemBytes"`
	Extra     map[string]float64 `json:"Extra"`
}

func runOPABench(ctx context.Context, bin string, files []string, input string) (Stats, error) {
	args := []string{"bench", "--format", "json", "--count", "1", "-i", input}
	for _, f := range files {
		args = append(args, "-d", f)
	}
	args = append(args, policy.Query)
	cmd := exec.CommandContext(ctx, bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return Stats{}, fmt.Errorf("opa bench: %w: %s", err, stderr.String())
	}
	var r opaBenchResult
	if err := json.Unmarshal(out, &r); err != nil {
		return Stats{}, fmt.Errorf("opa bench: decode %q: %w", truncate(out, 200), err)
	}
	if r.N == 0 {
		return Stats{}, errors.New("opa bench: no iterations")
	}
	nsop := float64(r.T) / float64(r.N)
	return Stats{Ops: r.N, Seconds: float64(r.T) / 1e9, Throughput: 1e9 / nsop, Value: nsop / 1e3,
		AllocsOp: float64(r.MemAllocs) / float64(r.N), BytesOp: float64(r.MemBytes) / float64(r.N)}, nil
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// runPolicy is scenario 2: the same policy, data and input decided
// in-process (policy.Engine.Decide, as the gateway calls it), by upstream
// OPA's REST server over loopback, and by upstream `opa bench`.
func runPolicy(ctx context.Context, cfg *Config, dir string, p *pki, sc *Scenario) error {
	fsys, err := policyFS(cfg.Agreements)
	if err != nil {
		return err
	}
	engine, err := policy.NewEngine(ctx, provider, fsys, nil)
	if err != nil {
		return err
	}
	pl, err := makePayload("1KB", 1024, 1, 1)
	if err != nil {
		return err
	}
	in := decisionInput(pl.decls[0])
	dec, err := engine.Decide(ctx, in)
	if err != nil || !dec.Allow {
		return fmt.Errorf("bench: the benchmark input is not allowed (%v, %v): fix decisionInput", dec.Reasons, err)
	}
	sc.note("%d agreements (%d generated + the shipped ones); input: %s asks %s for declaration %s (allowed).", len(engine.Agreements()), cfg.Agreements, in.Caller, provider, in.Resource.ID)
	decide := func(ctx context.Context) error {
		_, err := engine.Decide(ctx, in)
		return err
	}
	warm(ctx, cfg, 1, decide)
	inproc := &Result{ID: "policy/in-process", Target: "in-process", Mode: "closed", Unit: "decision"}

	// References in this process: the same engine, data and input with a
	// policy that only looks the caller's grants up and returns the first,
	// and with one that returns this decision as a constant.
	floorDecide, err := referenceDecide(ctx, cfg, grantLookupPolicy, in, dec)
	if err != nil {
		return fmt.Errorf("bench: grant-lookup policy: %w", err)
	}
	floor := &Result{ID: "policy/grant-lookup", Target: "in-process, grant-lookup policy (reference)", Baseline: true, Mode: "closed", Unit: "decision"}
	constDecide, err := referenceDecide(ctx, cfg, constantPolicy(dec), in, dec)
	if err != nil {
		return fmt.Errorf("bench: constant-decision policy: %w", err)
	}
	constant := &Result{ID: "policy/constant", Target: "in-process, constant-decision policy (reference)", Baseline: true, Mode: "closed", Unit: "decision"}

	set, err := policy.Compile(ctx, fsys)
	if err != nil {
		return err
	}
	files, err := writePolicyFiles(dir, fsys, set)
	if err != nil {
		return err
	}
	inputDoc, err := json.Marshal(engine.InputDocument(in))
	if err != nil {
		return err
	}
	inputFile := filepath.Join(dir, "input.json")
	if err := os.WriteFile(inputFile, inputDoc, 0o644); err != nil {
		return err
	}
	bin, err := resolveOPA(ctx, cfg.OPA)
	if err != nil {
		sc.note("upstream OPA baselines skipped: %v", err)
		interleave(ctx, cfg, sc, measurement{inproc, closedLoop(1, cfg.dur(), decide)}, measurement{floor, closedLoop(1, cfg.dur(), floorDecide)},
			measurement{constant, closedLoop(1, cfg.dur(), constDecide)})
		meanLatency(inproc)
		meanLatency(floor)
		meanLatency(constant)
		decisionLatency(sc, inproc, floor, constant)
		return profileScenario(ctx, cfg, sc, closedLoop(1, cfg.dur(), decide))
	}
	srv, err := startOPAServer(ctx, bin, files, filepath.Join(dir, "opa.log"))
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	url := srv.url + "/v1/data/" + strings.ReplaceAll(strings.TrimPrefix(policy.Query, "data."), ".", "/")
	rest := func(ctx context.Context) error {
		body, err := json.Marshal(map[string]any{"input": engine.InputDocument(in)})
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var out struct {
			Result *policy.Decision `json:"result"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK || out.Result == nil || !out.Result.Allow {
			return fmt.Errorf("opa server: status %d, result %+v", resp.StatusCode, out.Result)
		}
		return nil
	}
	if err := rest(ctx); err != nil {
		srv.stop()
		return fmt.Errorf("bench: OPA REST server disagrees with the engine: %w", err)
	}
	warm(ctx, cfg, 1, rest)
	restRes := &Result{ID: "policy/opa-rest", Target: "opa run --server", Baseline: true, Mode: "closed", Unit: "decision"}
	benchRes := &Result{ID: "policy/opa-bench", Target: "opa bench", Baseline: true, Mode: "single", Unit: "decision", Primary: "value"}
	// Run by run in turn, like interleave, with opa bench as the third.
	for range cfg.Runs {
		inproc.Runs = append(inproc.Runs, measure(ctx, closedLoop(1, cfg.dur(), decide)))
		floor.Runs = append(floor.Runs, measure(ctx, closedLoop(1, cfg.dur(), floorDecide)))
		constant.Runs = append(constant.Runs, measure(ctx, closedLoop(1, cfg.dur(), constDecide)))
		restRes.Runs = append(restRes.Runs, measure(ctx, closedLoop(1, cfg.dur(), rest)))
		r, err := runOPABench(ctx, bin, files, inputFile)
		if err != nil {
			srv.stop()
			return err
		}
		benchRes.Runs = append(benchRes.Runs, r)
	}
	srv.stop()
	for _, r := range []*Result{inproc, floor, constant, restRes, benchRes} {
		r.Group = inproc.ID
		if r != benchRes {
			meanLatency(r)
		} else {
			r.summarize()
		}
		sc.Results = append(sc.Results, r)
		logResult(cfg, r)
	}
	sc.note("REST baseline: one client, keep-alive HTTP/1.1 over loopback, JSON input encoded and decision decoded per call; CPU/op counts only this process (the opa server's CPU is not included).")
	sc.note("`opa bench` (upstream, same OPA version, same files and input) times only the prepared query's evaluation, in its own process; in-process Decide also builds the input document and decodes the result into a Decision.")

	sc.ratio("REST round trip p50 / in-process p50 (higher is better)", restRes, inproc, "p50_us", ">=", 10, "≥ 10×")
	sc.ratio("in-process mean / opa bench mean (lower is better)", inproc, benchRes, "value", "<=", 1.2, "≤ 1.2×")
	decisionLatency(sc, inproc, floor, constant)
	return profileScenario(ctx, cfg, sc, closedLoop(1, cfg.dur(), decide))
}

// grantLookupPolicy meets the decision contract with one rule over the
// same data: the caller's grants looked up (by SPIFFE ID and trust
// domain, as the shipped policy does), the first one returned. No
// validity, action, purpose, condition or national rule is checked: it is
// a reference for what the evaluation of the agreement model costs, not a
// policy to use.
const grantLookupPolicy = `package borderlink.exchange

offered := [g | some key in {input.caller.id, input.caller.domain}; some g in data.borderlink.grants[input.self][key]]

decision := {"allow": true, "entitled": true, "agreement": g.agreement, "grant": g.id, "fields": g.release.declaration.fields, "mask": [], "pseudonymize": [], "withhold": [], "code": "", "reasons": [], "obligations": {}, "max_results": 0, "rate_limit": {}, "goods_items": {"hs_chapters": [], "hs_headings": []}} if {
	g := offered[0]
}
`

// constantPolicy meets the decision contract by returning want as a
// constant: it reads neither input nor data, so what it costs is
// Engine.Decide's input conversion and decision decoding plus OPA's
// evaluation of one rule whose value is known when it is compiled.
func constantPolicy(want policy.Decision) string {
	fields, _ := json.Marshal(want.Fields)
	return fmt.Sprintf(`package borderlink.exchange

decision := {"allow": true, "entitled": true, "agreement": %q, "grant": %q, "fields": %s, "mask": [], "pseudonymize": [], "withhold": [], "code": "", "reasons": [], "obligations": {}, "max_results": 0, "rate_limit": {}, "goods_items": {"hs_chapters": [], "hs_headings": []}}
`, want.Agreement, want.Grant, fields)
}

// referenceDecide is a decide op for a reference policy: the benchmark's
// policy directory with exchange.rego replaced by src, which must allow in
// the request as want does (same agreement, grant and fields).
func referenceDecide(ctx context.Context, cfg *Config, src string, in policy.Input, want policy.Decision) (op, error) {
	fsys, err := policyFS(cfg.Agreements)
	if err != nil {
		return nil, err
	}
	fsys.(fstest.MapFS)["exchange.rego"] = &fstest.MapFile{Data: []byte(src)}
	engine, err := policy.NewEngine(ctx, provider, fsys, nil)
	if err != nil {
		return nil, err
	}
	if d, err := engine.Decide(ctx, in); err != nil || !d.Allow || d.Agreement != want.Agreement || d.Grant != want.Grant || !slices.Equal(d.Fields, want.Fields) {
		return nil, fmt.Errorf("it decides %+v, %v; want the allow of %s/%s with fields %v", d, err, want.Agreement, want.Grant, want.Fields)
	}
	decide := func(ctx context.Context) error {
		_, err := engine.Decide(ctx, in)
		return err
	}
	warm(ctx, cfg, 1, decide)
	return decide, nil
}

// decisionLatency adds the decision latency goal and the references
// measured beside it.
func decisionLatency(sc *Scenario, inproc, floor, constant *Result) {
	if len(inproc.Runs) == 0 {
		return
	}
	sc.addRatio("in-process decision p99, µs (absolute)", inproc.Median.P99, inproc.Spread["p99_us"], "<=", 100, "≤ 100 µs")
	if len(floor.Runs) > 0 {
		sc.addRatio("grant-lookup policy decision p99, µs (absolute; reference: one rule over the same grants through the same Engine.Decide)", floor.Median.P99, floor.Spread["p99_us"], "", 0, "")
		sc.ratio("in-process decision p50 / grant-lookup policy p50 (what evaluating the agreement model costs beyond a lookup)", inproc, floor, "p50_us", "", 0, "")
	}
	if len(constant.Runs) > 0 {
		sc.addRatio("constant-decision policy p99, µs (absolute; reference: Engine.Decide and OPA evaluating one constant rule, no policy work)", constant.Median.P99, constant.Spread["p99_us"], "", 0, "")
	}
	sc.note("Grant-lookup policy: the shipped policy directory with exchange.rego replaced by %d lines of Rego that look the caller's grants up (by SPIFFE ID and trust domain) and return the first with its field list, checking nothing else; same engine (policy.Engine.Decide, with its input conversion and decision decoding), data and input, timed in turn with the shipped policy. A policy that checks the agreements needs at least this lookup and the decision object, so the gap between the two is what evaluating the agreement model costs on this machine under this load.", strings.Count(grantLookupPolicy, "\n"))
	sc.note("Constant-decision policy: exchange.rego replaced by one rule whose value is the shipped policy's decision for this input, written out; it reads neither input nor data. Same engine, data and input. Its p99 is what a decision costs on this machine before the policy does any work (input conversion, OPA's evaluation set-up and the garbage it leaves, decision decoding), with the same agreements loaded. A policy that decides anything does at least this work.")
}

// meanLatency sets Value to the mean µs per op of a one-worker closed loop.
func meanLatency(r *Result) {
	for i := range r.Runs {
		if r.Runs[i].Throughput > 0 {
			r.Runs[i].Value = 1e6 / r.Runs[i].Throughput
		}
	}
	r.summarize()
}
