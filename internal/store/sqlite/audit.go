package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/tlog"
	"google.golang.org/protobuf/proto"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/store"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// auditFormatVersion is the AuditRecord version this binary writes and reads
// (see audit.proto: readers refuse versions they do not know).
const auditFormatVersion = audit.FormatVersion

// maxAuditBatch bounds how many appends one group-commit transaction takes.
const maxAuditBatch = 4096

// maxHashCache bounds the sequencer's cache of stored hashes; past it the
// cache starts over (stored hashes never change, so any entry stays valid).
const maxHashCache = 1 << 18

// errClosed is returned by AppendAudit after Close.
var errClosed = errors.New("store: closed")

// errForeignWrite marks an append refused because audit_records holds a
// record this store did not write.
var errForeignWrite = errors.New("audit log: foreign record")

type appendReq struct {
	rec     *blv1.AuditRecord // the copy to store, Seq 0
	body    []byte            // audit.UnsequencedLeaf(rec)
	at      int64
	partner string
	// effect, if set, runs in the batch's transaction before the record is
	// inserted, with the seq the record will get. If it fails, its writes
	// are rolled back, the record is not appended and only this request
	// fails: the other records of the batch commit.
	effect func(ctx context.Context, tx *sql.Tx, seq uint64) error
	// done receives exactly one message: the append's result, or lead
	// when its caller is to commit the queue's next batch.
	done  chan appendResult // buffered
	asked time.Time         // when it was queued
}

type appendResult struct {
	seq  uint64
	err  error
	lead bool // no result: commit the next batch, this request first
}

// sequencer orders audit appends and commits them in batches (group
// commit), so that one fsync covers many records. Appends queue in arrival
// order; the caller at the front of the queue becomes the leader: it takes
// every append waiting (itself first), commits them in one transaction on
// its own goroutine, hands the others their results and the lead to the
// next caller in the queue, if any. An append that finds no commit in
// progress commits itself at once, with no other goroutine to wake and be
// woken by: on a busy machine each such wake-up waits for a processor, and
// two of them per append were a large part of the audit wait. One leader
// at a time, so the fields the leader uses need no lock of their own.
type sequencer struct {
	mu      sync.Mutex
	idle    *sync.Cond          // on mu: broadcast when leading turns false
	queue   []*appendReq        // waiting, in arrival order; non-empty only while leading
	leading bool                // a leader is committing a batch
	closed  bool                // Close has begun: nothing more is queued
	dead    error               // set when a commit panicked: every later append fails with it
	cache   map[int64]tlog.Hash // stored hashes, by tlog index; leader only
	stmts   *insertStmts        // multi-row inserts, prepared once
	// last is the highest seq in audit_records as the leaders left it (at
	// Open, what was there). Each batch checks it against MAX(seq): that
	// replaces a per-row gapless trigger (migration 0007). Leader only.
	last int64
	// stats are AppendStats' counters, updated once per batch under
	// statsMu so that a reading is always whole batches.
	statsMu sync.Mutex
	stats   store.AppendStats
}

// batchTimes are when a batch was taken and when its COMMIT started and
// ended.
type batchTimes struct{ taken, commit, synced time.Time }

// counted adds one committed batch: the appends of batch whose result in
// res has no error.
func (q *sequencer) counted(batch []*appendReq, res []appendResult, t batchTimes) {
	n := 0
	for _, r := range res {
		if r.err == nil {
			n++
		}
	}
	// Appends whose effect failed were rolled back: a batch of only those
	// wrote nothing and is no commit.
	if n == 0 {
		return
	}
	i, _ := slices.BinarySearch(store.BatchSizeBounds[:], n)
	q.statsMu.Lock()
	defer q.statsMu.Unlock()
	q.stats.Commits++
	q.stats.Appends += uint64(n)
	q.stats.BatchSizes[min(i, len(q.stats.BatchSizes)-1)]++
	for i, r := range batch {
		if res[i].err == nil {
			q.stats.Queue.Observe(t.taken.Sub(r.asked))
		}
	}
	q.stats.Build.Observe(t.commit.Sub(t.taken))
	q.stats.Sync.Observe(t.synced.Sub(t.commit))
}

// AppendStats reads the counters of the audit group commits since Open.
func (s *Store) AppendStats() store.AppendStats {
	if s.seq == nil {
		return store.AppendStats{}
	}
	s.seq.statsMu.Lock()
	defer s.seq.statsMu.Unlock()
	return s.seq.stats
}

func (s *Store) startSequencer(inserts *insertStmts, last int64) {
	s.seq = &sequencer{
		cache: map[int64]tlog.Hash{},
		stmts: inserts,
		last:  last,
	}
	s.seq.idle = sync.NewCond(&s.seq.mu)
}

