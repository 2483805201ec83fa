package bench

import (
	"context"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// op is one unit of work the load generator times: a call, a decision, an
// append, a connection. It must be safe for concurrent use.
type op func(ctx context.Context) error

// sample is what a load loop observed; measure turns it into Stats.
type sample struct {
	ops, errs int64
	lats      []time.Duration
	elapsed   time.Duration
	// first and last are when the first and the last successful call
	// completed, from the loop's start (open loop only).
	first, last time.Duration
}

// clientLabels mark load-generator goroutines (and the gRPC client
// goroutines they start) in CPU profiles, so the profile can tell what the
// harness itself cost.
var clientLabels = pprof.Labels("side", "client")

// measure runs loop once, accounting process CPU (getrusage: user+sys of
// every thread, i.e. load generator and system under test together),
// allocations and RSS per op.
func measure(ctx context.Context, loop func(ctx context.Context) sample) Stats {
	runtime.GC()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	cpu0, sys0, wall0 := cpuTime(), systemBusy(), time.Now()
	var s sample
	pprof.Do(ctx, clientLabels, func(ctx context.Context) { s = loop(ctx) })
	cpu1, sys1, wall := cpuTime(), systemBusy(), time.Since(wall0)
	runtime.ReadMemStats(&ms1)
	r := Stats{Ops: s.ops, Errors: s.errs, Seconds: s.elapsed.Seconds(), RSS: float64(rssBytes()) / (1 << 20)}
	if sys0 > 0 && sys1 > 0 && wall > 0 {
		r.OtherCPU = max(0, ((sys1-sys0)-(cpu1-cpu0)).Seconds()/wall.Seconds())
	}
	if s.elapsed > 0 {
		r.Throughput = float64(s.ops) / s.elapsed.Seconds()
	}
	if s.ops > 0 {
		r.CPUPerOp = float64((cpu1 - cpu0).Microseconds()) / float64(s.ops)
		r.AllocsOp = float64(ms1.Mallocs-ms0.Mallocs) / float64(s.ops)
		r.BytesOp = float64(ms1.TotalAlloc-ms0.TotalAlloc) / float64(s.ops)
	}
	if len(s.lats) > 0 {
		slices.Sort(s.lats)
		q := func(p float64) float64 {
			i := int(p*float64(len(s.lats))+0.5) - 1
			i = min(max(i, 0), len(s.lats)-1)
			return float64(s.lats[i].Nanoseconds()) / 1e3
		}
		r.P50, r.P90, r.P99 = q(0.50), q(0.90), q(0.99)
		r.Max = float64(s.lats[len(s.lats)-1].Nanoseconds()) / 1e3
	}
	return r
}

// closedLoop runs workers goroutines that each call o back to back for d:
// maximum throughput at a fixed concurrency.
func closedLoop(workers int, d time.Duration, o op) func(context.Context) sample {
	return func(ctx context.Context) sample {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var (
			wg        sync.WaitGroup
			mu        sync.Mutex
			all       []time.Duration
			ops, errs atomic.Int64
		)
		start := time.Now()
		deadline := start.Add(d)
		for range workers {
			wg.Go(func() {
				lats := make([]time.Duration, 0, 1024)
				for {
					t0 := time.Now()
					if !t0.Before(deadline) {
						break
					}
					err := o(ctx)
					lat := time.Since(t0)
					if err != nil {
						errs.Add(1)
						if ctx.Err() != nil {
							break
						}
						continue
					}
					ops.Add(1)
					lats = append(lats, lat)
				}
				mu.Lock()
				all = append(all, lats...)
				mu.Unlock()
			})
		}
		wg.Wait()
		return sample{ops: ops.Load(), errs: errs.Load(), lats: all, elapsed: time.Since(start)}
	}
}

// maxOutstanding bounds the calls an open loop keeps in flight; arrivals
// beyond it are counted as errors (the target is past saturation).
const maxOutstanding = 4096

// openLoop starts calls at a fixed rate for d, whether or not earlier
// calls have finished, and measures each call's latency from its intended
// start time, so a stalled target cannot hide its queueing delay
// (no coordinated omission).
func openLoop(rate float64, d time.Duration, o op) func(context.Context) sample {
	return func(ctx context.Context) sample {
		n := int(rate * d.Seconds())
		if n < 1 {
			n = 1
		}
		interval := time.Duration(float64(time.Second) / rate)
		lats := make([]time.Duration, n)
		ok := make([]bool, n)
		var (
			wg          sync.WaitGroup
			outstanding atomic.Int64
		)
		start := time.Now()
		for i := range n {
			intended := start.Add(time.Duration(i) * interval)
			if wait := time.Until(intended); wait > 0 {
				time.Sleep(wait)
			}
			if ctx.Err() != nil {
				break
			}
			if outstanding.Load() >= maxOutstanding {
				continue
			}
			outstanding.Add(1)
			wg.Go(func() {
				defer outstanding.Add(-1)
				if err := o(ctx); err == nil {
					lats[i] = time.Since(intended)
					ok[i] = true
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		s := sample{elapsed: elapsed, first: -1}
		for i := range n {
			if ok[i] {
				s.ops++
				s.lats = append(s.lats, lats[i])
				done := time.Duration(i)*interval + lats[i]
				if s.first < 0 || done < s.first {
					s.first = done
				}
				s.last = max(s.last, done)
			}
		}
		// Failed calls and arrivals dropped at maxOutstanding alike.
		s.errs = int64(n) - s.ops
		return s
	}
}

// cpuTime is the process's user+sys CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// systemBusy is the CPU time all processes of the machine have spent
// (the non-idle fields of /proc/stat's cpu line), 0 if unknown.
func systemBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var ticks int64
	for i, v := range f[1:9] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ
}

// userHZ is the unit of /proc/stat (sysconf(_SC_CLK_TCK)), 100 on Linux.
const userHZ = 100

// rssBytes is the resident set size of this process (VmRSS), 0 if unknown.
func rssBytes() int64 {
	return statusKB("VmRSS:") * 1024
}

func statusKB(key string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, key); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}
