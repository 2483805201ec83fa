package delivery

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

type breakerState int

const (
	breakerClosed breakerState = iota
	breakerOpen
	breakerHalfOpen
)

func (s breakerState) String() string {
	switch s {
	case breakerOpen:
		return "open"
	case breakerHalfOpen:
		return "half-open"
	}
	return "closed"
}

// breaker is the circuit breaker of one partner, shared by its lanes: once
// the partner has failed threshold times in a row, lanes stop sending to
// it until a cooldown has passed, and then a single probe decides whether
// the partner is back. That keeps a dead partner from being hammered by
// every lane's retries and makes recovery cost one request, not Lanes.
type breaker struct {
	threshold    int
	baseCooldown time.Duration
	maxCooldown  time.Duration
	now          func() time.Time
	log          *slog.Logger

	mu        sync.Mutex
	state     breakerState
	failures  int           // consecutive failures
	cooldown  time.Duration // of the current or next opening
	openUntil time.Time
	probing   bool // half-open and the probe is out
	// changed is closed and replaced on every state change so that lanes
	// waiting in acquire re-check without polling.
	changed chan struct{}
}

func newBreaker(threshold int, cooldown, maxCooldown time.Duration, now func() time.Time, log *slog.Logger) *breaker {
	return &breaker{
		threshold:    threshold,
		baseCooldown: cooldown,
		maxCooldown:  max(cooldown, maxCooldown),
		cooldown:     cooldown,
		now:          now,
		log:          log,
		changed:      make(chan struct{}),
	}
}

// setLocked moves to state s and wakes the lanes waiting in acquire.
func (b *breaker) setLocked(s breakerState) {
	if b.state != s {
		b.log.Info("circuit breaker", "from", b.state.String(), "to", s.String(), "failures", b.failures, "cooldown", b.cooldown)
	}
	b.state = s
	close(b.changed)
	b.changed = make(chan struct{})
}

// acquire waits until a send is allowed. probe reports that the caller
// holds the single half-open probe and must report its outcome (done or
// abandon). The error is ctx's.
func (b *breaker) acquire(ctx context.Context) (probe bool, err error) {
	for {
		b.mu.Lock()
		var wait time.Duration
		switch b.state {
		case breakerClosed:
			b.mu.Unlock()
			return false, nil
		case breakerOpen:
			wait = b.openUntil.Sub(b.now())
			if wait <= 0 {
				b.probing = true
				b.setLocked(breakerHalfOpen)
				b.mu.Unlock()
				return true, nil
			}
		case breakerHalfOpen:
			if !b.probing {
				// The previous probe was abandoned.
				b.probing = true
				b.mu.Unlock()
				return true, nil
			}
		}
		changed := b.changed
		b.mu.Unlock()

		var (
			timer   *time.Timer
			timeout <-chan time.Time
		)
		if wait > 0 {
			timer = time.NewTimer(wait)
			timeout = timer.C
		}
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-changed:
		case <-timeout:
		}
		if timer != nil {
			timer.Stop()
		}
		if err != nil {
			return false, err
		}
	}
}

// done reports the outcome of a send allowed by acquire.
func (b *breaker) done(probe, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if probe {
		b.probing = false
	}
	if ok {
		// Any success shows the partner is reachable, even one that was
		// sent before the breaker opened.
		b.failures = 0
		b.cooldown = b.baseCooldown
		if b.state != breakerClosed {
			b.setLocked(breakerClosed)
		}
		return
	}
	b.failures++
	switch {
	case probe && b.state == breakerHalfOpen:
		// Still down: stay away longer each time, up to the cap.
		b.cooldown = min(2*b.cooldown, b.maxCooldown)
		b.openUntil = b.now().Add(b.cooldown)
		b.setLocked(breakerOpen)
	case b.state == breakerClosed && b.failures >= b.threshold:
		b.openUntil = b.now().Add(b.cooldown)
		b.setLocked(breakerOpen)
	}
}

// abandon gives back a send allowed by acquire that was not made or whose
// outcome says nothing about the partner (shutdown).
func (b *breaker) abandon(probe bool) {
	if !probe {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probing = false
	if b.state == breakerHalfOpen {
		b.setLocked(breakerHalfOpen)
	}
}

// String is the state for PartnerStats; an open breaker whose cooldown
// has passed counts as half-open even before a lane asks to probe.
func (b *breaker) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state == breakerOpen && !b.now().Before(b.openUntil) {
		return breakerHalfOpen.String()
	}
	return b.state.String()
}
