package audit_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/borderlink/borderlink/internal/audit"
)

var delegatedAt = time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)

func delegatedReceipt() audit.Receipt {
	return audit.Receipt{Origin: origin, Index: 7, LeafHash: tlog.RecordHash([]byte("leaf")), Time: delegatedAt.Add(10 * time.Minute),
		Release: strings.Repeat("ab", 32), RequestID: "req-7", Caller: "spiffe://sg.customs.example/gateway"}
}

// handDelegated builds a v2 receipt from docs/audit.md alone, not through
// ReceiptKey: a fresh receipt key, its delegation (validity from–until)
// signed by logKey, and the receipt text signed by the receipt key. It
// lets the tests make receipts ReceiptKey.Sign refuses to make.
func handDelegated(t *testing.T, logKey note.Signer, r audit.Receipt, from, until time.Time) string {
	t.Helper()
	return handDelegatedFor(t, logKey, r, r.Origin, r.Origin, from, until)
}

// handDelegatedFor is handDelegated with the delegation naming origin dOrigin
// and the receipt key named keyName.
func handDelegatedFor(t *testing.T, logKey note.Signer, r audit.Receipt, dOrigin, keyName string, from, until time.Time) string {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := note.NewEd25519VerifierKey(keyName, pub)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := note.NewSigner("PRIVATE+KEY+" + keyName + "+" + strings.Split(vkey, "+")[1] + "+" + base64.StdEncoding.EncodeToString(append([]byte{1}, priv.Seed()...)))
	if err != nil {
		t.Fatal(err)
	}
	d := audit.Delegation{Origin: dOrigin, Key: vkey, NotBefore: from, NotAfter: until}
	signedD, err := note.Sign(&note.Note{Text: d.Text()}, logKey)
	if err != nil {
		t.Fatal(err)
	}
	v1 := strings.SplitN(r.Text(), "\n", 2)[1] // the seven lines after the header
	text := "borderlink-receipt/v2\n" + v1 + base64.StdEncoding.EncodeToString(signedD) + "\n"
	msg, err := note.Sign(&note.Note{Text: text}, rk)
	if err != nil {
		t.Fatal(err)
	}
	return string(msg)
}

