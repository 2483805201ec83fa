package sqlite

// Tests of push delivery (outbox, inbox), the audit-append effects that
// settle them atomically with their audit record, the commit order of
// records (Changes) and migration 0003. The file is in package sqlite so
// that it can drive one group-commit batch directly (commitBatch) and
// inject effects (appendWith); everything else goes through the public API.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/borderlink/borderlink/internal/store"
	"github.com/borderlink/borderlink/internal/store/storetest"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

var t0 = storetest.T0

// outEntry is an outbox entry for recipient created at t0+offset.
func outEntry(messageID, recipient string, offset time.Duration) store.OutboxEntry {
	return store.OutboxEntry{
		MessageID: messageID,
		Recipient: recipient,
		Agreement: "nl-" + recipient + "-2026",
		Grant:     "grant-" + recipient,
		Alert:     []byte("alert " + messageID),
		Created:   t0.Add(offset),
	}
}

func risk(id string) *blv1.RiskAssessment { return storetest.RiskAssessment(id, "D-"+id, 0.8) }

// forRecord sets the RecordID of entries that have none.
func forRecord(id string, entries []store.OutboxEntry) []store.OutboxEntry {
	out := slices.Clone(entries)
	for i := range out {
		if out[i].RecordID == "" {
			out[i].RecordID = id
		}
	}
	return out
}

func mustPublish(t *testing.T, s *Store, r *blv1.RiskAssessment, entries ...store.OutboxEntry) {
	t.Helper()
	if err := s.PublishAlert(t.Context(), r, forRecord(r.GetId(), entries)); err != nil {
		t.Fatalf("PublishAlert(%s): %v", r.GetId(), err)
	}
}

func mustGetOutbox(t *testing.T, s *Store, messageID string) store.OutboxEntry {
	t.Helper()
	e, err := s.GetOutbox(t.Context(), messageID)
	if err != nil {
		t.Fatalf("GetOutbox(%s): %v", messageID, err)
	}
	return e
}

func wantState(t *testing.T, s *Store, messageID string, want store.OutboxState) store.OutboxEntry {
	t.Helper()
	e := mustGetOutbox(t, s, messageID)
	if e.State != want {
		t.Errorf("entry %s is %s, want %s", messageID, e.State, want)
	}
	return e
}

// outboxAuditSeq reads the audit_seq column, which OutboxEntry does not
// expose.
func outboxAuditSeq(t *testing.T, s *Store, messageID string) uint64 {
	t.Helper()
	var seq uint64
	if err := s.reader.QueryRowContext(t.Context(), "SELECT audit_seq FROM outbox WHERE message_id = ?", messageID).Scan(&seq); err != nil {
		t.Fatalf("audit_seq of %s: %v", messageID, err)
	}
	return seq
}

func messageIDs(es []store.OutboxEntry) []string {
	var ids []string
	for _, e := range es {
		ids = append(ids, e.MessageID)
	}
	return ids
}

func auditSize(t *testing.T, s *Store) int64 {
	t.Helper()
	n, err := s.AuditTreeSize(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// allAudit returns the whole trail and checks that it is gapless from 1.
func allAudit(t *testing.T, s *Store) []*blv1.AuditRecord {
	t.Helper()
	var out []*blv1.AuditRecord
	var after uint64
	for {
		page, err := s.ListAudit(t.Context(), store.AuditQuery{AfterSeq: after, Limit: 500})
		if err != nil {
			t.Fatalf("ListAudit: %v", err)
		}
		if len(page) == 0 {
			break
		}
		out = append(out, page...)
		after = page[len(page)-1].GetSeq()
	}
	for i, r := range out {
		if r.GetSeq() != uint64(i+1) {
			t.Fatalf("audit record %d has seq %d: trail not gapless", i, r.GetSeq())
		}
	}
	if n := auditSize(t, s); n != int64(len(out)) {
		t.Fatalf("AuditTreeSize = %d, ListAudit has %d records", n, len(out))
	}
	return out
}

func auditRec(requestID string) *blv1.AuditRecord { return storetest.AuditRecord(requestID, 0) }

func inEntry(sender, messageID, content string) store.InboxEntry {
	return store.InboxEntry{
		Sender:        sender,
		MessageID:     messageID,
		ContentSHA256: content,
		RecordID:      "RA-" + messageID,
		Agreement:     "nl-sg-2026",
		Obligations:   `{"retention":"P30D"}`,
		Received:      t0.Add(time.Hour),
		RetainUntil:   t0.Add(30 * 24 * time.Hour),
		Alert:         []byte("alert " + content),
	}
}

func TestPublishAlert(t *testing.T) {
	s, _ := openInternal(t)
	ctx := t.Context()
	r := risk("RA-1")
	mustPublish(t, s, r, outEntry("m1", "sg", 0), outEntry("m2", "jp", time.Second), outEntry("m3", "sg", 2*time.Second))

	got, err := s.GetRiskAssessment(ctx, "RA-1")
	if err != nil || !proto.Equal(got, r) {
		t.Fatalf("GetRiskAssessment = %v, %v; want %v", got, err, r)
	}
	var prev uint64
	for i, id := range []string{"m1", "m2", "m3"} {
		e := mustGetOutbox(t, s, id)
		want := outEntry(id, e.Recipient, time.Duration(i)*time.Second)
		if e.Seq <= prev {
			t.Errorf("%s: seq %d not after %d (entries must keep their order)", id, e.Seq, prev)
		}
		prev = e.Seq
		if e.State != store.OutboxPending || e.Attempts != 0 || e.RecordID != "RA-1" ||
			e.Agreement != want.Agreement || e.Grant != want.Grant || string(e.Alert) != string(want.Alert) ||
			!e.Created.Equal(want.Created) || !e.NextAttempt.Equal(want.Created) || e.LastError != "" || e.Receipt != "" {
			t.Errorf("GetOutbox(%s) = %+v, want a fresh pending entry like %+v", id, e, want)
		}
	}
	if _, err := s.GetOutbox(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetOutbox(unknown) = %v, want ErrNotFound", err)
	}
	// No entries: the record alone.
	mustPublish(t, s, risk("RA-2"))
	if _, err := s.GetRiskAssessment(ctx, "RA-2"); err != nil {
		t.Errorf("PublishAlert without entries did not store the record: %v", err)
	}
}

func TestPublishAlertAllOrNothing(t *testing.T) {
	updated := risk("RA-OLD")
	updated.Score = 0.1
	tests := []struct {
		name    string
		risk    *blv1.RiskAssessment
		entries []store.OutboxEntry
		wantErr error // nil: any error
	}{
		{"empty message id", risk("RA-NEW"), []store.OutboxEntry{outEntry("ok-1", "sg", 0), outEntry("", "sg", 0)}, store.ErrInvalid},
		{"empty recipient", risk("RA-NEW"), []store.OutboxEntry{outEntry("ok-1", "sg", 0), outEntry("ok-2", "", 0)}, store.ErrInvalid},
		{"empty alert", risk("RA-NEW"), []store.OutboxEntry{outEntry("ok-1", "sg", 0), {MessageID: "ok-2", Recipient: "sg", Created: t0}}, store.ErrInvalid},
		{"duplicate message id in the call", risk("RA-NEW"), []store.OutboxEntry{outEntry("ok-1", "sg", 0), outEntry("ok-1", "jp", 0)}, nil},
		{"message id already queued", risk("RA-NEW"), []store.OutboxEntry{outEntry("ok-1", "sg", 0), outEntry("m-old", "jp", 0)}, nil},
		{"update of a stored record", updated, []store.OutboxEntry{outEntry("ok-1", "sg", 0), outEntry("m-old", "jp", 0)}, nil},
		{"empty record id", risk("RA-NEW"), []store.OutboxEntry{outEntry("ok-1", "sg", 0), {MessageID: "ok-2", Recipient: "sg", RecordID: "-", Alert: []byte("a"), Created: t0}}, store.ErrInvalid},
		{"unstorable creation time", risk("RA-NEW"), []store.OutboxEntry{outEntry("ok-1", "sg", 0), {MessageID: "ok-2", Recipient: "sg", Alert: []byte("a")}}, store.ErrInvalid},
		{"risk without id", &blv1.RiskAssessment{DeclarationId: "D"}, []store.OutboxEntry{outEntry("ok-1", "sg", 0)}, store.ErrInvalid},
		{"nil risk", nil, []store.OutboxEntry{outEntry("ok-1", "sg", 0)}, store.ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, _ := openInternal(t)
			ctx := t.Context()
			old := risk("RA-OLD")
			mustPublish(t, s, old, outEntry("m-old", "sg", 0))
			changesBefore, err := s.Changes(ctx, "risk_assessment", 0, 100)
			if err != nil {
				t.Fatal(err)
			}

			entries := forRecord("RA-NEW", tc.entries)
			for i := range entries {
				if entries[i].RecordID == "-" {
					entries[i].RecordID = ""
				}
			}
			err = s.PublishAlert(ctx, tc.risk, entries)
			if err == nil {
				t.Fatal("PublishAlert succeeded, want an error")
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("PublishAlert = %v, want %v", err, tc.wantErr)
			}

			if _, err := s.GetRiskAssessment(ctx, "RA-NEW"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("record of the failed publish is stored (%v)", err)
			}
			if got, err := s.GetRiskAssessment(ctx, "RA-OLD"); err != nil || !proto.Equal(got, old) {
				t.Errorf("stored record changed by the failed publish: %v, %v", got, err)
			}
			for _, e := range tc.entries {
				if e.MessageID == "" || e.MessageID == "m-old" {
					continue
				}
				if got, err := s.GetOutbox(ctx, e.MessageID); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("entry %s of the failed publish is stored: %+v, %v", e.MessageID, got, err)
				}
			}
			all, err := s.ListOutbox(ctx, "", 100)
			if err != nil || len(all) != 1 || all[0].MessageID != "m-old" || all[0].Recipient != "sg" {
				t.Errorf("outbox after the failed publish = %v, %v; want only m-old to sg", messageIDs(all), err)
			}
			changesAfter, err := s.Changes(ctx, "risk_assessment", 0, 100)
			if err != nil || !slices.Equal(changesAfter, changesBefore) {
				t.Errorf("commit order changed by the failed publish: %v -> %v (%v)", changesBefore, changesAfter, err)
			}
		})
	}
}