// stopSequencer lets the batch in progress commit and stops; appends not
// yet taken into a batch fail with errClosed, and so does every later one.
func (s *Store) stopSequencer() {
	if s.seq == nil {
		return
	}
	q := s.seq
	q.mu.Lock()
	q.closed = true
	for q.leading {
		q.idle.Wait()
	}
	q.mu.Unlock()
	q.stmts.close()
}

// errSequencerPanic marks a batch whose commit panicked.
var errSequencerPanic = errors.New("audit sequencer failed; restart the gateway")

// commitBatch is commitAudit with a panic turned into an error, so that no
// waiting caller is left blocked for ever.
func (s *Store) commitBatch(batch []*appendReq, t *batchTimes) (res []appendResult, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: panic: %v", errSequencerPanic, p)
		}
	}()
	return s.commitAudit(batch, t)
}

// submit queues r and returns its result: committed by the leader of the
// batch r joined, or by this goroutine as the leader (see sequencer). If
// ctx ends while r waits in the queue, r leaves it and fails with ctx's
// error; once taken into a batch it waits for the batch's result.
func (s *Store) submit(ctx context.Context, r *appendReq) appendResult {
	q := s.seq
	r.done = make(chan appendResult, 1)
	q.mu.Lock()
	r.asked = time.Now()
	if q.closed {
		q.mu.Unlock()
		return appendResult{err: errClosed}
	}
	q.queue = append(q.queue, r)
	if q.leading {
		q.mu.Unlock()
		var res appendResult
		select {
		case res = <-r.done:
		case <-ctx.Done():
			if s.leave(r) {
				return appendResult{err: ctx.Err()}
			}
			res = <-r.done // in a batch: it may be committing
		}
		if !res.lead {
			return res
		}
		q.mu.Lock()
	}
	q.leading = true
	return s.lead(r)
}

// lead commits the next batch: every append queued, up to maxAuditBatch,
// self first. It is called with q.mu held and self at the front of the
// queue, and returns with q.mu released, the other appends of the batch
// answered and the lead handed on (or leading off).
func (s *Store) lead(self *appendReq) appendResult {
	q := s.seq
	if q.closed {
		// Close began after the lead was handed to self and before self
		// took q.mu: nothing queued may commit any more.
		q.queue = slices.Delete(q.queue, 0, 1) // self
		q.handOn()
		q.mu.Unlock()
		return appendResult{err: errClosed}
	}
	n := min(len(q.queue), maxAuditBatch)
	batch := slices.Clone(q.queue[:n])
	q.queue = slices.Delete(q.queue, 0, n)
	dead := q.dead
	q.mu.Unlock()

	var (
		res []appendResult
		err error
	)
	if dead != nil {
		err = dead
	} else {
		t := batchTimes{taken: time.Now()}
		res, err = s.commitBatch(batch, &t)
		if err == nil {
			q.counted(batch, res, t)
			s.ckpt.committed(len(batch))
		}
	}

	q.mu.Lock()
	defer q.mu.Unlock()
	if errors.Is(err, errSequencerPanic) && q.dead == nil {
		// The transaction's state is unknown: refuse every later
		// append (the gateway then fails closed) instead of writing on
		// top of it.
		q.dead = err
	}
	var own appendResult
	for i, r := range batch {
		out := appendResult{err: err}
		if err == nil {
			out = res[i]
		}
		if r == self {
			own = out
		} else {
			r.done <- out
		}
	}
	q.handOn()
	return own
}

// handOn passes the lead to the first append queued or, when none is or
// Close has begun, fails those queued and leaves the store idle. q.mu must
// be held, by the holder of the lead: the leader that is done, or an
// append that gives up just after the lead was handed to it (leave).
func (q *sequencer) handOn() {
	if len(q.queue) > 0 && !q.closed {
		q.queue[0].done <- appendResult{lead: true}
		return
	}
	for _, r := range q.queue {
		r.done <- appendResult{err: errClosed}
	}
	q.queue = nil
	q.leading = false
	q.idle.Broadcast()
}

// leave takes r, whose caller gave up waiting, out of the queue and
// reports whether it was still there. If the lead had just been handed to
// r (the only message an append still queued can have), r passes it on.
// An append no longer queued was taken into a batch, which may be
// committing it: it cannot leave, and its result is on the way.
func (s *Store) leave(r *appendReq) bool {
	q := s.seq
	q.mu.Lock()
	defer q.mu.Unlock()
	i := slices.Index(q.queue, r)
	if i < 0 {
		return false
	}
	q.queue = slices.Delete(q.queue, i, i+1)
	select {
	case <-r.done:
		q.handOn()
	default:
	}
	return true
}

