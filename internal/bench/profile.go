package bench

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/google/pprof/profile"
)

// stages attribute CPU samples of the system under test to the step of the
// provider path they were spent in. A sample belongs to the first stage,
// in this order, that any frame of its stack matches, so time spent
// allocating or hashing inside a decision counts as the decision.
var stages = []struct {
	name  string
	sut   bool     // always the system under test, even on a client-labelled goroutine (in-process scenarios)
	match []string // substrings of function names
}{
	// Policy compilation (reload scenario): first, so a decision made by
	// a freshly compiled set is not counted as its compile.
	{"policy compile (agreements, Rego parse + compile, query prepare)", true, []string{"internal/policy.Compile", "opa/v1/ast.(*Compiler)", "opa/v1/ast.(*Parser)", "opa/v1/rego.(*Rego).PrepareForEval"}},
	// Deep Rego evaluation stacks are truncated by the profiler before
	// they reach Decide, hence the OPA package prefix.
	{"policy decision (OPA eval + input/result JSON)", true, []string{"internal/policy.(*Engine).Decide", "github.com/open-policy-agent/opa/"}},
	// Vault transit requests are made by BatchSigner's sending goroutine
	// and the API client, not on the exchange's stack.
	{"Vault transit signing (client: request, JSON, signature check)", true, []string{"internal/keys/vault.", "github.com/hashicorp/vault/api."}},
	// Before receipt signing, whose signedAnswer makes the append: the
	// append's work on the exchange's goroutine (copying and encoding the
	// record, queueing it, and leading a commit) counts as audit, not signing,
	// since the run of 17:41 UTC on 2026-11-30 (earlier reports counted
	// it as receipt signing).
	{"audit append (group commit, Merkle hashes, SQLite write + fsync)", true, []string{"store/sqlite.(*Store).AppendAudit", "store/sqlite.(*Store).commitAudit", "store/sqlite.(*Store).lead"}},
	{"receipt signing", true, []string{"internal/gateway.(*Gateway).signedAnswer", "internal/gateway.(*auditLog).receipt"}},
	{"store read (SQLite)", true, []string{"store/sqlite.(*Store).GetDeclaration", "store/sqlite.(*Store).SearchDeclarations", "store/sqlite.(*Store).GetRiskAssessment"}},
	{"release (apply + digest)", true, []string{"internal/gateway.(*Gateway).release", "internal/release."}},
	{"audit record build (policy input JSON)", true, []string{"internal/gateway.(*Gateway).providerRecord"}},
	{"audit verification", true, []string{"internal/audit."}},
	{"identity check, rate limit, call logging", true, []string{"internal/gateway.(*Gateway).authorize", "internal/gateway.(*Gateway).logCall", "internal/gateway.(*limiters)", "internal/identity."}},
	{"SQLite (other callers)", true, []string{"modernc.org/"}},
	{"TLS handshake", false, []string{"crypto/tls.(*Conn).handshakeContext", "crypto/tls.(*Conn).serverHandshake", "crypto/tls.(*Conn).clientHandshake"}},
	{"TLS record encryption", false, []string{"crypto/tls."}},
	{"protobuf encode/decode", false, []string{"google.golang.org/protobuf/"}},
	{"gRPC + HTTP/2 transport", false, []string{"google.golang.org/grpc", "golang.org/x/net/http2"}},
	{"GC and runtime background (both sides)", false, []string{"runtime.gcBgMarkWorker", "runtime.bgsweep", "runtime.bgscavenge", "runtime.forcegchelper"}},
	{"network syscalls", false, []string{"syscall.", "internal/poll."}},
}

// profileScenario runs loop once more under the CPU profiler, saves the profile
// as <ProfileDir>/<scenario>.cpu.pprof and fills the scenario's cost
// breakdown. The measured runs are never profiled.
func profileScenario(ctx context.Context, cfg *Config, sc *Scenario, loop func(context.Context) sample) error {
	path := filepath.Join(cfg.ProfileDir, sc.Name+".cpu.pprof")
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench: profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("bench: profile: %w", err)
	}
	var smp sample
	pprof.Do(ctx, clientLabels, func(ctx context.Context) { smp = loop(ctx) })
	pprof.StopCPUProfile()
	cfg.logf("  profiled run: %d ops, %d errors in %s", smp.ops, smp.errs, smp.elapsed.Round(time.Millisecond))
	if err := f.Close(); err != nil {
		return fmt.Errorf("bench: profile: %w", err)
	}
	sc.Profile = path
	costs, hot, client, err := analyze(path)
	if err != nil {
		sc.note("profile analysis failed: %v", err)
		return nil
	}
	sc.TopCosts, sc.HotFunctions, sc.LoadGenShare = costs, hot, client
	return nil
}

// analyze splits a profile's samples into load generator (goroutines
// labelled side=client, unless the sample is in one of the gateway's own
// stages, which in-process scenarios run on the load generator's
// goroutines) and system under test, and the latter by stage. Shares are
// of the system-under-test samples (GC background included).
func analyze(path string) (costs, hot []Cost, clientShare float64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, 0, err
	}
	defer f.Close()
	p, err := profile.Parse(f)
	if err != nil {
		return nil, nil, 0, err
	}
	self := map[string]int64{}
	vi := len(p.SampleType) - 1 // cpu nanoseconds
	var total, client, sut int64
	by := map[string]int64{}
	for _, s := range p.Sample {
		v := s.Value[vi]
		total += v
		stage, always := stageOf(s)
		if !always && slices.Contains(s.Label["side"], "client") {
			client += v
			continue
		}
		sut += v
		by[stage] += v
		if len(s.Location) > 0 && len(s.Location[0].Line) > 0 && s.Location[0].Line[0].Function != nil {
			self[s.Location[0].Line[0].Function.Name] += v
		}
	}
	if total == 0 {
		return nil, nil, 0, fmt.Errorf("%s: no samples", path)
	}
	shares := func(m map[string]int64) []Cost {
		var out []Cost
		for name, v := range m {
			out = append(out, Cost{Name: name, Share: float64(v) / float64(max(sut, 1))})
		}
		slices.SortFunc(out, func(a, b Cost) int { return cmp.Or(cmp.Compare(b.Share, a.Share), strings.Compare(a.Name, b.Name)) })
		return out
	}
	hot = shares(self)
	if len(hot) > 10 {
		hot = hot[:10]
	}
	return shares(by), hot, float64(client) / float64(total), nil
}

func stageOf(s *profile.Sample) (name string, sut bool) {
	var names []string
	for _, loc := range s.Location {
		for _, l := range loc.Line {
			if l.Function != nil {
				names = append(names, l.Function.Name)
			}
		}
	}
	for _, st := range stages {
		for _, n := range names {
			for _, m := range st.match {
				if strings.Contains(n, m) {
					return st.name, st.sut
				}
			}
		}
	}
	return "other (runtime, scheduler, unattributed)", false
}
