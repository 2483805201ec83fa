//go:build linux

package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/gateway"
	"github.com/borderlink/borderlink/internal/identity"
	"github.com/borderlink/borderlink/internal/store"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// delivered is what checkDeliveries read from the stopped gateways.
type delivered struct {
	out     []store.OutboxEntry                     // NL's outbox, seq order
	inbox   map[string][]store.InboxEntry           // recipient -> alerts from NL, audit order
	byMsg   map[string]store.OutboxEntry            // message id -> NL's entry
	inByMsg map[string]map[string]store.InboxEntry  // recipient -> message id -> entry
	cons    map[string]map[string]*blv1.AuditRecord // recipient -> message id -> consumer record
	prov    map[string]*blv1.AuditRecord            // message id -> NL's provider record
}

// checkDeliveries opens the SQLite files of the stopped gateways and
// checks the invariants of push delivery between NL and its partners:
// every entry NL queued is delivered; each message is in its recipient's
// inbox exactly once and in no other; each side has exactly one ALLOW
// alert.deliver audit record per message, with equal request IDs and
// release digests; NL's record carries the receipt it stored, and that
// receipt verifies against the receiver's audit key and names the
// receiver's record; every audit log verifies.
func checkDeliveries(t *testing.T, c *cluster) *delivered {
	t.Helper()
	dbs := map[string]*db{}
	for _, d := range domains {
		dbs[d] = openDB(t, c.nodes[d])
		res := dbs[d].verifyLog(t, c.nodes[d])
		t.Logf("%s: audit log verifies: %d records, %d checkpoints, %d after the latest", d, res.Size, res.Checkpoints, res.Uncovered)
	}
	r := &delivered{
		inbox: map[string][]store.InboxEntry{}, byMsg: map[string]store.OutboxEntry{},
		inByMsg: map[string]map[string]store.InboxEntry{}, cons: map[string]map[string]*blv1.AuditRecord{},
		prov: map[string]*blv1.AuditRecord{},
	}
	r.out = dbs[NL].outbox(t)
	for _, e := range r.out {
		if e.State != store.OutboxDelivered || e.Receipt == "" {
			t.Errorf("outbox entry %s for %s (record %s): state %v, receipt %q; want delivered with a receipt", e.MessageID, e.Recipient, e.RecordID, e.State, e.Receipt)
		}
		r.byMsg[e.MessageID] = e
	}
	// NL's own inbox is not part of this: NL only sends.
	for _, d := range []string{SG, CN} {
		r.inByMsg[d] = map[string]store.InboxEntry{}
		for _, in := range dbs[d].inbox(t) {
			if in.Sender != NL {
				t.Errorf("%s inbox: alert %s from %s; only NL sends", d, in.MessageID, in.Sender)
				continue
			}
			if _, dup := r.inByMsg[d][in.MessageID]; dup {
				t.Errorf("%s inbox: message %s twice", d, in.MessageID) // the primary key forbids it
			}
			r.inByMsg[d][in.MessageID] = in
			r.inbox[d] = append(r.inbox[d], in)
			e, ok := r.byMsg[in.MessageID]
			switch {
			case !ok:
				t.Errorf("%s inbox: message %s (record %s) was never queued by NL", d, in.MessageID, in.RecordID)
			case e.Recipient != d:
				t.Errorf("%s inbox: message %s (record %s) was queued for %s", d, in.MessageID, in.RecordID, e.Recipient)
			case e.RecordID != in.RecordID:
				t.Errorf("%s inbox: message %s is record %s, NL queued record %s", d, in.MessageID, in.RecordID, e.RecordID)
			}
		}
	}
	for _, e := range r.out {
		if _, ok := r.inByMsg[e.Recipient][e.MessageID]; !ok {
			t.Errorf("message %s (record %s) for %s: not in its inbox", e.MessageID, e.RecordID, e.Recipient)
		}
	}

	// Audit, NL side: one ALLOW provider record per message.
	nlGateway := identity.GatewayID(NL).String()
	provCount := map[string]int{}
	for _, a := range dbs[NL].auditAll(t) {
		if a.GetAction() != gateway.ActionAlertDeliver {
			continue
		}
		provCount[a.GetRequestId()]++
		r.prov[a.GetRequestId()] = a
		e, ok := r.byMsg[a.GetRequestId()]
		switch {
		case !ok:
			t.Errorf("NL audit seq %d: alert.deliver for unknown message %s", a.GetSeq(), a.GetRequestId())
		case a.GetSide() != blv1.AuditSide_AUDIT_SIDE_PROVIDER || a.GetDecision() != blv1.AuditDecision_AUDIT_DECISION_ALLOW:
			t.Errorf("NL audit seq %d (message %s): side %v decision %v status %s; want provider ALLOW", a.GetSeq(), a.GetRequestId(), a.GetSide(), a.GetDecision(), a.GetStatus())
		case a.GetPartnerReceipt() != e.Receipt:
			t.Errorf("NL audit seq %d (message %s): partner_receipt differs from the outbox receipt", a.GetSeq(), a.GetRequestId())
		case a.GetReleaseSha256() == "":
			t.Errorf("NL audit seq %d (message %s): no release digest", a.GetSeq(), a.GetRequestId())
		}
	}
	for id, n := range provCount {
		if n != 1 {
			t.Errorf("NL audit: %d alert.deliver records for message %s; want 1", n, id)
		}
	}
	// Audit, receiver side: one ALLOW consumer record per message.
	for _, d := range []string{SG, CN} {
		r.cons[d] = map[string]*blv1.AuditRecord{}
		count := map[string]int{}
		for _, a := range dbs[d].auditAll(t) {
			if a.GetAction() != gateway.ActionAlertDeliver {
				continue
			}
			count[a.GetRequestId()]++
			r.cons[d][a.GetRequestId()] = a
			if a.GetSide() != blv1.AuditSide_AUDIT_SIDE_CONSUMER || a.GetDecision() != blv1.AuditDecision_AUDIT_DECISION_ALLOW || a.GetCallerId() != nlGateway {
				t.Errorf("%s audit seq %d (message %s): side %v decision %v caller %s; want consumer ALLOW from %s", d, a.GetSeq(), a.GetRequestId(), a.GetSide(), a.GetDecision(), a.GetCallerId(), nlGateway)
			}
			if in, ok := r.inByMsg[d][a.GetRequestId()]; !ok || in.AuditSeq != a.GetSeq() {
				t.Errorf("%s audit seq %d (message %s): inbox entry %v has audit seq %d", d, a.GetSeq(), a.GetRequestId(), ok, in.AuditSeq)
			}
		}
		for id, n := range count {
			if n != 1 {
				t.Errorf("%s audit: %d alert.deliver records for message %s; want 1", d, n, id)
			}
		}
	}
	// The pairs: same request ID (= message ID), same digest, and the
	// receipt NL holds is the receiver's signature over that very record.
	for _, e := range r.out {
		p, c2 := r.prov[e.MessageID], r.cons[e.Recipient][e.MessageID]
		if p == nil || c2 == nil {
			t.Errorf("message %s for %s: provider record %v, consumer record %v", e.MessageID, e.Recipient, p != nil, c2 != nil)
			continue
		}
		if p.GetReleaseSha256() != c2.GetReleaseSha256() {
			t.Errorf("message %s: release digest %s at NL, %s at %s", e.MessageID, p.GetReleaseSha256(), c2.GetReleaseSha256(), e.Recipient)
		}
		rc, err := audit.OpenReceipt(e.Receipt, verifierOf(t, c.nodes[e.Recipient]))
		if err == nil {
			err = rc.Check(audit.Expect{RequestID: e.MessageID, Caller: nlGateway, Release: p.GetReleaseSha256()})
		}
		if err != nil {
			t.Errorf("message %s: receipt from %s: %v", e.MessageID, e.Recipient, err)
			continue
		}
		lh, err := audit.LeafHash(c2)
		if err != nil {
			t.Fatal(err)
		}
		if rc.Index != int64(c2.GetSeq())-1 || rc.LeafHash != lh {
			t.Errorf("message %s: receipt names %s index %d, the consumer record is seq %d (leaf hash equal: %v)", e.MessageID, e.Recipient, rc.Index, c2.GetSeq(), rc.LeafHash == lh)
		}
	}
	return r
}

