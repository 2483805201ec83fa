package delivery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/borderlink/borderlink/internal/ctxwait"
	"github.com/borderlink/borderlink/internal/store"
)

// Defaults of Options.
const (
	DefaultLanes           = 8
	DefaultBatch           = 256
	DefaultMinBackoff      = 100 * time.Millisecond
	DefaultMaxBackoff      = 30 * time.Second
	DefaultBreakerFailures = 5
	DefaultBreakerCooldown = 5 * time.Second
	DefaultPollInterval    = time.Second
)

// fullRescanEvery is how often a dispatcher that has reached the end of
// its queue reads it again from the start, so that an entry an operator
// made pending again is picked up even if nobody called Rescan.
const fullRescanEvery = 30 * time.Second

// Options configure a Deliverer; zero fields take the defaults.
type Options struct {
	Queue  Queue
	Sender Sender
	// Partners are the recipient trust domains to serve (one queue each).
	Partners []string
	// Lanes is the number of concurrent senders per partner; entries of
	// one RecordID always use lane hash(RecordID)%Lanes.
	Lanes int
	// Batch is the number of entries read per PendingOutbox call.
	Batch int
	// MinBackoff and MaxBackoff bound the exponential, jittered wait
	// before an entry is tried again.
	MinBackoff, MaxBackoff time.Duration
	// BreakerFailures consecutive failures open a partner's breaker.
	BreakerFailures int
	// BreakerCooldown is how long an open breaker stays open before one
	// probe is let through; it doubles on each failed probe, up to
	// max(MaxBackoff, BreakerCooldown).
	BreakerCooldown time.Duration
	// PollInterval is how often an idle partner's queue is read again
	// without a Notify.
	PollInterval time.Duration
	Logger       *slog.Logger
	// Now is the clock; it must advance (breaker cooldowns are measured
	// with it).
	Now func() time.Time
	// Rand is the jitter source, uniform in [0, 1); calls are serialised.
	Rand func() float64
}

// PartnerStats describes the deliveries to one partner since Run started.
type PartnerStats struct {
	Partner string
	// InFlight counts entries dispatched to lanes and not yet settled.
	InFlight int
	// Delivered counts entries settled by the Sender.
	Delivered uint64
	// Retries counts failed attempts.
	Retries uint64
	// Breaker is "closed", "open" or "half-open".
	Breaker     string
	LastError   string
	LastErrorAt time.Time
}

// Deliverer pushes the outbox entries of a fixed set of partners.
type Deliverer struct {
	queue    Queue
	sender   Sender
	lanes    int
	batch    int
	minWait  time.Duration
	maxWait  time.Duration
	poll     time.Duration
	log      *slog.Logger
	now      func() time.Time
	rand     func() float64
	partners []*partner // sorted by name
	byName   map[string]*partner
	running  atomic.Bool
}

