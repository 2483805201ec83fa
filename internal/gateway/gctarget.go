package gateway

import (
	"os"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"strconv"

	"github.com/borderlink/borderlink/internal/config"
)

// GCTarget is the garbage collector's target a process runs with.
type GCTarget struct {
	// Percent is the target in force, as GOGC writes it: "400", or "off".
	Percent string
	// From is where it came from: "GOGC" (the environment) or
	// "runtime.gc_percent".
	From string
}

// SetGCTarget makes the garbage collector start a collection when the heap
// has grown percent over what the last one left live, unless the GOGC
// environment variable is set: an operator's GOGC wins, as it does for any
// Go program, so that GOGC=off with GOMEMLIMIT works as Go documents it.
// A percent outside the bounds config validates (an unfilled config's 0
// would collect all the time) means config.DefaultGCPercent. It changes
// the whole process, so only a gateway's main (serve, or a benchmark
// running the gateway as serve does) calls it.
func SetGCTarget(percent int) GCTarget {
	if os.Getenv("GOGC") != "" {
		// Reported as the runtime took it, which is not always as
		// written: it reads a GOGC that is neither a number nor "off"
		// as 100.
		in := "off"
		if p := GCPercent(); p >= 0 {
			in = strconv.Itoa(p)
		}
		return GCTarget{Percent: in, From: "GOGC"}
	}
	if percent < config.MinGCPercent || percent > config.MaxGCPercent {
		percent = config.DefaultGCPercent
	}
	debug.SetGCPercent(percent)
	return GCTarget{Percent: strconv.Itoa(percent), From: "runtime.gc_percent"}
}

// GCPercent is the process's GC target now (-1: off), read without
// touching it: setting it, even back, could start a collection or race
// another caller.
func GCPercent() int {
	s := []rtmetrics.Sample{{Name: "/gc/gogc:percent"}}
	rtmetrics.Read(s)
	if s[0].Value.Kind() != rtmetrics.KindUint64 {
		return 100 // a runtime without the metric: its default
	}
	return int(int64(s[0].Value.Uint64())) // off reads as ^uint64(0)
}