// AppendAudit appends rec to the audit log and returns its sequence number;
// the record is the Merkle leaf at index seq-1 (docs/audit.md). Sequence
// numbers start at 1 and are gapless in commit order. Concurrent appends
// are committed together in one transaction (group commit); AppendAudit
// returns only after the transaction holding its record and the record's
// tree hashes is committed and fsynced. An append whose ctx ends while it
// waits for the commit in progress fails with ctx's error and is not
// appended; once taken into a batch it completes even if ctx ends.
//
// rec.Seq must be zero (the store assigns it), rec.Version zero or 1 (zero is
// stored as 1) and rec.Time set; otherwise the error wraps store.ErrInvalid.
// On success rec.Seq and rec.Version are set to the stored values, so rec
// then marshals (deterministically) to the stored bytes, its leaf; on error
// rec is unchanged. rec must not be used by other goroutines during the
// call.
func (s *Store) AppendAudit(ctx context.Context, rec *blv1.AuditRecord) (uint64, error) {
	return s.appendWith(ctx, rec, nil)
}

// writeBatched commits effect in the next group-commit transaction, with
// no audit record: a small write that must be durable before the call
// returns shares the fsync of the appends around it instead of paying its
// own (one fsync per published alert capped publishing at a few hundred a
// second). Large writes (imports) must not use it: they would hold up
// every audit append.
func (s *Store) writeBatched(ctx context.Context, effect func(context.Context, *sql.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.submit(ctx, &appendReq{
		effect: func(ctx context.Context, tx *sql.Tx, _ uint64) error { return effect(ctx, tx) },
	}).err
}

// appendWith is AppendAudit with an effect committed atomically with the
// record (see appendReq.effect).
func (s *Store) appendWith(ctx context.Context, rec *blv1.AuditRecord, effect func(context.Context, *sql.Tx, uint64) error) (uint64, error) {
	r, err := newAppendReq(rec, effect)
	if err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("store: append audit (request %q): %w", rec.GetRequestId(), err)
	}
	res := s.submit(ctx, r)
	if res.err != nil {
		return 0, fmt.Errorf("store: append audit (request %q): %w", rec.GetRequestId(), res.err)
	}
	rec.Seq, rec.Version = res.seq, r.rec.Version
	return res.seq, nil
}

// newAppendReq checks rec and prepares its append: a copy to store and its
// encoding without the seq.
func newAppendReq(rec *blv1.AuditRecord, effect func(context.Context, *sql.Tx, uint64) error) (*appendReq, error) {
	if rec == nil {
		return nil, fmt.Errorf("store: append audit: nil record: %w", store.ErrInvalid)
	}
	if rec.GetSeq() != 0 {
		// Most likely the same record appended twice.
		return nil, fmt.Errorf("store: append audit (request %q): seq is %d, want 0: %w", rec.GetRequestId(), rec.GetSeq(), store.ErrInvalid)
	}
	if v := rec.GetVersion(); v != 0 && v != auditFormatVersion {
		return nil, fmt.Errorf("store: append audit (request %q): version %d, this binary writes %d: %w", rec.GetRequestId(), v, auditFormatVersion, store.ErrInvalid)
	}
	if err := rec.GetTime().CheckValid(); err != nil {
		return nil, fmt.Errorf("store: append audit (request %q): time: %v: %w", rec.GetRequestId(), err, store.ErrInvalid)
	}
	at, err := nanos(rec.GetTime().AsTime())
	if err != nil {
		return nil, fmt.Errorf("store: append audit (request %q): %w", rec.GetRequestId(), err)
	}
	stored := proto.CloneOf(rec)
	stored.Version = auditFormatVersion
	// Encoded here, on the caller's goroutine, so that a record that
	// cannot be encoded (invalid UTF-8) fails alone instead of failing its
	// whole batch, and the sequencer only adds the seq.
	body, err := audit.UnsequencedLeaf(stored)
	if err != nil {
		return nil, fmt.Errorf("store: append audit (request %q): %v: %w", rec.GetRequestId(), err, store.ErrInvalid)
	}
	return &appendReq{rec: stored, body: body, at: at, partner: partnerDomain(stored), effect: effect}, nil
}

// partnerDomain is the trust domain of the other side of the exchange.
// The peer is the partner on both sides (on the provider side it is also
// the caller); a record of an operator's action on a partner's exchange
// (a cancelled alert) names the operator as caller and the partner as
// peer.
func partnerDomain(r *blv1.AuditRecord) string {
	id := r.GetPeerId()
	if id == "" {
		id = r.GetCallerId()
	}
	rest, ok := strings.CutPrefix(id, "spiffe://")
	if !ok {
		return ""
	}
	d, _, _ := strings.Cut(rest, "/")
	return d
}