// New checks opts and returns a Deliverer; nothing runs before Run.
func New(opts Options) (*Deliverer, error) {
	if opts.Queue == nil {
		return nil, errors.New("delivery: new: no queue")
	}
	if opts.Sender == nil {
		return nil, errors.New("delivery: new: no sender")
	}
	if len(opts.Partners) == 0 {
		return nil, errors.New("delivery: new: no partners")
	}
	if opts.Lanes < 0 || opts.Batch < 0 || opts.BreakerFailures < 0 ||
		opts.MinBackoff < 0 || opts.MaxBackoff < 0 || opts.BreakerCooldown < 0 || opts.PollInterval < 0 {
		return nil, errors.New("delivery: new: negative option")
	}
	d := &Deliverer{
		queue:   opts.Queue,
		sender:  opts.Sender,
		lanes:   cmp.Or(opts.Lanes, DefaultLanes),
		batch:   cmp.Or(opts.Batch, DefaultBatch),
		minWait: cmp.Or(opts.MinBackoff, DefaultMinBackoff),
		maxWait: cmp.Or(opts.MaxBackoff, DefaultMaxBackoff),
		poll:    cmp.Or(opts.PollInterval, DefaultPollInterval),
		log:     opts.Logger,
		now:     opts.Now,
		rand:    rand.Float64,
		byName:  make(map[string]*partner, len(opts.Partners)),
	}
	if d.minWait > d.maxWait {
		return nil, fmt.Errorf("delivery: new: min backoff %v exceeds max backoff %v", d.minWait, d.maxWait)
	}
	if d.log == nil {
		d.log = slog.Default()
	}
	if d.now == nil {
		d.now = time.Now
	}
	if opts.Rand != nil {
		// Lanes draw concurrently and a caller's source (a seeded
		// *rand.Rand) need not be safe for that.
		var mu sync.Mutex
		d.rand = func() float64 {
			mu.Lock()
			defer mu.Unlock()
			return opts.Rand()
		}
	}
	failures := cmp.Or(opts.BreakerFailures, DefaultBreakerFailures)
	cooldown := cmp.Or(opts.BreakerCooldown, DefaultBreakerCooldown)
	// A lane's buffer holds the share of one read that falls to it, so a
	// batch rarely finds a lane full.
	buffer := max(1, d.batch/d.lanes)
	for _, name := range opts.Partners {
		if name == "" {
			return nil, errors.New("delivery: new: empty partner name")
		}
		if d.byName[name] != nil {
			return nil, fmt.Errorf("delivery: new: partner %q listed twice", name)
		}
		log := d.log.With("partner", name)
		p := &partner{
			d:        d,
			name:     name,
			log:      log,
			lanes:    make([]chan store.OutboxEntry, d.lanes),
			wake:     make(chan struct{}, 1),
			room:     make(chan struct{}, 1),
			breaker:  newBreaker(failures, cooldown, d.maxWait, d.now, log),
			inflight: make(map[string]bool),
		}
		for i := range p.lanes {
			p.lanes[i] = make(chan store.OutboxEntry, buffer)
		}
		d.byName[name] = p
		d.partners = append(d.partners, p)
	}
	slices.SortFunc(d.partners, func(a, b *partner) int { return cmp.Compare(a.name, b.name) })
	return d, nil
}

// Run delivers until ctx is done, then waits for its goroutines and
// returns nil. Sends under way get the cancelled ctx; their entries stay
// pending in the store for the next run. Run may be called only once.
func (d *Deliverer) Run(ctx context.Context) error {
	if !d.running.CompareAndSwap(false, true) {
		return errors.New("delivery: run: already started")
	}
	var wg sync.WaitGroup
	for _, p := range d.partners {
		wg.Go(func() { p.dispatch(ctx) })
		for _, ch := range p.lanes {
			wg.Go(func() { p.runLane(ctx, ch) })
		}
	}
	<-ctx.Done()
	wg.Wait()
	for _, p := range d.partners {
		p.mu.Lock()
		clear(p.inflight)
		p.inFlight = 0
		p.mu.Unlock()
	}
	return nil
}

// Notify tells the deliverer that entries were queued for recipient, so
// that it reads them now instead of at the next poll. It never blocks;
// notifications that arrive before the last is handled coalesce.
func (d *Deliverer) Notify(recipient string) {
	if p := d.byName[recipient]; p != nil {
		p.notify()
	}
}

// Rescan tells the deliverer that an entry for recipient it had passed
// (refused, or before a restart of its cursor) is pending again: the
// queue is read again from the start. Entries in flight are not
// dispatched twice.
func (d *Deliverer) Rescan(recipient string) {
	if p := d.byName[recipient]; p != nil {
		p.rescan.Store(true)
		p.notify()
	}
}

// Stats returns one PartnerStats per partner, sorted by partner.
func (d *Deliverer) Stats() []PartnerStats {
	out := make([]PartnerStats, 0, len(d.partners))
	for _, p := range d.partners {
		p.mu.Lock()
		s := PartnerStats{
			Partner:     p.name,
			InFlight:    p.inFlight,
			Delivered:   p.delivered,
			Retries:     p.retries,
			LastError:   p.lastErr,
			LastErrorAt: p.lastErrAt,
		}
		p.mu.Unlock()
		s.Breaker = p.breaker.String()
		out = append(out, s)
	}
	return out
}

