package delivery

import "time"

// backoff is the wait before the next attempt at an entry that has failed
// attempt times in a row (attempt >= 1): lo·2^(attempt-1), capped at hi,
// with equal jitter. Equal rather than full jitter: half of the wait is
// fixed, so that a partner that just failed is never hit again almost at
// once, and the random half spreads the retries of many lanes. r is a
// uniform draw from [0, 1).
func backoff(attempt int, lo, hi time.Duration, r float64) time.Duration {
	if hi < lo {
		hi = lo
	}
	d := lo
	for i := 1; i < attempt && d < hi; i++ {
		if d > hi/2 {
			// Doubling would pass the cap (and could overflow).
			d = hi
			break
		}
		d *= 2
	}
	d = min(d, hi)
	if d <= 0 {
		return 0
	}
	r = min(max(r, 0), 1)
	half := d / 2
	return half + time.Duration(r*float64(d-half))
}