func TestDelegatedReceipt(t *testing.T) {
	s, v := key(t, origin)
	k, err := audit.NewReceiptKey(s, delegatedAt, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	r := delegatedReceipt()
	msg, err := k.Sign(r)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(msg, "borderlink-receipt/v2\n") {
		t.Fatalf("delegated receipt does not start with the v2 header:\n%s", msg)
	}
	got, err := audit.OpenReceipt(msg, v)
	if err != nil {
		t.Fatalf("OpenReceipt: %v", err)
	}
	from := delegatedAt.Add(-audit.ReceiptKeyBackdate)
	if got.Key == nil || got.Key.Origin != origin || !got.Key.NotAfter.Equal(delegatedAt.Add(time.Hour)) || !got.Key.NotBefore.Equal(from) {
		t.Fatalf("Key = %+v; want the delegation from %s to %s", got.Key, from, delegatedAt.Add(time.Hour))
	}
	if got.Index != r.Index || got.LeafHash != r.LeafHash || !got.Time.Equal(r.Time) || got.Release != r.Release || got.RequestID != r.RequestID || got.Caller != r.Caller {
		t.Fatalf("OpenReceipt = %+v; want the fields of %+v", got, r)
	}
	// The by-hand encoding of docs/audit.md is what OpenReceipt reads.
	if _, err := audit.OpenReceipt(handDelegated(t, s, r, delegatedAt, delegatedAt.Add(time.Hour)), v); err != nil {
		t.Fatalf("receipt built from the documented format: %v", err)
	}
	// A KeyRing whose current key is newer still opens a live receipt whose
	// delegation the retired key signed (ADR 0010's exception).
	oldSK, oldVK, _ := audit.GenerateKey(origin)
	_, newVK, _ := audit.GenerateKey(origin)
	old, err := note.NewSigner(oldSK)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := audit.NewKeyRing(origin, []string{oldVK, newVK})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.OpenReceipt(handDelegated(t, old, r, delegatedAt, delegatedAt.Add(time.Hour)), ring); err != nil {
		t.Errorf("receipt key delegated by a retired key, opened with the ring: %v", err)
	}

	text, sigs, _ := strings.Cut(msg, "\n\n")
	lines := strings.Split(text, "\n")
	other, err := audit.NewReceiptKey(s, delegatedAt, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherMsg, err := other.Sign(r)
	if err != nil {
		t.Fatal(err)
	}
	otherLines := strings.Split(strings.SplitN(otherMsg, "\n\n", 2)[0], "\n")
	signedByLogKey, _ := note.Sign(&note.Note{Text: text + "\n"}, s)
	forged, forgedV := key(t, origin)
	for name, bad := range map[string]string{
		// The receipt key of another delegation signed it.
		"delegation swapped": strings.Join(append(lines[:8:8], otherLines[8]), "\n") + "\n\n" + sigs,
		// v2 must be signed by the delegated key, even by the log key.
		"signed by the log key":            string(signedByLogKey),
		"delegation not base64":            strings.Join(append(lines[:8:8], "!!"), "\n") + "\n\n" + sigs,
		"delegation by another key":        handDelegated(t, forged, r, delegatedAt, delegatedAt.Add(time.Hour)),
		"receipt time before the validity": handDelegated(t, s, r, r.Time.Add(time.Second), r.Time.Add(time.Hour)),
		"receipt time after the validity":  handDelegated(t, s, r, r.Time.Add(-time.Hour), r.Time.Add(-time.Nanosecond)),
		"validity longer than 7 days":      handDelegated(t, s, r, r.Time.Add(-time.Hour), r.Time.Add(audit.MaxDelegation)),
		"a field changed":                  strings.Replace(msg, "\nreq-7\n", "\nreq-8\n", 1),
	} {
		if _, err := audit.OpenReceipt(bad, v); !errors.Is(err, audit.ErrVerify) {
			t.Errorf("%s: OpenReceipt = %v, want ErrVerify", name, err)
		}
	}
	if _, err := audit.OpenReceipt(msg, forgedV); !errors.Is(err, audit.ErrVerify) {
		t.Errorf("opened with another log's key: %v, want ErrVerify", err)
	}
	_, otherOrigin := key(t, "cn.customs.example/borderlink/audit")
	if _, err := audit.OpenReceipt(msg, otherOrigin); !errors.Is(err, audit.ErrVerify) {
		t.Errorf("opened as another origin's receipt: %v, want ErrVerify", err)
	}

	// The receipt key signs only receipts of its time and origin.
	late := r
	late.Time = delegatedAt.Add(time.Hour + time.Nanosecond)
	if _, err := k.Sign(late); err == nil {
		t.Error("receipt key signed a receipt after its validity")
	}
	foreign := r
	foreign.Origin = "cn.customs.example/borderlink/audit"
	if _, err := k.Sign(foreign); err == nil {
		t.Error("receipt key signed a receipt for another origin")
	}
	if _, err := audit.NewReceiptKey(s, delegatedAt, audit.MaxDelegation); err == nil {
		t.Error("NewReceiptKey made a key valid for longer than MaxDelegation (with the minute of skew)")
	}
}

func TestReceiptKeyValidAt(t *testing.T) {
	s, v := key(t, origin)
	k, err := audit.NewReceiptKey(s, delegatedAt, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := k.Sign(delegatedReceipt())
	if err != nil {
		t.Fatal(err)
	}
	got, err := audit.OpenReceipt(msg, v)
	if err != nil {
		t.Fatal(err)
	}
	v1, err := audit.SignReceipt(s, delegatedReceipt())
	if err != nil {
		t.Fatal(err)
	}
	direct, err := audit.OpenReceipt(v1, v)
	if err != nil {
		t.Fatal(err)
	}
	parsedOnly, err := audit.ParseReceipt(strings.SplitN(msg, "\n\n", 2)[0] + "\n")
	if err != nil {
		t.Fatal(err)
	}
	skew := 5 * time.Minute
	for _, c := range []struct {
		name string
		r    audit.Receipt
		at   time.Time
		want bool
	}{
		{"inside", got, delegatedAt.Add(30 * time.Minute), true},
		{"just after expiry, within skew", got, delegatedAt.Add(time.Hour + skew), true},
		{"after expiry and skew", got, delegatedAt.Add(time.Hour + skew + time.Second), false},
		{"a partner 15 minutes behind, right after the key was made", got, delegatedAt.Add(-15 * time.Minute), true},
		{"before validity and skew", got, delegatedAt.Add(-audit.ReceiptKeyBackdate - skew - time.Second), false},
		{"v1 receipt: the log key has no validity", direct, delegatedAt.Add(1000 * time.Hour), true},
		{"v2 receipt only parsed, not opened", parsedOnly, delegatedAt.Add(30 * time.Minute), false},
	} {
		if ok := c.r.KeyValidAt(c.at, skew); ok != c.want {
			t.Errorf("%s: KeyValidAt = %v, want %v", c.name, ok, c.want)
		}
	}
}

func FuzzParseDelegation(f *testing.F) {
	_, vk, err := audit.GenerateKey("o")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(audit.Delegation{Origin: "o", Key: vk, NotBefore: delegatedAt, NotAfter: delegatedAt.Add(time.Hour)}.Text())
	f.Fuzz(func(t *testing.T, text string) {
		d, err := audit.ParseDelegation(text)
		if err != nil {
			return
		}
		again, err := audit.ParseDelegation(d.Text())
		if err != nil || again.Key != d.Key || !again.NotAfter.Equal(d.NotAfter) || !again.NotBefore.Equal(d.NotBefore) {
			t.Fatalf("round trip of %q: %+v, %v", text, again, err)
		}
	})
}
