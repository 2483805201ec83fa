package cli_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
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
	"github.com/borderlink/borderlink/internal/freeport"
	"github.com/borderlink/borderlink/internal/importer"
	"github.com/borderlink/borderlink/internal/keys/vault/vaulttest"
	"github.com/borderlink/borderlink/internal/store"
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
	p := startVaultPair(t, "", "")
	paths, nlAuditKey, toSG := p.paths, p.nlAuditKey, p.toSG
	nlDir := filepath.Join(p.dir, nl)
	env := p.sgEnv()
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

	// SG verified and kept NL's receipt in its own audit record: signed by
	// NL's receipt key, which NL's transit key certified (ADR 0011).
	code, stdout, _ = run(t, nil, "audit", "list", "--config", paths[sg], "--json")
	if code != 0 || !strings.Contains(stdout, "partner_receipt") || !strings.Contains(stdout, "borderlink-receipt/v2") {
		t.Errorf("SG's audit record has no delegated (v2) partner receipt: exit %d\n%s", code, stdout)
	}
}

// vaultPair is NL's gateway with every key from a real Vault and SG's
// from files, both running, NL's store loaded with generated data.
type vaultPair struct {
	srv        *vaulttest.Server
	dir        string
	addr       map[string]string
	paths      map[string]string
	nlAuditKey string
	nlCA       []byte
	// toSG is a declaration NL may release to SG.
	toSG string
	// logs are each gateway's stderr (its log).
	logs map[string]*syncBuf
}

