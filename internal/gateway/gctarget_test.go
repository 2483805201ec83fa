package gateway_test

import (
	"runtime/debug"
	"testing"

	"github.com/borderlink/borderlink/internal/gateway"
)

func TestSetGCTarget(t *testing.T) {
	defer debug.SetGCPercent(gateway.GCPercent())
	tests := []struct {
		name    string
		before  int // the collector's target before the call
		env     string
		percent int
		want    gateway.GCTarget
		wantSet int // the collector's target afterwards
	}{
		{"config applies", 100, "", 400, gateway.GCTarget{Percent: "400", From: "runtime.gc_percent"}, 400},
		{"unfilled config means the default", 100, "", 0, gateway.GCTarget{Percent: "400", From: "runtime.gc_percent"}, 400},
		{"out of bounds means the default", 100, "", 20, gateway.GCTarget{Percent: "400", From: "runtime.gc_percent"}, 400},
		{"config applies again", 400, "", 150, gateway.GCTarget{Percent: "150", From: "runtime.gc_percent"}, 150},
		// The runtime read GOGC at start; SetGCTarget must leave the
		// target alone, whatever the variable says now, and report the
		// target in force.
		{"GOGC wins", 150, "200", 400, gateway.GCTarget{Percent: "150", From: "GOGC"}, 150},
		{"GOGC off wins", 150, "off", 400, gateway.GCTarget{Percent: "150", From: "GOGC"}, 150},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			debug.SetGCPercent(tt.before)
			t.Setenv("GOGC", tt.env)
			if got := gateway.SetGCTarget(tt.percent); got != tt.want {
				t.Errorf("SetGCTarget(%d) with GOGC=%q = %+v, want %+v", tt.percent, tt.env, got, tt.want)
			}
			if got := gateway.GCPercent(); got != tt.wantSet {
				t.Errorf("collector's target = %d, want %d", got, tt.wantSet)
			}
		})
	}
}

// TestSetGCTargetReportsOff: with GOGC=off in force, the target reported
// is "off".
func TestSetGCTargetReportsOff(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	t.Setenv("GOGC", "off")
	if got, want := gateway.SetGCTarget(400), (gateway.GCTarget{Percent: "off", From: "GOGC"}); got != want {
		t.Errorf("SetGCTarget = %+v, want %+v", got, want)
	}
}
