// Package ctxwait waits for a duration unless a context ends first: the
// pause between retries and rounds of the gateway's background loops
// (delivery, certificate and key renewal, Vault login, WAL checkpoints).
package ctxwait

import (
	"context"
	"time"
)

// Sleep waits for d and reports whether ctx is still live: false as soon
// as ctx ends. A d of zero or less does not wait.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Until waits until t; see Sleep.
func Until(ctx context.Context, t time.Time) bool { return Sleep(ctx, time.Until(t)) }
