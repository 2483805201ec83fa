package gateway_test

import (
	"context"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/store"
	"github.com/borderlink/borderlink/internal/store/storetest"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// TestMetrics scrapes a gateway after a pull and a push: the metrics must
// show the policy in force, the delivery queue, the audit log and the
// calls, with the values the status calls give.
func TestMetrics(t *testing.T) {
	f := startFederation(t)
	ctx := context.Background()
	nl := f.nodes[nlDomain]
	if _, err := f.local(t, sgDomain).GetPartnerDeclaration(ctx, &blv1.GetPartnerDeclarationRequest{Partner: nlDomain, Id: "NL-1", Purpose: "risk-assessment"}); err != nil {
		t.Fatal(err)
	}
	resp, err := f.ingest(t, nlDomain).PublishAlert(ctx, &blv1.PublishAlertRequest{RiskAssessment: storetest.RiskAssessment("NL-RA-M", "NL-1", 0.9)})
	if err != nil || len(resp.GetQueued()) != 1 {
		t.Fatalf("PublishAlert: %v, %v", resp, err)
	}
	if e := waitSettled(t, nl, resp.GetQueued()[0].GetMessageId()); e.State != store.OutboxDelivered {
		t.Fatalf("entry = %+v", e)
	}
	size, err := nl.store.AuditTreeSize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cpResp, err := blv1.NewAuditClient(f.conn(t, nlDomain, "spiffe://nl.customs.example/auditor/dpa", nil)).GetCheckpoint(ctx, &blv1.GetCheckpointRequest{SignNow: true})
	if err != nil {
		t.Fatal(err)
	}
	signed, err := audit.OpenCheckpoint([]byte(cpResp.GetCheckpoint()), verifierOf(t, nl))
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	nl.gw.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	// At least the checkpoint just signed, at most the log as it is now
	// (the periodic checkpointer may have signed a later one).
	now, err := nl.store.AuditTreeSize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := metricValue(t, body, "borderlink_audit_checkpoint_records"); got < float64(signed.Size) || got > float64(now) {
		t.Errorf("borderlink_audit_checkpoint_records = %v; want from %d (the checkpoint just signed) to %d (the log's size)", got, signed.Size, now)
	}
	for _, want := range []string{
		`borderlink_policy_info{revision="sha256:`,
		"borderlink_policy_reload_failing 0",
		`borderlink_delivery_pending{partner="sg.customs.example"} 0`,
		`borderlink_delivery_entries{partner="sg.customs.example",state="delivered"} 1`,
		`borderlink_delivery_breaker_open{partner="sg.customs.example"} 0`,
		`borderlink_delivery_retries_total{partner="cn.customs.example"} 0`,
		"borderlink_audit_records " + strconv.FormatInt(size, 10),
		`borderlink_grpc_calls_total{code="OK",method="/borderlink.v1.Exchange/GetDeclaration"} 1`,
		`borderlink_grpc_calls_total{code="OK",method="/borderlink.v1.Ingest/PublishAlert"} 1`,
		"borderlink_certificate_expiry_timestamp_seconds ",
		"go_goroutines ",
		`go_sched_latencies_seconds_bucket{le="+Inf"} `,
		// docs/operations.md points operators at these for the collector.
		"go_gc_duration_seconds",
		"go_memstats_heap_alloc_bytes ",
		"go_gc_gogc_percent ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// Group commit counters: every record of the log was appended since
	// the gateway started, and the histogram counts each commit once.
	commits, appends := metricValue(t, body, "borderlink_audit_commits_total"), metricValue(t, body, "borderlink_audit_appends_total")
	if commits < 1 || appends < float64(size) || appends < commits {
		t.Errorf("audit commits %v, appends %v; want at least one commit and at least the %d records appended", commits, appends, size)
	}
	if n := metricValue(t, body, `borderlink_audit_batch_size_bucket{le="4096"}`); n != commits {
		t.Errorf("batch size histogram counts %v commits, commits_total is %v", n, commits)
	}
	if sum := metricValue(t, body, "borderlink_audit_batch_size_sum"); sum != appends {
		t.Errorf("batch size histogram sums to %v appends, appends_total is %v", sum, appends)
	}
	// Where the appends' time went: one queue time per append, one build
	// and one sync time per commit, and the syncs took some time.
	for name, want := range map[string]float64{"queue": appends, "build": commits, "sync": commits} {
		if n := metricValue(t, body, "borderlink_audit_"+name+"_seconds_count"); n != want {
			t.Errorf("borderlink_audit_%s_seconds counts %v, want %v", name, n, want)
		}
		// Buckets are cumulative: they never decrease, and the +Inf one
		// (written from the count) is at least the last bound's.
		prefix := "borderlink_audit_" + name + "_seconds_bucket{"
		var last float64
		buckets := 0
		for line := range strings.Lines(body) {
			if !strings.HasPrefix(line, prefix) {
				continue
			}
			f, err := strconv.ParseFloat(strings.TrimSpace(line[strings.LastIndexByte(line, ' '):]), 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			if f < last {
				t.Errorf("borderlink_audit_%s_seconds buckets decrease: %q after %v", name, line, last)
			}
			last = f
			buckets++
		}
		if buckets != len(store.LatencyBounds)+1 || last != want {
			t.Errorf("borderlink_audit_%s_seconds has %d buckets ending at %v; want %d ending at %v", name, buckets, last, len(store.LatencyBounds)+1, want)
		}
	}
	if sum := metricValue(t, body, "borderlink_audit_sync_seconds_sum"); sum <= 0 {
		t.Errorf("borderlink_audit_sync_seconds_sum = %v, want > 0", sum)
	}
	// WAL checkpoints off the commit path: a series per result, none
	// failed (whether one has run yet depends on the timing).
	for _, result := range []string{"ok", "partial", "failed"} {
		n := metricValue(t, body, `borderlink_store_wal_checkpoints_total{result="`+result+`"}`)
		if result == "failed" && n != 0 {
			t.Errorf("%v WAL checkpoints failed", n)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", body)
	}
}

// metricValue is the value of the sample named exactly name (with its
// labels) in a Prometheus text exposition.
func metricValue(t *testing.T, body, name string) float64 {
	t.Helper()
	for line := range strings.Lines(body) {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return f
		}
	}
	t.Fatalf("metrics lack %s", name)
	return 0
}
