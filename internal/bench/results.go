package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// SchemaVersion is the version of the results JSON. Bump it when a field
// changes meaning; `bench compare` refuses files of another version.
const SchemaVersion = 1

// Report is one run of the harness: what was measured, where and how.
type Report struct {
	Version    int         `json:"version"`
	Date       time.Time   `json:"date"`
	Machine    Machine     `json:"machine"`
	Config     Config      `json:"config"`
	ProfileDir string      `json:"profile_dir"`
	Elapsed    Duration    `json:"elapsed"`
	Scenarios  []*Scenario `json:"scenarios"`
}

// Machine describes where the numbers were taken. Ratios are comparable
// across machines; absolute numbers are not.
type Machine struct {
	CPUModel    string `json:"cpu_model"`
	NumCPU      int    `json:"num_cpu"`
	GOMAXPROCS  int    `json:"gomaxprocs"`
	CPUsAllowed string `json:"cpus_allowed"` // from /proc/self/status: shows taskset pinning
	GoVersion   string `json:"go_version"`
	OS          string `json:"os"`
	Arch        string `json:"arch"`
	Kernel      string `json:"kernel"`
	// LoadAvg is /proc/loadavg at the start of the run.
	LoadAvg string `json:"load_avg"`
	// GCTarget is the garbage collector's target (GOGC) the run had:
	// the gateway's default, as serve sets it, unless GOGC was set.
	GCTarget     string `json:"gc_target,omitempty"`
	GCTargetFrom string `json:"gc_target_from,omitempty"` // "GOGC" or "runtime.gc_percent"
}

// Scenario groups the results of one numbered scenario of the issue with
// the ratios that answer its goals.
type Scenario struct {
	Name     string    `json:"name"`
	Title    string    `json:"title"`
	Results  []*Result `json:"results"`
	Ratios   []Ratio   `json:"ratios"`
	Notes    []string  `json:"notes,omitempty"`
	Profile  string    `json:"profile,omitempty"`
	TopCosts []Cost    `json:"top_costs,omitempty"`
	// HotFunctions are the functions with the most self time in the
	// system under test during the profiled run.
	HotFunctions []Cost `json:"hot_functions,omitempty"`
	// LoadGenShare is the share of the profiled run's CPU samples spent in
	// the load generator (client side) rather than the system under test.
	LoadGenShare float64 `json:"load_gen_share,omitempty"`
	// Sweeps are the open-loop rate sweeps that found each target's knee
	// (pull).
	Sweeps []*Sweep `json:"sweeps,omitempty"`
	Plots  []string `json:"plots,omitempty"`
	Error  string   `json:"error,omitempty"`
}

// Result is one measured configuration, repeated Runs times.
type Result struct {
	ID       string  `json:"id"` // stable key for compare, e.g. "pull/1KB/gateway/open@500"
	Target   string  `json:"target"`
	Baseline bool    `json:"baseline"`
	Payload  string  `json:"payload,omitempty"`
	Mode     string  `json:"mode"` // closed, open, single
	Rate     float64 `json:"rate,omitempty"`
	Unit     string  `json:"unit"` // what one op is: req, decision, record, conn
	Runs     []Stats `json:"runs"`
	Median   Stats   `json:"median"`
	// Spread is (max-min)/median per metric over the runs.
	Spread map[string]float64 `json:"spread"`
	// Primary names the metric whose spread flags the result.
	Primary string `json:"primary"`
	Flagged bool   `json:"flagged"`
	// Group is shared by results whose runs were interleaved; ratios
	// within a group are taken run by run.
	Group string `json:"group,omitempty"`
}

// Stats are one timed repetition (or the median of several).
type Stats struct {
	Ops        int64   `json:"ops"`
	Errors     int64   `json:"errors"`
	Seconds    float64 `json:"seconds"`
	Throughput float64 `json:"throughput"` // ops/s
	P50        float64 `json:"p50_us"`
	P90        float64 `json:"p90_us"`
	P99        float64 `json:"p99_us"`
	Max        float64 `json:"max_us"`
	CPUPerOp   float64 `json:"cpu_us_per_op"` // whole process, user+sys
	AllocsOp   float64 `json:"allocs_per_op"`
	BytesOp    float64 `json:"bytes_per_op"`
	RSS        float64 `json:"rss_mib"`
	// OtherCPU is how many cores other processes on the machine kept busy
	// during the run (system-wide busy time minus this process's): the
	// noise the ratios have to survive.
	OtherCPU float64 `json:"other_cpu_cores"`
	// Value carries scenario-specific single numbers (memory scenario).
	Value float64 `json:"value,omitempty"`
}