// laneOf is the lane of a record's entries: a fixed hash, so that all of
// them queue behind each other on one lane and arrive in order.
func laneOf(recordID string, lanes int) int {
	h := fnv.New32a()
	h.Write([]byte(recordID))
	return int(h.Sum32() % uint32(lanes))
}

// partner is the queue, lanes and breaker of one recipient. Nothing in it
// is shared with another partner except the Queue, Sender and logger.
type partner struct {
	d       *Deliverer
	name    string
	log     *slog.Logger
	lanes   []chan store.OutboxEntry
	wake    chan struct{} // Notify and Rescan; capacity 1 coalesces
	room    chan struct{} // a lane's buffer drained to half; capacity 1
	rescan  atomic.Bool
	breaker *breaker

	mu sync.Mutex
	// inflight holds the MessageIDs of dispatched entries. The value is
	// true once the entry is settled: the dispatcher forgets those only
	// before it starts a read, because a read that started before the
	// settlement committed may still return the entry as pending.
	inflight  map[string]bool
	inFlight  int // entries in inflight not yet settled
	delivered uint64
	retries   uint64
	lastErr   string
	lastErrAt time.Time
}

func (p *partner) notify() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *partner) noteError(msg string, at time.Time) {
	p.mu.Lock()
	p.lastErr, p.lastErrAt = msg, at
	p.mu.Unlock()
}

// sweep is what one pass of the dispatcher over the queue left behind.
// When a lane's buffer is full the dispatcher skips the entry rather than
// wait, so that one lane stuck retrying cannot starve the others; the
// lane then stays blocked until the dispatcher goes back to the first
// skipped entry, or a later entry of a record could overtake an earlier
// one.
type sweep struct {
	blocked  []bool
	nblocked int
	skipped  bool
	first    uint64 // Seq of the first skipped entry
}

func (s *sweep) reset() {
	clear(s.blocked)
	s.nblocked = 0
	s.skipped = false
	s.first = 0
}

func (s *sweep) skip(lane int, seq uint64) {
	if !s.blocked[lane] {
		s.blocked[lane] = true
		s.nblocked++
	}
	if !s.skipped || seq < s.first {
		s.skipped, s.first = true, seq
	}
}

// dispatch reads the partner's queue in Seq order and hands each entry
// not already in flight to its lane.
func (p *partner) dispatch(ctx context.Context) {
	var (
		cursor   uint64
		lastFull = p.d.now()
		sw       = sweep{blocked: make([]bool, len(p.lanes))}
	)
	for ctx.Err() == nil {
		if p.rescan.Swap(false) {
			cursor, lastFull = 0, p.d.now()
			sw.reset()
		}
		p.forgetSettled()
		entries, err := p.d.queue.PendingOutbox(ctx, p.name, cursor, p.d.batch)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			err = fmt.Errorf("delivery: read queue of %s after seq %d: %w", p.name, cursor, err)
			p.log.Warn("read outbox", "err", err)
			p.noteError(err.Error(), p.d.now())
			if !p.wait(ctx, false) {
				return
			}
			continue
		}
		for _, e := range entries {
			cursor = e.Seq
			p.offer(e, &sw)
			if sw.nblocked == len(p.lanes) {
				// Nothing more can go anywhere: reading on is wasted.
				break
			}
		}
		if len(entries) == p.d.batch && sw.nblocked < len(p.lanes) {
			continue
		}
		switch {
		case sw.skipped:
			// Resume at the first skipped entry once some lane has room.
			if !p.wait(ctx, true) {
				return
			}
			cursor = sw.first - 1
			sw.reset()
		case p.d.now().Sub(lastFull) >= fullRescanEvery:
			cursor, lastFull = 0, p.d.now()
		default:
			if !p.wait(ctx, false) {
				return
			}
		}
	}
}

