package ctxwait

import (
	"context"
	"testing"
	"time"
)

func TestSleep(t *testing.T) {
	live := t.Context()
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		d    time.Duration
		want bool
	}{
		{"waits out d", live, 10 * time.Millisecond, true},
		{"nothing to wait", live, 0, true},
		{"ctx ended", ended, time.Hour, false},
		{"ctx ended, nothing to wait", ended, -time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			if got := Sleep(tc.ctx, tc.d); got != tc.want {
				t.Errorf("Sleep(%v) = %v, want %v", tc.d, got, tc.want)
			}
			if el := time.Since(start); tc.want && el < tc.d {
				t.Errorf("Sleep(%v) returned after %v", tc.d, el)
			}
		})
	}
	if !Until(live, time.Now().Add(-time.Minute)) {
		t.Error("Until(a past time) = false on a live ctx")
	}
}
