//go:build linux

package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/gateway"
	"github.com/borderlink/borderlink/internal/identity"
	"github.com/borderlink/borderlink/internal/release"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// declarationsYAML lets SG read NL's declarations bound for SG
// (declaration.get, purpose risk-assessment); the cluster's own agreement
// only covers alerts.
const declarationsYAML = `id: e2e-declarations-2026
title: End-to-end test agreement on declaration lookups
legal_basis: "Test fixture of internal/e2e (fictitious)"
parties: [nl.customs.example, sg.customs.example]
valid:
  from: "2026-01-01T00:00:00Z"
  until: "2031-01-01T00:00:00Z"
status: active
obligations:
  retention_days: 365
  onward_sharing: false
grants:
  - id: nl-to-sg-declarations
    provider: nl.customs.example
    recipient: sg.customs.example
    actions: [declaration.get]
    purposes: [risk-assessment]
    conditions:
      destination_countries: [SG]
    release:
      declaration:
        fields: [id, type, acceptance_time, export_country, destination_country, exporter.name, exporter.tax_id, goods_items, gross_mass_kg]
        pseudonymize: [exporter.tax_id]
`

// exchangeOutcome is what SG's own system saw of one Local call.
type exchangeOutcome struct {
	declID  string
	ok      bool
	reqID   string // OK only
	release string // OK only: the release digest (also recomputed here)
	code    codes.Code
	msg     string
	start   time.Time
	took    time.Duration
}

