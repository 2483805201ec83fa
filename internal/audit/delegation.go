package audit

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// A receipt key is a short-lived Ed25519 key that signs receipts for a
// log, certified by the log's own key in a delegation: the idea of TLS
// delegated credentials (RFC 9345) in signed-note form. A gateway whose
// log key is in Vault transit signs one delegation an hour instead of one
// receipt per exchange, so no exchange waits for Vault (ADR 0011). The
// private half lives only in the gateway's memory.

// delegationHeader is the first line of a delegation body. No checkpoint
// (first line: the origin), receipt or cosignature starts with it, so the
// log key's signature on one can never be taken for another.
const delegationHeader = "borderlink-receipt-key/v1"

// MaxDelegation is the longest validity a verifier accepts, as RFC 9345
// caps delegated credentials at 7 days: a leaked receipt key must expire.
const MaxDelegation = 7 * 24 * time.Hour

// ReceiptKeyBackdate is how long before it is made a receipt key is valid
// from. A partner checking a live receipt allows its own clock 5 minutes
// outside the validity (the gateway's receiptKeySkew); back-dating twice
// that keeps a partner whose clock is up to 15 minutes behind working right
// after a renewal, and lets a record made up to 10 minutes before the
// renewal still be signed by the new key. Expiry, which is what bounds a
// leaked key, is not moved.
const ReceiptKeyBackdate = 10 * time.Minute

// Delegation is what the log key certifies: Key may sign receipts for
// Origin whose time lies in [NotBefore, NotAfter].
type Delegation struct {
	Origin    string
	Key       string // note verifier key of the receipt key, named Origin
	NotBefore time.Time
	NotAfter  time.Time

	verifier note.Verifier // Key, parsed (set by ParseDelegation)
}

// Text is the signed body, one field per line:
//
//	borderlink-receipt-key/v1
//	<origin>
//	<verifier key of the receipt key>
//	<not before, RFC 3339 with nanoseconds, UTC>
//	<not after, RFC 3339 with nanoseconds, UTC>
func (d Delegation) Text() string {
	return strings.Join([]string{delegationHeader, d.Origin, d.Key,
		d.NotBefore.UTC().Format(time.RFC3339Nano), d.NotAfter.UTC().Format(time.RFC3339Nano)}, "\n") + "\n"
}

// ParseDelegation parses a delegation body (the note text).
func ParseDelegation(text string) (Delegation, error) {
	bad := func(what string) (Delegation, error) {
		return Delegation{}, fmt.Errorf("malformed receipt key delegation: %s", what)
	}
	if len(text) > maxCheckpointSize || !strings.HasSuffix(text, "\n") {
		return bad("size or final newline")
	}
	l := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(l) != 5 || l[0] != delegationHeader {
		return bad("header or line count")
	}
	d := Delegation{Origin: l[1], Key: l[2]}
	if d.Origin == "" {
		return bad("origin")
	}
	var err error
	if d.verifier, err = note.NewVerifier(d.Key); err != nil {
		return bad("key: " + err.Error())
	}
	if d.verifier.Name() != d.Origin {
		return bad(fmt.Sprintf("key is named %q, not for origin %q", d.verifier.Name(), d.Origin))
	}
	if d.NotBefore, err = time.Parse(time.RFC3339Nano, l[3]); err != nil {
		return bad("not before")
	}
	if d.NotAfter, err = time.Parse(time.RFC3339Nano, l[4]); err != nil {
		return bad("not after")
	}
	if !d.NotAfter.After(d.NotBefore) || d.NotAfter.Sub(d.NotBefore) > MaxDelegation {
		return bad(fmt.Sprintf("validity %s to %s is empty or longer than %s", l[3], l[4], MaxDelegation))
	}
	return d, nil
}

// ReceiptKey is a receipt key with its signed delegation.
type ReceiptKey struct {
	Delegation Delegation
	signer     note.Signer
	signed     string // base64 of the signed delegation note, as receipts carry it
}