// offer hands e to its lane unless it is in flight already; if the lane's
// buffer is full, e is left for a later pass.
func (p *partner) offer(e store.OutboxEntry, sw *sweep) {
	lane := laneOf(e.RecordID, len(p.lanes))
	p.mu.Lock()
	_, dup := p.inflight[e.MessageID]
	if !dup && !sw.blocked[lane] {
		// Registered before the hand-over: the lane may settle it at once.
		p.inflight[e.MessageID] = false
		p.inFlight++
	}
	p.mu.Unlock()
	if dup {
		return
	}
	if !sw.blocked[lane] {
		select {
		case p.lanes[lane] <- e:
			return
		default:
		}
		p.mu.Lock()
		delete(p.inflight, e.MessageID)
		p.inFlight--
		p.mu.Unlock()
	}
	sw.skip(lane, e.Seq)
}

// forgetSettled drops settled entries from the in-flight set; called only
// before a read starts (see inflight).
func (p *partner) forgetSettled() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, settled := range p.inflight {
		if settled {
			delete(p.inflight, id)
		}
	}
}

// wait blocks until Notify or Rescan, or the poll interval; if forRoom,
// until a lane has room again or the poll interval. Waiting for room
// ignores Notify: a newly queued entry cannot free a lane, and under load
// every publish notifies, so re-reading the queue on each would cost more
// than the deliveries (a pending Rescan is kept for the next pass).
func (p *partner) wait(ctx context.Context, forRoom bool) bool {
	t := time.NewTimer(p.d.poll)
	defer t.Stop()
	wake, room := p.wake, (<-chan struct{})(nil)
	if forRoom {
		wake, room = nil, p.room
	}
	select {
	case <-ctx.Done():
		return false
	case <-wake:
	case <-room:
	case <-t.C:
	}
	return true
}

// runLane sends the entries of its channel one after the other: an entry
// is not left before it is settled, so entries of one record keep their
// order.
func (p *partner) runLane(ctx context.Context, ch chan store.OutboxEntry) {
	for {
		var e store.OutboxEntry
		select {
		case <-ctx.Done():
			return
		case e = <-ch:
		}
		if len(ch) <= cap(ch)/2 {
			select {
			case p.room <- struct{}{}:
			default:
			}
		}
		settled := p.deliver(ctx, e)
		p.mu.Lock()
		p.inflight[e.MessageID] = true
		p.inFlight--
		if settled {
			p.delivered++
		}
		p.mu.Unlock()
		if !settled {
			return
		}
	}
}

// deliver sends e until the Sender settles it; false means ctx is done
// and e stays pending in the store.
func (p *partner) deliver(ctx context.Context, e store.OutboxEntry) bool {
	for failures := 0; ; {
		probe, err := p.breaker.acquire(ctx)
		if err != nil {
			return false
		}
		err = p.d.sender.Send(ctx, e)
		if err == nil {
			p.breaker.done(probe, true)
			return true
		}
		if ctx.Err() != nil {
			// Most likely the shutdown failed the send, not the partner.
			p.breaker.abandon(probe)
			return false
		}
		p.breaker.done(probe, false)
		failures++
		now := p.d.now()
		wait := backoff(failures, p.d.minWait, p.d.maxWait, p.d.rand())
		msg := err.Error()
		p.mu.Lock()
		p.retries++
		p.lastErr, p.lastErrAt = msg, now
		p.mu.Unlock()
		p.log.Warn("delivery failed", "message_id", e.MessageID, "record_id", e.RecordID,
			"seq", e.Seq, "failures", failures, "retry_in", wait, "err", err)
		if nerr := p.d.queue.NoteAttempt(ctx, e.MessageID, e.Attempts+failures, now.Add(wait), msg); nerr != nil && ctx.Err() == nil {
			p.log.Warn("note delivery attempt", "message_id", e.MessageID,
				"err", fmt.Errorf("delivery: note attempt %d on %s: %w", e.Attempts+failures, e.MessageID, nerr))
		}
		if !ctxwait.Sleep(ctx, wait) {
			return false
		}
	}
}
