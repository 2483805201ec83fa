package keys

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/ctxwait"
)

// ReceiptKeys signs live receipts with a short-lived receipt key certified
// by the log key (audit.NewReceiptKey, ADR 0011) and replaces that key
// two thirds into its life, as RenewingKeyPair does for certificates. When
// the log key is in Vault transit, the only Vault calls are the
// delegations, not one per exchange.
//
// A renewal that fails (Vault unreachable or sealed) is retried with
// backoff while the current key keeps signing; once it has expired,
// SignReceipt fails with an error wrapping ErrUnavailable, so nothing is
// released without a receipt.
type ReceiptKeys struct {
	log audit.Signer
	ttl time.Duration
	now func() time.Time
	lg  *slog.Logger
	cur atomic.Pointer[audit.ReceiptKey]

	stopOnce sync.Once
	cancel   context.CancelFunc
	done     chan struct{}
}

// NewReceiptKeys makes the first receipt key before it returns (its error
// is returned: a gateway that cannot sign receipts must not start) and
// renews in the background until Stop. now is the clock (nil: time.Now).
func NewReceiptKeys(ctx context.Context, log audit.Signer, ttl time.Duration, now func() time.Time, logger *slog.Logger) (*ReceiptKeys, error) {
	if now == nil {
		now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	k, err := audit.NewReceiptKey(log, now(), ttl)
	if err != nil {
		return nil, fmt.Errorf("receipt key: %w", err)
	}
	r := &ReceiptKeys{log: log, ttl: ttl, now: now, lg: logger, done: make(chan struct{})}
	r.cur.Store(k)
	r.logKey("receipt key made", k)
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel = cancel
	go func() {
		defer close(r.done)
		r.renew(rctx)
	}()
	return r, nil
}

// Stop ends the renewals; SignReceipt keeps working until the key expires.
// A renewal in progress is not interrupted (a note.Signer takes no
// context): Stop may wait for one log-key signature, up to Vault's
// request_timeout.
func (r *ReceiptKeys) Stop() {
	r.stopOnce.Do(func() { r.cancel(); <-r.done })
}

// ErrReceiptKeyExpired is wrapped by SignReceipt after the receipt key
// expired without a successful renewal.
var ErrReceiptKeyExpired = fmt.Errorf("receipt key expired and could not be renewed: %w", ErrUnavailable)

// SignReceipt signs a live receipt with the current receipt key.
func (r *ReceiptKeys) SignReceipt(rc audit.Receipt) (string, error) {
	k := r.cur.Load()
	if now := r.now(); now.After(k.Delegation.NotAfter) {
		return "", fmt.Errorf("%w (expired %s)", ErrReceiptKeyExpired, k.Delegation.NotAfter.Format(time.RFC3339))
	}
	return k.Sign(rc)
}

// NotAfter is when the current receipt key expires (a metric: it should
// always be about a third of the lifetime away or more).
func (r *ReceiptKeys) NotAfter() time.Time { return r.cur.Load().Delegation.NotAfter }

// Delegation is what the log key certified for the current receipt key.
func (r *ReceiptKeys) Delegation() audit.Delegation { return r.cur.Load().Delegation }

func (r *ReceiptKeys) logKey(msg string, k *audit.ReceiptKey) {
	r.lg.Info(msg, "origin", k.Delegation.Origin, "key", k.Delegation.Key, "not_after", k.Delegation.NotAfter, "renew_at", r.renewAt(k))
}

// renewAt is two thirds into the key's life (counted from its making, not
// from NotBefore, which is back-dated a minute for skew).
func (r *ReceiptKeys) renewAt(k *audit.ReceiptKey) time.Time {
	return k.Delegation.NotAfter.Add(-r.ttl / 3)
}

func (r *ReceiptKeys) renew(ctx context.Context) {
	for {
		k := r.cur.Load()
		// Timed on the wall clock, whatever r.now says: a test clock that
		// stands still must not make this loop spin.
		if !ctxwait.Until(ctx, time.Now().Add(r.ttl*2/3)) {
			return
		}
		for attempt := 1; ; attempt++ {
			next, err := audit.NewReceiptKey(r.log, r.now(), r.ttl)
			if err == nil {
				r.cur.Store(next)
				r.logKey("receipt key renewed", next)
				break
			}
			if ctx.Err() != nil {
				return
			}
			left := k.Delegation.NotAfter.Sub(r.now())
			if left > 0 {
				r.lg.Warn("receipt key renewal failed; signing receipts with the current key until it expires",
					"attempt", attempt, "not_after", k.Delegation.NotAfter, "error", err)
			} else {
				r.lg.Error("receipt key renewal failed and the key has expired; exchanges fail until a renewal succeeds",
					"attempt", attempt, "expired", k.Delegation.NotAfter, "error", err)
			}
			if !ctxwait.Until(ctx, time.Now().Add(retryDelay(left, attempt, min(time.Minute, r.ttl/10)))) {
				return
			}
		}
	}
}