// NewReceiptKey makes a fresh receipt key valid for ttl from now (and from
// ReceiptKeyBackdate before) and has the log key sign its delegation. With a Vault transit log key that signature is the
// only call to Vault.
func NewReceiptKey(log Signer, now time.Time, ttl time.Duration) (*ReceiptKey, error) {
	if ttl <= 0 || ttl+ReceiptKeyBackdate > MaxDelegation {
		return nil, fmt.Errorf("audit: receipt key lifetime %s: want more than 0 and at most %s", ttl, MaxDelegation-ReceiptKeyBackdate)
	}
	origin := log.Name()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("audit: receipt key: %w", err)
	}
	vkey, err := note.NewEd25519VerifierKey(origin, pub)
	if err != nil {
		return nil, fmt.Errorf("audit: receipt key: %w", err)
	}
	// The signer key as note.GenerateKey writes it: name, key hash (the
	// verifier key's second field; a name holds no "+"), algorithm byte 1
	// and the seed.
	hash := strings.Split(vkey, "+")[1]
	signer, err := note.NewSigner("PRIVATE+KEY+" + origin + "+" + hash + "+" +
		base64.StdEncoding.EncodeToString(append([]byte{1}, priv.Seed()...)))
	if err != nil {
		return nil, fmt.Errorf("audit: receipt key: %w", err)
	}
	d := Delegation{Origin: origin, Key: vkey, NotBefore: now.Add(-ReceiptKeyBackdate).UTC(), NotAfter: now.Add(ttl).UTC()}
	msg, err := note.Sign(&note.Note{Text: d.Text()}, log)
	if err != nil {
		return nil, fmt.Errorf("audit: sign receipt key delegation: %w", err)
	}
	return &ReceiptKey{Delegation: d, signer: signer, signed: base64.StdEncoding.EncodeToString(msg)}, nil
}

// Sign signs r with the receipt key: a borderlink-receipt/v2 receipt that
// carries the delegation. r.Time must lie in the delegation's validity.
func (k *ReceiptKey) Sign(r Receipt) (string, error) {
	if r.Origin != k.Delegation.Origin {
		return "", fmt.Errorf("audit: sign receipt: receipt key signs for %q, not %q", k.Delegation.Origin, r.Origin)
	}
	if r.Time.Before(k.Delegation.NotBefore) || r.Time.After(k.Delegation.NotAfter) {
		return "", fmt.Errorf("audit: sign receipt: time %s is outside the receipt key's validity %s to %s",
			r.Time.UTC().Format(time.RFC3339Nano), k.Delegation.NotBefore.Format(time.RFC3339), k.Delegation.NotAfter.Format(time.RFC3339))
	}
	r.delegation = k.signed
	return SignReceipt(k.signer, r)
}

// delegationCacheSize is how many verified delegations a KeyRing keeps:
// the current receipt key, the one before it (receipts signed just before
// a renewal), with room to spare.
const delegationCacheSize = 4

// delegationCache keeps delegations verified with one KeyRing, by their
// exact base64 text. A ring's keys never change, so a delegation that
// verified once verifies again: the cache only saves the work. Failures
// are not kept.
type delegationCache struct {
	mu      sync.Mutex
	entries [delegationCacheSize]struct {
		b64 string
		d   Delegation
	}
	next int // the entry to replace next (oldest first)
}

func (c *delegationCache) get(b64 string) (Delegation, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.entries {
		if e.b64 == b64 && b64 != "" {
			return e.d, true
		}
	}
	return Delegation{}, false
}

func (c *delegationCache) put(b64 string, d Delegation) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Concurrent misses on a new delegation must not fill every slot
	// with it and push out the previous key's.
	for _, e := range c.entries {
		if e.b64 == b64 {
			return
		}
	}
	c.entries[c.next].b64, c.entries[c.next].d = b64, d
	c.next = (c.next + 1) % len(c.entries)
}

// openDelegation verifies a delegation (base64 of its signed note, as a
// receipt carries it) with the log's verifier v and returns it with the
// verifier of the receipt key. A KeyRing remembers the delegations it
// verified. Errors wrap ErrVerify.
func openDelegation(b64 string, v note.Verifier) (Delegation, note.Verifier, error) {
	ring, _ := v.(*KeyRing)
	if ring != nil {
		if d, ok := ring.delegations.get(b64); ok {
			return d, d.verifier, nil
		}
	}
	d, dv, err := verifyDelegation(b64, v)
	if err == nil && ring != nil {
		ring.delegations.put(b64, d)
	}
	return d, dv, err
}

// verifyDelegation is openDelegation without the cache.
func verifyDelegation(b64 string, v note.Verifier) (Delegation, note.Verifier, error) {
	msg, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil {
		return Delegation{}, nil, fmt.Errorf("receipt key delegation: not base64: %w", ErrVerify)
	}
	n, err := note.Open(msg, openers(v))
	if err != nil {
		return Delegation{}, nil, fmt.Errorf("receipt key delegation signature: %v: %w", err, ErrVerify)
	}
	d, err := ParseDelegation(n.Text)
	if err != nil {
		return Delegation{}, nil, fmt.Errorf("%v: %w", err, ErrVerify)
	}
	if d.Origin != v.Name() {
		return Delegation{}, nil, fmt.Errorf("receipt key delegation is for %q, want %q: %w", d.Origin, v.Name(), ErrVerify)
	}
	return d, d.verifier, nil
}