// Sweep is the knee search of one target: single open-loop runs at
// rising offered rates (see kneeSearch). The knee is the highest offered
// rate that passed: achieved ≥ KneeMinAchieved × offered and p99 ≤
// KneeP99Factor × the low-load p99 (see KneeP99Factor).
type Sweep struct {
	Payload  string  `json:"payload"`
	Target   string  `json:"target"`
	Baseline bool    `json:"baseline"`
	Max      float64 `json:"closed_max"`  // closed-loop maximum the sweep is scaled to, req/s
	BaseP99  float64 `json:"base_p99_us"` // low-load p99: the lowest p99 of the steps (normally the lowest rate's)
	Knee     float64 `json:"knee"`        // highest passing offered rate; 0 if none passed
	// Bound is the lowest failing rate above the knee (0 if none failed):
	// the knee lies between Knee and Bound.
	Bound  float64      `json:"bound,omitempty"`
	Points []SweepPoint `json:"points"`
}

// SweepPoint is one step of a sweep.
type SweepPoint struct {
	Offered  float64 `json:"offered"`  // req/s
	Achieved float64 `json:"achieved"` // completed calls / s between the first and the last completion
	P50      float64 `json:"p50_us"`
	P99      float64 `json:"p99_us"`
	Max      float64 `json:"max_us"`
	RefP99   float64 `json:"ref_p99_us"` // the low-load p99 this step was judged against
	Errors   int64   `json:"errors"`
	Seconds  float64 `json:"seconds"`
	Pass     bool    `json:"pass"`
	Why      string  `json:"why,omitempty"` // which criterion failed
}

// Resolution is how far above the knee the first failing rate was
// (Bound/Knee − 1): the knee is known to within it. 0 if unbounded.
func (s *Sweep) Resolution() float64 {
	if s.Knee <= 0 || s.Bound <= 0 {
		return 0
	}
	return s.Bound/s.Knee - 1
}

// Ratio is a comparison against a baseline, with the goal it answers.
type Ratio struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Goal   string  `json:"goal,omitempty"`
	Met    *bool   `json:"met,omitempty"`
	Spread float64 `json:"spread"` // combined spread of the two inputs
}

// Cost is one line of a profile breakdown.
type Cost struct {
	Name  string  `json:"name"`
	Share float64 `json:"share"`
}

// Duration marshals as a Go duration string.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	*d = Duration(v)
	return err
}

// metrics lists the Stats fields compare and the spread look at.
var metrics = []struct {
	name        string
	get         func(Stats) float64
	higherIsBad bool
}{
	{"throughput", func(r Stats) float64 { return r.Throughput }, false},
	{"p50_us", func(r Stats) float64 { return r.P50 }, true},
	{"p90_us", func(r Stats) float64 { return r.P90 }, true},
	{"p99_us", func(r Stats) float64 { return r.P99 }, true},
	{"max_us", func(r Stats) float64 { return r.Max }, true},
	{"cpu_us_per_op", func(r Stats) float64 { return r.CPUPerOp }, true},
	{"allocs_per_op", func(r Stats) float64 { return r.AllocsOp }, true},
	{"bytes_per_op", func(r Stats) float64 { return r.BytesOp }, true},
	{"rss_mib", func(r Stats) float64 { return r.RSS }, true},
	{"value", func(r Stats) float64 { return r.Value }, true},
	{"other_cpu_cores", func(r Stats) float64 { return r.OtherCPU }, true},
}

// SpreadLimit flags a result whose primary metric varies more than this
// over its runs.
const SpreadLimit = 0.10

