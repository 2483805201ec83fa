// Package delivery pushes queued alerts from the outbox to partner
// gateways: one queue per partner, several lanes per partner (entries of
// one origin record always take the same lane, so they arrive in order),
// exponential backoff with jitter on failure and a circuit breaker per
// partner. A slow or dead partner never delays the others.
//
// The deliverer does not talk gRPC or write audit records itself: a Sender
// settles each entry (delivered with a valid receipt, or refused for good)
// and the deliverer only decides when to try which entry again.
package delivery

import (
	"context"
	"time"

	"github.com/borderlink/borderlink/internal/store"
)

// Queue is what the deliverer reads and writes in the outbox.
type Queue interface {
	// PendingOutbox returns up to limit pending entries for recipient with
	// Seq > afterSeq, in Seq order.
	PendingOutbox(ctx context.Context, recipient string, afterSeq uint64, limit int) ([]store.OutboxEntry, error)
	// NoteAttempt records a failed attempt on a pending entry (for
	// operators; the deliverer keeps its own schedule in memory).
	NoteAttempt(ctx context.Context, messageID string, attempts int, next time.Time, lastError string) error
}

// Sender delivers one entry to its recipient. It returns nil once the
// entry is settled in the store (delivered, or refused by the recipient
// for good); any error means "not settled, try again later" and counts as
// a failure of the partner for its circuit breaker.
type Sender interface {
	Send(ctx context.Context, e store.OutboxEntry) error
}
