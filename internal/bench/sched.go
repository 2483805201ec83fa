package bench

import (
	"context"
	"fmt"
	"math"
	rtmetrics "runtime/metrics"
)

// schedLatencyMetric is the Go runtime's histogram of how long goroutines
// were runnable before they ran: the wait for a processor that the store's
// writer pays after every fsync when the exchanges keep the cores busy.
const schedLatencyMetric = "/sched/latencies:seconds"

// schedLatencies reads the process's scheduling-latency histogram so far
// (nil if the runtime does not export it).
func schedLatencies() *rtmetrics.Float64Histogram {
	s := []rtmetrics.Sample{{Name: schedLatencyMetric}}
	rtmetrics.Read(s)
	if s[0].Value.Kind() != rtmetrics.KindFloat64Histogram {
		return nil
	}
	return s[0].Value.Float64Histogram()
}

// histQuantile is the q-quantile of the counts added between before and
// after (histograms of one metric), as the upper bound of the bucket it
// falls in, in seconds; 0 without counts.
func histQuantile(before, after *rtmetrics.Float64Histogram, q float64) float64 {
	if before == nil || after == nil || len(before.Counts) != len(after.Counts) {
		return 0
	}
	var total uint64
	delta := make([]uint64, len(after.Counts))
	for i := range delta {
		delta[i] = after.Counts[i] - before.Counts[i]
		total += delta[i]
	}
	if total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(total)))
	var seen uint64
	for i, n := range delta {
		if seen += n; seen >= rank {
			// Buckets[i+1] is bucket i's upper bound; the last is +Inf.
			if hi := after.Buckets[i+1]; !math.IsInf(hi, 1) {
				return hi
			}
			return after.Buckets[i]
		}
	}
	return after.Buckets[len(after.Buckets)-1]
}

// schedP99s wraps loop to append after each run the p99 of the Go
// scheduling latency during it, in ms, to *p99s.
func schedP99s(loop func(context.Context) sample, p99s *[]float64) func(context.Context) sample {
	return func(ctx context.Context) sample {
		before := schedLatencies()
		s := loop(ctx)
		*p99s = append(*p99s, 1000*histQuantile(before, schedLatencies(), 0.99))
		return s
	}
}

// addSchedLatency adds the Go scheduling latency p99 during the gateway's
// audit-wait runs and during the echo's runs at the same rate in the same
// rounds (medians over runs), and their ratio.
func addSchedLatency(sc *Scenario, payload string, gateway, echo []float64) {
	gw := positive(gateway)
	if len(gw) == 0 {
		return
	}
	md, spread := medianSpread(gw)
	sc.addRatio(fmt.Sprintf("%s: Go scheduling latency p99 during the gateway's runs at %.0f req/s, ms (absolute; how long runnable goroutines, the store's writer after each fsync among them, waited for a processor; runtime/metrics, bucket upper bound)", payload, auditGoalLoad),
		md, spread, "", 0, "")
	// No row without echo runs: addWaitRatio adds none then.
	addWaitRatio(sc, fmt.Sprintf("%s: Go scheduling latency p99, gateway / echo at %.0f req/s, median of per-run ratios", payload, auditGoalLoad), gateway, echo)
}