func envInt(name string, def int) int {
	if v := os.Getenv(name); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			return n
		}
	}
	return def
}

// TestSenderKilledWhileDelivering imports risk assessments into NL, which
// queues their alerts in the import's transaction, and kills NL (SIGKILL)
// three times at random moments while it delivers, plus once exactly
// between a valid receipt and recording the delivery. After NL has
// drained its outbox nothing is lost, duplicated or misdelivered, and
// both sides' audit trails pair up.
func TestSenderKilledWhileDelivering(t *testing.T) {
	c := newCluster(t)
	rng := rand.New(rand.NewPCG(seed(t), 1))
	// 10,000 as asked; E2E_COUNT overrides (see the report of this test
	// for the delivery rate measured on a shared 2-core machine).
	count := envInt("E2E_COUNT", 10000)
	c.startAll()
	nl := c.nodes[NL]

	want := map[string]map[string]bool{SG: {}, CN: {}, "US": {}}
	var decls []*blv1.Declaration
	var risks []*blv1.RiskAssessment
	for i := range count {
		dest := "US"
		switch x := rng.Float64(); {
		case x < 0.45:
			dest = "SG"
		case x < 0.90:
			dest = "CN"
		}
		did, rid := fmt.Sprintf("NL-D-%06d", i), fmt.Sprintf("NL-RA-%06d", i)
		decls = append(decls, declaration(did, dest))
		risks = append(risks, risk(rid, did, 0.05+0.9*rng.Float64(), "v1"))
		switch dest {
		case "SG":
			want[SG][rid] = true
		case "CN":
			want[CN][rid] = true
		default:
			want["US"][rid] = true
		}
	}
	expect := len(want[SG]) + len(want[CN])
	t.Logf("%d risk assessments: %d bound for SG, %d for CN, %d for US", count, len(want[SG]), len(want[CN]), len(want["US"]))

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	t0 := time.Now()
	// Declarations first: the alert's recipients are decided from the
	// declaration the risk assessment is about, read from the store.
	importRecords(t, ctx, nl, decls, nil)
	t1 := time.Now()
	importRecords(t, ctx, nl, nil, risks)
	start := time.Now()
	t.Logf("import: %d declarations in %v, %d risk assessments (queueing %d alerts) in %v",
		count, t1.Sub(t0).Round(time.Millisecond), count, expect, start.Sub(t1).Round(time.Millisecond))

	progress := func() string {
		qctx, qcancel := context.WithTimeout(ctx, 2*time.Second)
		defer qcancel()
		q, err := queues(qctx, nl)
		if err != nil {
			return "status unavailable: " + err.Error()
		}
		return fmt.Sprintf("delivered SG %d CN %d, pending SG %d CN %d",
			q[SG].GetDelivered(), q[CN].GetDelivered(), q[SG].GetPending(), q[CN].GetPending())
	}
	randomKill := func(k int) {
		time.Sleep(300*time.Millisecond + time.Duration(rng.Int64N(int64(1700*time.Millisecond))))
		at := progress()
		nl.kill()
		t.Logf("kill #%d (SIGKILL) at +%v: %s", k, time.Since(start).Round(time.Millisecond), at)
		nl.start()
	}
	randomKill(1)
	// One life that ends exactly between a valid receipt and recording
	// the delivery: the 50th receipt of this process.
	nl.kill()
	nl.launch(gateway.CrashEnv + "=receipt-received:50")
	if exited, _ := nl.waitExit(30 * time.Second); !exited {
		t.Errorf("NL started with %s=receipt-received:50 did not reach the crash point within 30s", gateway.CrashEnv)
		nl.kill()
	} else {
		t.Logf("crash point receipt-received:50 reached at +%v", time.Since(start).Round(time.Millisecond))
	}
	nl.start()
	randomKill(2)
	randomKill(3)

	waitQueues(t, nl, 120*time.Second, "NL outbox drained", func(q map[string]*blv1.PartnerQueue) bool {
		return q[SG].GetPending() == 0 && q[CN].GetPending() == 0 &&
			q[SG].GetDelivered()+q[CN].GetDelivered() == uint64(expect)
	})
	took := time.Since(start)
	t.Logf("all %d alerts delivered %v after the import (%.0f alerts/s including 4 restarts of NL)", expect, took.Round(time.Millisecond), float64(expect)/took.Seconds())
	c.stopAll()

	r := checkDeliveries(t, c)
	for _, d := range []string{SG, CN} {
		got := map[string]int{}
		for _, in := range r.inbox[d] {
			got[in.RecordID]++
		}
		for id, n := range got {
			if n != 1 {
				t.Errorf("%s inbox: record %s %d times", d, id, n)
			}
			if !want[d][id] {
				t.Errorf("%s inbox: record %s is not bound for %s", d, id, d)
			}
		}
		for id := range want[d] {
			if got[id] == 0 {
				t.Errorf("%s inbox: record %s missing", d, id)
			}
		}
		if len(r.inbox[d]) != len(want[d]) {
			t.Errorf("%s inbox: %d alerts, want %d", d, len(r.inbox[d]), len(want[d]))
		}
	}
	if len(r.out) != expect {
		t.Errorf("NL outbox: %d entries, want %d", len(r.out), expect)
	}
	for _, e := range r.out {
		if want["US"][e.RecordID] {
			t.Errorf("NL queued record %s (bound for US) for %s", e.RecordID, e.Recipient)
		}
	}
}

