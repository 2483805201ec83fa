package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/cli"
	"github.com/borderlink/borderlink/internal/freeport"
	"github.com/borderlink/borderlink/policies"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

const (
	nl = "nl.customs.example"
	sg = "sg.customs.example"
)

// run calls the CLI as a person would and returns exit code and output.
func run(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	var out, errb bytes.Buffer
	code := cli.Main(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

type cluster struct {
	dir   string
	addrs map[string]string
	// metrics is NL's metrics address (metrics.listen).
	metrics string
}

func (c *cluster) env(domain string) []string {
	certs := filepath.Join(c.dir, "certs")
	return []string{
		"BORDERLINK_GATEWAY=" + c.addrs[domain],
		"BORDERLINK_CERT=" + filepath.Join(certs, domain, "system-cli.pem"),
		"BORDERLINK_KEY=" + filepath.Join(certs, domain, "system-cli-key.pem"),
		"BORDERLINK_BUNDLE=" + filepath.Join(certs, "bundle", domain+".pem"),
	}
}

// startCluster makes certificates with `certs dev`, writes configs and
// runs two gateways with `serve --config`, exactly as an operator would.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	dir := t.TempDir()
	c := &cluster{dir: dir, addrs: map[string]string{}}
	if code, _, stderr := run(t, nil, "certs", "dev", "--out", filepath.Join(dir, "certs"), "--domains", nl+","+sg); code != 0 {
		t.Fatalf("certs dev: %d %s", code, stderr)
	}
	pdir := filepath.Join(dir, "policies")
	if err := fs.WalkDir(policies.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			if d != nil && d.IsDir() {
				return os.MkdirAll(filepath.Join(pdir, p), 0o755)
			}
			return err
		}
		b, _ := fs.ReadFile(policies.FS, p)
		return os.WriteFile(filepath.Join(pdir, p), b, 0o644)
	}); err != nil {
		t.Fatal(err)
	}
	addrs, err := freeport.Addrs(3)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range []string{nl, sg, "metrics"} {
		c.addrs[d] = addrs[i]
	}
	c.metrics = c.addrs["metrics"]
	delete(c.addrs, "metrics")
	// Each gateway's audit key is made first, so that each config can name
	// the partner's verifier key (peers.<domain>.audit_key).
	vkeys := map[string]string{}
	for _, d := range []string{nl, sg} {
		os.MkdirAll(filepath.Join(dir, d), 0o700)
		_, vk, err := audit.LoadOrCreateKey(filepath.Join(dir, d, "audit.key"), audit.Origin(d), true)
		if err != nil {
			t.Fatal(err)
		}
		vkeys[d] = vk
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, d := range []string{nl, sg} {
		other := sg
		if d == sg {
			other = nl
		}
		gdir := filepath.Join(dir, d)
		os.MkdirAll(gdir, 0o700)
		os.WriteFile(filepath.Join(gdir, "pseudonym.key"), bytes.Repeat([]byte{7}, 32), 0o600)
		cfg := fmt.Sprintf(`trust_domain: %[1]s
listen: %[2]s
tls:
  cert_file: ../certs/%[1]s/gateway.pem
  key_file: ../certs/%[1]s/gateway-key.pem
trust_bundles:
  %[1]s: ../certs/bundle/%[1]s.pem
  %[3]s: ../certs/bundle/%[3]s.pem
peers:
  %[3]s:
    address: %[4]s
    audit_key: %[5]s
store:
  sqlite:
    path: gateway.db
policy:
  dir: ../policies
pseudonymization:
  key_file: pseudonym.key
audit:
  witness_interval: 100ms
`, d, c.addrs[d], other, c.addrs[other], vkeys[other])
		if d == nl {
			cfg += "metrics:\n  listen: " + c.metrics + "\n"
		}
		path := filepath.Join(gdir, "gateway.yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out, errb bytes.Buffer
			if code := cli.Main(ctx, []string{"serve", "--config", path, "--log-level", "warn"}, &out, &errb); code != 0 {
				t.Errorf("serve %s exited %d: %s", d, code, errb.String())
			}
		}()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	// Wait until both listen, and NL's metrics too (bound after its gRPC
	// listener).
	for _, a := range append(slices.Collect(maps.Values(c.addrs)), c.metrics) {
		deadline := time.Now().Add(20 * time.Second)
		for {
			conn, err := net.Dial("tcp", a)
			if err == nil {
				conn.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("gateway at %s did not start", a)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

func TestImportAndQuery(t *testing.T) {
	c := startCluster(t)
	dir := t.TempDir()
	t.Run("metrics are served", func(t *testing.T) {
		resp, err := http.Get("http://" + c.metrics + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "borderlink_policy_reload_failing 0") {
			t.Errorf("GET /metrics: %s\n%s", resp.Status, body)
		}
	})
	good := filepath.Join(dir, "nl.jsonl")
	if code, _, stderr := run(t, nil, "gen", "--domain", nl, "--count", "40", "--seed", "3", "--start", "2026-11-20T00:00:00Z", "--partners", "SG", "--out", good); code != 0 {
		t.Fatalf("gen: %s", stderr)
	}
	data, _ := os.ReadFile(good)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")

	// A file with one bad line imports nothing.
	bad := filepath.Join(dir, "bad.jsonl")
	broken := append([]string{}, lines...)
	broken[4] = strings.Replace(broken[4], `"destination_country":"`, `"destination_country":"X`, 1)
	broken = append(broken, `{"declaration": {"id": 7}}`)
	os.WriteFile(bad, []byte(strings.Join(broken, "\n")+"\n"), 0o644)
	code, _, stderr := run(t, c.env(nl), "import", bad)
	if code != cli.ExitError || !strings.Contains(stderr, "bad.jsonl:5 (") || !strings.Contains(stderr, "destination_country") ||
		!strings.Contains(stderr, "bad.jsonl:81") || !strings.Contains(stderr, "nothing imported") {
		t.Fatalf("import of a bad file: exit %d, stderr:\n%s", code, stderr)
	}
	firstID := between(lines[0], `"id":"`, `"`)
	code, _, stderr = run(t, c.env(sg), "query", "declaration", "--peer", nl, "--purpose", "risk-assessment", firstID)
	if code != cli.ExitNotFound && code != cli.ExitDenied {
		t.Fatalf("after a refused import the record must not exist: exit %d %s", code, stderr)
	}

	// --skip-invalid imports the rest and reports what it skipped.
	code, stdout, stderr := run(t, c.env(nl), "import", "--skip-invalid", bad)
	if code != 0 || !strings.Contains(stdout, "imported 79 record(s), skipped 2 line(s)") {
		t.Fatalf("import --skip-invalid: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}

	// Find an NL declaration bound for SG and ask for it from SG.
	var toSG string
	for _, l := range lines {
		if strings.Contains(l, `"destination_country":"SG"`) && strings.Contains(l, `"declaration"`) && l != broken[4] {
			toSG = between(l, `"id":"`, `"`)
			break
		}
	}
	if toSG == "" {
		t.Fatal("generated data has no declaration bound for SG")
	}
	code, stdout, stderr = run(t, c.env(sg), "query", "declaration", "--peer", nl, "--purpose", "risk-assessment", toSG)
	var resp blv1.GetPartnerDeclarationResponse
	if code != 0 {
		t.Fatalf("query declaration: exit %d\nstderr %s", code, stderr)
	}
	if err := protojson.Unmarshal([]byte(stdout), &resp); err != nil {
		t.Fatalf("query declaration printed no protojson: %v\n%s", err, stdout)
	}
	if resp.GetRelease().GetAgreementId() != "nl-sg-risk-2026" || resp.GetDeclaration().GetDeclarant().GetName() != "***" || len(resp.GetRequestId()) != 32 {
		t.Errorf("query declaration printed %v", &resp)
	}

	code, _, stderr = run(t, c.env(sg), "query", "declaration", "--peer", nl, "--purpose", "marketing", toSG)
	if code != cli.ExitDenied || !strings.HasPrefix(stderr, "borderlink: PERMISSION_DENIED: partner nl.customs.example: purpose") {
		t.Errorf("denied query: exit %d, stderr %q", code, stderr)
	}
	code, stdout, _ = run(t, c.env(sg), "query", "search", "--peer", nl, "--purpose", "risk-assessment", "--limit", "3")
	if code != 0 || strings.Count(stdout, "\n") == 0 || strings.Count(stdout, "\n") > 3 {
		t.Errorf("search: exit %d, %d lines", code, strings.Count(stdout, "\n"))
	}

	// policy explain: the running gateway (Admin API) and the local
	// evaluation of the same directory print the same thing.
	nlConfig := filepath.Join(c.dir, nl, "gateway.yaml")
	explain := []string{"policy", "explain", "--caller", "spiffe://sg.customs.example/gateway", "--purpose", "risk-assessment", "--id", toSG, "--time", "2026-11-25T10:00:00Z"}
	code, remoteOut, stderr := run(t, c.env(nl), append(explain, "--remote")...)
	if code != 0 || !strings.Contains(remoteOut, "ALLOW under agreement nl-sg-risk-2026, grant nl-to-sg") || !strings.Contains(remoteOut, "nl-sg-risk-2026/nl-to-sg") {
		t.Fatalf("policy explain --remote: exit %d\n%s\n%s", code, remoteOut, stderr)
	}
	code, localOut, stderr := run(t, nil, append(explain, "--config", nlConfig)...)
	if code != 0 || localOut != remoteOut {
		t.Errorf("policy explain --config differs from --remote (exit %d, %s):\n--- local\n%s\n--- remote\n%s", code, stderr, localOut, remoteOut)
	}
	if code, stdout, _ := run(t, c.env(nl), "policy", "status"); code != 0 || !strings.Contains(stdout, "revision:   sha256:") {
		t.Errorf("policy status: exit %d\n%s", code, stdout)
	}

	// policy diff: suspending the NL–SG agreement turns the allowed
	// exchange above into a deny.
	proposed := filepath.Join(t.TempDir(), "proposed")
	copyDir(t, filepath.Join(c.dir, "policies"), proposed)
	agreement := filepath.Join(proposed, "agreements", "nl-sg-risk-2026.yaml")
	b, _ := os.ReadFile(agreement)
	os.WriteFile(agreement, []byte(strings.Replace(string(b), "status: active", "status: suspended", 1)), 0o644)
	code, stdout, stderr = run(t, nil, "policy", "diff", "--config", nlConfig, "--against", proposed)
	if code != 0 || !strings.Contains(stdout, "allow→deny (NOT_IN_FORCE") || !strings.Contains(stdout, toSG) || !strings.Contains(stderr, "would change") {
		t.Errorf("policy diff: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}

	code, stdout, stderr = run(t, nil, "audit", "list", "--config", filepath.Join(c.dir, nl, "gateway.yaml"))
	if code != 0 || !strings.Contains(stdout, "provider") || !strings.Contains(stdout, "PERMISSION_DENIED") {
		t.Errorf("audit list: exit %d\n%s\n%s", code, stdout, stderr)
	}
}

func TestUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"frobnicate"}, cli.ExitUsage, `unknown command "frobnicate"`},
		{[]string{"serve"}, cli.ExitUsage, "--config is required"},
		{[]string{"query", "declaration", "--peer", nl}, cli.ExitUsage, "--peer and --purpose are required"},
		{[]string{"query", "declaration", "--peer", nl, "--purpose", "x", "ID"}, cli.ExitUsage, "BORDERLINK_GATEWAY"},
		{[]string{"gen"}, cli.ExitUsage, "--domain is required"},
		{[]string{"serve", "--config", "/nonexistent/gateway.yaml"}, cli.ExitError, "/nonexistent/gateway.yaml"},
		{[]string{"policy", "check", "../../policies"}, cli.ExitOK, ""},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			for _, k := range []string{"BORDERLINK_GATEWAY", "BORDERLINK_CERT", "BORDERLINK_KEY", "BORDERLINK_BUNDLE"} {
				t.Setenv(k, "")
			}
			code, _, stderr := run(t, nil, c.args...)
			if code != c.code || !strings.Contains(stderr, c.want) {
				t.Errorf("exit %d (want %d), stderr %q (want it to contain %q)", code, c.code, stderr, c.want)
			}
		})
	}
}

func TestPolicyTestAndExplainLocal(t *testing.T) {
	code, stdout, stderr := run(t, nil, "policy", "test", "../../policies")
	if code != 0 || !strings.Contains(stdout, "passed, 0 failed") {
		t.Fatalf("policy test: exit %d\n%s\n%s", code, stdout, stderr)
	}
	// A broken case file makes policy test fail and name it.
	dir := filepath.Join(t.TempDir(), "p")
	copyDir(t, "../../policies", dir)
	caseFile := filepath.Join(dir, "testdata", "decisions", "sg-gets-nl-declaration.yaml")
	b, _ := os.ReadFile(caseFile)
	os.WriteFile(caseFile, []byte(strings.Replace(string(b), "grant: nl-to-sg", "grant: other", 1)), 0o644)
	code, stdout, _ = run(t, nil, "policy", "test", dir)
	if code != cli.ExitError || !strings.Contains(stdout, "FAIL  testdata/decisions/sg-gets-nl-declaration.yaml") {
		t.Errorf("policy test with a wrong expectation: exit %d\n%s", code, stdout)
	}

	record := filepath.Join(t.TempDir(), "decl.json")
	os.WriteFile(record, []byte(`{"id":"NL-9","export_country":"NL","destination_country":"US","goods_items":[{"hs_code":"85044000"}]}`), 0o644)
	code, stdout, stderr = run(t, nil, "policy", "explain", "--dir", "../../policies", "--self", nl,
		"--caller", "spiffe://sg.customs.example/gateway", "--purpose", "risk-assessment", "--record", record, "--time", "2026-11-25T10:00:00Z")
	if code != 0 || !strings.Contains(stdout, "DENY (CONDITIONS_NOT_MET)") || !strings.Contains(stdout, `fails: destination country "US" is outside ["SG"]`) {
		t.Errorf("policy explain of a denied record: exit %d\n%s\n%s", code, stdout, stderr)
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func between(s, start, end string) string {
	_, rest, ok := strings.Cut(s, start)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, end)
	return v
}

func TestFlagsAfterArguments(t *testing.T) {
	for _, k := range []string{"BORDERLINK_GATEWAY", "BORDERLINK_CERT", "BORDERLINK_KEY", "BORDERLINK_BUNDLE"} {
		t.Setenv(k, "")
	}
	// The ID comes first; --peer and --purpose must still be seen, so the
	// error is about the missing gateway, not the missing flags.
	code, _, stderr := run(t, nil, "query", "declaration", "NL-1", "--peer", nl, "--purpose", "risk-assessment")
	if code != cli.ExitUsage || !strings.Contains(stderr, "BORDERLINK_GATEWAY") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	for _, cmd := range []string{"query", "audit", "policy", "certs", "vault"} {
		if code, _, _ := run(t, nil, cmd, "-h"); code != cli.ExitOK {
			t.Errorf("%s -h exit %d, want 0", cmd, code)
		}
	}
}
