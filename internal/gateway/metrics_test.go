package gateway_test

import (
	"context"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

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
	rec := httptest.NewRecorder()
	nl.gw.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
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
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", body)
	}
}