// TestReceiverKilledBetweenStoreAndAnswer: SG dies after committing the
// alert and its audit record but before answering. NL retries; SG, back
// up, answers the redelivery from its inbox with the receipt of the first
// record, so there is one inbox entry, one consumer record, and the receipt
// NL stored is the one SG gives for any later redelivery.
func TestReceiverKilledBetweenStoreAndAnswer(t *testing.T) {
	c := newCluster(t)
	nl, sg, cn := c.nodes[NL], c.nodes[SG], c.nodes[CN]
	nl.start()
	cn.start()
	sg.start(gateway.CrashEnv + "=inbox-stored:1")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	importRecords(t, ctx, nl, []*blv1.Declaration{declaration("NL-D-SG-1", "SG")}, nil)
	resp, err := nl.ingest().PublishAlert(ctx, &blv1.PublishAlertRequest{RiskAssessment: risk("NL-RA-SG-1", "NL-D-SG-1", 0.93, "v1")})
	if err != nil {
		t.Fatalf("PublishAlert: %v", err)
	}
	if len(resp.GetQueued()) != 1 || resp.GetQueued()[0].GetRecipient() != SG {
		t.Fatalf("queued %v; want one alert for %s", resp.GetQueued(), SG)
	}
	id := resp.GetQueued()[0].GetMessageId()
	t0 := time.Now()
	exited, werr := sg.waitExit(30 * time.Second)
	if !exited {
		t.Fatalf("SG did not die at inbox-stored within 30s")
	}
	t.Logf("SG died at inbox-stored %v after the publish (%v)", time.Since(t0).Round(time.Millisecond), werr)
	sg.start()
	took := waitQueues(t, nl, 60*time.Second, "alert delivered after SG's restart", func(q map[string]*blv1.PartnerQueue) bool {
		return q[SG].GetDelivered() == 1 && q[SG].GetPending() == 0
	})
	t.Logf("NL marked it delivered %v after SG's restart, %v after the publish", took.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))

	nl.stop()
	nlDB := openDB(t, nl)
	e, err := nlDB.st.GetOutbox(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if e.State != store.OutboxDelivered || e.Receipt == "" {
		t.Fatalf("NL outbox entry: %v, receipt %q", e.State, e.Receipt)
	}
	rc, err := audit.OpenReceipt(e.Receipt, verifierOf(t, sg))
	if err != nil {
		t.Fatalf("stored receipt does not verify against SG's audit key: %v", err)
	}
	if rc.RequestID != id || rc.Caller != identity.GatewayID(NL).String() {
		t.Errorf("receipt: request %s caller %s", rc.RequestID, rc.Caller)
	}

	// A direct redelivery by NL's gateway identity of the very bytes in
	// NL's outbox: a duplicate, answered with the same receipt.
	alert := &blv1.Alert{}
	if err := proto.Unmarshal(e.Alert, alert); err != nil {
		t.Fatal(err)
	}
	again, err := blv1.NewExchangeClient(c.dialAs(t, NL, SG)).Deliver(ctx, &blv1.DeliverRequest{Alert: alert})
	if err != nil {
		t.Fatalf("direct redelivery: %v", err)
	}
	if !again.GetDuplicate() || again.GetReceipt() != e.Receipt {
		t.Errorf("direct redelivery: duplicate=%v, same receipt=%v; want a duplicate answered with the stored receipt", again.GetDuplicate(), again.GetReceipt() == e.Receipt)
	}
	sg.stop()
	cn.stop()

	r := checkDeliveries(t, c)
	if len(r.out) != 1 || len(r.inbox[SG]) != 1 || len(r.inbox[CN]) != 0 || len(r.cons[SG]) != 1 {
		t.Errorf("outbox %d, SG inbox %d, CN inbox %d, SG consumer records %d; want 1, 1, 0, 1", len(r.out), len(r.inbox[SG]), len(r.inbox[CN]), len(r.cons[SG]))
	}
	sgAll := openDB(t, sg).auditAll(t)
	n := 0
	for _, a := range sgAll {
		if a.GetRequestId() == id {
			n++
		}
	}
	if n != 1 {
		t.Errorf("SG audit: %d records with request ID %s (any action); want 1", n, id)
	}
}

