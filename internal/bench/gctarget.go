package bench

import (
	"context"
	"fmt"
	"runtime/debug"
)

// goDefaultGCPercent is Go's own GC target, the one the gateway's default
// replaces (config.DefaultGCPercent).
const goDefaultGCPercent = 100

// withGCPercent wraps loop to run at GC target percent and then restore the
// process's own: the gateway's audit wait at Go's default target, in the
// rounds of the one at the gateway's, shows in every run what the default
// buys (docs/decisions/0015-gateway-gc-target.md).
func withGCPercent(percent int, loop func(context.Context) sample) func(context.Context) sample {
	return func(ctx context.Context) sample {
		old := debug.SetGCPercent(percent)
		defer debug.SetGCPercent(old)
		return loop(ctx)
	}
}

// addGCControl adds the audit wait at Go's default GC target next to the
// one at the run's, and their ratio run by run.
func addGCControl(sc *Scenario, payload string, auditWaits, goDefault []float64) {
	p99s := positive(goDefault)
	if len(p99s) == 0 {
		return
	}
	md, spread := medianSpread(p99s)
	sc.addRatio(fmt.Sprintf("%s: p99 of the wait for the audit record at %.0f req/s with the gateway at Go's default GC target (GOGC=%d), ms (absolute; control for the gateway's own target, in the machine table)", payload, auditGoalLoad, goDefaultGCPercent),
		md, spread, "", 0, "")
	addWaitRatio(sc, fmt.Sprintf("%s: audit wait p99 at the gateway's GC target / at GOGC=%d, median of per-run ratios (below 1: the target shortens the wait)", payload, goDefaultGCPercent), auditWaits, goDefault)
}
