package gateway_test

import (
	"runtime/debug"
	"testing"

	"github.com/borderlink/borderlink/internal/gateway"
)

// gcPercent reads the collector's target without changing it.
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

func TestSetGCTarget(t *testing.T) {
	defer debug.SetGCPercent(gcPercent())
	tests := []struct {
		name    string
		env     string
		percent int
		want    gateway.GCTarget
		wantSet int // the collector's target afterwards
	}{
		{"config applies", "", 400, gateway.GCTarget{Percent: "400", From: "runtime.gc_percent"}, 400},
		{"config applies again", "", 150, gateway.GCTarget{Percent: "150", From: "runtime.gc_percent"}, 150},
		// The runtime read GOGC at start; SetGCTarget must leave the
		// target alone, whatever the variable says now.
		{"GOGC wins", "200", 400, gateway.GCTarget{Percent: "200", From: "GOGC"}, 150},
		{"GOGC off wins", "off", 400, gateway.GCTarget{Percent: "off", From: "GOGC"}, 150},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("GOGC", tt.env)
			if got := gateway.SetGCTarget(tt.percent); got != tt.want {
				t.Errorf("SetGCTarget(%d) with GOGC=%q = %+v, want %+v", tt.percent, tt.env, got, tt.want)
			}
			if got := gcPercent(); got != tt.wantSet {
				t.Errorf("collector's target = %d, want %d", got, tt.wantSet)
			}
		})
	}
}