// publishRounds publishes rounds updates of each record in sequence
// (round by round, so that the updates of one record are ordered) and
// returns, per message ID, the time the publish was sent.
func publishRounds(t *testing.T, ctx context.Context, nl *gw, prefix string, decls []*blv1.Declaration, rounds int) map[string]time.Time {
	t.Helper()
	sent := map[string]time.Time{}
	for v := 1; v <= rounds; v++ {
		for i, d := range decls {
			rid := fmt.Sprintf("%s-RA-%04d", prefix, i)
			at := time.Now()
			resp, err := nl.ingest().PublishAlert(ctx, &blv1.PublishAlertRequest{RiskAssessment: risk(rid, d.GetId(), float64(v)/10, fmt.Sprintf("v%d", v))})
			if err != nil {
				t.Fatalf("PublishAlert %s v%d: %v", rid, v, err)
			}
			if len(resp.GetQueued()) != 1 {
				t.Fatalf("PublishAlert %s v%d: queued %v; want one alert", rid, v, resp.GetQueued())
			}
			sent[resp.GetQueued()[0].GetMessageId()] = at
		}
	}
	return sent
}

type latency struct{ p50, p99, max time.Duration }

func (l latency) String() string {
	return fmt.Sprintf("p50 %v, p99 %v, max %v", l.p50.Round(time.Millisecond), l.p99.Round(time.Millisecond), l.max.Round(time.Millisecond))
}

