package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/borderlink/borderlink/internal/store"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// PublishAlert upserts a risk assessment and queues its outbox entries in
// one transaction, as PutRecordsQueued does for one record, but committed
// with the group commit of the audit log (writeBatched): concurrent
// publishes share one fsync.
func (s *Store) PublishAlert(ctx context.Context, risk *blv1.RiskAssessment, entries []store.OutboxEntry) error {
	if risk == nil {
		return fmt.Errorf("store: publish alert: nil risk assessment: %w", store.ErrInvalid)
	}
	err := s.writeBatched(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if err := putRiskAssessments(ctx, tx, []*blv1.RiskAssessment{risk}); err != nil {
			return err
		}
		return queueOutbox(ctx, tx, entries)
	})
	if err != nil {
		return fmt.Errorf("store: publish alert %q: %w", risk.GetId(), err)
	}
	return nil
}

// PutRecordsQueued is PutRecords that also queues outbox entries, all in
// one transaction: either the records and every delivery are stored, or
// nothing is. Entries need a unique MessageID, a Recipient, a RecordID and
// the Alert bytes; State, Seq and Attempts are set by the store.
func (s *Store) PutRecordsQueued(ctx context.Context, decls []*blv1.Declaration, risks []*blv1.RiskAssessment, entries []store.OutboxEntry) error {
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: put records: begin: %w", err)
	}
	defer tx.Rollback()
	if err := putDeclarations(ctx, tx, decls); err != nil {
		return err
	}
	if err := putRiskAssessments(ctx, tx, risks); err != nil {
		return err
	}
	if err := queueOutbox(ctx, tx, entries); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: put records: commit: %w", err)
	}
	return nil
}