// summarize fills Median, Spread and Flagged from Runs.
func (r *Result) summarize() {
	if r.Primary == "" {
		r.Primary = "throughput"
	}
	r.Spread = map[string]float64{}
	med := map[string]float64{}
	for _, m := range metrics {
		vals := make([]float64, len(r.Runs))
		for i, run := range r.Runs {
			vals[i] = m.get(run)
		}
		med[m.name], r.Spread[m.name] = medianSpread(vals)
	}
	var ops, errs []float64
	var secs []float64
	for _, run := range r.Runs {
		ops = append(ops, float64(run.Ops))
		errs = append(errs, float64(run.Errors))
		secs = append(secs, run.Seconds)
	}
	r.Median = Stats{
		Ops: int64(median(ops)), Errors: int64(median(errs)), Seconds: median(secs),
		Throughput: med["throughput"], P50: med["p50_us"], P90: med["p90_us"], P99: med["p99_us"], Max: med["max_us"],
		CPUPerOp: med["cpu_us_per_op"], AllocsOp: med["allocs_per_op"], BytesOp: med["bytes_per_op"], RSS: med["rss_mib"],
		Value: med["value"], OtherCPU: med["other_cpu_cores"],
	}
	r.Flagged = r.Spread[r.Primary] > SpreadLimit
}

// medianSpread is the median of v and its spread, (max − min) / |median|
// (0 for a single value or a zero median).
func medianSpread(v []float64) (md, spread float64) {
	md = median(v)
	if md != 0 && len(v) > 1 {
		spread = (slices.Max(v) - slices.Min(v)) / math.Abs(md)
	}
	return md, spread
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func (r *Result) metric(name string) float64 {
	for _, m := range metrics {
		if m.name == name {
			return m.get(r.Median)
		}
	}
	return 0
}

// find returns the result with the given ID, or nil.
func (s *Scenario) find(id string) *Result {
	for _, r := range s.Results {
		if r.ID == id {
			return r
		}
	}
	return nil
}

// ratio adds num/den of metric as a ratio with a goal check; cmp is ">=",
// "<=" or "" (no goal).
func (s *Scenario) ratio(name string, num, den *Result, metric string, cmp string, goal float64, goalText string) {
	s.derived(name, num, den, metric, func(a, b float64) float64 { return a / b }, cmp, goal, goalText)
}

// derived adds f(num, den) of metric. For interleaved results it is the
// median of f over the pairs of runs, with their spread; otherwise f of
// the medians, with the sum of the two spreads.
func (s *Scenario) derived(name string, num, den *Result, metric string, f func(a, b float64) float64, cmp string, goal float64, goalText string) {
	if num == nil || den == nil || den.metric(metric) == 0 {
		return
	}
	get := func(r Stats) float64 {
		for _, m := range metrics {
			if m.name == metric {
				return m.get(r)
			}
		}
		return 0
	}
	if num.Group != "" && num.Group == den.Group && len(num.Runs) == len(den.Runs) && len(num.Runs) > 1 {
		var vals []float64
		for i := range num.Runs {
			if d := get(den.Runs[i]); d != 0 {
				vals = append(vals, f(get(num.Runs[i]), d))
			}
		}
		if len(vals) > 0 {
			md, spread := medianSpread(vals)
			s.addRatio(name, md, spread, cmp, goal, goalText)
			return
		}
	}
	s.addRatio(name, f(num.metric(metric), den.metric(metric)), num.Spread[metric]+den.Spread[metric], cmp, goal, goalText)
}

func (s *Scenario) addRatio(name string, v, spread float64, cmp string, goal float64, goalText string) {
	r := Ratio{Name: name, Value: v, Spread: spread, Goal: goalText}
	if cmp != "" {
		met := v >= goal
		if cmp == "<=" {
			met = v <= goal
		}
		r.Met = &met
	}
	s.Ratios = append(s.Ratios, r)
}

func (s *Scenario) note(format string, args ...any) {
	s.Notes = append(s.Notes, fmt.Sprintf(format, args...))
}

// ReadReport loads a results JSON file.
func ReadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("bench: read results: %w", err)
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("bench: %s: %w", path, err)
	}
	if r.Version != SchemaVersion {
		return nil, fmt.Errorf("bench: %s: results schema version %d, this binary reads %d", path, r.Version, SchemaVersion)
	}
	return &r, nil
}

// WriteJSON writes r to path, indented.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: encode results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("bench: write results: %w", err)
	}
	return nil
}

func machine() Machine {
	m := Machine{
		NumCPU:     runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		GoVersion:  runtime.Version(),
		OS:         runtime.GOOS,
		Arch:       runtime.GOARCH,
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
				m.CPUsAllowed = strings.TrimSpace(v)
			}
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

func (d Duration) String() string { return time.Duration(d).String() }
