package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/borderlink/borderlink/internal/store"
	"github.com/borderlink/borderlink/internal/store/sqlite"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

const (
	sg = "sg.customs.example"
	my = "my.customs.example"
)

// sendFunc is the test Sender.
type sendFunc func(ctx context.Context, e store.OutboxEntry) error

func (f sendFunc) Send(ctx context.Context, e store.OutboxEntry) error { return f(ctx, e) }

func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "borderlink.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	})
	return st
}

type msg struct{ id, to string }

// publish queues one entry per msg for the risk assessment recordID.
func publish(t *testing.T, st *sqlite.Store, recordID string, msgs ...msg) {
	t.Helper()
	var entries []store.OutboxEntry
	for _, m := range msgs {
		entries = append(entries, store.OutboxEntry{
			MessageID: m.id, Recipient: m.to, RecordID: recordID,
			Agreement: "a", Grant: "g", Alert: []byte{1}, Created: time.Now(),
		})
	}
	risk := &blv1.RiskAssessment{Id: recordID, DeclarationId: "d-" + recordID, Score: 0.9}
	if err := st.PublishAlert(context.Background(), risk, entries); err != nil {
		t.Fatal(err)
	}
}

func auditRecord(e store.OutboxEntry) *blv1.AuditRecord {
	return &blv1.AuditRecord{
		Time: timestamppb.Now(), Side: blv1.AuditSide_AUDIT_SIDE_PROVIDER, RequestId: e.MessageID,
		CallerId: "spiffe://" + e.Recipient + "/gateway", Action: "alert.deliver",
		Decision: blv1.AuditDecision_AUDIT_DECISION_ALLOW,
	}
}

// confirm settles e as delivered, as the gateway's Sender does.
func confirm(ctx context.Context, st *sqlite.Store, e store.OutboxEntry) error {
	_, err := st.ConfirmDelivery(ctx, e.MessageID, "receipt", auditRecord(e))
	return err
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// start runs a Deliverer until the test ends.
func start(t *testing.T, opts Options) *Deliverer {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	d, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return d
}

// waitFor polls cond; the deadline only guards against a hang.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func stats(d *Deliverer, partner string) PartnerStats {
	for _, s := range d.Stats() {
		if s.Partner == partner {
			return s
		}
	}
	return PartnerStats{}
}