func queueOutbox(ctx context.Context, tx *sql.Tx, entries []store.OutboxEntry) error {
	if len(entries) == 0 {
		return nil
	}
	ins, err := tx.PrepareContext(ctx, `
		INSERT INTO outbox (message_id, recipient, record_id, agreement_id, grant_id, alert, record, state, created, next_attempt)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("store: queue alerts: prepare: %w", err)
	}
	defer ins.Close()
	for _, e := range entries {
		if e.MessageID == "" || e.Recipient == "" || e.RecordID == "" || len(e.Alert) == 0 {
			return fmt.Errorf("store: queue alert %q: an outbox entry needs a message id, a recipient, a record id and the alert: %w", e.MessageID, store.ErrInvalid)
		}
		at, err := nanos(e.Created)
		if err != nil {
			return fmt.Errorf("store: queue alert %q: created: %w", e.MessageID, err)
		}
		record := e.Record
		if record == nil {
			record = []byte{}
		}
		if _, err := ins.ExecContext(ctx, e.MessageID, e.Recipient, e.RecordID, e.Agreement, e.Grant, e.Alert, record,
			int64(store.OutboxPending), at, at); err != nil {
			return fmt.Errorf("store: queue alert %q for %s: %w", e.MessageID, e.Recipient, err)
		}
	}
	return nil
}

const outboxColumns = `seq, message_id, recipient, record_id, agreement_id, grant_id, alert, record, state, attempts, created, next_attempt, last_error, receipt`

func scanOutbox(rows *sql.Rows) (store.OutboxEntry, error) {
	var (
		e                   store.OutboxEntry
		state               int64
		created, nextAttemp int64
	)
	if err := rows.Scan(&e.Seq, &e.MessageID, &e.Recipient, &e.RecordID, &e.Agreement, &e.Grant, &e.Alert, &e.Record,
		&state, &e.Attempts, &created, &nextAttemp, &e.LastError, &e.Receipt); err != nil {
		return e, err
	}
	e.State = store.OutboxState(state)
	e.Created = time.Unix(0, created).UTC()
	e.NextAttempt = time.Unix(0, nextAttemp).UTC()
	return e, nil
}

func (s *Store) queryOutbox(ctx context.Context, what, where string, args ...any) ([]store.OutboxEntry, error) {
	rows, err := s.reader.QueryContext(ctx, "SELECT "+outboxColumns+" FROM outbox WHERE "+where, args...)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	defer rows.Close()
	var out []store.OutboxEntry
	for rows.Next() {
		e, err := scanOutbox(rows)
		if err != nil {
			return nil, fmt.Errorf("store: %s: %w", what, err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	return out, nil
}

// PendingOutbox returns up to limit pending entries for recipient with
// Seq > afterSeq, in Seq order.
func (s *Store) PendingOutbox(ctx context.Context, recipient string, afterSeq uint64, limit int) ([]store.OutboxEntry, error) {
	return s.queryOutbox(ctx, "pending outbox", "recipient = ? AND state = ? AND seq > ? ORDER BY seq LIMIT ?",
		recipient, int64(store.OutboxPending), afterSeq, limit)
}

// ListOutbox returns up to limit entries that are pending or refused,
// oldest first; recipient "" lists every recipient's.
func (s *Store) ListOutbox(ctx context.Context, recipient string, limit int) ([]store.OutboxEntry, error) {
	if recipient == "" {
		return s.queryOutbox(ctx, "list outbox", "state IN (?, ?) ORDER BY seq LIMIT ?",
			int64(store.OutboxPending), int64(store.OutboxRefused), limit)
	}
	return s.queryOutbox(ctx, "list outbox", "recipient = ? AND state IN (?, ?) ORDER BY seq LIMIT ?",
		recipient, int64(store.OutboxPending), int64(store.OutboxRefused), limit)
}

// GetOutbox returns one entry; an unknown ID wraps store.ErrNotFound.
func (s *Store) GetOutbox(ctx context.Context, messageID string) (store.OutboxEntry, error) {
	es, err := s.queryOutbox(ctx, "get outbox entry", "message_id = ?", messageID)
	if err != nil {
		return store.OutboxEntry{}, err
	}
	if len(es) == 0 {
		return store.OutboxEntry{}, fmt.Errorf("store: outbox entry %q: %w", messageID, store.ErrNotFound)
	}
	return es[0], nil
}

// OutboxStats counts entries by recipient and state.
func (s *Store) OutboxStats(ctx context.Context) ([]store.OutboxStats, error) {
	rows, err := s.reader.QueryContext(ctx, `
		SELECT recipient, state, COUNT(*), MIN(created) FROM outbox GROUP BY recipient, state ORDER BY recipient`)
	if err != nil {
		return nil, fmt.Errorf("store: outbox stats: %w", err)
	}
	defer rows.Close()
	var out []store.OutboxStats
	for rows.Next() {
		var (
			recipient string
			state     int64
			n         uint64
			oldest    int64
		)
		if err := rows.Scan(&recipient, &state, &n, &oldest); err != nil {
			return nil, fmt.Errorf("store: outbox stats: %w", err)
		}
		if len(out) == 0 || out[len(out)-1].Recipient != recipient {
			out = append(out, store.OutboxStats{Recipient: recipient, Count: map[store.OutboxState]uint64{}})
		}
		st := &out[len(out)-1]
		st.Count[store.OutboxState(state)] = n
		if store.OutboxState(state) == store.OutboxPending {
			st.OldestPending = time.Unix(0, oldest).UTC()
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: outbox stats: %w", err)
	}
	return out, nil
}

// settleOutbox is the effect that moves a pending entry to a final state
// in the transaction of the audit record that documents it.
func settleOutbox(messageID string, state store.OutboxState, receipt, lastError string, at time.Time) func(context.Context, *sql.Tx, uint64) error {
	return func(ctx context.Context, tx *sql.Tx, seq uint64) error {
		settled, err := nanos(at)
		if err != nil {
			return fmt.Errorf("settle outbox entry %q: %w", messageID, err)
		}
		res, err := tx.ExecContext(ctx, `
			UPDATE outbox SET state = ?, receipt = ?, last_error = ?, audit_seq = ?, settled = ?
			WHERE message_id = ? AND state = ?`,
			int64(state), receipt, lastError, seq, settled, messageID, int64(store.OutboxPending))
		if err != nil {
			return fmt.Errorf("settle outbox entry %q: %w", messageID, err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("outbox entry %q is not pending: %w", messageID, store.ErrConflict)
		}
		return nil
	}
}

// settledAt is when an entry settled by rec did: the time of its audit
// record, or now for a record without one (its append would stamp it).
func settledAt(rec *blv1.AuditRecord) time.Time {
	if rec.GetTime() != nil {
		return rec.GetTime().AsTime()
	}
	return time.Now()
}

// ConfirmDelivery marks a pending entry delivered with the recipient's
// receipt and appends rec, the audit record of the delivery, in the same
// transaction: an entry is delivered if and only if its record is in the
// log. An entry that is no longer pending wraps store.ErrConflict and
// nothing is written.
func (s *Store) ConfirmDelivery(ctx context.Context, messageID, receipt string, rec *blv1.AuditRecord) (uint64, error) {
	return s.appendWith(ctx, rec, settleOutbox(messageID, store.OutboxDelivered, receipt, "", settledAt(rec)))
}

// RefuseDelivery marks a pending entry refused by the recipient and
// appends rec, the audit record of the refusal, in the same transaction.
func (s *Store) RefuseDelivery(ctx context.Context, messageID, reason string, rec *blv1.AuditRecord) (uint64, error) {
	return s.appendWith(ctx, rec, settleOutbox(messageID, store.OutboxRefused, "", reason, settledAt(rec)))
}

// NoteAttempt records a failed attempt on a pending entry.
func (s *Store) NoteAttempt(ctx context.Context, messageID string, attempts int, next time.Time, lastError string) error {
	at, err := nanos(next)
	if err != nil {
		return fmt.Errorf("store: note attempt %q: %w", messageID, err)
	}
	if _, err := s.writer.ExecContext(ctx, `
		UPDATE outbox SET attempts = ?, next_attempt = ?, last_error = ? WHERE message_id = ? AND state = ?`,
		attempts, at, lastError, messageID, int64(store.OutboxPending)); err != nil {
		return fmt.Errorf("store: note attempt %q: %w", messageID, err)
	}
	return nil
}

// RetryOutbox makes a pending or refused entry pending and due at now.
func (s *Store) RetryOutbox(ctx context.Context, messageID string, now time.Time) error {
	return s.moveOutbox(ctx, "retry", messageID, store.OutboxPending, now)
}

// CancelOutbox stops a pending or refused entry for good and appends rec,
// the audit record of the cancellation (who asked), in the same
// transaction: once the entry is pruned, the log still says why the alert
// stopped. An unknown entry wraps store.ErrNotFound, one already
// delivered or cancelled store.ErrConflict; nothing is written then.
func (s *Store) CancelOutbox(ctx context.Context, messageID string, now time.Time, rec *blv1.AuditRecord) (uint64, error) {
	at, err := nanos(now)
	if err != nil {
		return 0, fmt.Errorf("store: cancel %q: %w", messageID, err)
	}
	return s.appendWith(ctx, rec, func(ctx context.Context, tx *sql.Tx, _ uint64) error {
		res, err := tx.ExecContext(ctx, `
			UPDATE outbox SET state = ?, next_attempt = ?, settled = ? WHERE message_id = ? AND state IN (?, ?)`,
			int64(store.OutboxCancelled), at, at, messageID, int64(store.OutboxPending), int64(store.OutboxRefused))
		if err != nil {
			return fmt.Errorf("cancel %q: %w", messageID, err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return nil
		}
		var state int64
		switch err := tx.QueryRowContext(ctx, "SELECT state FROM outbox WHERE message_id = ?", messageID).Scan(&state); {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("outbox entry %q: %w", messageID, store.ErrNotFound)
		case err != nil:
			return fmt.Errorf("cancel %q: %w", messageID, err)
		}
		return fmt.Errorf("cancel %q: entry is %s: %w", messageID, store.OutboxState(state), store.ErrConflict)
	})
}

func (s *Store) moveOutbox(ctx context.Context, what, messageID string, to store.OutboxState, now time.Time) error {
	at, err := nanos(now)
	if err != nil {
		return fmt.Errorf("store: %s %q: %w", what, messageID, err)
	}
	res, err := s.writer.ExecContext(ctx, `
		UPDATE outbox SET state = ?, next_attempt = ?, settled = 0 WHERE message_id = ? AND state IN (?, ?)`,
		int64(to), at, messageID, int64(store.OutboxPending), int64(store.OutboxRefused))
	if err != nil {
		return fmt.Errorf("store: %s %q: %w", what, messageID, err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return nil
	}
	e, err := s.GetOutbox(ctx, messageID)
	if err != nil {
		return err
	}
	return fmt.Errorf("store: %s %q: entry is %s: %w", what, messageID, e.State, store.ErrConflict)
}

// pruneOutboxSelect selects up to ?2 settled entries settled before ?1.
// state <> 1 (pending) is spelled out, not bound: only then may SQLite use
// the partial index outbox_settled, so that a prune round reads just the
// entries it deletes instead of the whole outbox.
const pruneOutboxSelect = `
	SELECT seq FROM outbox WHERE state <> 1 AND settled > 0 AND settled < ?1
	UNION ALL
	SELECT seq FROM outbox WHERE state <> 1 AND settled = 0 AND created < ?1
	ORDER BY seq LIMIT ?2`

// PruneOutbox deletes up to limit settled entries (delivered, refused or
// cancelled) that were settled before cutoff, oldest first, and returns how
// many it deleted. Pending entries are never touched. What a settled entry
// proves stays in the audit log (the partner's receipt, the refusal); the
// row only serves `delivery status` and would otherwise keep a copy of
// every alert and record ever sent. Entries settled before the settled
// column existed count from their creation.
func (s *Store) PruneOutbox(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	at, err := nanos(cutoff)
	if err != nil {
		return 0, fmt.Errorf("store: prune outbox: %w", err)
	}
	res, err := s.writer.ExecContext(ctx, "DELETE FROM outbox WHERE seq IN ("+pruneOutboxSelect+")", at, limit)
	if err != nil {
		return 0, fmt.Errorf("store: prune outbox: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("store: prune outbox: %w", err)
	}
	return int(n), nil
}

const inboxColumns = `sender, message_id, content_sha256, record_id, agreement_id, obligations, received, retain_until, audit_seq, alert`

// GetInbox returns the alert received from sender under messageID; an
// unknown one wraps store.ErrNotFound.
func (s *Store) GetInbox(ctx context.Context, sender, messageID string) (store.InboxEntry, error) {
	es, err := s.queryInbox(ctx, "get inbox entry", "sender = ? AND message_id = ?", sender, messageID)
	if err != nil {
		return store.InboxEntry{}, err
	}
	if len(es) == 0 {
		return store.InboxEntry{}, fmt.Errorf("store: inbox %s/%s: %w", sender, messageID, store.ErrNotFound)
	}
	return es[0], nil
}

// AcceptAlert stores a received alert in the inbox and appends rec, the
// audit record of its receipt, in one transaction; e.AuditSeq is set to
// the record's seq. If the sender's message ID is already in the inbox,
// nothing is written and the error wraps store.ErrConflict: the caller
// reads the stored entry (GetInbox) and answers from it.
func (s *Store) AcceptAlert(ctx context.Context, e store.InboxEntry, rec *blv1.AuditRecord) (uint64, error) {
	if e.Sender == "" || e.MessageID == "" || e.ContentSHA256 == "" || len(e.Alert) == 0 {
		return 0, fmt.Errorf("store: accept alert: an inbox entry needs a sender, a message id, a content digest and the alert: %w", store.ErrInvalid)
	}
	received, err := nanos(e.Received)
	if err != nil {
		return 0, fmt.Errorf("store: accept alert %s/%s: received: %w", e.Sender, e.MessageID, err)
	}
	var retain int64
	if !e.RetainUntil.IsZero() {
		if retain, err = nanos(e.RetainUntil); err != nil {
			return 0, fmt.Errorf("store: accept alert %s/%s: retain until: %w", e.Sender, e.MessageID, err)
		}
	}
	return s.appendWith(ctx, rec, func(ctx context.Context, tx *sql.Tx, seq uint64) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO inbox ("+inboxColumns+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
			e.Sender, e.MessageID, e.ContentSHA256, e.RecordID, e.Agreement, e.Obligations, received, retain, seq, e.Alert)
		if err != nil {
			if strings.Contains(err.Error(), "UNIQUE constraint failed") {
				return fmt.Errorf("inbox %s/%s was received before: %w", e.Sender, e.MessageID, store.ErrConflict)
			}
			return fmt.Errorf("inbox %s/%s: %w", e.Sender, e.MessageID, err)
		}
		return nil
	})
}

// Changes returns up to limit positions of the commit order of one record
// type ("declaration" or "risk_assessment") after seq, in order.
func (s *Store) Changes(ctx context.Context, recordType string, after uint64, limit int) ([]store.Change, error) {
	rows, err := s.reader.QueryContext(ctx,
		"SELECT seq, record_type, record_id FROM record_changes WHERE record_type = ? AND seq > ? ORDER BY seq LIMIT ?",
		recordType, after, limit)
	if err != nil {
		return nil, fmt.Errorf("store: changes: %w", err)
	}
	defer rows.Close()
	var out []store.Change
	for rows.Next() {
		var c store.Change
		if err := rows.Scan(&c.Seq, &c.RecordType, &c.RecordID); err != nil {
			return nil, fmt.Errorf("store: changes: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: changes: %w", err)
	}
	return out, nil
}

func (s *Store) queryInbox(ctx context.Context, what, where string, args ...any) ([]store.InboxEntry, error) {
	rows, err := s.reader.QueryContext(ctx, "SELECT "+inboxColumns+" FROM inbox WHERE "+where, args...)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	defer rows.Close()
	var out []store.InboxEntry
	for rows.Next() {
		var (
			e                     store.InboxEntry
			received, retainUntil int64
		)
		if err := rows.Scan(&e.Sender, &e.MessageID, &e.ContentSHA256, &e.RecordID, &e.Agreement, &e.Obligations,
			&received, &retainUntil, &e.AuditSeq, &e.Alert); err != nil {
			return nil, fmt.Errorf("store: %s: %w", what, err)
		}
		e.Received = time.Unix(0, received).UTC()
		if retainUntil != 0 {
			e.RetainUntil = time.Unix(0, retainUntil).UTC()
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	return out, nil
}

// ListInbox returns up to limit received alerts, oldest first, received
// at or after since; sender "" lists every sender's.
func (s *Store) ListInbox(ctx context.Context, sender string, since time.Time, limit int) ([]store.InboxEntry, error) {
	from := boundNanos(since)
	if sender == "" {
		return s.queryInbox(ctx, "list inbox", "received >= ? ORDER BY received, sender, message_id LIMIT ?", from, limit)
	}
	return s.queryInbox(ctx, "list inbox", "sender = ? AND received >= ? ORDER BY received, message_id LIMIT ?", sender, from, limit)
}

// ExpiredInbox returns up to limit received alerts whose retention ended
// at now and whose payload is still stored.
func (s *Store) ExpiredInbox(ctx context.Context, now time.Time, limit int) ([]store.InboxEntry, error) {
	return s.queryInbox(ctx, "expired inbox", "alert IS NOT NULL AND retain_until != 0 AND retain_until <= ? ORDER BY retain_until LIMIT ?",
		boundNanos(now), limit)
}

// PurgeInbox deletes a received alert's payload (keeping its provenance)
// and appends rec, the audit record of the deletion, in one transaction.
// An entry already purged or unknown wraps store.ErrConflict and nothing
// is written.
func (s *Store) PurgeInbox(ctx context.Context, sender, messageID string, rec *blv1.AuditRecord) (uint64, error) {
	return s.appendWith(ctx, rec, func(ctx context.Context, tx *sql.Tx, _ uint64) error {
		res, err := tx.ExecContext(ctx, "UPDATE inbox SET alert = NULL WHERE sender = ? AND message_id = ? AND alert IS NOT NULL", sender, messageID)
		if err != nil {
			return fmt.Errorf("purge inbox %s/%s: %w", sender, messageID, err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("inbox %s/%s holds no payload: %w", sender, messageID, store.ErrConflict)
		}
		return nil
	})
}

// ReceivedRecord returns the latest received alert for the risk
// assessment recordID whose payload is still stored and whose retention
// has not ended at now; none wraps store.ErrNotFound. When alerts for that
// id came from more than one sender, which one is meant is ambiguous (one
// partner could shadow another's record): the error wraps
// store.ErrConflict.
func (s *Store) ReceivedRecord(ctx context.Context, recordID string, now time.Time) (store.InboxEntry, error) {
	es, err := s.queryInbox(ctx, "received record",
		"record_id = ? AND alert IS NOT NULL AND (retain_until = 0 OR retain_until > ?) ORDER BY received DESC, sender, message_id",
		recordID, boundNanos(now))
	if err != nil {
		return store.InboxEntry{}, err
	}
	if len(es) == 0 {
		return store.InboxEntry{}, fmt.Errorf("store: no received alert for %q: %w", recordID, store.ErrNotFound)
	}
	for _, e := range es[1:] {
		if e.Sender != es[0].Sender {
			return store.InboxEntry{}, fmt.Errorf("store: alerts for %q came from %s and %s: %w", recordID, es[0].Sender, e.Sender, store.ErrConflict)
		}
	}
	return es[0], nil
}