// commitAudit writes a batch in one transaction and returns each request's
// result; an error fails the whole batch.
func (s *Store) commitAudit(batch []*appendReq, t *batchTimes) ([]appendResult, error) {
	// The appends were acknowledged to nobody yet; they must finish or fail
	// as a whole, independent of any caller's context. The context is
	// never done: with one that can end, the driver starts a watcher
	// goroutine and sets a progress handler for every statement (a few
	// percent of a batch's CPU). Waits are bounded without it: a lock held
	// by another process by busy_timeout; the rest is local I/O, which an
	// interrupt could not stop anyway, and waiting for the writer
	// connection, which only short local transactions hold.
	ctx := context.Background()

	// The writer pool has one connection and BEGIN IMMEDIATE takes the write
	// lock before reading MAX(seq), so no other append can commit between
	// the read and the insert: seqs follow commit order without gaps, and a
	// rolled-back batch leaves no hole.
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()

	var next int64
	if err := tx.StmtContext(ctx, s.seq.stmts.nextSeq).QueryRowContext(ctx).Scan(&next); err != nil {
		return nil, fmt.Errorf("next seq: %w", err)
	}
	// Only this sequencer appends, so any other highest seq is a record
	// written by someone else (there is no per-row trigger to stop one):
	// refuse to build on it. Every later batch fails the same way, so the
	// gateway fails closed until an operator looks.
	if next-1 != s.seq.last {
		return nil, fmt.Errorf("%w: audit_records ends at seq %d, but this gateway last appended seq %d: the file was modified outside Borderlink (by another process or tool)", errForeignWrite, next-1, s.seq.last)
	}

	// Rows are collected and inserted a chunk per statement at the end:
	// one statement execution per row was most of a batch's CPU. Effects
	// write nothing these tables hold, so the order within the
	// transaction does not matter.
	var recRows, hashRows []any
	overlay := map[int64]tlog.Hash{}
	reader := s.txHashReader(ctx, tx, overlay)
	res := make([]appendResult, len(batch))
	for i, r := range batch {
		if r.effect != nil {
			failed, err := runEffect(ctx, tx, r.effect, uint64(next))
			if err != nil {
				return nil, fmt.Errorf("seq %d: %w", next, err)
			}
			if failed != nil {
				res[i].err = failed
				continue
			}
		}
		if r.rec == nil {
			continue // a batched write without a record (writeBatched)
		}
		rec := r.rec
		leaf, err := audit.SequenceLeaf(r.body, uint64(next))
		if err != nil {
			return nil, fmt.Errorf("seq %d: %w", next, err)
		}
		recRows = append(recRows, next, r.at, rec.GetRequestId(), int64(rec.GetSide()), int64(rec.GetDecision()),
			rec.GetCallerId(), rec.GetAction(), rec.GetAgreementId(), leaf, r.partner)
		hs, err := tlog.StoredHashesForRecordHash(next-1, tlog.RecordHash(leaf), reader)
		if err != nil {
			return nil, fmt.Errorf("seq %d: tree hashes: %w", next, err)
		}
		id := tlog.StoredHashCount(next - 1)
		for j := range hs {
			hashRows = append(hashRows, id, hs[j][:])
			overlay[id] = hs[j]
			id++
		}
		res[i].seq = uint64(next)
		next++
	}
	if err := s.seq.stmts.insert(ctx, tx, auditRecordsInsert, recRows); err != nil {
		return nil, fmt.Errorf("insert records: %w", err)
	}
	if err := s.seq.stmts.insert(ctx, tx, auditHashesInsert, hashRows); err != nil {
		return nil, fmt.Errorf("insert tree hashes: %w", err)
	}
	t.commit = time.Now()
	err = tx.Commit()
	t.synced = time.Now()
	if err != nil {
		// A commit can report an error after SQLite committed (closing
		// the statement afterwards). Then the records are there: follow
		// them, or every later batch would take them for a foreign write.
		// The batch still fails: its callers release nothing.
		var m int64
		if s.writer.QueryRowContext(ctx, "SELECT COALESCE(MAX(seq), 0) FROM audit_records").Scan(&m) == nil && m == next-1 {
			s.seq.last = m
		}
		return nil, fmt.Errorf("commit: %w", err)
	}
	s.seq.last = next - 1
	if len(s.seq.cache)+len(overlay) > maxHashCache {
		clear(s.seq.cache)
	}
	for k, v := range overlay {
		s.seq.cache[k] = v
	}
	return res, nil
}

