package gateway

import (
	"os"
	"runtime/debug"
	"strconv"
)

// GCTarget is the garbage collector's target a process runs with.
type GCTarget struct {
	// Percent is GOGC's value: "400", or "off".
	Percent string
	// From is where it came from: "GOGC" (the environment) or
	// "runtime.gc_percent".
	From string
}

// SetGCTarget makes the garbage collector start a collection when the heap
// has grown percent over what the last one left live, unless the GOGC
// environment variable is set: an operator's GOGC wins, as it does for any
// Go program, so that GOGC=off with GOMEMLIMIT works as Go documents it.
// It changes the whole process, so only a gateway's main (serve, or a
// benchmark running the gateway as serve does) calls it.
func SetGCTarget(percent int) GCTarget {
	if v := os.Getenv("GOGC"); v != "" {
		return GCTarget{Percent: v, From: "GOGC"}
	}
	debug.SetGCPercent(percent)
	return GCTarget{Percent: strconv.Itoa(percent), From: "runtime.gc_percent"}
}
