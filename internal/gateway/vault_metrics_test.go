package gateway_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/keys"
	"github.com/borderlink/borderlink/internal/keys/vault"
	"github.com/borderlink/borderlink/internal/keys/vault/vaulttest"
)

// TestVaultMetrics: a gateway reporting a Vault client publishes its
// failed requests by operation and its last success. Against a real
// Vault, sealed: each failed signature (under a second each) adds one to
// borderlink_vault_errors_total{operation="transit_sign"}, and the last
// success time stops moving.
func TestVaultMetrics(t *testing.T) {
	f := startFederation(t)
	nl := f.nodes[nlDomain]
	srv := vaulttest.Start(t)
	ctx := context.Background()
	setup, err := vault.InitDev(ctx, srv.Addr, srv.Token, vault.InitDevOptions{
		TrustDomain: nlDomain, SecretIDFile: filepath.Join(t.TempDir(), "secret-id")})
	if err != nil {
		t.Fatal(err)
	}
	c, err := vault.New(ctx, setup.Config, vault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.NewSigner(ctx, audit.Origin(nlDomain))
	if err != nil {
		t.Fatal(err)
	}
	if err := nl.gw.ReportVault(c); err != nil {
		t.Fatal(err)
	}
	if err := nl.gw.ReportVault(c); err == nil {
		t.Error("a second ReportVault succeeded; want an error (the metrics would be duplicated)")
	}
	scrape := func() string {
		rec := httptest.NewRecorder()
		nl.gw.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		return rec.Body.String()
	}
	value := func(body, metric string) float64 {
		t.Helper()
		for _, l := range strings.Split(body, "\n") {
			if v, ok := strings.CutPrefix(l, metric+" "); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					t.Fatalf("%s: %v", l, err)
				}
				return f
			}
		}
		t.Fatalf("metrics lack %s:\n%s", metric, body)
		return 0
	}
	const (
		signErrors  = `borderlink_vault_errors_total{operation="transit_sign"}`
		lastSuccess = "borderlink_vault_last_success_timestamp_seconds"
	)
	body := scrape()
	if got := value(body, signErrors); got != 0 {
		t.Errorf("%s = %v before any failure; want 0", signErrors, got)
	}
	if got := value(body, `borderlink_vault_errors_total{operation="login"}`); got != 0 {
		t.Errorf("login errors = %v; want 0", got)
	}
	if got := value(body, "borderlink_vault_logins_total"); got != 1 {
		t.Errorf("borderlink_vault_logins_total = %v; want 1", got)
	}
	if got := value(body, lastSuccess); time.Since(time.Unix(int64(got), 0)) > time.Minute {
		t.Errorf("%s = %v; want about now", lastSuccess, got)
	}

	srv.Seal(t)
	sealedAt := value(scrape(), lastSuccess)
	for i := 1; i <= 2; i++ {
		start := time.Now()
		_, err := s.Sign([]byte("checkpoint\n"))
		took := time.Since(start)
		if !errors.Is(err, keys.ErrUnavailable) || took >= 3*time.Second {
			t.Errorf("Sign(sealed) = %v after %v; want ErrUnavailable in under 3s (one round trip, not request_timeout)", err, took)
		}
		body := scrape()
		if got := value(body, signErrors); got != float64(i) {
			t.Errorf("after %d failed signatures %s = %v; want %d", i, signErrors, got, i)
		}
		if got := value(body, lastSuccess); got != sealedAt {
			t.Errorf("%s moved from %v to %v while sealed", lastSuccess, sealedAt, got)
		}
	}
}