// startVaultPair starts the pair; nlExtra is YAML added to NL's config
// (top-level keys other than vault:), receiptKeyTTL NL's
// vault.transit.receipt_key_ttl ("": the default).
func startVaultPair(t *testing.T, nlExtra, receiptKeyTTL string) *vaultPair {
	t.Helper()
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
	if receiptKeyTTL != "" {
		if !strings.Contains(snippet, "\n  transit:\n") || strings.Contains(snippet, "receipt_key_ttl") {
			t.Fatalf("cannot set receipt_key_ttl in the init-dev snippet:\n%s", snippet)
		}
		snippet = strings.Replace(snippet, "\n  transit:\n", "\n  transit:\n    receipt_key_ttl: "+receiptKeyTTL+"\n", 1)
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
	addrs, err := freeport.Addrs(2)
	if err != nil {
		t.Fatal(err)
	}
	addr := map[string]string{nl: addrs[0], sg: addrs[1]}
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
%[7]s
%[6]s`, nl, addr[nl], sg, addr[sg], sgAuditKey, snippet, nlExtra)
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
	logs := map[string]*syncBuf{nl: {}, sg: {}}
	for _, d := range []string{nl, sg} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out bytes.Buffer
			if code := cli.Main(ctx, []string{"serve", "--config", paths[d], "--log-level", "warn"}, &out, logs[d]); code != 0 {
				t.Errorf("serve %s exited %d: %s", d, code, logs[d].String())
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
	return &vaultPair{srv: srv, dir: dir, addr: addr, paths: paths, nlAuditKey: nlAuditKey, nlCA: nlCA, toSG: toSG, logs: logs}
}

// sgEnv is the environment of SG's CLI client.
func (p *vaultPair) sgEnv() []string {
	return []string{
		"BORDERLINK_GATEWAY=" + p.addr[sg],
		"BORDERLINK_CERT=" + filepath.Join(p.dir, "certs", sg, "system-cli.pem"),
		"BORDERLINK_KEY=" + filepath.Join(p.dir, "certs", sg, "system-cli-key.pem"),
		"BORDERLINK_BUNDLE=" + filepath.Join(p.dir, "certs", "bundle", sg+".pem"),
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

// syncBuf is a bytes.Buffer a gateway may write while the test reads it.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestServeVaultSealed seals NL's Vault while NL's gateway runs (docs/vault.md,
// Failure behaviour). While its receipt key is valid NL keeps answering:
// the receipts need no Vault. Once the key has expired without renewal an
// exchange fails UNAVAILABLE and SG's client gets no data; NL's log holds
// the ALLOW record followed by an ERROR record saying nothing was released.
// Periodic checkpoint signing fails, is logged and retried; the gateway
// keeps presenting its certificate. After unseal the receipt key is
// renewed, the next checkpoint covers every record appended while sealed,
// the exported log verifies with the published transit key, and
// exchanges work again.
func TestServeVaultSealed(t *testing.T) {
	// A short receipt key life, so that it expires during the test: renewed
	// every 6s, so at least 3s are left when the Vault is sealed, for the
	// query (a TLS handshake, a decision and a durable append) under -race
	// on a loaded machine.
	p := startVaultPair(t, "audit:\n  checkpoint_interval: 200ms\n", "9s")
	ctx := context.Background()
	db := filepath.Join(p.dir, nl, "gateway.db")
	st, err := sqlite.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// sizes returns NL's log size and its latest checkpoint's size.
	sizes := func() (tree, cp int64) {
		t.Helper()
		tree, err := st.AuditTreeSize(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cp, _, err = st.LatestAuditCheckpoint(ctx)
		if err != nil && !errors.Is(err, audit.ErrNoCheckpoint) {
			t.Fatal(err)
		}
		return tree, cp
	}
	waitCovered := func(what string) int64 {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			tree, cp := sizes()
			if tree > 0 && cp == tree {
				return cp
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: checkpoint size %d, log size %d after 30s; NL log:\n%s", what, cp, tree, p.logs[nl].String())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	query := func() (int, string, string) {
		return run(t, p.sgEnv(), "query", "declaration", "--peer", nl, "--purpose", "risk-assessment", p.toSG)
	}
	if code, _, stderr := query(); code != 0 {
		t.Fatalf("query before sealing: exit %d: %s", code, stderr)
	}
	before := waitCovered("before sealing")
	serial := servedSerial(t, p.addr[nl], p.nlCA)

	p.srv.Seal(t)
	if code, _, stderr := query(); code != 0 {
		t.Fatalf("query while sealed, receipt key still valid: exit %d: %s; want an answer (receipts need no Vault)", code, stderr)
	}
	// Wait for the receipt key to expire with its renewals failing.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(p.logs[nl].String(), "receipt key renewal failed and the key has expired") {
		if time.Now().After(deadline) {
			t.Fatalf("the receipt key did not expire within 30s of sealing; NL log:\n%s", p.logs[nl].String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	mid, _ := sizes()
	if mid != before+1 {
		t.Errorf("NL's log grew from %d to %d while sealed with a valid receipt key; want one ALLOW record", before, mid)
	}
	code, stdout, stderr := query()
	t.Logf("query while sealed, receipt key expired: exit %d: %s", code, strings.TrimSpace(stderr))
	if code == 0 || stdout != "" {
		t.Fatalf("query while Vault is sealed and the receipt key expired: exit %d, stdout %q; want a failure and no data", code, stdout)
	}
	if !strings.Contains(stderr, "UNAVAILABLE") || !strings.Contains(stderr, "nothing was released") {
		t.Errorf("query while sealed: stderr %q; want UNAVAILABLE saying nothing was released", stderr)
	}
	// NL's log: the ALLOW record of the refused release, then an ERROR
	// record for the same request citing it.
	recs, err := st.ListAudit(ctx, store.AuditQuery{AfterSeq: uint64(mid), Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 {
		t.Fatalf("NL appended %d records while sealed; want 2 (ALLOW, ERROR): %v", len(recs), recs)
	}
	allow, errRec := recs[0], recs[1]
	if allow.GetDecision() != blv1.AuditDecision_AUDIT_DECISION_ALLOW || errRec.GetDecision() != blv1.AuditDecision_AUDIT_DECISION_ERROR ||
		errRec.GetRequestId() != allow.GetRequestId() || errRec.GetStatus() != "UNAVAILABLE" ||
		!strings.Contains(strings.Join(errRec.GetReasons(), " "), fmt.Sprintf("receipt for record %d could not be signed; nothing was released", allow.GetSeq())) {
		t.Errorf("records while sealed:\n%v\n%v\nwant ALLOW then ERROR (UNAVAILABLE, same request, citing the ALLOW record)", allow, errRec)
	}
	// SG received nothing: its consumer record has no release and no receipt.
	sgSt, err := sqlite.Open(ctx, filepath.Join(p.dir, sg, "gateway.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer sgSt.Close()
	sgRecs, err := sgSt.ListAudit(ctx, store.AuditQuery{Limit: 1000})
	if err != nil || len(sgRecs) == 0 {
		t.Fatalf("SG's records: %d, %v", len(sgRecs), err)
	}
	if last := sgRecs[len(sgRecs)-1]; last.GetDecision() != blv1.AuditDecision_AUDIT_DECISION_ERROR || last.GetStatus() != "UNAVAILABLE" ||
		last.GetPartnerReceipt() != "" || last.GetReleaseSha256() != "" {
		t.Errorf("SG's record of the exchange while NL's Vault was sealed: %v; want ERROR, UNAVAILABLE, no receipt, no release", last)
	}

	// Checkpoint signing fails and is retried at every interval; nothing
	// is checkpointed while sealed.
	deadline = time.Now().Add(30 * time.Second)
	for strings.Count(p.logs[nl].String(), "audit checkpoint failed") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than 2 failed checkpoint attempts logged within 30s of sealing; NL log:\n%s", p.logs[nl].String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if l := p.logs[nl].String(); !strings.Contains(l, "sealed") {
		t.Errorf("checkpoint failures do not say Vault is sealed; NL log:\n%s", l)
	}
	sealedTree, cp := sizes()
	if cp != before || sealedTree != mid+2 {
		t.Errorf("while sealed: checkpoint size %d, log size %d; want %d and %d", cp, sealedTree, before, mid+2)
	}
	if got := servedSerial(t, p.addr[nl], p.nlCA); got != serial {
		t.Errorf("while sealed NL presents certificate %s; want the current one, %s", got, serial)
	}

	p.srv.Unseal(t)
	after := waitCovered("after unseal")
	if after < sealedTree {
		t.Errorf("first checkpoint after unseal has size %d; want it to cover the %d records appended up to the seal's end", after, sealedTree)
	}
	export := filepath.Join(p.dir, "nl-export.jsonl")
	if code, _, stderr := run(t, nil, "audit", "export", "--config", p.paths[nl], "--out", export); code != 0 {
		t.Fatalf("audit export: %d %s", code, stderr)
	}
	code, stdout, stderr = run(t, nil, "audit", "verify", "--export", export, "--verifier", p.nlAuditKey)
	if code != 0 || !strings.Contains(stdout, fmt.Sprintf("latest checkpoint size %d", after)) || strings.Contains(stdout, "not covered") {
		t.Errorf("audit verify after unseal: exit %d, %q %s; want OK with latest checkpoint size %d covering every record", code, stdout, stderr, after)
	}
	// The receipt key is renewed at the next retry (every ttl/10 once
	// expired); until then the exchange still fails closed.
	deadline = time.Now().Add(30 * time.Second)
	for {
		code, _, stderr := query()
		if code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("query after unseal still failing after 30s: exit %d: %s", code, stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// servedSerial returns the serial of the certificate the gateway at addr
// presents, checked against its CA (the handshake itself may then fail:
// the test presents no client certificate).
func servedSerial(t *testing.T, addr string, caPEM []byte) string {
	t.Helper()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("no CA certificate")
	}
	var serial string
	cfg := &tls.Config{
		InsecureSkipVerify: true, // checked below: a SPIFFE certificate has no DNS name
		VerifyConnection: func(cs tls.ConnectionState) error {
			leaf := cs.PeerCertificates[0]
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
				return fmt.Errorf("served certificate: %w", err)
			}
			serial = leaf.SerialNumber.Text(16)
			return nil
		},
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err == nil {
		conn.Close()
	}
	if serial == "" {
		t.Fatalf("no valid certificate from %s: %v", addr, err)
	}
	return serial
}

// TestServeVaultStartFailures: `borderlink serve` with a Vault it cannot
// use exits 1 before listening, with an error naming the config file and
// what to fix: the address of an unreachable Vault, a sealed Vault, a
// wrong role ID, and a denied path with the capability missing.
func TestServeVaultStartFailures(t *testing.T) {
	srv := vaulttest.Start(t)
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "nl-secret-id")
	code, snippet, stderr := run(t, []string{"VAULT_TOKEN=" + srv.Token, "VAULT_ADDR="},
		"vault", "init-dev", "--domain", nl, "--address", srv.Addr, "--secret-id-file", secretFile)
	if code != 0 {
		t.Fatalf("vault init-dev: %d %s", code, stderr)
	}
	refusing, release, err := freeport.Refusing()
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	gwAddr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + refusing
	copyDir(t, "../../policies", filepath.Join(dir, "policies"))
	roleLine := between(snippet, "role_id: ", "\n")
	if roleLine == "" {
		t.Fatalf("no role_id in the init-dev snippet:\n%s", snippet)
	}
	for _, tc := range []struct {
		name  string
		edit  func(string) string
		seal  bool
		wants []string
	}{
		{"unreachable", func(s string) string { return strings.Replace(s, "address: "+srv.Addr, "address: "+closed, 1) },
			false, []string{"vault: vault " + closed + ": health check sys/health:", "cannot reach Vault", "connection refused"}},
		{"denied path", func(s string) string {
			return strings.Replace(s, "borderlink/"+nl+"/pseudonym", "borderlink/"+sg+"/pseudonym", 1)
		}, false, []string{"borderlink/" + sg + "/pseudonym#key: vault " + srv.Addr + ": read secret: ", `permission denied: "read" capability on path "kv/data/borderlink/` + sg + `/pseudonym" is missing (token has: deny`, "grant it in the gateway's Vault policy"}},
		{"wrong role ID", func(s string) string {
			return strings.Replace(s, "role_id: "+roleLine, "role_id: 00000000-0000-0000-0000-000000000000", 1)
		}, false, []string{"vault: vault " + srv.Addr, "approle login (check vault.auth.approle.role_id and the secret ID)", "auth/approle/login"}},
		{"sealed", func(s string) string { return s }, true, []string{"vault: vault " + srv.Addr, "vault is sealed (unseal it, then start the gateway)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snip := tc.edit(snippet)
			if snip == snippet && !tc.seal {
				t.Fatalf("edit changed nothing in:\n%s", snippet)
			}
			cfg := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			os.WriteFile(cfg, []byte(fmt.Sprintf("trust_domain: %s\nlisten: %s\nstore:\n  sqlite:\n    path: %s.db\npolicy:\n  dir: policies\n%s",
				nl, gwAddr, strings.ReplaceAll(tc.name, " ", "-"), snip)), 0o600)
			if tc.seal {
				srv.Seal(t)
				defer srv.Unseal(t)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			var out, errb bytes.Buffer
			code := cli.Main(ctx, []string{"serve", "--config", cfg, "--log-level", "warn"}, &out, &errb)
			t.Logf("serve: exit %d: %s", code, strings.TrimSpace(errb.String()))
			if code != cli.ExitError {
				t.Errorf("serve exit %d; want %d", code, cli.ExitError)
			}
			if !strings.HasPrefix(errb.String(), "borderlink: "+cfg+": vault: ") {
				t.Errorf("stderr %q; want it to start with \"borderlink: %s: vault: \"", errb.String(), cfg)
			}
			for _, w := range tc.wants {
				if !strings.Contains(errb.String(), w) {
					t.Errorf("stderr lacks %q", w)
				}
			}
			if c, err := net.Dial("tcp", gwAddr); err == nil {
				c.Close()
				t.Errorf("something listens on %s after a failed start", gwAddr)
			}
		})
	}
}
