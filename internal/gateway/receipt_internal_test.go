package gateway

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/borderlink/borderlink/internal/audit"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// TestCheckReceiptMismatch: a receipt genuinely signed by the partner but
// for another exchange, another caller or other bytes is rejected.
func TestCheckReceiptMismatch(t *testing.T) {
	origin := audit.Origin("nl.customs.example")
	sk, vk, _ := audit.GenerateKey(origin)
	signer, _ := note.NewSigner(sk)
	v, _ := audit.NewVerifier(vk, origin)
	release := strings.Repeat("ab", 32)
	good := audit.Receipt{Origin: origin, Index: 0, LeafHash: tlog.RecordHash(nil), Time: time.Now(), Release: release,
		RequestID: "req-1", Caller: "spiffe://sg.customs.example/gateway"}
	o := &outbound{g: &Gateway{self: "sg.customs.example"}, reqID: "req-1", rec: &blv1.AuditRecord{}, verifier: v}

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
