package bench

import (
	"context"
	"math"
	"runtime"
	rtmetrics "runtime/metrics"
	"strings"
	"testing"
	"time"
)

func TestHistQuantile(t *testing.T) {
	h := func(counts ...uint64) *rtmetrics.Float64Histogram {
		return &rtmetrics.Float64Histogram{Counts: counts, Buckets: []float64{0, 1e-6, 1e-5, 1e-4, math.Inf(1)}}
	}
	for _, tc := range []struct {
		name          string
		before, after *rtmetrics.Float64Histogram
		q, want       float64
	}{
		{"only the new counts", h(0, 0, 0, 0), h(98, 1, 1, 0), 0.99, 1e-5},
		{"earlier counts ignored", h(0, 0, 0, 50), h(98, 1, 1, 50), 0.99, 1e-5},
		{"median", h(0, 0, 0, 0), h(98, 1, 1, 0), 0.5, 1e-6},
		{"last bucket: its lower bound", h(0, 0, 0, 0), h(0, 0, 0, 3), 0.99, 1e-4},
		{"no counts", h(1, 0, 0, 0), h(1, 0, 0, 0), 0.99, 0},
		{"mismatched", h(0), h(1, 0, 0, 0), 0.99, 0},
		{"missing", nil, h(1, 0, 0, 0), 0.99, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := histQuantile(tc.before, tc.after, tc.q); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestSchedP99s: the runtime exports the histogram, a run that keeps
// goroutines waiting gets a p99 > 0, and the rows are added.
func TestSchedP99s(t *testing.T) {
	if schedLatencies() == nil {
		t.Fatalf("runtime/metrics has no %s", schedLatencyMetric)
	}
	var p99s []float64
	// Eight spinning workers on fewer processors wait for one only when
	// something schedules them: yield after each spin, so that every op
	// is a wait the runtime can sample (it times one transition in eight).
	busy := func(context.Context) error {
		for end := time.Now().Add(200 * time.Microsecond); time.Now().Before(end); {
		}
		runtime.Gosched()
		return nil
	}
	loop := schedP99s(closedLoop(8, 100*time.Millisecond, busy), &p99s)
	loop(context.Background())
	if len(p99s) != 1 || p99s[0] <= 0 {
		t.Fatalf("p99s %v, want one > 0", p99s)
	}
	sc := &Scenario{}
	addSchedLatency(sc, "1KB", []float64{2, 4}, []float64{1, 1})
	if len(sc.Ratios) != 2 || sc.Ratios[0].Value != 3 || sc.Ratios[1].Value != 3 || !strings.Contains(sc.Ratios[1].Name, "gateway / echo") {
		t.Errorf("rows %+v, want the median 3 and the ratio 3", sc.Ratios)
	}
	addSchedLatency(&Scenario{}, "1KB", nil, []float64{1}) // no gateway runs: no rows, no panic
	noEcho := &Scenario{}
	addSchedLatency(noEcho, "1KB", []float64{2}, nil)
	if len(noEcho.Ratios) != 1 || noEcho.Ratios[0].Value != 2 {
		t.Errorf("without echo runs: rows %+v, want the gateway's p99 alone", noEcho.Ratios)
	}
}