// runEffect runs one append's effect inside a savepoint, so that its
// failure (failed) undoes only its own writes. err means the transaction
// itself is in trouble and the whole batch must fail.
func runEffect(ctx context.Context, tx *sql.Tx, effect func(context.Context, *sql.Tx, uint64) error, seq uint64) (failed, err error) {
	if _, err := tx.ExecContext(ctx, "SAVEPOINT append_effect"); err != nil {
		return nil, fmt.Errorf("savepoint: %w", err)
	}
	if failed = effect(ctx, tx, seq); failed != nil {
		if _, err := tx.ExecContext(ctx, "ROLLBACK TO append_effect"); err != nil {
			return nil, fmt.Errorf("rollback to savepoint after %v: %w", failed, err)
		}
	}
	if _, err := tx.ExecContext(ctx, "RELEASE append_effect"); err != nil {
		return nil, fmt.Errorf("release savepoint: %w", err)
	}
	return failed, nil
}

// txHashReader reads stored hashes inside tx, from the batch's own writes,
// the sequencer's cache, then the table.
func (s *Store) txHashReader(ctx context.Context, tx *sql.Tx, overlay map[int64]tlog.Hash) tlog.HashReader {
	return tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(ix))
		var missing []int64
		for i, x := range ix {
			if h, ok := overlay[x]; ok {
				out[i] = h
			} else if h, ok := s.seq.cache[x]; ok {
				out[i] = h
			} else {
				missing = append(missing, x)
			}
		}
		if len(missing) == 0 {
			return out, nil
		}
		got, err := readHashes(ctx, tx, missing)
		if err != nil {
			return nil, err
		}
		for i, x := range ix {
			if h, ok := got[x]; ok {
				out[i] = h
				s.seq.cache[x] = h
			}
		}
		return out, nil
	})
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// readHashes reads the stored hashes ix; a missing one is an error.
func readHashes(ctx context.Context, q querier, ix []int64) (map[int64]tlog.Hash, error) {
	out := make(map[int64]tlog.Hash, len(ix))
	for len(ix) > 0 {
		chunk := ix[:min(len(ix), 500)]
		ix = ix[len(chunk):]
		args := make([]any, len(chunk))
		for i, x := range chunk {
			args[i] = x
		}
		rows, err := q.QueryContext(ctx, "SELECT id, hash FROM audit_hashes WHERE id IN (?"+strings.Repeat(",?", len(chunk)-1)+")", args...)
		if err != nil {
			return nil, fmt.Errorf("read tree hashes: %w", err)
		}
		for rows.Next() {
			var (
				id int64
				b  []byte
			)
			if err := rows.Scan(&id, &b); err != nil {
				rows.Close()
				return nil, fmt.Errorf("read tree hashes: %w", err)
			}
			if len(b) != tlog.HashSize {
				rows.Close()
				return nil, fmt.Errorf("read tree hashes: hash %d has %d bytes: the file was modified outside Borderlink or is corrupt: %w", id, len(b), audit.ErrVerify)
			}
			out[id] = tlog.Hash(b)
		}
		if err := rows.Close(); err != nil {
			return nil, fmt.Errorf("read tree hashes: %w", err)
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("read tree hashes: %w", err)
		}
		for _, x := range chunk {
			if _, ok := out[x]; !ok {
				// Every hash below a committed size is committed with it.
				return nil, fmt.Errorf("read tree hashes: hash %d is not stored: the file was modified outside Borderlink or is corrupt: %w", x, audit.ErrVerify)
			}
		}
	}
	return out, nil
}

// ReadAuditHashes returns the stored tree hashes at the given tlog
// stored-hash indexes (it implements tlog.HashReader's contract).
func (s *Store) ReadAuditHashes(ctx context.Context, ix []int64) ([]tlog.Hash, error) {
	got, err := readHashes(ctx, s.reader, ix)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	out := make([]tlog.Hash, len(ix))
	for i, x := range ix {
		out[i] = got[x]
	}
	return out, nil
}

// AuditTreeSize is the number of records (leaves) committed.
func (s *Store) AuditTreeSize(ctx context.Context) (int64, error) {
	var n int64
	if err := s.reader.QueryRowContext(ctx, "SELECT COALESCE(MAX(seq), 0) FROM audit_records").Scan(&n); err != nil {
		return 0, fmt.Errorf("store: audit tree size: %w", err)
	}
	return n, nil
}