func TestPendingOutboxOrderAndCursor(t *testing.T) {
	s, _ := openInternal(t)
	ctx := t.Context()
	mustPublish(t, s, risk("RA-1"), outEntry("m1", "sg", 0), outEntry("m2", "jp", 0), outEntry("m3", "sg", 0))
	mustPublish(t, s, risk("RA-2"), outEntry("m4", "sg", 0), outEntry("m5", "jp", 0))
	mustPublish(t, s, risk("RA-1"), outEntry("m6", "sg", 0))
	seq := func(id string) uint64 { return mustGetOutbox(t, s, id).Seq }

	tests := []struct {
		recipient string
		after     uint64
		limit     int
		want      []string
	}{
		{"sg", 0, 10, []string{"m1", "m3", "m4", "m6"}},
		{"jp", 0, 10, []string{"m2", "m5"}},
		{"sg", 0, 2, []string{"m1", "m3"}},
		{"sg", seq("m3"), 2, []string{"m4", "m6"}},
		{"sg", seq("m2"), 10, []string{"m3", "m4", "m6"}}, // a cursor from another recipient's seq
		{"sg", seq("m6"), 2, nil},
		{"jp", seq("m2"), 1, []string{"m5"}},
		{"sg", 0, 0, nil},
		{"kr", 0, 10, nil},
	}
	for _, tc := range tests {
		got, err := s.PendingOutbox(ctx, tc.recipient, tc.after, tc.limit)
		if err != nil {
			t.Fatalf("PendingOutbox(%s, %d, %d): %v", tc.recipient, tc.after, tc.limit, err)
		}
		if ids := messageIDs(got); !slices.Equal(ids, tc.want) {
			t.Errorf("PendingOutbox(%s, %d, %d) = %v, want %v", tc.recipient, tc.after, tc.limit, ids, tc.want)
		}
		for i := 1; i < len(got); i++ {
			if got[i].Seq <= got[i-1].Seq {
				t.Errorf("PendingOutbox(%s) not in seq order: %d after %d", tc.recipient, got[i].Seq, got[i-1].Seq)
			}
		}
	}

	// Settled entries leave the pending queue; a retried one comes back at
	// its old position.
	if _, err := s.ConfirmDelivery(ctx, "m3", "rcpt", auditRec("d-m3")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CancelOutbox(ctx, "m4", t0, auditRec("cancel-m4")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RefuseDelivery(ctx, "m6", "policy", auditRec("r-m6")); err != nil {
		t.Fatal(err)
	}
	got, err := s.PendingOutbox(ctx, "sg", 0, 10)
	if ids := messageIDs(got); err != nil || !slices.Equal(ids, []string{"m1"}) {
		t.Errorf("PendingOutbox(sg) after settling = %v, %v; want [m1]", ids, err)
	}
	if err := s.RetryOutbox(ctx, "m6", t0); err != nil {
		t.Fatal(err)
	}
	got, err = s.PendingOutbox(ctx, "sg", 0, 10)
	if ids := messageIDs(got); err != nil || !slices.Equal(ids, []string{"m1", "m6"}) {
		t.Errorf("PendingOutbox(sg) after retry = %v, %v; want [m1 m6]", ids, err)
	}
}

func TestConfirmDeliveryAtomic(t *testing.T) {
	s, _ := openInternal(t)
	ctx := t.Context()
	mustPublish(t, s, risk("RA-1"), outEntry("m1", "sg", 0), outEntry("m2", "sg", 0))

	rec := auditRec("deliver-m1")
	seq, err := s.ConfirmDelivery(ctx, "m1", "receipt-1", rec)
	if err != nil || seq != 1 || rec.GetSeq() != 1 {
		t.Fatalf("ConfirmDelivery = %d, %v (rec.Seq %d); want 1", seq, err, rec.GetSeq())
	}
	e := wantState(t, s, "m1", store.OutboxDelivered)
	if e.Receipt != "receipt-1" || e.LastError != "" {
		t.Errorf("delivered entry = %+v, want receipt-1", e)
	}
	if got := outboxAuditSeq(t, s, "m1"); got != 1 {
		t.Errorf("audit_seq of m1 = %d, want 1", got)
	}
	recs := allAudit(t, s)
	if len(recs) != 1 || !proto.Equal(recs[0], rec) {
		t.Fatalf("audit trail = %v, want [%v]", recs, rec)
	}

	// Whatever fails below leaves the trail and the entry as they are.
	fails := []struct {
		name    string
		call    func(rec *blv1.AuditRecord) (uint64, error)
		wantErr error
	}{
		{"confirm twice", func(rec *blv1.AuditRecord) (uint64, error) {
			return s.ConfirmDelivery(ctx, "m1", "receipt-2", rec)
		}, store.ErrConflict},
		{"refuse delivered", func(rec *blv1.AuditRecord) (uint64, error) {
			return s.RefuseDelivery(ctx, "m1", "late refusal", rec)
		}, store.ErrConflict},
		{"confirm unknown", func(rec *blv1.AuditRecord) (uint64, error) {
			return s.ConfirmDelivery(ctx, "nope", "receipt", rec)
		}, nil},
		{"confirm with a sequenced record", func(rec *blv1.AuditRecord) (uint64, error) {
			rec.Seq = 7
			return s.ConfirmDelivery(ctx, "m2", "receipt", rec)
		}, store.ErrInvalid},
		{"confirm with a record without time", func(rec *blv1.AuditRecord) (uint64, error) {
			rec.Time = nil
			return s.ConfirmDelivery(ctx, "m2", "receipt", rec)
		}, store.ErrInvalid},
	}
	for _, tc := range fails {
		t.Run(tc.name, func(t *testing.T) {
			before := auditSize(t, s)
			rec := auditRec("fail-" + tc.name)
			seq, err := tc.call(rec)
			if err == nil || seq != 0 {
				t.Fatalf("= %d, %v; want an error", seq, err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %v, want %v", err, tc.wantErr)
			}
			if errors.Is(tc.wantErr, store.ErrConflict) && rec.GetSeq() != 0 {
				t.Errorf("rec.Seq = %d after a failed settlement, want it unchanged", rec.GetSeq())
			}
			if got := auditSize(t, s); got != before {
				t.Errorf("AuditTreeSize %d -> %d: a failed settlement appended a record", before, got)
			}
			if rs, err := s.ListAudit(ctx, store.AuditQuery{RequestID: rec.GetRequestId()}); err != nil || len(rs) != 0 {
				t.Errorf("ListAudit(%s) = %v, %v; want nothing", rec.GetRequestId(), rs, err)
			}
		})
	}
	if e := wantState(t, s, "m1", store.OutboxDelivered); e.Receipt != "receipt-1" || e.LastError != "" {
		t.Errorf("m1 after failed settlements = %+v, want receipt-1", e)
	}
	if got := outboxAuditSeq(t, s, "m1"); got != 1 {
		t.Errorf("audit_seq of m1 = %d, want 1", got)
	}
	wantState(t, s, "m2", store.OutboxPending)

	// The failures left no hole: the next record is seq 2.
	if seq, err := s.ConfirmDelivery(ctx, "m2", "receipt-m2", auditRec("deliver-m2")); err != nil || seq != 2 {
		t.Errorf("ConfirmDelivery(m2) = %d, %v; want 2", seq, err)
	}
	if got := outboxAuditSeq(t, s, "m2"); got != 2 {
		t.Errorf("audit_seq of m2 = %d, want 2", got)
	}
	allAudit(t, s)
	CheckTree(t, s)
}

var errBoom = errors.New("boom")

// TestAppendEffectRollsBack checks the savepoint: an effect that wrote and
// then failed leaves none of its writes and no record; a successful effect
// sees the seq its record gets.
func TestAppendEffectRollsBack(t *testing.T) {
	s, _ := openInternal(t)
	ctx := t.Context()
	mustPublish(t, s, risk("RA-1"), outEntry("m1", "sg", 0))

	seq, err := s.appendWith(ctx, auditRec("fails"), func(ctx context.Context, tx *sql.Tx, seq uint64) error {
		if _, err := tx.ExecContext(ctx, "UPDATE outbox SET state = ?, receipt = 'forged' WHERE message_id = 'm1'", int64(store.OutboxDelivered)); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO risk_assessments (id, declaration_id, record) VALUES ('RA-X', 'D', x'')"); err != nil {
			return err
		}
		return errBoom
	})
	if !errors.Is(err, errBoom) || seq != 0 {
		t.Fatalf("appendWith(failing effect) = %d, %v; want %v", seq, err, errBoom)
	}
	if e := wantState(t, s, "m1", store.OutboxPending); e.Receipt != "" {
		t.Errorf("failed effect's write survived: %+v", e)
	}
	if _, err := s.GetRiskAssessment(ctx, "RA-X"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("failed effect's insert survived (%v)", err)
	}
	if n := auditSize(t, s); n != 0 {
		t.Errorf("AuditTreeSize = %d after a failed effect, want 0", n)
	}

	var seen uint64
	seq, err = s.appendWith(ctx, auditRec("ok"), func(ctx context.Context, tx *sql.Tx, seq uint64) error {
		seen = seq
		return nil
	})
	if err != nil || seq != 1 || seen != 1 {
		t.Errorf("appendWith(ok effect) = %d, %v; effect saw seq %d; want 1, 1", seq, err, seen)
	}
	CheckTree(t, s)
}

// request builds an append request as appendWith does, for driving one
// batch through commitBatch deterministically.
func request(t *testing.T, requestID string, effect func(context.Context, *sql.Tx, uint64) error) *appendReq {
	t.Helper()
	r, err := newAppendReq(auditRec(requestID), effect)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// inboxInsert is an effect like AcceptAlert's (which is an inline
// closure): a second insert of the same key fails on the UNIQUE constraint
// inside the batch's transaction, which must stay usable.
func inboxInsert(e store.InboxEntry) func(context.Context, *sql.Tx, uint64) error {
	return func(ctx context.Context, tx *sql.Tx, seq uint64) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO inbox ("+inboxColumns+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
			e.Sender, e.MessageID, e.ContentSHA256, e.RecordID, e.Agreement, e.Obligations, e.Received.UnixNano(), e.RetainUntil.UnixNano(), seq, e.Alert)
		if err != nil {
			return fmt.Errorf("%w: %v", store.ErrConflict, err)
		}
		return nil
	}
}

// TestEffectIsolationInOneBatch commits one group-commit batch mixing plain
// appends, effects that succeed and effects that fail (one after writing):
// only the failing requests fail, their records are not appended, the
// others' records get consecutive seqs and their effects commit.
func TestEffectIsolationInOneBatch(t *testing.T) {
	s, _ := openInternal(t)
	ctx := t.Context()
	mustPublish(t, s, risk("RA-1"), outEntry("m1", "sg", 0), outEntry("m2", "sg", 0), outEntry("m3", "sg", 0), outEntry("m4", "sg", 0))
	if seq, err := s.ConfirmDelivery(ctx, "m4", "r4", auditRec("pre-m4")); err != nil || seq != 1 {
		t.Fatalf("ConfirmDelivery(m4) = %d, %v", seq, err)
	}
	y := inEntry("spiffe-sg", "y", "sha-y")

	type step struct {
		req     *appendReq
		wantSeq uint64 // 0: must fail
		wantErr error
	}
	steps := []step{
		{request(t, "a0", nil), 2, nil},
		{request(t, "confirm-m1", settleOutbox("m1", store.OutboxDelivered, "r1", "", time.Unix(1700000000, 0))), 3, nil},
		{request(t, "confirm-m1-again", settleOutbox("m1", store.OutboxDelivered, "r1-again", "", time.Unix(1700000000, 0))), 0, store.ErrConflict},
		{request(t, "confirm-m4-delivered", settleOutbox("m4", store.OutboxDelivered, "r4-again", "", time.Unix(1700000000, 0))), 0, store.ErrConflict},
		{request(t, "write-then-fail", func(ctx context.Context, tx *sql.Tx, seq uint64) error {
			if _, err := tx.ExecContext(ctx, "UPDATE outbox SET state = ?, receipt = 'forged' WHERE message_id IN ('m1', 'm3')", int64(store.OutboxCancelled)); err != nil {
				return err
			}
			return errBoom
		}), 0, errBoom},
		{request(t, "accept-y", inboxInsert(y)), 4, nil},
		{request(t, "accept-y-again", inboxInsert(y)), 0, store.ErrConflict},
		{request(t, "refuse-m2", settleOutbox("m2", store.OutboxRefused, "", "policy", time.Unix(1700000000, 0))), 5, nil},
		{request(t, "confirm-m2-refused", settleOutbox("m2", store.OutboxDelivered, "r2", "", time.Unix(1700000000, 0))), 0, store.ErrConflict},
		{request(t, "a9", nil), 6, nil},
	}
	batch := make([]*appendReq, len(steps))
	for i, st := range steps {
		batch[i] = st.req
	}
	// The sequencer is idle (every earlier append returned), so this
	// goroutine may run its batch function, and count it as the sequencer
	// would.
	before := s.AppendStats()
	times := batchTimes{taken: time.Now()}
	res, err := s.commitBatch(batch, &times)
	if err != nil {
		t.Fatalf("commitBatch: %v", err)
	}
	s.seq.counted(batch, res, times)
	// Only the appends that committed count, each with its queue time.
	if d := s.AppendStats().Sub(before); d.Commits != 1 || d.Appends != 5 || d.Queue.Count() != 5 || d.Build.Count() != 1 || d.Sync.Count() != 1 {
		t.Errorf("stats of the batch: %d commits, %d appends, %d/%d/%d queue/build/sync timings; want 1, 5 and 5/1/1",
			d.Commits, d.Appends, d.Queue.Count(), d.Build.Count(), d.Sync.Count())
	}
	for i, st := range steps {
		id := st.req.rec.GetRequestId()
		switch {
		case st.wantSeq == 0 && (res[i].err == nil || !errors.Is(res[i].err, st.wantErr) || res[i].seq != 0):
			t.Errorf("%s: result %+v, want error %v", id, res[i], st.wantErr)
		case st.wantSeq != 0 && (res[i].err != nil || res[i].seq != st.wantSeq):
			t.Errorf("%s: result %+v, want seq %d", id, res[i], st.wantSeq)
		}
	}
	var want []string
	for _, st := range steps {
		if st.wantSeq != 0 {
			want = append(want, st.req.rec.GetRequestId())
		}
	}
	var got []string
	for _, r := range allAudit(t, s)[1:] {
		got = append(got, r.GetRequestId())
	}
	if !slices.Equal(got, want) {
		t.Errorf("records of the batch = %v, want %v", got, want)
	}
	if e := wantState(t, s, "m1", store.OutboxDelivered); e.Receipt != "r1" || outboxAuditSeq(t, s, "m1") != 3 {
		t.Errorf("m1 = %+v (audit_seq %d), want delivered with r1 at seq 3", e, outboxAuditSeq(t, s, "m1"))
	}
	if e := wantState(t, s, "m2", store.OutboxRefused); e.LastError != "policy" || outboxAuditSeq(t, s, "m2") != 5 {
		t.Errorf("m2 = %+v (audit_seq %d), want refused at seq 5", e, outboxAuditSeq(t, s, "m2"))
	}
	if e := wantState(t, s, "m3", store.OutboxPending); e.Receipt != "" {
		t.Errorf("m3 = %+v: the failed effect's write survived", e)
	}
	if e := wantState(t, s, "m4", store.OutboxDelivered); e.Receipt != "r4" || outboxAuditSeq(t, s, "m4") != 1 {
		t.Errorf("m4 = %+v, want its first delivery untouched", e)
	}
	if in, err := s.GetInbox(ctx, y.Sender, y.MessageID); err != nil || in.AuditSeq != 4 {
		t.Errorf("GetInbox(y) = %+v, %v; want audit seq 4", in, err)
	}
	CheckTree(t, s)
	// The sequencer continues the log after the batch.
	if seq, err := s.AppendAudit(ctx, auditRec("after")); err != nil || seq != 7 {
		t.Errorf("AppendAudit after the batch = %d, %v; want 7", seq, err)
	}
	CheckTree(t, s)
}

// TestEffectIsolationConcurrent races settlements (some of entries no
// longer pending, some twice for the same entry), inbox receipts (some
// twice) and plain appends through the sequencer. The writer is held while
// they queue so that most of them share one batch.
func TestEffectIsolationConcurrent(t *testing.T) {
	s, _ := openInternal(t)
	ctx := t.Context()
	const entries = 60
	var es []store.OutboxEntry
	for i := range entries {
		es = append(es, outEntry(fmt.Sprintf("m%02d", i), "sg", time.Duration(i)*time.Second))
	}
	mustPublish(t, s, risk("RA-1"), es...)
	for i := range 10 { // m00..m09 delivered
		if _, err := s.ConfirmDelivery(ctx, fmt.Sprintf("m%02d", i), "pre", auditRec(fmt.Sprintf("pre-d%02d", i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := 10; i < 15; i++ { // m10..m14 cancelled
		if _, err := s.CancelOutbox(ctx, fmt.Sprintf("m%02d", i), t0, auditRec(fmt.Sprintf("cancel-m%02d", i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := 15; i < 20; i++ { // m15..m19 refused
		if _, err := s.RefuseDelivery(ctx, fmt.Sprintf("m%02d", i), "pre", auditRec(fmt.Sprintf("pre-r%02d", i))); err != nil {
			t.Fatal(err)
		}
	}
	const pre = 20 // 10 deliveries, 5 cancellations, 5 refusals

	type call struct {
		id   string // request id, unique
		kind string // "confirm", "accept", "append"
		key  string // message id (confirm), sender/message id (accept)
		fn   func(rec *blv1.AuditRecord) (uint64, error)
	}
	var calls []call
	confirm := func(id, msg string) {
		calls = append(calls, call{id, "confirm", msg, func(rec *blv1.AuditRecord) (uint64, error) {
			return s.ConfirmDelivery(ctx, msg, "rcpt-"+id, rec)
		}})
	}
	for i := range entries {
		confirm(fmt.Sprintf("c%02d", i), fmt.Sprintf("m%02d", i))
	}
	for i := 20; i < 30; i++ { // a second, racing confirmation
		confirm(fmt.Sprintf("c%02d-bis", i), fmt.Sprintf("m%02d", i))
	}
	for i := range 10 {
		e := inEntry("sg.customs.example", fmt.Sprintf("in%02d", i), "sha")
		for _, v := range []string{"a", "b"} {
			id := fmt.Sprintf("accept-%02d-%s", i, v)
			calls = append(calls, call{id, "accept", e.Sender + "/" + e.MessageID, func(rec *blv1.AuditRecord) (uint64, error) {
				e := e
				e.ContentSHA256 = "sha-" + id
				return s.AcceptAlert(ctx, e, rec)
			}})
		}
	}
	for i := range 40 {
		calls = append(calls, call{fmt.Sprintf("append-%02d", i), "append", "", func(rec *blv1.AuditRecord) (uint64, error) {
			return s.AppendAudit(ctx, rec)
		}})
	}

	// Hold the only writer connection: the first request the sequencer
	// takes waits for it, the others queue and form the next batch.
	conn, err := s.writer.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		seq uint64
		err error
	}
	results := make([]result, len(calls))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range calls {
		wg.Go(func() {
			<-start
			seq, err := c.fn(auditRec(c.id))
			results[i] = result{seq, err}
		})
	}
	close(start)
	time.Sleep(50 * time.Millisecond)
	conn.Close()
	wg.Wait()

	winners := map[string]string{} // confirm/accept key -> winning request id
	succeeded := map[string]uint64{}
	for i, c := range calls {
		r := results[i]
		if r.err != nil {
			if !errors.Is(r.err, store.ErrConflict) || c.kind == "append" || r.seq != 0 {
				t.Errorf("%s: unexpected result %d, %v", c.id, r.seq, r.err)
			}
			continue
		}
		succeeded[c.id] = r.seq
		if c.kind == "append" {
			continue
		}
		if w, ok := winners[c.key]; ok {
			t.Errorf("%s settled twice: by %s and %s", c.key, w, c.id)
		}
		winners[c.key] = c.id
	}
	// Exactly the pending entries were confirmed, once each; each inbox
	// message was accepted once.
	for i := range entries {
		msg := fmt.Sprintf("m%02d", i)
		if _, ok := winners[msg]; ok != (i >= 20) {
			t.Errorf("%s confirmed = %v, want %v", msg, ok, i >= 20)
		}
	}
	for i := range 10 {
		if _, ok := winners[fmt.Sprintf("sg.customs.example/in%02d", i)]; !ok {
			t.Errorf("in%02d not accepted by any call", i)
		}
	}

	// The log: gapless, the pre-existing records, then exactly the
	// successful calls at the seqs they were told.
	recs := allAudit(t, s)
	if len(recs) != pre+len(succeeded) {
		t.Fatalf("%d records, want %d + %d successful calls", len(recs), pre, len(succeeded))
	}
	for _, r := range recs[pre:] {
		seq, ok := succeeded[r.GetRequestId()]
		if !ok {
			t.Errorf("record %d (%s) is from a call that failed", r.GetSeq(), r.GetRequestId())
		} else if seq != r.GetSeq() {
			t.Errorf("%s: told seq %d, stored at %d", r.GetRequestId(), seq, r.GetSeq())
		}
	}
	CheckTree(t, s)

	// Each effect is bound to its own record.
	for i := range entries {
		msg := fmt.Sprintf("m%02d", i)
		e := mustGetOutbox(t, s, msg)
		switch {
		case i < 10:
			if e.State != store.OutboxDelivered || e.Receipt != "pre" || outboxAuditSeq(t, s, msg) != uint64(i+1) {
				t.Errorf("%s = %+v: an earlier delivery was overwritten", msg, e)
			}
		case i < 15:
			if e.State != store.OutboxCancelled || outboxAuditSeq(t, s, msg) != 0 {
				t.Errorf("%s = %+v, want cancelled", msg, e)
			}
		case i < 20:
			if e.State != store.OutboxRefused || e.LastError != "pre" || e.Receipt != "" {
				t.Errorf("%s = %+v, want refused", msg, e)
			}
		default:
			w := winners[msg]
			if e.State != store.OutboxDelivered || e.Receipt != "rcpt-"+w || outboxAuditSeq(t, s, msg) != succeeded[w] {
				t.Errorf("%s = %+v (audit_seq %d), want delivered by %s at seq %d", msg, e, outboxAuditSeq(t, s, msg), w, succeeded[w])
			}
		}
	}
	for i := range 10 {
		key := fmt.Sprintf("sg.customs.example/in%02d", i)
		w := winners[key]
		in, err := s.GetInbox(ctx, "sg.customs.example", fmt.Sprintf("in%02d", i))
		if err != nil || in.AuditSeq != succeeded[w] || in.ContentSHA256 != "sha-"+w {
			t.Errorf("GetInbox(%s) = %+v, %v; want the entry of %s at seq %d", key, in, err, w, succeeded[w])
		}
	}
	if p, err := s.PendingOutbox(ctx, "sg", 0, 100); err != nil || len(p) != 0 {
		t.Errorf("PendingOutbox after the race = %v, %v; want none", messageIDs(p), err)
	}
}

func TestOutboxTransitions(t *testing.T) {
	ctx := t.Context()
	type op struct {
		name string
		do   func(s *Store, id string) error
	}
	refuse := op{"refuse", func(s *Store, id string) error {
		_, err := s.RefuseDelivery(ctx, id, "refused by policy", auditRec("refuse-"+id))
		return err
	}}
	confirm := op{"confirm", func(s *Store, id string) error {
		_, err := s.ConfirmDelivery(ctx, id, "rcpt", auditRec("confirm-"+id))
		return err
	}}
	retry := op{"retry", func(s *Store, id string) error { return s.RetryOutbox(ctx, id, t0.Add(time.Hour)) }}
	cancel := op{"cancel", func(s *Store, id string) error {
		_, err := s.CancelOutbox(ctx, id, t0.Add(time.Hour), auditRec("cancel-"+id))
		return err
	}}

	tests := []struct {
		setup     []op // applied to entry "m" first, must succeed
		op        op
		msgID     string // default "m"
		wantErr   error
		wantState store.OutboxState
		wantAudit int64 // records appended by op
	}{
		{nil, refuse, "", nil, store.OutboxRefused, 1},
		{[]op{refuse}, refuse, "", store.ErrConflict, store.OutboxRefused, 0},
		{[]op{confirm}, refuse, "", store.ErrConflict, store.OutboxDelivered, 0},
		{[]op{cancel}, refuse, "", store.ErrConflict, store.OutboxCancelled, 0},
		{[]op{cancel}, confirm, "", store.ErrConflict, store.OutboxCancelled, 0},
		{[]op{refuse}, confirm, "", store.ErrConflict, store.OutboxRefused, 0},
		{[]op{refuse, retry}, confirm, "", nil, store.OutboxDelivered, 1},

		{nil, retry, "", nil, store.OutboxPending, 0},
		{[]op{refuse}, retry, "", nil, store.OutboxPending, 0},
		{[]op{confirm}, retry, "", store.ErrConflict, store.OutboxDelivered, 0},
		{[]op{cancel}, retry, "", store.ErrConflict, store.OutboxCancelled, 0},
		{nil, retry, "unknown", store.ErrNotFound, store.OutboxPending, 0},

		{nil, cancel, "", nil, store.OutboxCancelled, 1},
		{[]op{refuse}, cancel, "", nil, store.OutboxCancelled, 1},
		{[]op{confirm}, cancel, "", store.ErrConflict, store.OutboxDelivered, 0},
		{[]op{cancel}, cancel, "", store.ErrConflict, store.OutboxCancelled, 0},
		{nil, cancel, "unknown", store.ErrNotFound, store.OutboxPending, 0},
	}
	for _, tc := range tests {
		name := ""
		for _, o := range tc.setup {
			name += o.name + "-"
		}
		name += tc.op.name
		if tc.msgID != "" {
			name += "-" + tc.msgID
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s, _ := openInternal(t)
			mustPublish(t, s, risk("RA-1"), outEntry("m", "sg", 0))
			for _, o := range tc.setup {
				if err := o.do(s, "m"); err != nil {
					t.Fatalf("setup %s: %v", o.name, err)
				}
			}
			before := auditSize(t, s)
			id := tc.msgID
			if id == "" {
				id = "m"
			}
			err := tc.op.do(s, id)
			if (err == nil) != (tc.wantErr == nil) || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
				t.Fatalf("%s = %v, want %v", tc.op.name, err, tc.wantErr)
			}
			if got := auditSize(t, s) - before; got != tc.wantAudit {
				t.Errorf("%s appended %d audit records, want %d", tc.op.name, got, tc.wantAudit)
			}
			e := wantState(t, s, "m", tc.wantState)
			switch {
			case tc.wantErr == nil && tc.op.name == "retry":
				if !e.NextAttempt.Equal(t0.Add(time.Hour)) {
					t.Errorf("retried entry due at %v, want %v", e.NextAttempt, t0.Add(time.Hour))
				}
			case tc.wantErr == nil && tc.op.name == "refuse":
				if e.LastError != "refused by policy" || e.Receipt != "" || outboxAuditSeq(t, s, "m") != uint64(before+1) {
					t.Errorf("refused entry = %+v, want the reason and its record", e)
				}
			}
			allAudit(t, s)
			CheckTree(t, s)
		})
	}
}

func TestNoteAttempt(t *testing.T) {
	s, _ := openInternal(t)
	ctx := t.Context()
	mustPublish(t, s, risk("RA-1"), outEntry("m1", "sg", 0), outEntry("m2", "sg", 0))
	next := t0.Add(5 * time.Minute)
	if err := s.NoteAttempt(ctx, "m1", 3, next, "unavailable"); err != nil {
		t.Fatalf("NoteAttempt: %v", err)
	}
	e := wantState(t, s, "m1", store.OutboxPending)
	if e.Attempts != 3 || !e.NextAttempt.Equal(next) || e.LastError != "unavailable" {
		t.Errorf("after NoteAttempt: %+v", e)
	}
	// A late note on a settled entry changes nothing.
	if _, err := s.ConfirmDelivery(ctx, "m2", "rcpt", auditRec("d-m2")); err != nil {
		t.Fatal(err)
	}
	_ = s.NoteAttempt(ctx, "m2", 9, next, "late")
	if e := wantState(t, s, "m2", store.OutboxDelivered); e.Attempts != 0 || e.LastError != "" || e.Receipt != "rcpt" {
		t.Errorf("NoteAttempt changed a delivered entry: %+v", e)
	}
	if err := s.NoteAttempt(ctx, "m1", 4, time.Time{}, "x"); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("NoteAttempt with an unstorable time = %v, want ErrInvalid", err)
	}
	if e := mustGetOutbox(t, s, "m1"); e.Attempts != 3 {
		t.Errorf("failed NoteAttempt changed the entry: %+v", e)
	}
}

func TestListOutboxAndStats(t *testing.T) {
	s, _ := openInternal(t)
	ctx := t.Context()
	// Creation times are out of seq order on purpose: OldestPending is the
	// minimum creation time of the pending entries only.
	mustPublish(t, s, risk("RA-1"),
		outEntry("sg-delivered", "sg", -time.Hour),
		outEntry("sg-p1", "sg", 10*time.Minute),
		outEntry("jp-p1", "jp", 3*time.Minute),
		outEntry("sg-refused", "sg", -time.Hour),
		outEntry("sg-p2", "sg", 5*time.Minute),
		outEntry("sg-cancelled", "sg", -2*time.Hour),
		outEntry("jp-delivered", "jp", -time.Hour),
		outEntry("kr-refused", "kr", 0),
	)
	for _, id := range []string{"sg-delivered", "jp-delivered"} {
		if _, err := s.ConfirmDelivery(ctx, id, "r", auditRec(id)); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"sg-refused", "kr-refused"} {
		if _, err := s.RefuseDelivery(ctx, id, "no", auditRec(id)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.CancelOutbox(ctx, "sg-cancelled", t0, auditRec("cancel-sg-cancelled")); err != nil {
		t.Fatal(err)
	}

	lists := []struct {
		recipient string
		limit     int
		want      []string
	}{
		{"", 100, []string{"sg-p1", "jp-p1", "sg-refused", "sg-p2", "kr-refused"}},
		{"", 2, []string{"sg-p1", "jp-p1"}},
		{"sg", 100, []string{"sg-p1", "sg-refused", "sg-p2"}},
		{"jp", 100, []string{"jp-p1"}},
		{"kr", 100, []string{"kr-refused"}},
		{"xx", 100, nil},
	}
	for _, tc := range lists {
		got, err := s.ListOutbox(ctx, tc.recipient, tc.limit)
		if ids := messageIDs(got); err != nil || !slices.Equal(ids, tc.want) {
			t.Errorf("ListOutbox(%q, %d) = %v, %v; want %v", tc.recipient, tc.limit, ids, err, tc.want)
		}
	}

	stats, err := s.OutboxStats(ctx)
	if err != nil {
		t.Fatalf("OutboxStats: %v", err)
	}
	type counts = map[store.OutboxState]uint64
	want := []store.OutboxStats{
		{Recipient: "jp", Count: counts{store.OutboxPending: 1, store.OutboxDelivered: 1}, OldestPending: t0.Add(3 * time.Minute)},
		{Recipient: "kr", Count: counts{store.OutboxRefused: 1}},
		{Recipient: "sg", Count: counts{store.OutboxPending: 2, store.OutboxDelivered: 1, store.OutboxRefused: 1, store.OutboxCancelled: 1},
			OldestPending: t0.Add(5 * time.Minute)},
	}
	if len(stats) != len(want) {
		t.Fatalf("OutboxStats = %+v, want %+v", stats, want)
	}
	for i, w := range want {
		g := stats[i]
		if g.Recipient != w.Recipient || !g.OldestPending.Equal(w.OldestPending) || len(g.Count) != len(w.Count) {
			t.Errorf("OutboxStats[%d] = %+v, want %+v", i, g, w)
			continue
		}
		for st, n := range w.Count {
			if g.Count[st] != n {
				t.Errorf("OutboxStats[%s][%s] = %d, want %d", w.Recipient, st, g.Count[st], n)
			}
		}
	}
}

func TestAcceptAlert(t *testing.T) {
	s, _ := openInternal(t)
	ctx := t.Context()
	if _, err := s.AppendAudit(ctx, auditRec("unrelated")); err != nil {
		t.Fatal(err)
	}

	first := inEntry("sg.customs.example", "msg-1", "sha-first")
	first.AuditSeq = 99 // ignored: the store sets it
	rec := auditRec("accept-1")
	seq, err := s.AcceptAlert(ctx, first, rec)
	if err != nil || seq != 2 || rec.GetSeq() != 2 {
		t.Fatalf("AcceptAlert = %d, %v; want 2", seq, err)
	}
	got, err := s.GetInbox(ctx, first.Sender, first.MessageID)
	want := first
	want.AuditSeq = 2
	if err != nil || !inboxEqual(got, want) {
		t.Fatalf("GetInbox = %+v, %v; want %+v", got, err, want)
	}

	// A redelivery, with the same or other content: conflict, nothing
	// written, the first entry stays.
	for _, content := range []string{"sha-first", "sha-other"} {
		again := inEntry(first.Sender, first.MessageID, content)
		before := auditSize(t, s)
		rec := auditRec("accept-again-" + content)
		if seq, err := s.AcceptAlert(ctx, again, rec); !errors.Is(err, store.ErrConflict) || seq != 0 {
			t.Errorf("second AcceptAlert (%s) = %d, %v; want ErrConflict", content, seq, err)
		}
		if n := auditSize(t, s); n != before {
			t.Errorf("second AcceptAlert appended a record (%d -> %d)", before, n)
		}
		if rs, _ := s.ListAudit(ctx, store.AuditQuery{RequestID: rec.GetRequestId()}); len(rs) != 0 {
			t.Errorf("record of the refused receipt stored: %v", rs)
		}
		if got, err := s.GetInbox(ctx, first.Sender, first.MessageID); err != nil || !inboxEqual(got, want) {
			t.Errorf("GetInbox after redelivery = %+v, %v; want the first %+v", got, err, want)
		}
	}

	// The same message id from another sender is another entry; no
	// retention keeps RetainUntil zero.
	other := inEntry("jp.customs.example", first.MessageID, "sha-jp")
	other.RetainUntil = time.Time{}
	seq, err = s.AcceptAlert(ctx, other, auditRec("accept-jp"))
	if err != nil || seq != 3 {
		t.Fatalf("AcceptAlert from another sender = %d, %v; want 3", seq, err)
	}
	wantOther := other
	wantOther.AuditSeq = 3
	if got, err := s.GetInbox(ctx, other.Sender, other.MessageID); err != nil || !inboxEqual(got, wantOther) || !got.RetainUntil.IsZero() {
		t.Errorf("GetInbox(jp) = %+v, %v; want %+v", got, err, wantOther)
	}
	if got, err := s.GetInbox(ctx, first.Sender, first.MessageID); err != nil || !inboxEqual(got, want) {
		t.Errorf("GetInbox(sg) after jp = %+v, %v", got, err)
	}

	for _, k := range [][2]string{{"sg.customs.example", "msg-2"}, {"kr.customs.example", "msg-1"}, {"", ""}} {
		if _, err := s.GetInbox(ctx, k[0], k[1]); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetInbox(%q, %q) = %v, want ErrNotFound", k[0], k[1], err)
		}
	}
	// An invalid record writes no inbox entry.
	bad := auditRec("bad")
	bad.Seq = 5
	if _, err := s.AcceptAlert(ctx, inEntry("sg.customs.example", "msg-3", "sha"), bad); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("AcceptAlert with a sequenced record = %v, want ErrInvalid", err)
	}
	if _, err := s.GetInbox(ctx, "sg.customs.example", "msg-3"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("inbox entry stored without its record (%v)", err)
	}
	if recs := allAudit(t, s); len(recs) != 3 || recs[1].GetRequestId() != "accept-1" || recs[2].GetRequestId() != "accept-jp" {
		t.Errorf("audit trail = %v", recs)
	}
	CheckTree(t, s)
}

func inboxEqual(a, b store.InboxEntry) bool {
	return a.Sender == b.Sender && a.MessageID == b.MessageID && a.ContentSHA256 == b.ContentSHA256 &&
		a.RecordID == b.RecordID && a.Agreement == b.Agreement && a.Obligations == b.Obligations &&
		a.Received.Equal(b.Received) && a.RetainUntil.Equal(b.RetainUntil) && a.AuditSeq == b.AuditSeq &&
		string(a.Alert) == string(b.Alert)
}

func changeIDs(t *testing.T, s *Store, recordType string, after uint64, limit int) ([]string, []store.Change) {
	t.Helper()
	cs, err := s.Changes(t.Context(), recordType, after, limit)
	if err != nil {
		t.Fatalf("Changes(%s, %d, %d): %v", recordType, after, limit, err)
	}
	var ids []string
	for i, c := range cs {
		if c.RecordType != recordType {
			t.Errorf("Changes(%s) returned a %s", recordType, c.RecordType)
		}
		if c.Seq <= after || (i > 0 && c.Seq <= cs[i-1].Seq) {
			t.Errorf("Changes(%s, %d): seq %d out of order", recordType, after, c.Seq)
		}
		ids = append(ids, c.RecordID)
	}
	return ids, cs
}

func TestChanges(t *testing.T) {
	s, _ := openInternal(t)
	ctx := t.Context()
	decl := func(id string) *blv1.Declaration { return storetest.Declaration(id, 0, "NL", "SG", "85") }
	put := func(decls []*blv1.Declaration, risks []*blv1.RiskAssessment) {
		t.Helper()
		if err := s.PutRecords(ctx, decls, risks); err != nil {
			t.Fatalf("PutRecords: %v", err)
		}
	}
	put([]*blv1.Declaration{decl("d1"), decl("d2")}, []*blv1.RiskAssessment{risk("r1")})
	put([]*blv1.Declaration{decl("d3")}, []*blv1.RiskAssessment{risk("r2")})
	_, cs := changeIDs(t, s, "declaration", 0, 100)
	_, rs := changeIDs(t, s, "risk_assessment", 0, 100)
	var maxSeq uint64
	for _, c := range append(cs, rs...) {
		maxSeq = max(maxSeq, c.Seq)
	}
	// Commit order across calls and types: the second call's records come
	// after the first call's.
	if cs[2].Seq <= rs[0].Seq || rs[1].Seq <= cs[1].Seq {
		t.Errorf("changes not in commit order across calls: declarations %v, risks %v", cs, rs)
	}

	// Upserting d1 moves it to the end; its old position is gone.
	put([]*blv1.Declaration{decl("d1")}, nil)
	ids, cs := changeIDs(t, s, "declaration", 0, 100)
	if !slices.Equal(ids, []string{"d2", "d3", "d1"}) {
		t.Errorf("declaration changes after upsert = %v, want [d2 d3 d1]", ids)
	}
	if cs[2].Seq <= maxSeq {
		t.Errorf("upserted d1 at seq %d, not after every earlier change (%d)", cs[2].Seq, maxSeq)
	}
	if ids, _ := changeIDs(t, s, "risk_assessment", 0, 100); !slices.Equal(ids, []string{"r1", "r2"}) {
		t.Errorf("risk changes = %v, want [r1 r2]", ids)
	}

	// Paging.
	pages := []struct {
		after uint64
		limit int
		want  []string
	}{
		{0, 2, []string{"d2", "d3"}},
		{cs[1].Seq, 2, []string{"d1"}},
		{cs[2].Seq, 2, nil},
		{cs[0].Seq, 1, []string{"d3"}},
		{0, 0, nil},
	}
	for _, p := range pages {
		if ids, _ := changeIDs(t, s, "declaration", p.after, p.limit); !slices.Equal(ids, p.want) {
			t.Errorf("Changes(declaration, %d, %d) = %v, want %v", p.after, p.limit, ids, p.want)
		}
	}

	// A publish moves its risk assessment too; a failed PutRecords moves
	// nothing.
	mustPublish(t, s, risk("r1"), outEntry("m1", "sg", 0))
	if ids, _ := changeIDs(t, s, "risk_assessment", 0, 100); !slices.Equal(ids, []string{"r2", "r1"}) {
		t.Errorf("risk changes after publish = %v, want [r2 r1]", ids)
	}
	if err := s.PutRecords(ctx, []*blv1.Declaration{decl("d2"), {Id: "bad"}}, nil); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("PutRecords with an invalid declaration = %v, want ErrInvalid", err)
	}
	if ids, _ := changeIDs(t, s, "declaration", 0, 100); !slices.Equal(ids, []string{"d2", "d3", "d1"}) {
		t.Errorf("declaration changes after a failed put = %v, want [d2 d3 d1]", ids)
	}
	if ids, _ := changeIDs(t, s, "unknown", 0, 100); ids != nil {
		t.Errorf("Changes(unknown type) = %v", ids)
	}
}

// TestMigration0003Backfill opens a database made by a binary that knew
// only migrations 0001 and 0002 and holds records: record_changes gets
// every record once, in id order per type, and later upserts follow them.
func TestMigration0003Backfill(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "borderlink.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, `CREATE TABLE schema_migrations (
		version    INTEGER NOT NULL PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at INTEGER NOT NULL
	) STRICT`); err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct {
		version int
		name    string
	}{{1, "init"}, {2, "audit_merkle"}} {
		b, err := fs.ReadFile(migrationFiles, fmt.Sprintf("migrations/%04d_%s.sql", m.version, m.name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, string(b)); err != nil {
			t.Fatalf("apply %04d: %v", m.version, err)
		}
		if _, err := db.ExecContext(ctx, "INSERT INTO schema_migrations VALUES (?, ?, 0)", m.version, m.name); err != nil {
			t.Fatal(err)
		}
	}
	decls := []string{"D-b", "D-c", "D-a"} // stored out of id order
	for _, id := range decls {
		d := storetest.Declaration(id, 0, "NL", "SG", "85")
		b, err := marshal.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, "INSERT INTO declarations (id, acceptance_time, export_country, destination_country, record) VALUES (?, ?, 'NL', 'SG', ?)",
			id, d.GetAcceptanceTime().AsTime().UnixNano(), b); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"R-2", "R-1"} {
		b, err := marshal.Marshal(risk(id))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, "INSERT INTO risk_assessments (id, declaration_id, record) VALUES (?, ?, ?)", id, "D-"+id, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open of a 0002 database: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	ids, cs := changeIDs(t, s, "declaration", 0, 100)
	if !slices.Equal(ids, []string{"D-a", "D-b", "D-c"}) {
		t.Errorf("backfilled declaration changes = %v, want [D-a D-b D-c]", ids)
	}
	if ids, _ := changeIDs(t, s, "risk_assessment", 0, 100); !slices.Equal(ids, []string{"R-1", "R-2"}) {
		t.Errorf("backfilled risk changes = %v, want [R-1 R-2]", ids)
	}
	if _, err := s.GetDeclaration(ctx, "D-a"); err != nil {
		t.Errorf("GetDeclaration after migration: %v", err)
	}
	// An upsert moves a backfilled record after every backfilled one.
	if err := s.PutRecords(ctx, []*blv1.Declaration{storetest.Declaration("D-a", 0, "NL", "SG", "85")}, nil); err != nil {
		t.Fatal(err)
	}
	ids, cs2 := changeIDs(t, s, "declaration", 0, 100)
	if !slices.Equal(ids, []string{"D-b", "D-c", "D-a"}) || cs2[2].Seq <= cs[2].Seq {
		t.Errorf("declaration changes after upsert = %v, want [D-b D-c D-a] with D-a last", cs2)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopening applies nothing again.
	s, _ = reopen(t, path)
	if ids, _ := changeIDs(t, s, "declaration", 0, 100); !slices.Equal(ids, []string{"D-b", "D-c", "D-a"}) {
		t.Errorf("declaration changes after reopen = %v, want [D-b D-c D-a]", ids)
	}
	var n int
	if err := s.reader.QueryRowContext(ctx, "SELECT COUNT(*) FROM schema_migrations").Scan(&n); err != nil || n != 7 {
		t.Errorf("schema_migrations has %d rows, %v; want 7", n, err)
	}
}

func reopen(t *testing.T, path string) (*Store, string) {
	t.Helper()
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

// TestPruneOutbox: settled entries go once settled before the cutoff,
// oldest first and at most limit per call; pending ones never, however old.
func TestPruneOutbox(t *testing.T) {
	ctx := t.Context()
	s, _ := openInternal(t)
	mustPublish(t, s, risk("RA-1"),
		outEntry("delivered-old", "sg", 0), outEntry("refused-old", "sg", time.Second),
		outEntry("cancelled-old", "sg", 2*time.Second), outEntry("pending-old", "sg", 3*time.Second),
		outEntry("delivered-new", "sg", 4*time.Second))
	// Settlement times come from the audit records (and the clock passed to
	// cancel), not from creation.
	if _, err := s.ConfirmDelivery(ctx, "delivered-old", "rcpt", storetest.AuditRecord("d-old", time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RefuseDelivery(ctx, "refused-old", "refused", storetest.AuditRecord("r-old", time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CancelOutbox(ctx, "cancelled-old", t0.Add(time.Hour), auditRec("cancel-cancelled-old")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ConfirmDelivery(ctx, "delivered-new", "rcpt", storetest.AuditRecord("d-new", 3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	ids := func() []string {
		rows, err := s.writer.QueryContext(ctx, "SELECT message_id FROM outbox ORDER BY message_id")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			out = append(out, id)
		}
		return out
	}
	steps := []struct {
		cutoff time.Duration
		limit  int
		n      int
		left   []string
	}{
		// Created long before the cutoff, but settled after it: kept.
		{time.Hour, 100, 0, []string{"cancelled-old", "delivered-new", "delivered-old", "pending-old", "refused-old"}},
		{2 * time.Hour, 2, 2, []string{"cancelled-old", "delivered-new", "pending-old"}},
		{2 * time.Hour, 100, 1, []string{"delivered-new", "pending-old"}},
		{100 * time.Hour, 100, 1, []string{"pending-old"}},
	}
	for i, st := range steps {
		n, err := s.PruneOutbox(ctx, t0.Add(st.cutoff), st.limit)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got := ids(); n != st.n || !slices.Equal(got, st.left) {
			t.Fatalf("step %d: pruned %d, left %v; want %d, %v", i, n, got, st.n, st.left)
		}
	}
	// An entry settled before migration 0004 (settled = 0) counts from
	// its creation.
	mustPublish(t, s, risk("RA-2"), outEntry("legacy", "sg", 5*time.Second))
	if _, err := s.ConfirmDelivery(ctx, "legacy", "rcpt", storetest.AuditRecord("legacy", 10*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.writer.ExecContext(ctx, "UPDATE outbox SET settled = 0 WHERE message_id = 'legacy'"); err != nil {
		t.Fatal(err)
	}
	if n, err := s.PruneOutbox(ctx, t0.Add(time.Minute), 100); err != nil || n != 1 || !slices.Equal(ids(), []string{"pending-old"}) {
		t.Fatalf("prune of a pre-0004 entry: %d, %v, left %v; want 1 pruned, [pending-old] left", n, err, ids())
	}
	// The audit log keeps what the pruned entries proved.
	CheckTree(t, s)
	if got := auditSize(t, s); got != 5 {
		t.Errorf("audit records = %d, want 5 (three deliveries, one refusal, one cancellation)", got)
	}
}

// TestPruneOutboxUsesIndex: a prune round must not scan the whole outbox
// (it runs every retention interval, and the outbox of a busy gateway holds
// a week of entries).
func TestPruneOutboxUsesIndex(t *testing.T) {
	s, _ := openInternal(t)
	if store.OutboxPending != 1 {
		t.Fatalf("OutboxPending = %d; pruneOutboxSelect spells it 1", store.OutboxPending)
	}
	rows, err := s.writer.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+pruneOutboxSelect, 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	joined := strings.Join(plan, "\n")
	if strings.Count(joined, "USING INDEX outbox_settled") != 2 || strings.Contains(joined, "SCAN outbox") {
		t.Errorf("prune query plan does not use outbox_settled for both parts:\n%s", joined)
	}
}
