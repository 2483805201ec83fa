package bench

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/borderlink/borderlink/internal/keys/vault/vaulttest"
)

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestSmoke runs every scenario in a tiny configuration, publishes the
// report and compares it with itself, so that the harness cannot rot. It
// asserts nothing about timing.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("smoke run of every benchmark scenario")
	}
	cfg := Smoke()
	cfg.WorkDir, cfg.ProfileDir, cfg.Log = t.TempDir(), t.TempDir(), testLog{t}
	// The vault scenario runs a real Vault (`make test` sets the binary);
	// without one it fails, as it does under `make bench`, unless the
	// Vault tests are skipped on purpose.
	cfg.VaultBin = os.Getenv(vaulttest.EnvBin)
	if cfg.VaultBin == "" && os.Getenv(vaulttest.EnvSkip) == "1" {
		t.Logf("%s=1: not running the vault scenario", vaulttest.EnvSkip)
		cfg.Scenarios = slices.DeleteFunc(slices.Clone(cfg.Scenarios), func(s string) bool { return s == "vault" })
	}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(rep.Scenarios), len(cfg.Scenarios); got != want {
		t.Fatalf("got %d scenarios, want %d", got, want)
	}
	for _, sc := range rep.Scenarios {
		if sc.Error != "" {
			t.Errorf("scenario %s: %s", sc.Name, sc.Error)
			continue
		}
		if len(sc.Results) == 0 {
			t.Errorf("scenario %s: no results", sc.Name)
		}
		for _, r := range sc.Results {
			if r.Median.Ops == 0 && r.Median.Value == 0 {
				t.Errorf("%s: nothing measured: %+v", r.ID, r.Median)
			}
		}
		if len(sc.Ratios) == 0 {
			t.Errorf("scenario %s: no ratios", sc.Name)
		}
	}
	dir := t.TempDir()
	md, js := filepath.Join(dir, "benchmarks.md"), filepath.Join(dir, "benchmarks", "results.json")
	if err := Publish(rep, md, js, "  -flag\n"); err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## Machine", "Top 5 costs of the pull path", "pull-1KB-latency.svg"} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("benchmarks.md lacks %q", want)
		}
	}
	back, err := ReadReport(js)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	Compare(&out, back, rep)
	if !strings.Contains(out.String(), "pull/1KB/gateway/closed") {
		t.Errorf("compare output lacks the pull result:\n%s", out.String())
	}
}

func TestSummarize(t *testing.T) {
	r := &Result{Runs: []Stats{{Throughput: 100}, {Throughput: 120}, {Throughput: 90}}}
	r.summarize()
	if got, want := r.Median.Throughput, 100.0; got != want {
		t.Errorf("median throughput = %v, want %v", got, want)
	}
	if got, want := r.Spread["throughput"], 0.3; got < want-1e-9 || got > want+1e-9 {
		t.Errorf("spread = %v, want %v", got, want)
	}
	if !r.Flagged {
		t.Error("30% spread not flagged")
	}
}

// TestKneeSearch drives the knee search with a synthetic target that
// sustains 700 req/s with flat latency.
func TestKneeSearch(t *testing.T) {
	cfg := Full()
	k := newKneeSearch(&cfg, "1KB", "gateway", false, 1000, nil)
	if got, want := k.plan[0], 100.0; got != want {
		t.Fatalf("lowest rate = %v, want %v", got, want)
	}
	var rates []float64
	for {
		r, ok := k.next()
		if !ok {
			break
		}
		rates = append(rates, r)
		pt := SweepPoint{Offered: r, Achieved: r, P99: 1000}
		if r > 700 {
			pt.Achieved, pt.P99 = 700, 50_000
		}
		k.record(pt)
	}
	sw := k.sw
	if sw.Knee <= 630 || sw.Knee > 700 || sw.Bound <= 700 {
		t.Fatalf("knee %v, bound %v after rates %v; want 630 < knee ≤ 700 < bound", sw.Knee, sw.Bound, rates)
	}
	if got, want := len(rates), len(k.plan)+cfg.KneeRefine; got != want { // the first failure is the plan's last step
		t.Errorf("ran %d steps %v, want %d (coarse up to the first failure, then %d refinements)", got, rates, want, cfg.KneeRefine)
	}
	if sw.Points[len(sw.Points)-1].Why == "" && !sw.Points[len(sw.Points)-1].Pass {
		t.Error("failed step without a reason")
	}
}

// TestCompareNewAndGone: a result or ratio in only one report is listed
// as new or gone, not skipped.
func TestCompareNewAndGone(t *testing.T) {
	result := func(id string, v float64) *Result {
		return &Result{ID: id, Median: Stats{Throughput: v}, Spread: map[string]float64{}}
	}
	old := &Report{Scenarios: []*Scenario{{
		Name:    "audit",
		Results: []*Result{result("audit/kept", 100), result("audit/dropped", 50)},
		Ratios:  []Ratio{{Name: "kept", Value: 2}, {Name: "dropped", Value: 3, Goal: "≥ 1"}},
	}}}
	cur := &Report{Scenarios: []*Scenario{{
		Name:    "audit",
		Results: []*Result{result("audit/kept", 100), result("audit/added", 70)},
		Ratios:  []Ratio{{Name: "kept", Value: 2}, {Name: "added", Value: 4}},
	}}}
	var out bytes.Buffer
	if marked := Compare(&out, old, cur); marked != 2 {
		t.Errorf("Compare marked %d rows, want the 2 gone ones:\n%s", marked, out.String())
	}
	lines := strings.Split(out.String(), "\n")
	for _, want := range [][]string{
		{"audit/added", "(new)"},
		{"audit/dropped", "(gone)", "!"},
		{"audit: dropped", "3", "(gone)", "!", "≥ 1"},
		{"audit: added", "–", "4"},
	} {
		found := false
		for _, l := range lines {
			f := strings.Fields(l)
			if strings.HasPrefix(strings.TrimSpace(l), want[0]) && len(f) >= len(want) && containsAll(l, want[1:]) {
				found = true
			}
		}
		if !found {
			t.Errorf("no line with %q in compare output:\n%s", want, out.String())
		}
	}
	if strings.Count(out.String(), "(gone)") != 2 {
		t.Errorf("want exactly the dropped result and ratio gone:\n%s", out.String())
	}
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