// AuditLeaves returns the leaf data of indexes [start, start+count) that
// exist, in order: the stored record bytes, which are the leaves.
func (s *Store) AuditLeaves(ctx context.Context, start, count int64) ([][]byte, error) {
	if start < 0 || count < 0 {
		return nil, fmt.Errorf("store: audit leaves: negative range: %w", store.ErrInvalid)
	}
	rows, err := s.reader.QueryContext(ctx, "SELECT record FROM audit_records WHERE seq > ? AND seq <= ? ORDER BY seq", start, start+count)
	if err != nil {
		return nil, fmt.Errorf("store: audit leaves: %w", err)
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, fmt.Errorf("store: audit leaves: %w", err)
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: audit leaves: %w", err)
	}
	return out, nil
}

// PutAuditCheckpoint stores a signed checkpoint of the first size leaves.
// Sizes must grow.
func (s *Store) PutAuditCheckpoint(ctx context.Context, size int64, note []byte, at time.Time) error {
	if _, err := s.writer.ExecContext(ctx, "INSERT INTO audit_checkpoints (size, time, note) VALUES (?, ?, ?)", size, at.UnixNano(), note); err != nil {
		return fmt.Errorf("store: put audit checkpoint %d: %w", size, err)
	}
	return nil
}

// LatestAuditCheckpoint returns the largest stored checkpoint; the error
// wraps audit.ErrNoCheckpoint and store.ErrNotFound if there is none.
func (s *Store) LatestAuditCheckpoint(ctx context.Context) (int64, []byte, error) {
	var (
		size int64
		note []byte
	)
	err := s.reader.QueryRowContext(ctx, "SELECT size, note FROM audit_checkpoints ORDER BY size DESC LIMIT 1").Scan(&size, &note)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, fmt.Errorf("store: latest audit checkpoint: %w (%w)", audit.ErrNoCheckpoint, store.ErrNotFound)
	}
	if err != nil {
		return 0, nil, fmt.Errorf("store: latest audit checkpoint: %w", err)
	}
	return size, note, nil
}

// StoredCheckpoint is a signed checkpoint as stored.
type StoredCheckpoint struct {
	Size int64
	Time time.Time
	Note []byte
}

// AuditCheckpoints returns every stored checkpoint, smallest size first.
func (s *Store) AuditCheckpoints(ctx context.Context) ([]StoredCheckpoint, error) {
	rows, err := s.reader.QueryContext(ctx, "SELECT size, time, note FROM audit_checkpoints ORDER BY size")
	if err != nil {
		return nil, fmt.Errorf("store: audit checkpoints: %w", err)
	}
	defer rows.Close()
	var out []StoredCheckpoint
	for rows.Next() {
		var (
			c  StoredCheckpoint
			at int64
		)
		if err := rows.Scan(&c.Size, &at, &c.Note); err != nil {
			return nil, fmt.Errorf("store: audit checkpoints: %w", err)
		}
		c.Time = time.Unix(0, at).UTC()
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: audit checkpoints: %w", err)
	}
	return out, nil
}