func pending(t *testing.T, st *sqlite.Store, recipient string) int {
	t.Helper()
	es, err := st.PendingOutbox(context.Background(), recipient, 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

func state(t *testing.T, st *sqlite.Store, id string) store.OutboxEntry {
	t.Helper()
	e, err := st.GetOutbox(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// concurrency tracks the sends under way per partner and the maximum.
type concurrency struct {
	mu       sync.Mutex
	now, max map[string]int
}

func (c *concurrency) enter(p string) func() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.now == nil {
		c.now, c.max = map[string]int{}, map[string]int{}
	}
	c.now[p]++
	c.max[p] = max(c.max[p], c.now[p])
	return func() {
		c.mu.Lock()
		c.now[p]--
		c.mu.Unlock()
	}
}

func (c *concurrency) peak(p string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.max[p]
}

func TestDeliversEachEntryOnce(t *testing.T) {
	st := openStore(t)
	const records, rounds = 20, 4
	var (
		mu    sync.Mutex
		sends = map[string]int{}
		conc  concurrency
	)
	send := sendFunc(func(ctx context.Context, e store.OutboxEntry) error {
		defer conc.enter(e.Recipient)()
		mu.Lock()
		sends[e.MessageID]++
		mu.Unlock()
		if err := confirm(ctx, st, e); err != nil && !errors.Is(err, store.ErrConflict) {
			return err
		}
		// A conflict is a second delivery: counted above, not retried.
		return nil
	})
	var ids []string
	publishRound := func(round int) {
		for r := range records {
			rec := fmt.Sprintf("r%d", r)
			var ms []msg
			for _, to := range []string{sg, my} {
				id := fmt.Sprintf("%s-%s-%d", to, rec, round)
				ids = append(ids, id)
				ms = append(ms, msg{id, to})
			}
			publish(t, st, rec, ms...)
		}
	}
	// Half queued before Run, half while it runs (found by Notify).
	publishRound(0)
	publishRound(1)
	const lanes = 8
	// A batch of 16 over 8 lanes leaves 2 slots per lane: lanes fill up
	// and the dispatcher's skip-and-resume path is exercised.
	d := start(t, Options{Queue: st, Sender: send, Partners: []string{sg, my}, Lanes: lanes, Batch: 16,
		PollInterval: time.Hour})
	for round := 2; round < rounds; round++ {
		publishRound(round)
		d.Notify(sg)
		d.Notify(my)
	}
	total := uint64(records * rounds)
	waitFor(t, "all entries delivered", func() bool {
		return stats(d, sg).Delivered == total && stats(d, my).Delivered == total
	})

	for _, p := range []string{sg, my} {
		if n := pending(t, st, p); n != 0 {
			t.Errorf("%s: %d entries still pending", p, n)
		}
		s := stats(d, p)
		if s.InFlight != 0 || s.Retries != 0 || s.Breaker != "closed" {
			t.Errorf("%s: stats %+v, want nothing in flight, no retries, breaker closed", p, s)
		}
		if c := conc.peak(p); c > lanes {
			t.Errorf("%s: %d concurrent sends, want at most %d", p, c, lanes)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, id := range ids {
		if sends[id] != 1 {
			t.Errorf("%s sent %d times, want 1", id, sends[id])
		}
		if e := state(t, st, id); e.State != store.OutboxDelivered {
			t.Errorf("%s is %s, want delivered", id, e.State)
		}
	}
	if len(sends) != len(ids) {
		t.Errorf("%d distinct entries sent, want %d", len(sends), len(ids))
	}
}

func TestOrderPerRecordWithTransientFailures(t *testing.T) {
	st := openStore(t)
	const records, rounds = 10, 6
	seqOf := map[string]uint64{}
	want := map[string][]uint64{} // per record, Seq order of its entries
	for round := range rounds {
		for r := range records {
			rec := fmt.Sprintf("r%d", r)
			id := fmt.Sprintf("%s-%d", rec, round)
			publish(t, st, rec, msg{id, sg})
			e := state(t, st, id)
			seqOf[id] = e.Seq
			want[rec] = append(want[rec], e.Seq)
		}
	}

	var (
		mu        sync.Mutex
		rng       = rand.New(rand.NewPCG(1, 2))
		attempts  = map[string][]uint64{} // per record, Seq of each attempt
		delivered = map[string][]uint64{}
		failures  = map[string]int{} // per message
		total     int
	)
	send := sendFunc(func(ctx context.Context, e store.OutboxEntry) error {
		mu.Lock()
		attempts[e.RecordID] = append(attempts[e.RecordID], e.Seq)
		fail := rng.Float64() < 0.3
		if fail {
			failures[e.MessageID]++
			total++
		}
		mu.Unlock()
		if fail {
			return errors.New("partner unavailable")
		}
		if err := confirm(ctx, st, e); err != nil {
			return err
		}
		mu.Lock()
		delivered[e.RecordID] = append(delivered[e.RecordID], e.Seq)
		mu.Unlock()
		return nil
	})
	jitter := rand.New(rand.NewPCG(3, 4))
	d := start(t, Options{Queue: st, Sender: send, Partners: []string{sg}, Lanes: 4, Batch: 8,
		MinBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond,
		BreakerFailures: 3, BreakerCooldown: 2 * time.Millisecond, Rand: jitter.Float64})
	waitFor(t, "all entries delivered", func() bool { return stats(d, sg).Delivered == records*rounds })

	mu.Lock()
	defer mu.Unlock()
	if total == 0 {
		t.Fatal("no send failed: the test does not test retries")
	}
	for rec, seqs := range want {
		if !slices.Equal(delivered[rec], seqs) {
			t.Errorf("record %s delivered in order %v, want %v", rec, delivered[rec], seqs)
		}
		// A failed entry is retried before any later entry of its record
		// is tried at all.
		if !slices.IsSorted(attempts[rec]) {
			t.Errorf("record %s attempted in order %v: a later entry overtook a failed one", rec, attempts[rec])
		}
	}
	for id := range seqOf {
		if e := state(t, st, id); e.State != store.OutboxDelivered || e.Attempts != failures[id] {
			t.Errorf("%s: %s with %d attempts noted, want delivered with %d", id, e.State, e.Attempts, failures[id])
		}
	}
	if s := stats(d, sg); s.Retries != uint64(total) || s.LastError != "partner unavailable" || s.LastErrorAt.IsZero() {
		t.Errorf("stats %+v, want %d retries and the last error", s, total)
	}
}

func TestBrokenPartnerDoesNotDelayOthers(t *testing.T) {
	const broken = "xx.customs.example"
	for _, mode := range []string{"failing", "blocking"} {
		t.Run(mode, func(t *testing.T) {
			st := openStore(t)
			const n, lanes = 20, 4
			for i := range n {
				rec := fmt.Sprintf("r%d", i)
				publish(t, st, rec, msg{broken + "-" + rec, broken}, msg{sg + "-" + rec, sg})
			}
			var conc concurrency
			send := sendFunc(func(ctx context.Context, e store.OutboxEntry) error {
				defer conc.enter(e.Recipient)()
				if e.Recipient == broken {
					if mode == "blocking" {
						<-ctx.Done()
						return ctx.Err()
					}
					return errors.New("connection refused")
				}
				return confirm(ctx, st, e)
			})
			d := start(t, Options{Queue: st, Sender: send, Partners: []string{broken, sg}, Lanes: lanes,
				MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond, BreakerCooldown: 5 * time.Millisecond})
			waitFor(t, "healthy partner's entries delivered", func() bool { return stats(d, sg).Delivered == n })
			// The broken partner's lanes may not have been scheduled yet
			// on a loaded machine; what matters is that they get nowhere.
			waitFor(t, "broken partner tried", func() bool {
				if mode == "blocking" {
					return conc.peak(broken) > 0
				}
				return stats(d, broken).Retries > 0
			})

			if got := pending(t, st, sg); got != 0 {
				t.Errorf("%s: %d pending, want 0", sg, got)
			}
			if got := pending(t, st, broken); got != n {
				t.Errorf("%s: %d pending, want %d", broken, got, n)
			}
			s := stats(d, broken)
			if s.Delivered != 0 {
				t.Errorf("%s: %d delivered, want 0", broken, s.Delivered)
			}
			if mode == "failing" && (s.Retries == 0 || s.LastError != "connection refused") {
				t.Errorf("%s: stats %+v, want retries and the last error", broken, s)
			}
			for _, p := range []string{broken, sg} {
				if c := conc.peak(p); c > lanes {
					t.Errorf("%s: %d concurrent sends, want at most %d", p, c, lanes)
				}
			}
		})
	}
}

// TestBreaker runs on synctest's fake clock: the cooldown is an hour, so
// nothing but the breaker can explain sends that stop and resume.
func TestBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "borderlink.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		const n = 6
		for i := range n {
			rec := fmt.Sprintf("r%d", i)
			publish(t, st, rec, msg{rec, sg})
		}
		var (
			calls   atomic.Int64
			failing atomic.Bool
		)
		failing.Store(true)
		send := sendFunc(func(ctx context.Context, e store.OutboxEntry) error {
			calls.Add(1)
			if failing.Load() {
				return errors.New("unavailable")
			}
			return confirm(ctx, st, e)
		})
		const lanes, threshold = 3, 3
		d, err := New(Options{Queue: st, Sender: send, Partners: []string{sg}, Lanes: lanes,
			MinBackoff: time.Second, MaxBackoff: 4 * time.Hour, BreakerFailures: threshold,
			BreakerCooldown: time.Hour, PollInterval: time.Minute, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}()

		for stats(d, sg).Breaker != "open" {
			time.Sleep(10 * time.Millisecond)
		}
		// Let a lane that was let through just before the breaker opened
		// finish its send.
		synctest.Wait()
		opened := time.Now()
		c := calls.Load()
		// Sends already under way when the breaker opened still count.
		if c < threshold || c > threshold+lanes-1 {
			t.Fatalf("breaker opened after %d sends, want %d to %d", c, threshold, threshold+lanes-1)
		}
		time.Sleep(59 * time.Minute)
		if got, b := calls.Load(), stats(d, sg).Breaker; got != c || b != "open" {
			t.Fatalf("during cooldown: %d sends (want %d), breaker %s (want open)", got, c, b)
		}

		// After the cooldown exactly one probe goes out; it fails, so
		// the breaker opens again for twice as long.
		time.Sleep(time.Until(opened.Add(61 * time.Minute)))
		if got, b := calls.Load(), stats(d, sg).Breaker; got != c+1 || b != "open" {
			t.Fatalf("after cooldown: %d sends (want one probe: %d), breaker %s (want open)", got, c+1, b)
		}
		failing.Store(false)
		time.Sleep(time.Until(opened.Add(179 * time.Minute)))
		if got := calls.Load(); got != c+1 {
			t.Fatalf("during doubled cooldown: %d sends, want %d", got, c+1)
		}

		// The next probe succeeds: the breaker closes and all lanes send.
		time.Sleep(time.Until(opened.Add(181 * time.Minute)))
		synctest.Wait()
		s := stats(d, sg)
		if s.Breaker != "closed" || s.Delivered != n || s.InFlight != 0 {
			t.Fatalf("after successful probe: %+v, want breaker closed and %d delivered", s, n)
		}
		if got := calls.Load(); got != c+1+n {
			t.Errorf("%d sends, want %d", got, c+1+n)
		}
	})
}

func TestRescanPicksUpRetriedEntry(t *testing.T) {
	st := openStore(t)
	var (
		mu    sync.Mutex
		sends = map[string]int{}
	)
	send := sendFunc(func(ctx context.Context, e store.OutboxEntry) error {
		mu.Lock()
		sends[e.MessageID]++
		first := sends[e.MessageID] == 1
		mu.Unlock()
		if e.MessageID == "m1" && first {
			_, err := st.RefuseDelivery(ctx, e.MessageID, "policy", auditRecord(e))
			return err
		}
		return confirm(ctx, st, e)
	})
	sent := func(id string) int {
		mu.Lock()
		defer mu.Unlock()
		return sends[id]
	}
	publish(t, st, "r1", msg{"m1", sg})
	publish(t, st, "r2", msg{"m2", sg})
	d := start(t, Options{Queue: st, Sender: send, Partners: []string{sg}, PollInterval: 5 * time.Millisecond})
	waitFor(t, "m1 refused and m2 delivered", func() bool {
		return state(t, st, "m1").State == store.OutboxRefused && state(t, st, "m2").State == store.OutboxDelivered
	})

	if err := st.RetryOutbox(context.Background(), "m1", time.Now()); err != nil {
		t.Fatal(err)
	}
	// Reading on from its cursor, the deliverer does not see m1 again.
	publish(t, st, "r3", msg{"m3", sg})
	d.Notify(sg)
	waitFor(t, "m3 delivered", func() bool { return state(t, st, "m3").State == store.OutboxDelivered })
	if e := state(t, st, "m1"); e.State != store.OutboxPending || sent("m1") != 1 {
		t.Fatalf("m1 is %s after %d sends, want pending after 1", e.State, sent("m1"))
	}

	d.Rescan(sg)
	waitFor(t, "m1 delivered after rescan", func() bool { return state(t, st, "m1").State == store.OutboxDelivered })
	for id, want := range map[string]int{"m1": 2, "m2": 1, "m3": 1} {
		if got := sent(id); got != want {
			t.Errorf("%s sent %d times, want %d", id, got, want)
		}
	}
	// The store settles before the lane counts it.
	waitFor(t, "4 settled (m1 twice), none in flight", func() bool {
		s := stats(d, sg)
		return s.Delivered == 4 && s.InFlight == 0
	})
}

func TestRunReturnsOnCancel(t *testing.T) {
	st := openStore(t)
	const n, lanes = 6, 3
	busy := map[int]bool{}
	for i := range n {
		rec := fmt.Sprintf("r%d", i)
		publish(t, st, rec, msg{rec, sg})
		busy[laneOf(rec, lanes)] = true
	}
	var (
		started atomic.Int64
		mu      sync.Mutex
		errs    []error
	)
	send := sendFunc(func(ctx context.Context, e store.OutboxEntry) error {
		started.Add(1)
		<-ctx.Done()
		mu.Lock()
		errs = append(errs, ctx.Err())
		mu.Unlock()
		return fmt.Errorf("send %s: %w", e.MessageID, ctx.Err())
	})
	d, err := New(Options{Queue: st, Sender: send, Partners: []string{sg}, Lanes: lanes, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	// One send per busy lane blocks; the other entries wait behind them.
	waitFor(t, "a blocked send on every busy lane", func() bool { return started.Load() == int64(len(busy)) })
	waitFor(t, "all entries dispatched", func() bool { return stats(d, sg).InFlight == n })

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if got := started.Load(); got != int64(len(busy)) {
		t.Errorf("%d sends started, want %d (one per busy lane)", got, len(busy))
	}
	mu.Lock()
	for _, err := range errs {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("send saw %v, want context.Canceled", err)
		}
	}
	mu.Unlock()
	for i := range n {
		// Interrupted, not failed: still pending, no attempt noted.
		if e := state(t, st, fmt.Sprintf("r%d", i)); e.State != store.OutboxPending || e.Attempts != 0 {
			t.Errorf("r%d: %s with %d attempts, want pending with 0", i, e.State, e.Attempts)
		}
	}
	if s := stats(d, sg); s.Retries != 0 || s.Breaker != "closed" || s.InFlight != 0 {
		t.Errorf("stats after shutdown %+v, want no retries, breaker closed, nothing in flight", s)
	}
	if err := d.Run(context.Background()); err == nil {
		t.Error("second Run: nil error")
	}
}

func TestBackoff(t *testing.T) {
	const lo, hi = 100 * time.Millisecond, 30 * time.Second
	ceiling := func(attempt int) time.Duration { // expected upper bound
		d := lo
		for range attempt - 1 {
			d *= 2
			if d >= hi {
				return hi
			}
		}
		return d
	}
	for attempt := 1; attempt <= 12; attempt++ {
		c := ceiling(attempt)
		if got := backoff(attempt, lo, hi, 0); got != c/2 {
			t.Errorf("attempt %d, r=0: %v, want %v", attempt, got, c/2)
		}
		if got := backoff(attempt, lo, hi, 1); got != c {
			t.Errorf("attempt %d, r=1: %v, want %v", attempt, got, c)
		}
		rng := rand.New(rand.NewPCG(uint64(attempt), 0))
		for range 100 {
			if got := backoff(attempt, lo, hi, rng.Float64()); got < c/2 || got > c {
				t.Errorf("attempt %d: %v outside [%v, %v]", attempt, got, c/2, c)
			}
		}
	}
	if got := backoff(2, lo, hi, 1); got != 2*lo {
		t.Errorf("attempt 2: %v, want %v (doubled)", got, 2*lo)
	}
	for _, attempt := range []int{10, 11, 64, 1000, 1 << 30} {
		if got := backoff(attempt, lo, hi, 1); got != hi {
			t.Errorf("attempt %d: %v, want the cap %v", attempt, got, hi)
		}
	}
	if got := backoff(5, time.Duration(1<<62), time.Duration(1<<62+1<<61), 1); got != time.Duration(1<<62+1<<61) {
		t.Errorf("huge bounds: %v, want the cap without overflow", got)
	}
}

func TestNewChecksOptions(t *testing.T) {
	st := openStore(t)
	send := sendFunc(func(context.Context, store.OutboxEntry) error { return nil })
	for name, opts := range map[string]Options{
		"no queue":        {Sender: send, Partners: []string{sg}},
		"no sender":       {Queue: st, Partners: []string{sg}},
		"no partners":     {Queue: st, Sender: send},
		"empty partner":   {Queue: st, Sender: send, Partners: []string{""}},
		"duplicate":       {Queue: st, Sender: send, Partners: []string{sg, my, sg}},
		"negative lanes":  {Queue: st, Sender: send, Partners: []string{sg}, Lanes: -1},
		"min above max":   {Queue: st, Sender: send, Partners: []string{sg}, MinBackoff: time.Minute, MaxBackoff: time.Second},
		"negative window": {Queue: st, Sender: send, Partners: []string{sg}, PollInterval: -time.Second},
	} {
		if _, err := New(opts); err == nil || !strings.HasPrefix(err.Error(), "delivery: ") {
			t.Errorf("%s: error %v, want a delivery error", name, err)
		}
	}
	d, err := New(Options{Queue: st, Sender: send, Partners: []string{sg, my}})
	if err != nil {
		t.Fatal(err)
	}
	if d.lanes != DefaultLanes || d.batch != DefaultBatch || d.minWait != DefaultMinBackoff ||
		d.maxWait != DefaultMaxBackoff || d.poll != DefaultPollInterval || cap(d.byName[sg].lanes[0]) != DefaultBatch/DefaultLanes {
		t.Errorf("defaults not applied: %+v", d)
	}
	got := d.Stats()
	if len(got) != 2 || got[0].Partner != my || got[1].Partner != sg || got[0].Breaker != "closed" {
		t.Errorf("Stats %+v, want both partners sorted, breakers closed", got)
	}
	d.Notify("unknown.example") // ignored, must not panic
	d.Rescan("unknown.example")
}

// flakyQueue fails the first reads and every NoteAttempt.
type flakyQueue struct {
	*sqlite.Store
	reads atomic.Int64
	notes atomic.Int64
}

func (q *flakyQueue) PendingOutbox(ctx context.Context, recipient string, after uint64, limit int) ([]store.OutboxEntry, error) {
	if q.reads.Add(1) <= 3 {
		return nil, errors.New("database is locked")
	}
	return q.Store.PendingOutbox(ctx, recipient, after, limit)
}

func (q *flakyQueue) NoteAttempt(context.Context, string, int, time.Time, string) error {
	q.notes.Add(1)
	return errors.New("disk full")
}

func TestQueueErrorsDoNotStopDelivery(t *testing.T) {
	st := openStore(t)
	q := &flakyQueue{Store: st}
	var failed sync.Map
	send := sendFunc(func(ctx context.Context, e store.OutboxEntry) error {
		if _, again := failed.LoadOrStore(e.MessageID, true); !again {
			return errors.New("first attempt fails")
		}
		return confirm(ctx, st, e)
	})
	const n = 5
	for i := range n {
		rec := fmt.Sprintf("r%d", i)
		publish(t, st, rec, msg{rec, sg})
	}
	d := start(t, Options{Queue: q, Sender: send, Partners: []string{sg}, PollInterval: time.Millisecond, BreakerFailures: 2 * n,
		MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	waitFor(t, "all delivered", func() bool { return stats(d, sg).Delivered == n })
	if got := q.notes.Load(); got != n {
		t.Errorf("%d attempts noted, want %d", got, n)
	}
	if s := stats(d, sg); s.Retries != n {
		t.Errorf("stats %+v, want %d retries", s, n)
	}
}

// TestPeriodicRescan: without a Rescan call, an entry made pending again
// is found by the full re-read of an idle queue (fake clock).
func TestPeriodicRescan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "borderlink.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		var sends atomic.Int64
		send := sendFunc(func(ctx context.Context, e store.OutboxEntry) error {
			if sends.Add(1) == 1 {
				_, err := st.RefuseDelivery(ctx, e.MessageID, "policy", auditRecord(e))
				return err
			}
			return confirm(ctx, st, e)
		})
		publish(t, st, "r1", msg{"m1", sg})
		d, err := New(Options{Queue: st, Sender: send, Partners: []string{sg}, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		defer func() {
			cancel()
			<-done
		}()
		synctest.Wait()
		if e := state(t, st, "m1"); e.State != store.OutboxRefused {
			t.Fatalf("m1 is %s, want refused", e.State)
		}
		if err := st.RetryOutbox(context.Background(), "m1", time.Now()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(fullRescanEvery / 2)
		if got := sends.Load(); got != 1 {
			t.Fatalf("%d sends before the periodic rescan, want 1", got)
		}
		time.Sleep(fullRescanEvery/2 + 2*DefaultPollInterval)
		synctest.Wait()
		if e := state(t, st, "m1"); e.State != store.OutboxDelivered || sends.Load() != 2 {
			t.Fatalf("m1 is %s after %d sends, want delivered after 2", e.State, sends.Load())
		}
	})
}