// TestProviderKilledDuringExchanges: SG's own system asks SG's Local API
// for NL's declarations (8 concurrent workers, 5,000 attempted exchanges,
// E2E_EXCHANGES overrides); SG asks NL's Exchange with its gateway
// identity, verifies NL's receipt and records its side. NL, the answering
// gateway, is SIGKILLed at three random moments and restarted on the same
// data each time. Afterwards, with every gateway stopped:
//
//   - NL's and SG's audit logs verify against every stored checkpoint and
//     their seqs are gapless;
//   - every answer SG's system received is one ALLOW provider record on NL
//     (same request ID, release digest, declaration, caller SG's gateway)
//     and one ALLOW consumer record on SG whose partner_receipt verifies
//     with NL's audit key and names NL's record by index and leaf hash,
//     which is the leaf stored in NL's log: nothing was released without a
//     durable record on both sides;
//   - no request ID has more than one ALLOW provider record on NL;
//   - SG has one consumer record per attempted exchange, and every NL
//     provider record has SG's consumer record of the same request;
//   - NL provider ALLOW records whose answer never reached the caller
//     (NL died after its audit commit, before SG had the answer) are
//     counted and logged; SG's record of each of them is not an ALLOW.
func TestProviderKilledDuringExchanges(t *testing.T) {
	c := newCluster(t)
	rng := rand.New(rand.NewPCG(seed(t), 2))
	total := envInt("E2E_EXCHANGES", 5000)
	const workers, kills, numDecls = 8, 3, 200
	if err := os.WriteFile(filepath.Join(c.dir, "policies", "agreements", "e2e-declarations-2026.yaml"), []byte(declarationsYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	nl, sg := c.nodes[NL], c.nodes[SG]
	// CN takes no part; it is left down to spare the CPU.
	nl.start()
	sg.start()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var decls []*blv1.Declaration
	for i := range numDecls {
		decls = append(decls, declaration(fmt.Sprintf("NL-D-SG-%04d", i), "SG"))
	}
	importRecords(t, ctx, nl, decls, nil)

	// Kill points: one attempt number in each third of the run (plus a
	// random extra delay and a random downtime), and not before 20 calls
	// have succeeded since the previous restart, so that every kill hits
	// NL while it is answering.
	type killPlan struct {
		after    int64
		delay    time.Duration
		downtime time.Duration
	}
	var plan []killPlan
	for k := range kills {
		lo := float64(total) * (0.08 + 0.3*float64(k))
		plan = append(plan, killPlan{
			after:    int64(lo + rng.Float64()*0.2*float64(total)),
			delay:    time.Duration(rng.Int64N(int64(30 * time.Millisecond))),
			downtime: time.Duration(rng.Int64N(int64(400 * time.Millisecond))),
		})
	}

	local := blv1.NewLocalClient(sg.system())
	outcomes := make([]exchangeOutcome, total)
	var attempted, oks atomic.Int64
	picks := make([]int, total) // which declaration each attempt asks for
	for i := range picks {
		picks[i] = rng.IntN(numDecls)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			// While NL is down SG fails fast; a real client backs off
			// rather than spin, and the attempts it would spin through
			// while SG reconnects (SG's own backoff reaches 9 s by its
			// fourth try) could use up the run before the last kill.
			pause := 25 * time.Millisecond
			for {
				i := attempted.Add(1) - 1
				if i >= int64(total) {
					return
				}
				id := decls[picks[i]].GetId()
				o := exchangeOutcome{declID: id, start: time.Now()}
				cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
				resp, err := local.GetPartnerDeclaration(cctx, &blv1.GetPartnerDeclarationRequest{Partner: NL, Id: id, Purpose: "risk-assessment"})
				ccancel()
				o.took = time.Since(o.start)
				if err != nil {
					st := status.Convert(err)
					o.code, o.msg = st.Code(), st.Message()
					outcomes[i] = o
					time.Sleep(pause)
					pause = min(2*pause, 400*time.Millisecond)
					continue
				}
				pause = 25 * time.Millisecond
				o.ok, o.code = true, codes.OK
				o.reqID, o.release = resp.GetRequestId(), resp.GetRelease().GetSha256()
				if d, derr := release.Digest(resp.GetDeclaration()); derr != nil || d != o.release || resp.GetDeclaration().GetId() != id {
					o.msg = fmt.Sprintf("answer inconsistent: declaration %q, digest %s (%v), release says %s", resp.GetDeclaration().GetId(), d, derr, o.release)
				}
				outcomes[i] = o
				oks.Add(1)
			}
		})
	}

	// The kills, from the test goroutine (start and kill may t.Fatal).
	var killLog []string
	for k, p := range plan {
		okBase := oks.Load()
		for attempted.Load() < p.after || oks.Load() < okBase+20 {
			if attempted.Load() >= int64(total) {
				break
			}
			time.Sleep(time.Millisecond)
		}
		if attempted.Load() >= int64(total) {
			t.Errorf("kill #%d: the run ended before attempt %d", k+1, p.after)
			break
		}
		time.Sleep(p.delay)
		at, okAt := attempted.Load(), oks.Load()
		nl.kill()
		killed := time.Since(start)
		time.Sleep(p.downtime)
		t0 := time.Now()
		nl.start()
		restart := time.Since(t0)
		// Time until the first answer after the restart.
		okRestart, t1 := oks.Load(), time.Now()
		for oks.Load() == okRestart && attempted.Load() < int64(total) && time.Since(t1) < 30*time.Second {
			time.Sleep(time.Millisecond)
		}
		line := fmt.Sprintf("kill #%d (SIGKILL) at +%v: attempt ~%d (planned %d), %d OK so far; down %v, restart to healthy %v, first answer %v after healthy",
			k+1, killed.Round(time.Millisecond), at, p.after, okAt, p.downtime.Round(time.Millisecond), restart.Round(time.Millisecond), time.Since(t1).Round(time.Millisecond))
		killLog = append(killLog, line)
		t.Log(line)
	}
	wg.Wait()
	took := time.Since(start)

	okCount, failCount := 0, 0
	failCodes := map[codes.Code]int{}
	var lat []time.Duration
	okByReq := map[string]exchangeOutcome{}
	for i, o := range outcomes {
		if !o.ok {
			failCount++
			failCodes[o.code]++
			continue
		}
		okCount++
		lat = append(lat, o.took)
		if o.msg != "" {
			t.Errorf("attempt %d: %s", i, o.msg)
		}
		if _, dup := okByReq[o.reqID]; dup {
			t.Errorf("attempt %d: request ID %s answered twice", i, o.reqID)
		}
		okByReq[o.reqID] = o
	}
	slices.Sort(lat)
	var p50, p99 time.Duration
	if len(lat) > 0 {
		p50, p99 = lat[len(lat)/2], lat[len(lat)*99/100]
	}
	t.Logf("%d exchanges attempted by %d workers in %v (%.0f/s): %d OK, %d failed %v; OK latency p50 %v p99 %v",
		total, workers, took.Round(time.Millisecond), float64(total)/took.Seconds(), okCount, failCount, failCodes, p50.Round(time.Microsecond), p99.Round(time.Microsecond))
	for i, o := range outcomes {
		if !o.ok && o.code != codes.Unavailable && o.code != codes.DeadlineExceeded {
			t.Logf("attempt %d failed with %v: %s", i, o.code, o.msg) // kept for the report; not expected
		}
	}
	if okCount == 0 {
		t.Fatal("no exchange succeeded")
	}
	c.stopAll()

	// ---- the stopped gateways' files ----
	nlDB, sgDB := openDB(t, nl), openDB(t, sg)
	for _, n := range []*gw{nl, sg} {
		d := nlDB
		if n == sg {
			d = sgDB
		}
		res := d.verifyLog(t, n)
		t.Logf("%s: audit log verifies: %d records, %d checkpoints, %d after the latest", n.domain, res.Size, res.Checkpoints, res.Uncovered)
	}
	nlRecs, sgRecs := nlDB.auditAll(t), sgDB.auditAll(t) // gapless seqs
	size, err := nlDB.st.AuditTreeSize(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if size != int64(len(nlRecs)) {
		t.Errorf("NL: tree size %d, %d records", size, len(nlRecs))
	}
	nlLeaves, err := nlDB.st.AuditLeaves(context.Background(), 0, size)
	if err != nil {
		t.Fatal(err)
	}

	sgGateway := identity.GatewayID(SG).String()
	nlGateway := identity.GatewayID(NL).String()
	nlVerifier := verifierOf(t, nl)

	// NL, provider side.
	provAllow := map[string][]*blv1.AuditRecord{}
	provAny := map[string]int{}
	nlKinds := map[string]int{}
	for _, a := range nlRecs {
		nlKinds[fmt.Sprintf("%s/%s/%s/%s", a.GetAction(), a.GetSide(), a.GetDecision(), a.GetStatus())]++
		if a.GetAction() != gateway.ActionDeclarationGet || a.GetSide() != blv1.AuditSide_AUDIT_SIDE_PROVIDER {
			continue
		}
		provAny[a.GetRequestId()]++
		if a.GetDecision() == blv1.AuditDecision_AUDIT_DECISION_ALLOW {
			provAllow[a.GetRequestId()] = append(provAllow[a.GetRequestId()], a)
		}
	}
	for id, rs := range provAllow {
		if len(rs) != 1 {
			seqs := []uint64{}
			for _, r := range rs {
				seqs = append(seqs, r.GetSeq())
			}
			t.Errorf("NL: %d ALLOW provider records for request %s (seqs %v); want 1", len(rs), id, seqs)
		}
	}

	// SG, consumer side.
	cons := map[string][]*blv1.AuditRecord{}
	sgKinds := map[string]int{}
	consCount := 0
	for _, a := range sgRecs {
		sgKinds[fmt.Sprintf("%s/%s/%s/%s", a.GetAction(), a.GetSide(), a.GetDecision(), a.GetStatus())]++
		if a.GetAction() != gateway.ActionDeclarationGet || a.GetSide() != blv1.AuditSide_AUDIT_SIDE_CONSUMER {
			continue
		}
		consCount++
		cons[a.GetRequestId()] = append(cons[a.GetRequestId()], a)
	}
	t.Logf("NL audit records by action/side/decision/status: %v", sortedCounts(nlKinds))
	t.Logf("SG audit records by action/side/decision/status: %v", sortedCounts(sgKinds))
	if consCount != total {
		t.Errorf("SG: %d consumer declaration.get records; %d exchanges were attempted (each is recorded, allowed or not)", consCount, total)
	}
	for id, rs := range cons {
		if len(rs) != 1 {
			t.Errorf("SG: %d consumer records for request %s; want 1", len(rs), id)
		}
	}

	// Every answer the caller got: one ALLOW record on each side, tied
	// together by NL's receipt.
	bad := 0
	report := func(format string, args ...any) {
		bad++
		if bad <= 20 {
			t.Errorf(format, args...)
		}
	}
	for reqID, o := range okByReq {
		ps := provAllow[reqID]
		if len(ps) == 0 {
			report("request %s (%s): answered to the caller, but NL has no ALLOW provider record: released without a record", reqID, o.declID)
			continue
		}
		p := ps[0]
		if p.GetReleaseSha256() != o.release || p.GetCallerId() != sgGateway || !slices.Equal(p.GetResourceIds(), []string{o.declID}) {
			report("request %s: NL record seq %d has release %s caller %s resources %v; the caller got release %s of %s via %s",
				reqID, p.GetSeq(), p.GetReleaseSha256(), p.GetCallerId(), p.GetResourceIds(), o.release, o.declID, sgGateway)
		}
		cs := cons[reqID]
		if len(cs) != 1 {
			report("request %s: answered to the caller, SG has %d consumer records", reqID, len(cs))
			continue
		}
		cr := cs[0]
		if cr.GetDecision() != blv1.AuditDecision_AUDIT_DECISION_ALLOW || cr.GetReleaseSha256() != o.release || cr.GetPeerId() != nlGateway {
			report("request %s: SG consumer record seq %d: decision %v release %s peer %s; want ALLOW of %s from %s",
				reqID, cr.GetSeq(), cr.GetDecision(), cr.GetReleaseSha256(), cr.GetPeerId(), o.release, nlGateway)
		}
		rc, err := audit.OpenReceipt(cr.GetPartnerReceipt(), nlVerifier)
		if err == nil {
			err = rc.Check(audit.Expect{RequestID: reqID, Caller: sgGateway, Release: o.release})
		}
		if err != nil {
			report("request %s: receipt SG kept: %v", reqID, err)
			continue
		}
		lh, err := audit.LeafHash(p)
		if err != nil {
			t.Fatal(err)
		}
		idx := int64(p.GetSeq()) - 1
		if rc.Index != idx || rc.LeafHash != lh {
			report("request %s: receipt names NL index %d, NL's record is index %d (leaf hash equal: %v)", reqID, rc.Index, idx, rc.LeafHash == lh)
			continue
		}
		if idx >= int64(len(nlLeaves)) || tlog.RecordHash(nlLeaves[idx]) != rc.LeafHash {
			report("request %s: the leaf NL stored at index %d is not the one its receipt names", reqID, idx)
		}
	}
	if bad > 20 {
		t.Errorf("... %d problems with answered exchanges in all", bad)
	}

	// NL records of answers the caller never got; SG records of answers it
	// never handed on.
	var unanswered []string
	for reqID, ps := range provAllow {
		if _, ok := okByReq[reqID]; ok {
			continue
		}
		unanswered = append(unanswered, fmt.Sprintf("seq %d (request %s)", ps[0].GetSeq(), reqID))
		cs := cons[reqID]
		switch {
		case len(cs) == 0:
			t.Errorf("NL ALLOW record seq %d (request %s, not answered to the caller): SG has no record of the request", ps[0].GetSeq(), reqID)
		case cs[0].GetDecision() == blv1.AuditDecision_AUDIT_DECISION_ALLOW:
			t.Errorf("NL ALLOW record seq %d (request %s): SG recorded ALLOW (seq %d), but the caller got no answer", ps[0].GetSeq(), reqID, cs[0].GetSeq())
		default:
			t.Logf("logged by NL, not released to the caller: NL seq %d, request %s; SG seq %d %v %s %q",
				ps[0].GetSeq(), reqID, cs[0].GetSeq(), cs[0].GetDecision(), cs[0].GetStatus(), cs[0].GetReasons())
		}
	}
	for reqID := range provAny {
		if len(cons[reqID]) == 0 {
			t.Errorf("NL provider record of request %s: SG never recorded that request", reqID)
		}
	}
	sgAllowNoAnswer := 0
	for reqID, cs := range cons {
		if cs[0].GetDecision() == blv1.AuditDecision_AUDIT_DECISION_ALLOW {
			if _, ok := okByReq[reqID]; !ok {
				sgAllowNoAnswer++
				t.Errorf("SG consumer ALLOW seq %d (request %s): the caller got no answer (SG was not killed)", cs[0].GetSeq(), reqID)
			}
		}
	}
	sort.Strings(unanswered)
	t.Logf("summary: %d attempted, %d OK, %d failed; NL provider ALLOW records %d, of which %d have no answer at the caller (NL killed after its audit commit, before SG had the answer) %v; SG consumer records %d (%d ALLOW without an answer)",
		total, okCount, failCount, len(provAllow), len(unanswered), unanswered, consCount, sgAllowNoAnswer)
	for _, l := range killLog {
		t.Log(l)
	}
}

func sortedCounts(m map[string]int) []string {
	var out []string
	for k, v := range m {
		out = append(out, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(out)
	return out
}