// backfillAuditHashes builds the tree of records appended before the tree
// existed (migration 0002), checks that the tree and the records agree in
// size, and returns the highest seq. It runs once at Open, before the
// sequencer starts. A record written by anyone else (there is no per-row
// trigger since migration 0007) has no tree hashes, so it changes the size
// the records imply and Open refuses the file; a record deleted behind the
// triggers' back is left for audit verify to name, so that the log can
// still be exported and examined.
func backfillAuditHashes(ctx context.Context, db *sql.DB) (int64, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("audit tree: begin: %w", err)
	}
	defer tx.Rollback()
	var n, hashes, maxID int64
	if err := tx.QueryRowContext(ctx, "SELECT (SELECT COALESCE(MAX(seq), 0) FROM audit_records), (SELECT COUNT(*) FROM audit_hashes), (SELECT COALESCE(MAX(id), -1) FROM audit_hashes)").Scan(&n, &hashes, &maxID); err != nil {
		return 0, fmt.Errorf("audit tree: %w", err)
	}
	// ids are unique and >= 0 (primary key, CHECK), so count and maximum
	// agreeing means they are exactly 0..count-1: this replaces a per-row
	// gapless trigger (migration 0006).
	if hashes != maxID+1 {
		return 0, fmt.Errorf("audit tree: tree hash ids are not 0..%d (highest %d): the file was modified outside Borderlink", hashes-1, maxID)
	}
	if hashes == tlog.StoredHashCount(n) {
		return n, nil
	}
	if hashes != 0 {
		return 0, fmt.Errorf("audit tree: %d tree hashes for %d records, want %d: the file was modified outside Borderlink", hashes, n, tlog.StoredHashCount(n))
	}
	rows, err := tx.QueryContext(ctx, "SELECT seq, record FROM audit_records ORDER BY seq")
	if err != nil {
		return 0, fmt.Errorf("audit tree: %w", err)
	}
	var leaves [][]byte
	for rows.Next() {
		var (
			seq int64
			b   []byte
		)
		if err := rows.Scan(&seq, &b); err != nil {
			rows.Close()
			return 0, fmt.Errorf("audit tree: %w", err)
		}
		// Records are leaves by position: a gap would give a record the
		// wrong index for good (the hashes are append-only).
		if seq != int64(len(leaves))+1 {
			rows.Close()
			return 0, fmt.Errorf("audit tree: record %d has seq %d, want %d: the file was modified outside Borderlink", len(leaves)+1, seq, len(leaves)+1)
		}
		leaves = append(leaves, b)
	}
	if err := rows.Close(); err != nil {
		return 0, fmt.Errorf("audit tree: %w", err)
	}
	ins, err := tx.PrepareContext(ctx, "INSERT INTO audit_hashes (id, hash) VALUES (?, ?)")
	if err != nil {
		return 0, fmt.Errorf("audit tree: %w", err)
	}
	defer ins.Close()
	overlay := map[int64]tlog.Hash{}
	r := tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(ix))
		for i, x := range ix {
			out[i] = overlay[x]
		}
		return out, nil
	})
	for i, leaf := range leaves {
		hs, err := tlog.StoredHashes(int64(i), leaf, r)
		if err != nil {
			return 0, fmt.Errorf("audit tree: %w", err)
		}
		id := tlog.StoredHashCount(int64(i))
		for _, h := range hs {
			if _, err := ins.ExecContext(ctx, id, h[:]); err != nil {
				return 0, fmt.Errorf("audit tree: hash %d: %w", id, err)
			}
			overlay[id] = h
			id++
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("audit tree: commit: %w", err)
	}
	return n, nil
}

// ListAudit returns audit records matching q in ascending seq order, at most
// q.Limit (store.DefaultAuditLimit if 0). To page, repeat with AfterSeq set
// to the last seq returned. A record of an unknown format version is an
// error, never silently skipped.
func (s *Store) ListAudit(ctx context.Context, q store.AuditQuery) ([]*blv1.AuditRecord, error) {
	limit := q.Limit
	switch {
	case limit < 0:
		return nil, fmt.Errorf("store: list audit: limit %d is negative: %w", limit, store.ErrInvalid)
	case limit == 0:
		limit = store.DefaultAuditLimit
	}
	if q.AfterSeq >= math.MaxInt64 {
		return nil, nil // SQLite seqs are int64; nothing can follow
	}

	conds := []string{"seq > ?"}
	args := []any{int64(q.AfterSeq)}
	eq := func(col string, v any, set bool) {
		if set {
			conds = append(conds, col+" = ?")
			args = append(args, v)
		}
	}
	eq("request_id", q.RequestID, q.RequestID != "")
	eq("partner", q.Partner, q.Partner != "")
	eq("agreement_id", q.Agreement, q.Agreement != "")
	eq("action", q.Action, q.Action != "")
	eq("caller_id", q.CallerID, q.CallerID != "")
	eq("decision", int64(q.Decision), q.Decision != 0)
	eq("side", int64(q.Side), q.Side != 0)
	if !q.Since.IsZero() {
		conds = append(conds, "time >= ?")
		args = append(args, boundNanos(q.Since))
	}
	if !q.Until.IsZero() {
		conds = append(conds, "time < ?")
		args = append(args, boundNanos(q.Until))
	}
	args = append(args, limit)
	query := "SELECT seq, record FROM audit_records WHERE " + strings.Join(conds, " AND ") + " ORDER BY seq LIMIT ?"

	rows, err := s.reader.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list audit: %w", err)
	}
	defer rows.Close()
	var out []*blv1.AuditRecord
	for rows.Next() {
		var (
			seq int64
			b   []byte
		)
		if err := rows.Scan(&seq, &b); err != nil {
			return nil, fmt.Errorf("store: list audit: %w", err)
		}
		rec := new(blv1.AuditRecord)
		if err := proto.Unmarshal(b, rec); err != nil {
			return nil, fmt.Errorf("store: list audit: seq %d: unmarshal: %w", seq, err)
		}
		if rec.GetVersion() != auditFormatVersion {
			return nil, fmt.Errorf("store: list audit: seq %d: unknown record version %d", seq, rec.GetVersion())
		}
		if rec.GetSeq() != uint64(seq) {
			return nil, fmt.Errorf("store: list audit: seq %d: record says seq %d", seq, rec.GetSeq())
		}
		out = append(out, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list audit: %w", err)
	}
	return out, nil
}

