package vault

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"runtime"
	"strconv"
	"sync"

	"golang.org/x/mod/sumdb/note"

	"github.com/borderlink/borderlink/internal/keys"
)

// Defaults of BatchOptions.
const (
	// DefaultBatchMax bounds the messages of one transit request. Vault
	// signs a batch item by item under the key's read lock (tens of µs per
	// Ed25519 item), so a bounded batch keeps one request short and its
	// body small while still carrying a burst of a few thousand
	// signatures per second in a handful of requests.
	DefaultBatchMax = 64
	// DefaultBatchInFlight is how many transit requests one BatchSigner
	// keeps in flight. Two lets a Sign that arrives while a batch is on
	// the wire start at once rather than wait a full round trip for it;
	// beyond that, waiting callers are coalesced into the next batch.
	DefaultBatchInFlight = 2
)

// BatchOptions tune a BatchSigner; zero values take the defaults.
type BatchOptions struct {
	// MaxBatch bounds the messages signed by one transit request;
	// default DefaultBatchMax.
	MaxBatch int
	// MaxInFlight bounds the concurrent transit requests; default
	// DefaultBatchInFlight.
	MaxInFlight int
}

// BatchSigner is a Signer whose concurrent Sign calls share transit
// requests: every message that arrives while MaxInFlight requests are on
// the wire waits for the next one, which signs up to MaxBatch of them with
// transit's batch_input. An exchange then pays its share of a round trip
// to Vault instead of a whole one, and Vault sees one request per batch
// rather than one per receipt (docs/decisions/0008-batched-transit-signing.md).
//
// It is a note.Signer with exactly the Name, KeyHash and signatures of the
// Signer it wraps, so checkpoints and receipts are byte-for-byte what the
// Signer would make. As with Signer, every signature is verified with the
// pinned public key before Sign returns it (by the caller's own
// goroutine, so a large batch is verified in parallel). A failure of the
// request reaches every message of the batch as Signer.Sign reports it
// (keys.ErrUnavailable for an unreachable or sealed Vault, a
// *DeniedError for a 403); an error Vault reports for one item of a batch
// reaches only that item's caller.
//
// A BatchSigner starts a goroutine only while it has messages to sign and
// keeps none when idle, so it needs no Close. It is safe for concurrent
// use.
type BatchSigner struct {
	s           *Signer
	maxBatch    int
	maxInFlight int

	// encode turns a message into the batch item's input; tests replace
	// it to make Vault reject one item of a batch.
	encode func([]byte) string
	// beforeBatch, if set, is called by a sending goroutine before it
	// takes each batch from the queue; tests use it to let messages queue
	// up deterministically.
	beforeBatch func()

	mu         sync.Mutex
	queue      []*pendingSig
	inFlight   int
	requests   int64
	signatures int64
	largest    int
}

// pendingSig is one Sign call waiting for its batch.
type pendingSig struct {
	msg  []byte
	raw  string // transit's "vault:v<N>:<base64>" signature
	err  error
	done chan struct{}
}

var _ note.Signer = (*BatchSigner)(nil)

// NewBatchSigner returns a BatchSigner signing with s's client, key and
// pinned key version.
func NewBatchSigner(s *Signer, o BatchOptions) *BatchSigner {
	if o.MaxBatch <= 0 {
		o.MaxBatch = DefaultBatchMax
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = DefaultBatchInFlight
	}
	return &BatchSigner{s: s, maxBatch: o.MaxBatch, maxInFlight: o.MaxInFlight, encode: base64.StdEncoding.EncodeToString}
}

// Name is the key name (the log origin), as the wrapped Signer's.
func (b *BatchSigner) Name() string { return b.s.Name() }

// KeyHash is the note key ID of the pinned key version, as the wrapped
// Signer's.
func (b *BatchSigner) KeyHash() uint32 { return b.s.KeyHash() }

// Version is the transit key version signed with.
func (b *BatchSigner) Version() int { return b.s.Version() }

// PublicKey is the pinned version's Ed25519 public key.
func (b *BatchSigner) PublicKey() ed25519.PublicKey { return b.s.PublicKey() }

// VerifierKey is the note verifier key of the pinned version.
func (b *BatchSigner) VerifierKey() string { return b.s.VerifierKey() }

