package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/cli"
	"github.com/borderlink/borderlink/internal/importer"
	"github.com/borderlink/borderlink/internal/keys/vault/vaulttest"
	"github.com/borderlink/borderlink/internal/store/sqlite"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// TestServeWithVault runs NL's gateway with every key from a real Vault
// (certificate from PKI, checkpoint/receipt signing in transit, the
// pseudonymisation key from KV) and SG's from files, and has SG ask NL for
// a declaration: mTLS with the Vault-issued certificate, a receipt signed
// in transit and verified by SG with the published key, a pseudonym from
// the KV key.
func TestServeWithVault(t *testing.T) {
	srv := vaulttest.Start(t)
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "nl-secret-id")
	code, snippet, stderr := run(t, []string{"VAULT_TOKEN=" + srv.Token, "VAULT_ADDR="},
		"vault", "init-dev", "--domain", nl, "--address", srv.Addr, "--secret-id-file", secretFile)
	if code != 0 {
		t.Fatalf("vault init-dev: %d %s", code, stderr)
	}
	var nlAuditKey string
	for _, l := range strings.Split(snippet, "\n") {
		if k := strings.TrimSpace(strings.TrimPrefix(l, "#")); strings.HasPrefix(k, nl+"/borderlink/audit+") {
			nlAuditKey = k
		}
	}
	if nlAuditKey == "" {
		t.Fatalf("init-dev printed no audit verifier key:\n%s", snippet)
	}
	// NL's CA is Vault's PKI CA: SG's bundle for NL comes from there.
	resp, err := http.Get(srv.Addr + "/v1/pki/ca/pem")
	if err != nil {
		t.Fatal(err)
	}
	nlCA, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	os.WriteFile(filepath.Join(dir, "nl-vault-ca.pem"), nlCA, 0o644)

	if code, _, stderr := run(t, nil, "certs", "dev", "--out", filepath.Join(dir, "certs"), "--domains", sg+","+nl); code != 0 {
		t.Fatalf("certs dev: %s", stderr)
	}
	copyDir(t, "../../policies", filepath.Join(dir, "policies"))
	addr := map[string]string{}
	for _, d := range []string{nl, sg} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr[d] = l.Addr().String()
		l.Close()
	}
	// NL's config needs SG's audit verifier key: make SG's key file now,
	// as SG's gateway would at first start.
	sgDir := filepath.Join(dir, sg)
	os.MkdirAll(sgDir, 0o700)
	os.WriteFile(filepath.Join(sgDir, "pseudonym.key"), bytes.Repeat([]byte{9}, 32), 0o600)
	sgAuditKey := auditKeyOf(t, filepath.Join(sgDir, "audit.key"), sg)

	nlCfg := fmt.Sprintf(`trust_domain: %[1]s
listen: %[2]s
trust_bundles:
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
%[6]s`, nl, addr[nl], sg, addr[sg], sgAuditKey, snippet)
	sgCfg := fmt.Sprintf(`trust_domain: %[1]s
listen: %[2]s
tls:
  cert_file: ../certs/%[1]s/gateway.pem
  key_file: ../certs/%[1]s/gateway-key.pem
trust_bundles:
  %[1]s: ../certs/bundle/%[1]s.pem
  %[3]s: ../nl-vault-ca.pem
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
`, sg, addr[sg], nl, addr[nl], nlAuditKey)
	nlDir := filepath.Join(dir, nl)
	os.MkdirAll(nlDir, 0o700)
	paths := map[string]string{nl: filepath.Join(nlDir, "gateway.yaml"), sg: filepath.Join(sgDir, "gateway.yaml")}
	os.WriteFile(paths[nl], []byte(nlCfg), 0o600)
	os.WriteFile(paths[sg], []byte(sgCfg), 0o600)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, d := range []string{nl, sg} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out, errb bytes.Buffer
			if code := cli.Main(ctx, []string{"serve", "--config", paths[d], "--log-level", "warn"}, &out, &errb); code != 0 {
				t.Errorf("serve %s exited %d: %s", d, code, errb.String())
			}
		}()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	for _, a := range addr {
		waitListening(t, a)
	}

	// NL's own systems would need certificates from NL's Vault CA; the
	// test loads NL's data straight into its store instead.
	recs := filepath.Join(dir, "nl.jsonl")
	if code, _, stderr := run(t, nil, "gen", "--domain", nl, "--count", "30", "--seed", "5", "--start", "2026-11-20T00:00:00Z", "--partners", "SG", "--out", recs); code != 0 {
		t.Fatal(stderr)
	}
	data, _ := os.ReadFile(recs)
	toSG := ""
	for _, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, `"declaration"`) && strings.Contains(l, `"destination_country":"SG"`) {
			toSG = between(l, `"id":"`, `"`)
			break
		}
	}
	if toSG == "" {
		t.Fatal("no declaration bound for SG in generated data")
	}
	putRecords(t, filepath.Join(nlDir, "gateway.db"), recs)

	env := []string{
		"BORDERLINK_GATEWAY=" + addr[sg],
		"BORDERLINK_CERT=" + filepath.Join(dir, "certs", sg, "system-cli.pem"),
		"BORDERLINK_KEY=" + filepath.Join(dir, "certs", sg, "system-cli-key.pem"),
		"BORDERLINK_BUNDLE=" + filepath.Join(dir, "certs", "bundle", sg+".pem"),
	}
	code, stdout, stderr := run(t, env, "query", "declaration", "--peer", nl, "--purpose", "risk-assessment", toSG)
	if code != 0 {
		t.Fatalf("query through a Vault-backed gateway: exit %d: %s", code, stderr)
	}
	var got blv1.GetPartnerDeclarationResponse
	if err := protojson.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatal(err)
	}
	if tax := got.GetDeclaration().GetExporter().GetTaxId(); !strings.HasPrefix(tax, "ps_") {
		t.Errorf("exporter.tax_id = %q, want a pseudonym", tax)
	}
	// `audit key` of a Vault-backed gateway prints the transit key partners
	// were given, and leaves no signing key on disk.
	code, stdout, stderr = run(t, nil, "audit", "key", "--config", paths[nl])
	if code != 0 || !strings.Contains(stdout, nlAuditKey) {
		t.Errorf("audit key with vault: exit %d, %q (%s), want %s", code, stdout, stderr, nlAuditKey)
	}
	if _, err := os.Stat(filepath.Join(nlDir, "audit.key")); err == nil {
		t.Error("a Vault-backed gateway left an audit signing key file on disk")
	}

	// SG kept NL's transit-signed receipt in its own audit record.
	code, stdout, _ = run(t, nil, "audit", "list", "--config", paths[sg], "--json")
	if code != 0 || !strings.Contains(stdout, "partner_receipt") {
		t.Errorf("SG's audit record has no partner receipt: exit %d\n%s", code, stdout)
	}
}

func waitListening(t *testing.T, a string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.Dial("tcp", a)
		if err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway at %s did not start", a)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func auditKeyOf(t *testing.T, path, domain string) string {
	t.Helper()
	_, vkey, err := audit.LoadOrCreateKey(path, audit.Origin(domain), true)
	if err != nil {
		t.Fatal(err)
	}
	return vkey
}

// putRecords loads a JSONL file straight into a gateway's store (the store
// allows other writers of the file; the gateway may be running).
func putRecords(t *testing.T, db, file string) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lines, problems, err := importer.Read(f)
	if err != nil || len(problems) > 0 {
		t.Fatalf("read %s: %v %v", file, err, problems)
	}
	var decls []*blv1.Declaration
	var risks []*blv1.RiskAssessment
	for _, l := range lines {
		if d := l.Record.GetDeclaration(); d != nil {
			decls = append(decls, d)
		} else {
			risks = append(risks, l.Record.GetRiskAssessment())
		}
	}
	st, err := sqlite.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.PutRecords(context.Background(), decls, risks); err != nil {
		t.Fatal(err)
	}
}
