package bench

import (
	"context"
	"fmt"
	"math"
	"time"
)

// The knee of a target is the highest offered open-loop rate it sustains:
// the highest rate of its sweep at which the achieved throughput is at
// least KneeMinAchieved × the offered rate and the p99 latency at most
// KneeP99Factor × the p99 at the sweep's lowest rate (KneeLow × the
// target's closed-loop maximum, where it is nearly idle). So that one
// unlucky short run there cannot loosen the bound, the reference is the
// lowest p99 of all the sweep's steps so far (every one at a rate no
// higher than the step judged, or a bracketed one below it).
const (
	KneeMinAchieved = 0.95
	KneeP99Factor   = 3.0
	KneeLow         = 0.1
)

// kneeMinSamples is how many calls the lowest step, whose p99 is the first
// reference, should see; its step is lengthened up to 2× KneeStep to get
// them.
const kneeMinSamples = 200

// kneeSearch finds one target's knee: Config.KneeSteps geometric steps
// from KneeLow × to 1 × its closed-loop maximum, stopping at the first
// failing step, then Config.KneeRefine bisections (geometric mean) between
// the last passing and the first failing rate. Each step is one open-loop
// run of Config.KneeStep; a single noisy step can end the coarse sweep
// early, which the bisection cannot undo.
type kneeSearch struct {
	sw     *Sweep
	o      op
	plan   []float64
	refine int
}

func newKneeSearch(cfg *Config, payload, target string, baseline bool, closedMax float64, o op) *kneeSearch {
	hi := max(1, math.Round(closedMax))
	lo := max(1, math.Round(KneeLow*hi))
	k := &kneeSearch{sw: &Sweep{Payload: payload, Target: target, Baseline: baseline, Max: hi}, o: o, refine: cfg.KneeRefine}
	n := max(2, cfg.KneeSteps)
	for i := range n {
		r := math.Round(lo * math.Pow(hi/lo, float64(i)/float64(n-1)))
		if len(k.plan) == 0 || r > k.plan[len(k.plan)-1] {
			k.plan = append(k.plan, r)
		}
	}
	return k
}

// next is the next rate to try; false when the search is over.
func (k *kneeSearch) next() (float64, bool) {
	sw := k.sw
	if sw.Bound == 0 { // coarse sweep, nothing failed yet
		if i := len(sw.Points); i < len(k.plan) {
			return k.plan[i], true
		}
		return 0, false
	}
	if sw.Knee == 0 || k.refine == 0 {
		return 0, false
	}
	r := math.Round(math.Sqrt(sw.Knee * sw.Bound))
	if r <= sw.Knee || r >= sw.Bound {
		return 0, false
	}
	return r, true
}

// record judges one step, narrows the search and returns the judged step.
func (k *kneeSearch) record(pt SweepPoint) SweepPoint {
	sw := k.sw
	refining := sw.Bound != 0
	if pt.P99 > 0 && (sw.BaseP99 == 0 || pt.P99 < sw.BaseP99) {
		sw.BaseP99 = pt.P99
	}
	pt.RefP99 = sw.BaseP99
	switch {
	case pt.Achieved < KneeMinAchieved*pt.Offered:
		pt.Why = fmt.Sprintf("achieved %.0f%% of offered", 100*pt.Achieved/pt.Offered)
	case pt.RefP99 > 0 && pt.P99 > KneeP99Factor*pt.RefP99:
		pt.Why = fmt.Sprintf("p99 %.1f× the low-load p99", pt.P99/pt.RefP99)
	default:
		pt.Pass = true
	}
	sw.Points = append(sw.Points, pt)
	if refining {
		k.refine--
	}
	if pt.Pass {
		sw.Knee = max(sw.Knee, pt.Offered)
	} else if sw.Bound == 0 || pt.Offered < sw.Bound {
		sw.Bound = pt.Offered
	}
	return pt
}

// step runs one open-loop step of the sweep at rate.
func (k *kneeSearch) step(ctx context.Context, cfg *Config, rate float64) SweepPoint {
	d := time.Duration(cfg.KneeStep)
	if len(k.sw.Points) == 0 {
		need := time.Duration(kneeMinSamples / rate * float64(time.Second))
		d = max(d, min(2*d, need))
	}
	var span time.Duration
	loop := openLoop(rate, d, k.o)
	st := measure(ctx, func(ctx context.Context) sample {
		s := loop(ctx)
		span = s.last - s.first
		return s
	})
	achieved := st.Throughput
	if st.Ops >= 2 && span > 0 {
		achieved = float64(st.Ops-1) / span.Seconds()
	}
	return SweepPoint{Offered: rate, Achieved: achieved, P50: st.P50, P99: st.P99, Max: st.Max, Errors: st.Errors, Seconds: st.Seconds}
}

// sweepKnees runs the searches step by step in turn (A B A B …, like
// interleave), adds their sweeps to sc and returns each knee; a search in
// which no rate passed reports its lowest rate.
func sweepKnees(ctx context.Context, cfg *Config, sc *Scenario, ks ...*kneeSearch) []float64 {
	for {
		progressed := false
		for _, k := range ks {
			if ctx.Err() != nil {
				break
			}
			r, ok := k.next()
			if !ok {
				continue
			}
			pt := k.record(k.step(ctx, cfg, r))
			progressed = true
			mark := "ok"
			if !pt.Pass {
				mark = "FAIL: " + pt.Why
			}
			cfg.logf("  knee search %-4s %-8s offered %7.0f/s achieved %7.0f/s p99 %8.0fµs  %s", k.sw.Payload, k.sw.Target, pt.Offered, pt.Achieved, pt.P99, mark)
		}
		if !progressed || ctx.Err() != nil {
			break
		}
	}
	knees := make([]float64, len(ks))
	for i, k := range ks {
		sc.Sweeps = append(sc.Sweeps, k.sw)
		knees[i] = k.sw.Knee
		if knees[i] == 0 {
			knees[i] = k.plan[0]
			sc.note("%s %s: no rate of the knee search met the criteria (%s); its knee result is measured at the sweep's lowest rate, %.0f/s.", k.sw.Payload, k.sw.Target, firstWhy(k.sw), knees[i])
		}
	}
	return knees
}

func firstWhy(sw *Sweep) string {
	for _, p := range sw.Points {
		if !p.Pass {
			return p.Why
		}
	}
	return "no step ran"
}

// kneeDefinition is the knee's definition as the report states it.
func kneeDefinition(cfg Config) string {
	return fmt.Sprintf("The pull scenario's knee is found, not assumed: an open-loop sweep per target, one run of %s per step (the first lengthened, up to 2×, toward %d calls), at %d geometric steps from %.0f%% to 100%% of the target's own closed-loop maximum, stopping at the first failing step, then %d bisection step(s) between the last passing and the first failing rate. "+
		"The knee is the highest offered rate at which the achieved throughput (completed calls/s between the first and the last completion) is ≥ %.0f%% of the offered rate **and** the p99 is ≤ %.0f× the low-load p99 (the p99 at the sweep's lowest rate, or the lowest p99 of any step run so far if lower, so that one unlucky short run cannot loosen the bound). The open@knee results are then measured at that rate like the fixed rates.",
		cfg.KneeStep, kneeMinSamples, cfg.KneeSteps, 100*KneeLow, cfg.KneeRefine, 100*KneeMinAchieved, KneeP99Factor)
}
