package gateway

import (
	"testing"
	"time"

	"github.com/borderlink/borderlink/internal/policy"
)

func TestLimiters(t *testing.T) {
	l := newLimiters()
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	d := policy.Decision{Agreement: "a", Grant: "g", RateLimit: policy.Rate{PerSecond: 1, Burst: 2}}
	got := []bool{l.allow("sg", d, now), l.allow("sg", d, now), l.allow("sg", d, now)}
	if !got[0] || !got[1] || got[2] {
		t.Errorf("burst of 2 then refuse: got %v", got)
	}
	if !l.allow("cn", d, now) {
		t.Error("another caller shares the bucket")
	}
	if !l.allow("sg", d, now.Add(1100*time.Millisecond)) {
		t.Error("no token after a second at 1/s")
	}
	if !l.allow("sg", policy.Decision{Agreement: "a", Grant: "g"}, now) {
		t.Error("a grant without a limit was limited")
	}
	l.allow("old", d, now)
	l.allow("sg", d, now.Add(limiterIdle+time.Minute))
	if _, ok := l.buckets["old\x00a\x00g"]; ok {
		t.Error("idle bucket not swept")
	}
}
