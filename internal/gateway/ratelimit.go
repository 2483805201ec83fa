package gateway

import (
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/borderlink/borderlink/internal/policy"
)

// limiters holds one token bucket per (caller, agreement, grant) whose
// grant sets a rate limit. Buckets idle for longer than limiterIdle are
// dropped so the map does not grow with every caller ever seen.
type limiters struct {
	mu      sync.Mutex
	buckets map[string]*bucket
	sweep   time.Time
}

type bucket struct {
	lim  *rate.Limiter
	rate policy.Rate
	used time.Time
}

const limiterIdle = 10 * time.Minute

func newLimiters() *limiters { return &limiters{buckets: map[string]*bucket{}} }

// allow takes one token for caller under the grant of d; a grant without a
// rate limit always allows. A changed limit (policy reload) starts a new
// bucket.
func (l *limiters) allow(caller string, d policy.Decision, now time.Time) bool {
	if d.RateLimit.PerSecond <= 0 {
		return true
	}
	key := caller + "\x00" + d.Agreement + "\x00" + d.Grant
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.sweep) > limiterIdle {
		for k, b := range l.buckets {
			if now.Sub(b.used) > limiterIdle {
				delete(l.buckets, k)
			}
		}
		l.sweep = now
	}
	b, ok := l.buckets[key]
	if !ok || b.rate != d.RateLimit {
		b = &bucket{lim: rate.NewLimiter(rate.Limit(d.RateLimit.PerSecond), max(1, d.RateLimit.Burst)), rate: d.RateLimit}
		l.buckets[key] = b
	}
	b.used = now
	return b.lim.AllowN(now, 1)
}
