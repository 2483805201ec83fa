package store_test

import (
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/borderlink/borderlink/internal/store"
)

func TestLatenciesQuantile(t *testing.T) {
	b := store.LatencyBounds
	for _, tc := range []struct {
		name string
		obs  []time.Duration
		q    float64
		want float64
	}{
		{"empty", nil, 0.99, 0},
		{"all in the first bucket", []time.Duration{time.Microsecond, 2 * time.Microsecond}, 1, b[0]},
		// 100 durations just above bound 3 (within bucket 4): the median is
		// half way through that bucket.
		{"median within a bucket", repeat(time.Duration(b[3]*1e9)+1, 100), 0.5, (b[3] + b[4]) / 2},
		// 99 fast and 1 slow: the p99 is the top of the fast bucket, the
		// maximum the slow one's bucket.
		{"p99 of a tail", append(repeat(30*time.Microsecond, 99), 3*time.Millisecond), 0.99, b[1]},
		{"maximum of a tail", append(repeat(30*time.Microsecond, 99), 3*time.Millisecond), 1, b[14]},
		{"overflow", []time.Duration{time.Hour}, 0.5, b[len(b)-1]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var l store.Latencies
			for _, d := range tc.obs {
				l.Observe(d)
			}
			if got := l.Quantile(tc.q); math.Abs(got-tc.want) > 1e-12 {
				t.Errorf("Quantile(%v) = %v, want %v (counts %v)", tc.q, got, tc.want, l.Counts)
			}
			if got := l.Count(); got != uint64(len(tc.obs)) {
				t.Errorf("Count = %d, want %d", got, len(tc.obs))
			}
		})
	}
}

func TestLatencyBounds(t *testing.T) {
	b := store.LatencyBounds
	if b[0] != 25e-6 || b[len(b)-1] < 0.1 {
		t.Errorf("bounds run from %v to %v s; want 25 µs to at least 0.1 s", b[0], b[len(b)-1])
	}
	for i := 1; i < len(b); i++ {
		if r := b[i] / b[i-1]; math.Abs(r-math.Sqrt2) > 0.01 {
			t.Errorf("bound %d / bound %d = %v, want √2 (to three digits)", i, i-1, r)
		}
		if short, _ := strconv.ParseFloat(strconv.FormatFloat(b[i], 'g', 3, 64), 64); short != b[i] {
			t.Errorf("bound %d = %v, want three significant digits", i, b[i])
		}
	}
}

func repeat(d time.Duration, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = d
	}
	return out
}