func latencies(in []store.InboxEntry, sent map[string]time.Time) latency {
	var ds []time.Duration
	for _, e := range in {
		if at, ok := sent[e.MessageID]; ok {
			ds = append(ds, e.Received.Sub(at))
		}
	}
	if len(ds) == 0 {
		return latency{}
	}
	slices.Sort(ds)
	return latency{ds[len(ds)/2], ds[len(ds)*99/100], ds[len(ds)-1]}
}

// TestPartnerDownThenBack: with CN down, NL keeps delivering to SG as fast
// as with CN up (no head-of-line blocking); once CN is back its backlog
// drains completely and, per record, in publish order.
func TestPartnerDownThenBack(t *testing.T) {
	c := newCluster(t)
	nl, cn := c.nodes[NL], c.nodes[CN]
	c.startAll()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	const perPartner, rounds = 100, 3 // 300 alerts per partner per phase
	mk := func(prefix, dest string) []*blv1.Declaration {
		var ds []*blv1.Declaration
		for i := range perPartner {
			ds = append(ds, declaration(fmt.Sprintf("%s-D-%04d", prefix, i), dest))
		}
		return ds
	}
	// Records interleaved SG, CN, SG, CN... so both queues fill together.
	interleave := func(a, b []*blv1.Declaration) []*blv1.Declaration {
		var out []*blv1.Declaration
		for i := range a {
			out = append(out, a[i], b[i])
		}
		return out
	}
	base := interleave(mk("BSG", "SG"), mk("BCN", "CN"))
	down := interleave(mk("PSG", "SG"), mk("PCN", "CN"))
	importRecords(t, ctx, nl, append(slices.Clone(base), down...), nil)

	// Baseline: both partners up.
	t0 := time.Now()
	sentBase := publishRounds(t, ctx, nl, "B", base, rounds)
	pubBase := time.Since(t0)
	drainBase := waitQueues(t, nl, 60*time.Second, "baseline delivered", func(q map[string]*blv1.PartnerQueue) bool {
		return q[SG].GetDelivered() == perPartner*rounds && q[CN].GetDelivered() == perPartner*rounds
	})
	t.Logf("baseline (CN up): published %d alerts in %v; all delivered %v after the last publish (%v after the first)",
		len(sentBase), pubBase.Round(time.Millisecond), drainBase.Round(time.Millisecond), (pubBase + drainBase).Round(time.Millisecond))

	// CN down.
	cn.stop()
	t1 := time.Now()
	sentDown := publishRounds(t, ctx, nl, "P", down, rounds)
	pubDown := time.Since(t1)
	// The bound is generous on purpose: what it proves is that SG's queue
	// does not wait for CN's (a blocked SG would wait for CN for ever).
	drainDown := waitQueues(t, nl, 30*time.Second, "SG drained while CN is down", func(q map[string]*blv1.PartnerQueue) bool {
		return q[SG].GetDelivered() == 2*perPartner*rounds && q[SG].GetPending() == 0
	})
	t.Logf("CN down: published %d alerts in %v; SG's %d delivered %v after the last publish (%v after the first)",
		len(sentDown), pubDown.Round(time.Millisecond), perPartner*rounds, drainDown.Round(time.Millisecond), (pubDown + drainDown).Round(time.Millisecond))
	q, err := queues(ctx, nl)
	if err != nil {
		t.Fatal(err)
	}
	if q[CN].GetPending() != perPartner*rounds || q[CN].GetDelivered() != perPartner*rounds {
		t.Errorf("CN while down: pending %d delivered %d; want %d and %d", q[CN].GetPending(), q[CN].GetDelivered(), perPartner*rounds, perPartner*rounds)
	}
	t.Logf("CN queue while down: pending %d, retries %d, breaker %s, last error %q", q[CN].GetPending(), q[CN].GetRetries(), q[CN].GetBreaker(), q[CN].GetLastError())

	// Keep CN down long enough for NL's breaker to open and its probes to
	// back off, as in a real outage, before it comes back.
	if d := 8*time.Second - time.Since(t1); d > 0 {
		time.Sleep(d)
	}
	if q, err := queues(ctx, nl); err == nil {
		t.Logf("CN queue before its restart: pending %d, retries %d, breaker %s", q[CN].GetPending(), q[CN].GetRetries(), q[CN].GetBreaker())
	}
	// CN back.
	downFor := time.Since(t1)
	cn.start()
	backlog := waitQueues(t, nl, 90*time.Second, "CN backlog drained", func(q map[string]*blv1.PartnerQueue) bool {
		return q[CN].GetDelivered() == 2*perPartner*rounds && q[CN].GetPending() == 0
	})
	t.Logf("CN was down %v; its backlog of %d drained %v after its restart", downFor.Round(time.Millisecond), perPartner*rounds, backlog.Round(time.Millisecond))
	c.stopAll()

	r := checkDeliveries(t, c)
	sent := map[string]time.Time{}
	for k, v := range sentBase {
		sent[k] = v
	}
	for k, v := range sentDown {
		sent[k] = v
	}
	if len(r.out) != len(sent) {
		t.Errorf("NL outbox: %d entries; published %d", len(r.out), len(sent))
	}
	for _, d := range []string{SG, CN} {
		if len(r.inbox[d]) != 2*perPartner*rounds {
			t.Errorf("%s inbox: %d alerts, want %d", d, len(r.inbox[d]), 2*perPartner*rounds)
		}
		// Per record, the inbox (audit) order is the publish order.
		versions := map[string][]string{}
		for _, in := range r.inbox[d] {
			a := &blv1.Alert{}
			if err := proto.Unmarshal(in.Alert, a); err != nil {
				t.Fatal(err)
			}
			versions[in.RecordID] = append(versions[in.RecordID], a.GetRiskAssessment().GetModelVersion())
		}
		bad := 0
		for id, vs := range versions {
			if !slices.Equal(vs, []string{"v1", "v2", "v3"}) {
				bad++
				if bad <= 5 {
					t.Errorf("%s: record %s arrived in order %v; published v1, v2, v3", d, id, vs)
				}
			}
		}
		if bad > 0 {
			t.Errorf("%s: %d of %d records out of publish order", d, bad, len(versions))
		}
	}
	var sgBase, sgDown, cnBase, cnDown []store.InboxEntry
	for _, in := range r.inbox[SG] {
		if _, ok := sentBase[in.MessageID]; ok {
			sgBase = append(sgBase, in)
		} else {
			sgDown = append(sgDown, in)
		}
	}
	for _, in := range r.inbox[CN] {
		if _, ok := sentBase[in.MessageID]; ok {
			cnBase = append(cnBase, in)
		} else {
			cnDown = append(cnDown, in)
		}
	}
	t.Logf("SG latency publish -> stored in SG's inbox: baseline %v; with CN down %v", latencies(sgBase, sentBase), latencies(sgDown, sentDown))
	t.Logf("CN latency: baseline %v; backlog (down for %v) %v", latencies(cnBase, sentBase), downFor.Round(time.Millisecond), latencies(cnDown, sentDown))
}
