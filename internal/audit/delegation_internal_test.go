package audit

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const testLogOrigin = "nl.customs.example/borderlink/audit"

// delegationFixture is a log key, its verifier key text and a KeyRing of
// it, and a receipt of that log at time at.
func delegationFixture(t testing.TB, at time.Time) (note.Signer, string, *KeyRing, Receipt) {
	t.Helper()
	sk, vk, err := GenerateKey(testLogOrigin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(sk)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := NewKeyRing(testLogOrigin, []string{vk})
	if err != nil {
		t.Fatal(err)
	}
	r := Receipt{Origin: testLogOrigin, Index: 7, LeafHash: tlog.RecordHash([]byte("leaf")), Time: at,
		Release: strings.Repeat("ab", 32), RequestID: "req-7", Caller: "spiffe://sg.customs.example/gateway"}
	return s, vk, ring, r
}

// delegatedReceipts makes n receipt keys delegated by s at at and has each
// sign r.
func delegatedReceipts(t testing.TB, s note.Signer, at time.Time, r Receipt, n int) ([]*ReceiptKey, []string) {
	t.Helper()
	var keys []*ReceiptKey
	var msgs []string
	for range n {
		k, err := NewReceiptKey(s, at, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := k.Sign(r)
		if err != nil {
			t.Fatal(err)
		}
		keys, msgs = append(keys, k), append(msgs, msg)
	}
	return keys, msgs
}

// TestKeyRingCachesDelegations: a KeyRing keeps the delegations it
// verified (the cache is used: a second receipt with the same delegation
// finds it), keeps no failure, holds at most delegationCacheSize, and a
// cached delegation still opens only receipts its key signed.
func TestKeyRingCachesDelegations(t *testing.T) {
	const origin = testLogOrigin
	at := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	s, _, ring, r := delegationFixture(t, at.Add(time.Minute))
	delegationOf := func(msg string) string {
		return strings.Split(strings.SplitN(msg, "\n\n", 2)[0], "\n")[8]
	}
	keys, msgs := delegatedReceipts(t, s, at, r, delegationCacheSize+1)

	if _, ok := ring.delegations.get(delegationOf(msgs[0])); ok {
		t.Fatal("delegation cached before any receipt was opened")
	}
	for range 2 {
		if _, err := OpenReceipt(msgs[0], ring); err != nil {
			t.Fatalf("OpenReceipt: %v", err)
		}
		if _, ok := ring.delegations.get(delegationOf(msgs[0])); !ok {
			t.Fatal("verified delegation not cached")
		}
	}

	// With the delegation cached: the receipt must still be signed by the
	// key it names, and every field still counts.
	other := keys[1]
	r8 := r
	r8.RequestID = "req-8"
	byOther, err := other.Sign(r8)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.SplitN(byOther, "\n\n", 2)[0], "\n")
	lines[8] = delegationOf(msgs[0]) // claims the cached delegation, signed by another key
	swapped, err := note.Sign(&note.Note{Text: strings.Join(lines, "\n") + "\n"}, other.signer)
	if err != nil {
		t.Fatal(err)
	}
	signedByLog, err := note.Sign(&note.Note{Text: strings.SplitN(msgs[0], "\n\n", 2)[0] + "\n"}, s)
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string]string{
		"signed by another receipt key": string(swapped),
		"signed by the log key":         string(signedByLog),
		"a field changed":               strings.Replace(msgs[0], "\nreq-7\n", "\nreq-9\n", 1),
	} {
		if _, err := OpenReceipt(bad, ring); !errors.Is(err, ErrVerify) {
			t.Errorf("%s, delegation cached: OpenReceipt = %v, want ErrVerify", name, err)
		}
	}

	// A receipt the cached key signed for a time outside the delegation's
	// validity (SignReceipt, not ReceiptKey.Sign, which refuses) fails.
	late := r
	late.Time = keys[0].Delegation.NotAfter.Add(time.Nanosecond)
	late.delegation = keys[0].signed
	lateMsg, err := SignReceipt(keys[0].signer, late)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenReceipt(lateMsg, ring); !errors.Is(err, ErrVerify) {
		t.Errorf("receipt after its key's validity, delegation cached: OpenReceipt = %v, want ErrVerify", err)
	}

	// The cache is the ring's own: another partner's ring (another log
	// key, even of the same name) still refuses the delegation.
	_, otherVK, _ := GenerateKey(origin)
	ring2, err := NewKeyRing(origin, []string{otherVK})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenReceipt(msgs[0], ring2); !errors.Is(err, ErrVerify) {
		t.Errorf("receipt opened with another ring after this one cached its delegation: %v, want ErrVerify", err)
	}

	// A delegation that fails is not kept.
	forgedSK, _, _ := GenerateKey(origin)
	forged, _ := note.NewSigner(forgedSK)
	fk, err := NewReceiptKey(forged, at, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	fmsg, err := fk.Sign(r)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := OpenReceipt(fmsg, ring); !errors.Is(err, ErrVerify) {
			t.Fatalf("receipt key delegated by another log's key: %v, want ErrVerify", err)
		}
	}
	if _, ok := ring.delegations.get(delegationOf(fmsg)); ok {
		t.Error("a delegation that failed verification was cached")
	}

	// Bounded: the oldest goes first.
	for _, msg := range msgs[1:] {
		if _, err := OpenReceipt(msg, ring); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := ring.delegations.get(delegationOf(msgs[0])); ok {
		t.Errorf("cache kept %d delegations, want at most %d", len(msgs), delegationCacheSize)
	}
	for _, msg := range msgs[1:] {
		if _, ok := ring.delegations.get(delegationOf(msg)); !ok {
			t.Error("one of the last delegations is not cached")
		}
	}
}

// TestKeyRingDelegationsConcurrent opens receipts of several receipt keys
// from many goroutines on one ring (for -race), and checks that concurrent
// misses on one delegation keep one entry for it.
func TestKeyRingDelegationsConcurrent(t *testing.T) {
	at := time.Now()
	s, _, ring, r := delegationFixture(t, at)
	_, msgs := delegatedReceipts(t, s, at, r, 3)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 20 {
				if _, err := OpenReceipt(msgs[(i+j)%len(msgs)], ring); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	seen := map[string]int{}
	for _, e := range ring.delegations.entries {
		if e.b64 != "" {
			seen[e.b64]++
		}
	}
	if len(seen) != len(msgs) {
		t.Errorf("cache holds %d distinct delegations, want the %d in use", len(seen), len(msgs))
	}
	for _, n := range seen {
		if n != 1 {
			t.Errorf("a delegation fills %d cache entries, want 1", n)
		}
	}
}

// BenchmarkOpenReceiptV2 opens a live receipt as a calling gateway does,
// with the partner's KeyRing (delegation cached after the first) and with
// a bare verifier (delegation verified every time).
func BenchmarkOpenReceiptV2(b *testing.B) {
	at := time.Now()
	s, vk, ring, r := delegationFixture(b, at)
	_, msgs := delegatedReceipts(b, s, at, r, 1)
	msg := msgs[0]
	bare, err := NewVerifier(vk, testLogOrigin)
	if err != nil {
		b.Fatal(err)
	}
	for name, v := range map[string]note.Verifier{"keyring": ring, "bare": bare} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := OpenReceipt(msg, v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
