package gateway_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/gateway"
	"github.com/borderlink/borderlink/internal/keys"
	"github.com/borderlink/borderlink/internal/store"
	"github.com/borderlink/borderlink/internal/store/storetest"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// TestReceiptKeysOnlyForLiveReceipts: with a receipt key (ADR 0011), SG
// signs its refusals of live calls with it (v2), but the receipt of a
// pushed alert stays signed by its audit key (v1), so that a redelivery
// gets the first receipt byte for byte even after the receipt key was
// replaced (ADR 0007).
func TestReceiptKeysOnlyForLiveReceipts(t *testing.T) {
	var rk *keys.ReceiptKeys
	f := startFederation(t, func(domain string, o *gateway.Options) {
		if domain != sgDomain {
			return
		}
		var err error
		// Renewed every 400ms of wall time; valid around the federation's
		// fixed decision time.
		if rk, err = keys.NewReceiptKeys(context.Background(), o.Audit.Signer, 600*time.Millisecond, o.Now, nil); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(rk.Stop)
		o.Audit.ReceiptKeys = rk
	})
	ctx := context.Background()
	nl, sg := f.nodes[nlDomain], f.nodes[sgDomain]
	sgKey, err := audit.NewVerifier(sg.auditKey, audit.Origin(sgDomain))
	if err != nil {
		t.Fatal(err)
	}

	// A live call SG refuses: its receipt in the trailer is v2, by the
	// receipt key the audit key certified.
	var trailer metadata.MD
	cc := f.conn(t, sgDomain, "spiffe://"+nlDomain+"/gateway", nil)
	// Connected first, so that the call below spans no TLS handshake:
	// the key may still be renewed once during it, and it then signed
	// with the key current before or after.
	cc.Connect()
	for s := cc.GetState(); s != connectivity.Ready; s = cc.GetState() {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		changed := cc.WaitForStateChange(wctx, s)
		cancel()
		if !changed {
			t.Fatalf("connection to SG still %v after 10s", s)
		}
	}
	ex := blv1.NewExchangeClient(cc)
	before := rk.Delegation().Key
	if _, err := ex.GetDeclaration(ctx, &blv1.GetDeclarationRequest{Id: "SG-NONE", Purpose: "risk-assessment"}, grpc.Trailer(&trailer)); err == nil {
		t.Fatal("SG released a declaration it does not have")
	}
	after := rk.Delegation().Key
	refusal := trailer.Get(gateway.ReceiptTrailer)
	if len(refusal) != 1 || !strings.HasPrefix(refusal[0], "borderlink-receipt/v2\n") {
		t.Fatalf("SG's refusal receipt = %q, want one v2 receipt", refusal)
	}
	if r, err := audit.OpenReceipt(refusal[0], sgKey); err != nil || r.Key == nil || r.Key.Key != before && r.Key.Key != after {
		t.Fatalf("refusal receipt: %+v, %v; want it signed by SG's receipt key of the call", r, err)
	}

	// A pushed alert: SG's receipt is v1, by its audit key.
	resp, err := f.ingest(t, nlDomain).PublishAlert(ctx, &blv1.PublishAlertRequest{RiskAssessment: storetest.RiskAssessment("NL-RA-RK", "NL-1", 0.91)})
	if err != nil || len(resp.GetQueued()) != 1 {
		t.Fatalf("PublishAlert: %v, %v", resp, err)
	}
	id := resp.GetQueued()[0].GetMessageId()
	sent := waitSettled(t, nl, id)
	if sent.State != store.OutboxDelivered || !strings.HasPrefix(sent.Receipt, "borderlink-receipt/v1\n") {
		t.Fatalf("delivered entry %+v, want delivered with a v1 receipt", sent)
	}

	// Once the receipt key has been replaced, a redelivery still gets the
	// first receipt's bytes.
	first := rk.Delegation().Key
	deadline := time.Now().Add(10 * time.Second)
	for rk.Delegation().Key == first {
		if time.Now().After(deadline) {
			t.Fatal("SG's receipt key was not renewed within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	in, err := sg.store.GetInbox(ctx, nlDomain, id)
	if err != nil {
		t.Fatal(err)
	}
	a := &blv1.Alert{}
	if err := proto.Unmarshal(in.Alert, a); err != nil {
		t.Fatal(err)
	}
	again, err := ex.Deliver(ctx, &blv1.DeliverRequest{Alert: a})
	if err != nil {
		t.Fatalf("redeliver: %v", err)
	}
	if !again.GetDuplicate() || again.GetReceipt() != sent.Receipt {
		t.Errorf("redelivery after the receipt key changed: duplicate=%v, same receipt=%v; want the first receipt byte for byte", again.GetDuplicate(), again.GetReceipt() == sent.Receipt)
	}
}
