package keys_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/audit/audittest"
	"github.com/borderlink/borderlink/internal/keys"
)

// flakySigner is a log key that can be made to fail, as a sealed Vault.
type flakySigner struct {
	note.Signer
	fail  atomic.Bool
	signs atomic.Int64
}

func (f *flakySigner) Sign(msg []byte) ([]byte, error) {
	if f.fail.Load() {
		return nil, fmt.Errorf("vault is sealed: %w", keys.ErrUnavailable)
	}
	f.signs.Add(1)
	return f.Signer.Sign(msg)
}

func logKey(t *testing.T) (*flakySigner, note.Verifier) {
	t.Helper()
	k := audittest.NewKey(t, "nl.customs.example/borderlink/audit")
	return &flakySigner{Signer: k.Signer}, k.Verifier
}

func receiptAt(at time.Time) audit.Receipt {
	return audit.Receipt{Origin: "nl.customs.example/borderlink/audit", Index: 1, LeafHash: tlog.RecordHash([]byte("x")),
		Time: at, RequestID: "r", Caller: "spiffe://sg.customs.example/gateway"}
}

// waitKeyChange polls until the receipt key expiring at old is replaced.
func waitKeyChange(t *testing.T, rk *keys.ReceiptKeys, old time.Time) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for rk.NotAfter().Equal(old) {
		if time.Now().After(deadline) {
			t.Fatalf("receipt key expiring %s was not renewed within 10s", old)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestReceiptKeysRenew(t *testing.T) {
	s, v := logKey(t)
	rk, err := keys.NewReceiptKeys(context.Background(), s, 6*time.Second, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rk.Stop()
	first := rk.NotAfter()
	msg, err := rk.SignReceipt(receiptAt(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	// Sign back to back across the renewal: no receipt may fail, and the
	// new key must be there while the old one still has half of its last
	// third to live (it is due at two thirds, 2s before expiry).
	deadline := time.Now().Add(10 * time.Second)
	for rk.NotAfter().Equal(first) {
		if _, err := rk.SignReceipt(receiptAt(time.Now())); err != nil {
			t.Fatalf("signing while the key is due for renewal: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("receipt key expiring %s was not renewed within 10s", first)
		}
		time.Sleep(time.Millisecond)
	}
	if left := time.Until(first); left < time.Second {
		t.Errorf("renewed only %s before the old key expired; want it at two thirds of the life (2s before)", left)
	}
	msg2, err := rk.SignReceipt(receiptAt(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	var signedBy []string
	for i, m := range []string{msg, msg2} {
		r, err := audit.OpenReceipt(m, v)
		if err != nil || r.Key == nil {
			t.Fatalf("receipt %d: %+v, %v; want a verified v2 receipt", i, r, err)
		}
		signedBy = append(signedBy, r.Key.Key)
	}
	if signedBy[0] == signedBy[1] {
		t.Errorf("the renewed key is the old one: %s", signedBy[0])
	}
	// Receipts do not call the log key: one delegation per key.
	before := s.signs.Load()
	for range 100 {
		if _, err := rk.SignReceipt(receiptAt(time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.signs.Load() - before; n > 1 {
		t.Errorf("100 receipts made %d log-key signatures, want at most one renewal", n)
	}
}

func TestReceiptKeysOutage(t *testing.T) {
	s, v := logKey(t)
	var clock atomic.Pointer[time.Time]
	start := time.Now()
	clock.Store(&start)
	now := func() time.Time { return *clock.Load() }

	s.fail.Store(true)
	if _, err := keys.NewReceiptKeys(context.Background(), s, time.Hour, now, nil); !errors.Is(err, keys.ErrUnavailable) {
		t.Fatalf("NewReceiptKeys with the log key unavailable = %v, want ErrUnavailable (the gateway must not start)", err)
	}
	s.fail.Store(false)
	rk, err := keys.NewReceiptKeys(context.Background(), s, 600*time.Millisecond, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rk.Stop()
	first := rk.NotAfter()
	s.fail.Store(true) // sealed from now on: renewals fail

	// Until it expires the key keeps signing, without the log key.
	if _, err := rk.SignReceipt(receiptAt(first.Add(-time.Millisecond))); err != nil {
		t.Fatalf("signing with a valid key while the log key is unavailable: %v", err)
	}
	late := first.Add(time.Nanosecond)
	clock.Store(&late)
	_, err = rk.SignReceipt(receiptAt(late))
	if !errors.Is(err, keys.ErrReceiptKeyExpired) || !errors.Is(err, keys.ErrUnavailable) {
		t.Fatalf("signing after expiry with renewals failing = %v, want ErrReceiptKeyExpired wrapping ErrUnavailable", err)
	}
	// Unsealed: the next retry renews and receipts work again.
	s.fail.Store(false)
	waitKeyChange(t, rk, first)
	msg, err := rk.SignReceipt(receiptAt(late))
	if err != nil {
		t.Fatalf("after renewal: %v", err)
	}
	if _, err := audit.OpenReceipt(msg, v); err != nil {
		t.Fatal(err)
	}
}