// LastWitnessed returns the largest checkpoint of origin accepted as a
// witness; the error wraps audit.ErrNoCheckpoint if there is none.
func (s *Store) LastWitnessed(ctx context.Context, origin string) ([]byte, error) {
	var note []byte
	err := s.reader.QueryRowContext(ctx, "SELECT note FROM audit_witnessed WHERE origin = ? ORDER BY size DESC LIMIT 1", origin).Scan(&note)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: witnessed %s: %w (%w)", origin, audit.ErrNoCheckpoint, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: witnessed %s: %w", origin, err)
	}
	return note, nil
}

// PutWitnessed records a partner checkpoint accepted as a witness. Sizes
// per origin must grow.
func (s *Store) PutWitnessed(ctx context.Context, origin string, size int64, note []byte, at time.Time) error {
	if _, err := s.writer.ExecContext(ctx, "INSERT INTO audit_witnessed (origin, size, time, note) VALUES (?, ?, ?, ?)", origin, size, at.UnixNano(), note); err != nil {
		return fmt.Errorf("store: put witnessed %s size %d: %w", origin, size, err)
	}
	return nil
}

// AuditCheckpoint returns the stored checkpoint of exactly size leaves; the
// error wraps audit.ErrNoCheckpoint if there is none.
func (s *Store) AuditCheckpoint(ctx context.Context, size int64) ([]byte, error) {
	var note []byte
	err := s.reader.QueryRowContext(ctx, "SELECT note FROM audit_checkpoints WHERE size = ?", size).Scan(&note)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: audit checkpoint %d: %w (%w)", size, audit.ErrNoCheckpoint, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: audit checkpoint %d: %w", size, err)
	}
	return note, nil
}

// PutCosignature stores a witness's cosignature line of the checkpoint of
// size leaves. One is kept per witness and size: a second one made with
// the same key is ignored (the first stays); one made with another key
// (the witness rotated its key, and the caller accepts only its current
// one) replaces it, so that the checkpoint is served with the current
// key's cosignature. A line that is not a signature line is refused
// (store.ErrInvalid).
func (s *Store) PutCosignature(ctx context.Context, size int64, witness, line string, at time.Time) error {
	_, keyHash, err := audit.CosignatureKeyHash(line)
	if err != nil {
		return fmt.Errorf("store: put cosignature %d %s: %v: %w", size, witness, err, store.ErrInvalid)
	}
	// BEGIN IMMEDIATE (the writer): no other put between the read and
	// the write.
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: put cosignature %d %s: %w", size, witness, err)
	}
	defer tx.Rollback()
	var old string
	err = tx.QueryRowContext(ctx, "SELECT line FROM audit_cosignatures WHERE size = ? AND witness = ?", size, witness).Scan(&old)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		_, err = tx.ExecContext(ctx, "INSERT INTO audit_cosignatures (size, witness, time, line) VALUES (?, ?, ?, ?)", size, witness, at.UnixNano(), line)
	case err != nil:
	default:
		if _, oldHash, perr := audit.CosignatureKeyHash(old); perr == nil && oldHash == keyHash {
			return nil
		}
		// Another key's line is replaced only on the latest checkpoint
		// (a witness re-cosigning after its key rotated, so that the
		// checkpoint served carries its current key). On older ones the
		// first line stays: its time is the proof of when the witness saw
		// that checkpoint, which a later line must not erase.
		var latest int64
		if err = tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(size), 0) FROM audit_checkpoints").Scan(&latest); err != nil {
			break
		}
		if size < latest {
			return nil
		}
		_, err = tx.ExecContext(ctx, "UPDATE audit_cosignatures SET time = ?, line = ? WHERE size = ? AND witness = ?", at.UnixNano(), line, size, witness)
	}
	if err == nil {
		err = tx.Commit()
	}
	if err != nil {
		return fmt.Errorf("store: put cosignature %d %s: %w", size, witness, err)
	}
	return nil
}

// Cosignatures returns the cosignature lines of the checkpoint of size
// leaves, ordered by witness.
func (s *Store) Cosignatures(ctx context.Context, size int64) ([]string, error) {
	rows, err := s.reader.QueryContext(ctx, "SELECT line FROM audit_cosignatures WHERE size = ? ORDER BY witness", size)
	if err != nil {
		return nil, fmt.Errorf("store: cosignatures %d: %w", size, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			return nil, fmt.Errorf("store: cosignatures %d: %w", size, err)
		}
		out = append(out, l)
	}
	return out, rows.Err()
}