// VerifierKeys returns the verifier keys of every version of the key,
// oldest first (Signer.VerifierKeys).
func (b *BatchSigner) VerifierKeys(ctx context.Context) ([]string, error) {
	return b.s.VerifierKeys(ctx)
}

var _ keys.VerifierPublisher = (*BatchSigner)(nil)

// BatchStats count what a BatchSigner sent to Vault.
type BatchStats struct {
	// Requests is the number of transit sign requests sent.
	Requests int64
	// Signatures is the number of messages they carried.
	Signatures int64
	// Largest is the largest batch sent.
	Largest int
}

// Stats returns the counts so far.
func (b *BatchSigner) Stats() BatchStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return BatchStats{Requests: b.requests, Signatures: b.signatures, Largest: b.largest}
}

// Sign signs msg with transit in the next batch and returns the 64-byte
// Ed25519 signature, verified with the pinned public key. It waits for
// the requests ahead of its batch and its own, each bounded by
// vault.request_timeout.
func (b *BatchSigner) Sign(msg []byte) ([]byte, error) {
	p := &pendingSig{msg: msg, done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, p)
	if b.inFlight < b.maxInFlight {
		b.inFlight++
		go b.send()
	}
	b.mu.Unlock()
	<-p.done
	if p.err != nil {
		return nil, p.err
	}
	return b.s.check(msg, p.raw)
}

// send signs queued messages, a batch per request, until the queue is
// empty. At most maxInFlight of them run at once.
func (b *BatchSigner) send() {
	// Exchanges finish in bursts (one audit group commit wakes them
	// all): let the goroutines already runnable queue their receipts
	// before the first batch is taken, so that a burst is one request,
	// not a lone first message and then the rest one round trip later.
	runtime.Gosched()
	for {
		if b.beforeBatch != nil {
			b.beforeBatch()
		}
		b.mu.Lock()
		n := min(len(b.queue), b.maxBatch)
		if n == 0 {
			b.inFlight--
			b.queue = nil // let the backing array of a burst go
			b.mu.Unlock()
			return
		}
		batch := b.queue[:n:n]
		b.queue = b.queue[n:]
		b.requests++
		b.signatures += int64(n)
		b.largest = max(b.largest, n)
		b.mu.Unlock()
		b.signBatch(batch)
	}
}

// signBatch makes one transit request for batch and hands every caller
// its signature or error.
func (b *BatchSigner) signBatch(batch []*pendingSig) {
	defer func() {
		for _, p := range batch {
			close(p.done)
		}
	}()
	fail := func(err error) {
		for _, p := range batch {
			p.err = err
		}
	}
	items := make([]map[string]any, len(batch))
	for i, p := range batch {
		// The reference comes back with the result: a check, beyond
		// the documented order, that result i belongs to message i.
		items[i] = map[string]any{"input": b.encode(p.msg), "reference": strconv.Itoa(i)}
	}
	s := b.s
	ctx, cancel := s.c.ctx(context.Background())
	defer cancel()
	r, err := s.c.api.Logical().WriteWithContext(ctx, s.path, map[string]any{
		"batch_input": items,
		"key_version": s.version,
	})
	if err != nil {
		fail(s.c.wrap("sign", s.path, err))
		return
	}
	var results []any
	if r != nil && r.Data != nil {
		results, _ = r.Data["batch_results"].([]any)
	}
	if len(results) != len(batch) {
		fail(fmt.Errorf("vault %s: sign %s: %d batch results for %d inputs", s.c.Address(), s.path, len(results), len(batch)))
		return
	}
	for i, p := range batch {
		res, _ := results[i].(map[string]any)
		ref, _ := res["reference"].(string)
		msg, _ := res["error"].(string)
		switch {
		case ref != strconv.Itoa(i):
			p.err = fmt.Errorf("vault %s: sign %s: batch result %d has reference %q", s.c.Address(), s.path, i, ref)
		case msg != "":
			p.err = fmt.Errorf("vault %s: sign %s: vault refused this message of a batch: %s", s.c.Address(), s.path, msg)
		default:
			p.raw, _ = res["signature"].(string)
		}
	}
}
