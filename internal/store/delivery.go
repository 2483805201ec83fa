package store

import (
	"errors"
	"time"
)

// ErrConflict is wrapped when a write contradicts what is stored: a state
// change an entry's current state does not allow, or a message ID that
// was received before with other content.
var ErrConflict = errors.New("conflict")

// OutboxState is where one queued alert is on its way to one recipient;
// the numbers are those of borderlink.v1.OutboxState.
type OutboxState int32

const (
	OutboxPending   OutboxState = 1
	OutboxDelivered OutboxState = 2
	// OutboxRefused: the recipient refused it for good (its policy, a
	// conflict); not retried until an operator asks.
	OutboxRefused OutboxState = 3
	// OutboxCancelled: an operator stopped it.
	OutboxCancelled OutboxState = 4
)

func (s OutboxState) String() string {
	switch s {
	case OutboxPending:
		return "pending"
	case OutboxDelivered:
		return "delivered"
	case OutboxRefused:
		return "refused"
	case OutboxCancelled:
		return "cancelled"
	}
	return "unknown"
}

// OutboxEntry is one alert queued for one recipient gateway.
type OutboxEntry struct {
	// Seq is the creation order (assigned by the store).
	Seq       uint64
	MessageID string
	// Recipient is the receiving gateway's trust domain.
	Recipient string
	// RecordID is the risk assessment's id: entries of one record are
	// delivered to a recipient in Seq order.
	RecordID         string
	Agreement, Grant string
	// Alert is the deterministic encoding of the borderlink.v1.Alert sent.
	Alert []byte
	// Record is the deterministic encoding of the whole record as it was
	// published (empty when not kept).
	Record      []byte
	State       OutboxState
	Attempts    int
	Created     time.Time
	NextAttempt time.Time
	LastError   string
	Receipt     string
}

// OutboxStats summarises the queue towards one recipient.
type OutboxStats struct {
	Recipient string
	Count     map[OutboxState]uint64
	// OldestPending is the creation time of the oldest pending entry (zero
	// when none is pending).
	OldestPending time.Time
}

// InboxEntry is one alert received from a partner gateway, with its
// provenance.
type InboxEntry struct {
	Sender    string // trust domain of the sending gateway
	MessageID string
	// ContentSHA256 is the hex SHA-256 of the alert as first received.
	ContentSHA256 string
	RecordID      string
	Agreement     string
	// Obligations is the JSON of the sender's obligations (retention,
	// onward sharing, attribution) as stated in the alert's release.
	Obligations string
	Received    time.Time
	// RetainUntil is when the payload must be deleted; zero: keep.
	RetainUntil time.Time
	// AuditSeq is the seq of the audit record of the receipt.
	AuditSeq uint64
	// Alert is the deterministic encoding of the borderlink.v1.Alert
	// received; nil once its retention ended.
	Alert []byte
}

// Change is one position in the commit order of records (Subscribe).
type Change struct {
	Seq uint64
	// RecordType is "declaration" or "risk_assessment".
	RecordType string
	RecordID   string
}
