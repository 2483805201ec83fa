package gateway

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/audit/audittest"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// TestCheckReceiptMismatch: a receipt genuinely signed by the partner but
// for another exchange, another caller or other bytes is rejected.
func TestCheckReceiptMismatch(t *testing.T) {
	origin := audit.Origin("nl.customs.example")
	k := audittest.NewKey(t, origin)
	signer, v := k.Signer, k.Verifier
	release := strings.Repeat("ab", 32)
	good := audit.Receipt{Origin: origin, Index: 0, LeafHash: tlog.RecordHash(nil), Time: time.Now(), Release: release,
		RequestID: "req-1", Caller: "spiffe://sg.customs.example/gateway"}
	now := time.Now()
	g := &Gateway{self: "sg.customs.example", now: func() time.Time { return now }}
	o := &outbound{g: g, reqID: "req-1", rec: &blv1.AuditRecord{}, verifier: v}

	sign := func(r audit.Receipt) string {
		msg, err := audit.SignReceipt(signer, r)
		if err != nil {
			t.Fatal(err)
		}
		return msg
	}
	if err := o.checkReceipt(sign(good), release); err != nil {
		t.Fatalf("good receipt: %v", err)
	}
	// A receipt signed by the partner's receipt key (ADR 0011) is good
	// while that key is valid, and refused live once it has expired
	// (beyond the skew): a receipt key that leaked later must not vouch.
	rk, err := audit.NewReceiptKey(signer, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	delegated, err := rk.Sign(good)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.checkReceipt(delegated, release); err != nil {
		t.Fatalf("good receipt signed by a receipt key: %v", err)
	}
	later := now.Add(time.Hour + receiptKeySkew + time.Second)
	g.now = func() time.Time { return later }
	if err := o.checkReceipt(delegated, release); err == nil {
		t.Error("receipt of an expired receipt key accepted live")
	}
	g.now = func() time.Time { return now }
	other := good
	other.RequestID = "req-2"
	otherCaller := good
	otherCaller.Caller = "spiffe://cn.customs.example/gateway"
	for name, tc := range map[string]struct{ receipt, release string }{
		"another request":   {sign(other), release},
		"another caller":    {sign(otherCaller), release},
		"other bytes":       {sign(good), strings.Repeat("cd", 32)},
		"missing":           {"", release},
		"signature altered": {strings.Replace(sign(good), "req-1", "req-9", 1), release},
	} {
		if err := o.checkReceipt(tc.receipt, tc.release); err == nil {
			t.Errorf("%s: receipt accepted", name)
		}
		if o.rec.GetPartnerReceipt() != tc.receipt {
			t.Errorf("%s: rejected receipt not kept as evidence", name)
		}
	}
}
