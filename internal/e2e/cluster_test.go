//go:build linux

package e2e

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/childproc"
	"github.com/borderlink/borderlink/internal/client"
	"github.com/borderlink/borderlink/internal/devca"
	"github.com/borderlink/borderlink/internal/freeport"
	"github.com/borderlink/borderlink/internal/importer"
	"github.com/borderlink/borderlink/internal/store"
	"github.com/borderlink/borderlink/internal/store/sqlite"
	"github.com/borderlink/borderlink/internal/store/storetest"
	"github.com/borderlink/borderlink/policies"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

const (
	NL = "nl.customs.example"
	SG = "sg.customs.example"
	CN = "cn.customs.example"
)

var domains = []string{NL, SG, CN}

// exe is the borderlink binary built once by TestMain (not race-built:
// the children only need to be fast; the race detector runs on the test).
var exe string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "borderlink-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	exe = filepath.Join(dir, "borderlink")
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	t0 := time.Now()
	cmd := exec.Command("go", "build", "-o", exe, "./cmd/borderlink")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build borderlink:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "e2e: built %s in %v\n", exe, time.Since(t0).Round(time.Millisecond))
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("multi-process end-to-end test; skipped with -short")
	}
}

// seed returns the seed of a test's random choices (E2E_SEED overrides)
// and logs it, so that a failing run can be repeated.
func seed(t *testing.T) uint64 {
	t.Helper()
	s := uint64(time.Now().UnixNano())
	if v := os.Getenv("E2E_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("E2E_SEED=%q: %v", v, err)
		}
		s = n
	}
	t.Logf("random seed %d (repeat with E2E_SEED=%d)", s, s)
	return s
}

// agreementsYAML: NL pushes alerts to SG for consignments bound for SG and
// to CN for those bound for CN; SG may also subscribe to NL's risk
// assessments bound for SG. No score threshold. Nobody is entitled to
// consignments bound for US.
const agreementsYAML = `id: e2e-alerts-2026
title: End-to-end test agreement on risk alerts
legal_basis: "Test fixture of internal/e2e (fictitious)"
parties: [nl.customs.example, sg.customs.example, cn.customs.example]
valid:
  from: "2026-01-01T00:00:00Z"
  until: "2031-01-01T00:00:00Z"
status: active
obligations:
  retention_days: 365
  onward_sharing: false
grants:
  - id: nl-to-sg-alerts
    provider: nl.customs.example
    recipient: sg.customs.example
    actions: [alert.deliver, subscribe]
    purposes: [risk-assessment]
    conditions:
      destination_countries: [SG]
    release:
      risk_assessment: &risk
        fields: [id, declaration_id, score, level, indicators.code, model_name, model_version, assessed_time]
  - id: nl-to-cn-alerts
    provider: nl.customs.example
    recipient: cn.customs.example
    actions: [alert.deliver]
    purposes: [risk-assessment]
    conditions:
      destination_countries: [CN]
    release:
      risk_assessment: *risk
`

// cluster is three gateways, each its own `borderlink serve` process.
type cluster struct {
	t       *testing.T
	dir     string
	certDir string
	nodes   map[string]*gw
}

// gw is one gateway process (restartable with the same config and data).
type gw struct {
	t        *testing.T
	c        *cluster
	domain   string
	dir      string
	addr     string
	config   string
	logPath  string
	auditKey string // verifier key of its audit log

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan error
	starts int
	conn   *grpc.ClientConn // as its own system/cli
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	skipShort(t)
	dir := t.TempDir()
	c := &cluster{t: t, dir: dir, certDir: filepath.Join(dir, "certs"), nodes: map[string]*gw{}}
	if err := devca.Generate(c.certDir, domains, time.Now(), slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("certificates: %v", err)
	}
	policyDir := filepath.Join(dir, "policies")
	writePolicies(t, policyDir)
	addrs, err := freeport.Addrs(len(domains))
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range domains {
		n := &gw{t: t, c: c, domain: d, dir: filepath.Join(dir, d), addr: addrs[i]}
		n.logPath = filepath.Join(n.dir, "gateway.log")
		if err := os.MkdirAll(n.dir, 0o700); err != nil {
			t.Fatal(err)
		}
		_, vkey, err := audit.LoadOrCreateKey(filepath.Join(n.dir, "audit.key"), audit.Origin(d), true)
		if err != nil {
			t.Fatal(err)
		}
		n.auditKey = vkey
		key := make([]byte, 32)
		for i := range key {
			key[i] = byte(rand.IntN(256))
		}
		if err := os.WriteFile(filepath.Join(n.dir, "pseudonym.key"), key, 0o600); err != nil {
			t.Fatal(err)
		}
		c.nodes[d] = n
	}
	for _, n := range c.nodes {
		var b strings.Builder
		fmt.Fprintf(&b, "trust_domain: %s\nlisten: %s\n", n.domain, n.addr)
		fmt.Fprintf(&b, "tls:\n  cert_file: %s\n  key_file: %s\n",
			filepath.Join(c.certDir, n.domain, "gateway.pem"), filepath.Join(c.certDir, n.domain, "gateway-key.pem"))
		fmt.Fprintf(&b, "trust_bundles:\n")
		for _, d := range domains {
			fmt.Fprintf(&b, "  %s: %s\n", d, filepath.Join(c.certDir, devca.BundleDir, d+".pem"))
		}
		fmt.Fprintf(&b, "peers:\n")
		for _, m := range domains {
			if m != n.domain {
				fmt.Fprintf(&b, "  %s:\n    address: %s\n    audit_key: %s\n", m, c.nodes[m].addr, c.nodes[m].auditKey)
			}
		}
		fmt.Fprintf(&b, "store:\n  sqlite:\n    path: gateway.db\n")
		fmt.Fprintf(&b, "policy:\n  dir: %s\n", policyDir)
		fmt.Fprintf(&b, "pseudonymization:\n  key_file: pseudonym.key\n")
		fmt.Fprintf(&b, "limits:\n  peer_timeout: 5s\n")
		fmt.Fprintf(&b, "audit:\n  key_file: audit.key\n")
		n.config = filepath.Join(n.dir, "gateway.yaml")
		if err := os.WriteFile(n.config, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Registered after t.TempDir, so it runs before the directory is
	// removed: no child outlives the test, whatever happened.
	t.Cleanup(func() {
		for _, d := range domains {
			n := c.nodes[d]
			n.kill()
			if t.Failed() {
				t.Logf("---- tail of %s ----\n%s", n.logPath, tail(n.logPath, 40))
			}
		}
	})
	return c
}

// writePolicies copies the reference Rego modules (not their tests, not
// the shipped agreements) and writes the test's own agreement.
func writePolicies(t *testing.T, dst string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dst, "agreements"), 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := fs.ReadDir(policies.FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".rego") || strings.HasSuffix(name, "_test.rego") {
			continue
		}
		b, err := fs.ReadFile(policies.FS, name)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dst, "agreements", "e2e-alerts-2026.yaml"), []byte(agreementsYAML), 0o644); err != nil {
		t.Fatal(err)
	}
}

func tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// start starts the gateway (env: extra variables, e.g. the crash point)
// and waits until it is healthy.
func (n *gw) start(env ...string) {
	n.t.Helper()
	n.waitHealthy(n.launch(env...))
}

// launch starts the gateway without waiting for it: a process armed with
// a crash point may die before it is ever seen healthy.
func (n *gw) launch(env ...string) chan error {
	n.t.Helper()
	n.mu.Lock()
	if n.cmd != nil {
		n.mu.Unlock()
		n.t.Fatalf("%s: already running", n.domain)
	}
	n.starts++
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		n.mu.Unlock()
		n.t.Fatal(err)
	}
	fmt.Fprintf(logf, "==== e2e: start #%d of %s at %s env=%v\n", n.starts, n.domain, time.Now().Format(time.RFC3339Nano), env)
	cmd := exec.Command(exe, "serve", "--config", n.config, "--log-format", "json")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// The kernel kills the child if the test process dies.
	childproc.DieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		logf.Close()
		n.mu.Unlock()
		n.t.Fatalf("start %s: %v", n.domain, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); logf.Close() }()
	n.cmd, n.done = cmd, done
	n.mu.Unlock()

	// A fresh connection per start: a connection to the dead process
	// could sit in reconnect backoff.
	cc, _, err := client.Dial(context.Background(), client.Options{
		Address:    n.addr,
		CertFile:   filepath.Join(n.c.certDir, n.domain, "system-cli.pem"),
		KeyFile:    filepath.Join(n.c.certDir, n.domain, "system-cli-key.pem"),
		BundleFile: filepath.Join(n.c.certDir, devca.BundleDir, n.domain+".pem"),
	})
	if err != nil {
		n.t.Fatalf("dial %s: %v", n.domain, err)
	}
	n.mu.Lock()
	if n.conn != nil {
		n.conn.Close()
	}
	n.conn = cc
	n.mu.Unlock()
	return done
}

func (n *gw) waitHealthy(done chan error) {
	n.t.Helper()
	hc := healthpb.NewHealthClient(n.system())
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return
		}
		select {
		case werr := <-done:
			done <- werr
			n.t.Fatalf("%s exited during start: %v\n%s", n.domain, werr, tail(n.logPath, 30))
		default:
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("%s not healthy after 30s: %v", n.domain, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// system is a connection to the gateway as its own system/cli identity.
func (n *gw) system() *grpc.ClientConn {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.conn
}

func (n *gw) ingest() blv1.IngestClient { return blv1.NewIngestClient(n.system()) }
func (n *gw) admin() blv1.AdminClient   { return blv1.NewAdminClient(n.system()) }

// running tells whether the process is alive (it may have killed itself).
func (n *gw) running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return false
	}
	select {
	case err := <-n.done:
		n.done <- err
		return false
	default:
		return true
	}
}

// waitExit waits up to d for the process to exit on its own (a crash
// point) and reports whether it did, and how.
func (n *gw) waitExit(d time.Duration) (bool, error) {
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	if done == nil {
		return true, nil
	}
	select {
	case err := <-done:
		n.mu.Lock()
		n.cmd, n.done = nil, nil
		n.mu.Unlock()
		return true, err
	case <-time.After(d):
		return false, nil
	}
}

// kill SIGKILLs the process (if running) and reaps it.
func (n *gw) kill() {
	n.signalAndWait(syscall.SIGKILL, 0)
}

// stop asks for a graceful stop (SIGTERM) and kills after 20 s.
func (n *gw) stop() {
	n.t.Helper()
	if err := n.signalAndWait(syscall.SIGTERM, 20*time.Second); err != nil {
		n.t.Errorf("%s: graceful stop: %v", n.domain, err)
	}
}

func (n *gw) signalAndWait(sig syscall.Signal, grace time.Duration) error {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.cmd, n.done = nil, nil
	if n.conn != nil && sig == syscall.SIGTERM {
		n.conn.Close()
		n.conn = nil
	}
	n.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(sig)
	if grace == 0 {
		<-done
		return nil
	}
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("exited with %v", err)
		}
		return nil
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("did not stop within %v; killed", grace)
	}
}

func (c *cluster) startAll() {
	for _, d := range domains {
		c.nodes[d].start()
	}
}

func (c *cluster) stopAll() {
	for _, d := range domains {
		c.nodes[d].stop()
	}
}

// dialAs connects to target's gateway with another gateway's certificate
// (e.g. NL's gateway identity calling SG's Exchange).
func (c *cluster) dialAs(t *testing.T, as, target string) *grpc.ClientConn {
	t.Helper()
	cc, _, err := client.Dial(context.Background(), client.Options{
		Address:    c.nodes[target].addr,
		CertFile:   filepath.Join(c.certDir, as, "gateway.pem"),
		KeyFile:    filepath.Join(c.certDir, as, "gateway-key.pem"),
		BundleFile: filepath.Join(c.certDir, devca.BundleDir, target+".pem"),
		Server:     target,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// ---- records ----

// declaration bound for dest (a two-letter country code).
func declaration(id, dest string) *blv1.Declaration {
	return storetest.Declaration(id, 0, "NL", dest, "850110")
}

func risk(id, declID string, score float64, version string) *blv1.RiskAssessment {
	r := storetest.RiskAssessment(id, declID, score)
	r.ModelVersion = version
	return r
}

func importRecords(t *testing.T, ctx context.Context, n *gw, decls []*blv1.Declaration, risks []*blv1.RiskAssessment) {
	t.Helper()
	if err := tryImport(ctx, n, decls, risks); err != nil {
		t.Fatal(err)
	}
}

// tryImport is importRecords for goroutines other than the test's.
func tryImport(ctx context.Context, n *gw, decls []*blv1.Declaration, risks []*blv1.RiskAssessment) error {
	var lines []importer.Line
	for _, d := range decls {
		lines = append(lines, importer.Line{Number: uint64(len(lines) + 1), Record: &blv1.IngestRecord{Kind: &blv1.IngestRecord_Declaration{Declaration: d}}})
	}
	for _, r := range risks {
		lines = append(lines, importer.Line{Number: uint64(len(lines) + 1), Record: &blv1.IngestRecord{Kind: &blv1.IngestRecord_RiskAssessment{RiskAssessment: r}}})
	}
	resp, err := importer.Send(ctx, n.ingest(), lines, false)
	if err != nil {
		return fmt.Errorf("import into %s: %w", n.domain, err)
	}
	if resp.GetImported() != uint64(len(lines)) {
		return fmt.Errorf("import into %s: imported %d of %d (%v)", n.domain, resp.GetImported(), len(lines), resp.GetErrors())
	}
	return nil
}

// ---- outbox status over Admin ----

func queues(ctx context.Context, n *gw) (map[string]*blv1.PartnerQueue, error) {
	st, err := n.admin().DeliveryStatus(ctx, &blv1.DeliveryStatusRequest{})
	if err != nil {
		return nil, err
	}
	out := map[string]*blv1.PartnerQueue{}
	for _, q := range st.GetPartners() {
		out[q.GetPartner()] = q
	}
	return out, nil
}

// waitQueues polls n's DeliveryStatus until cond holds, at most timeout;
// it returns how long it took.
func waitQueues(t *testing.T, n *gw, timeout time.Duration, what string, cond func(map[string]*blv1.PartnerQueue) bool) time.Duration {
	t.Helper()
	t0 := time.Now()
	var last map[string]*blv1.PartnerQueue
	var lastErr error
	for time.Since(t0) < timeout {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		q, err := queues(ctx, n)
		cancel()
		if err == nil {
			last = q
			if cond(q) {
				return time.Since(t0)
			}
		}
		lastErr = err
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not reached after %v; last status %v, last error %v", what, timeout, last, lastErr)
	return 0
}

// ---- reading a stopped gateway's SQLite file ----

type db struct {
	st  *sqlite.Store
	raw *sql.DB
}

func openDB(t *testing.T, n *gw) *db {
	t.Helper()
	path := filepath.Join(n.dir, "gateway.db")
	st, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close(); st.Close() })
	return &db{st: st, raw: raw}
}

func (d *db) outbox(t *testing.T) []store.OutboxEntry {
	t.Helper()
	rows, err := d.raw.Query(`SELECT seq, message_id, recipient, record_id, state, receipt, alert, created FROM outbox ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []store.OutboxEntry
	for rows.Next() {
		var (
			e       store.OutboxEntry
			state   int64
			created int64
		)
		if err := rows.Scan(&e.Seq, &e.MessageID, &e.Recipient, &e.RecordID, &state, &e.Receipt, &e.Alert, &created); err != nil {
			t.Fatal(err)
		}
		e.State = store.OutboxState(state)
		e.Created = time.Unix(0, created).UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// inbox returns every received alert, in receive (audit) order.
func (d *db) inbox(t *testing.T) []store.InboxEntry {
	t.Helper()
	rows, err := d.raw.Query(`SELECT sender, message_id, record_id, received, audit_seq, alert FROM inbox ORDER BY audit_seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []store.InboxEntry
	for rows.Next() {
		var (
			e        store.InboxEntry
			received int64
		)
		if err := rows.Scan(&e.Sender, &e.MessageID, &e.RecordID, &received, &e.AuditSeq, &e.Alert); err != nil {
			t.Fatal(err)
		}
		e.Received = time.Unix(0, received).UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// auditAll returns the whole audit log, checking that seqs are gapless.
func (d *db) auditAll(t *testing.T) []*blv1.AuditRecord {
	t.Helper()
	var out []*blv1.AuditRecord
	var after uint64
	for {
		page, err := d.st.ListAudit(context.Background(), store.AuditQuery{AfterSeq: after, Limit: 5000})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, r := range page {
			if r.GetSeq() != after+1 {
				t.Fatalf("audit seq %d follows %d: gap or reorder", r.GetSeq(), after)
			}
			after = r.GetSeq()
			out = append(out, r)
		}
	}
	return out
}

// verifyLog runs what `borderlink audit verify` runs over a stopped
// gateway's log: every leaf re-hashed, the tree rebuilt, every stored
// checkpoint's signature and root checked.
func (d *db) verifyLog(t *testing.T, n *gw) audit.LogResult {
	t.Helper()
	ctx := context.Background()
	size, err := d.st.AuditTreeSize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leaves, err := d.st.AuditLeaves(ctx, 0, size)
	if err != nil {
		t.Fatal(err)
	}
	if size == 0 {
		return audit.LogResult{} // nothing audited, nothing to verify
	}
	cps, err := d.st.AuditCheckpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var notes [][]byte
	for _, c := range cps {
		notes = append(notes, c.Note)
	}
	res, err := audit.VerifyLog(audit.LogInput{Leaves: leaves, Checkpoints: notes, Verifier: verifierOf(t, n)})
	if err != nil {
		t.Fatalf("%s: audit log does not verify: %v", n.domain, err)
	}
	return res
}

func verifierOf(t *testing.T, n *gw) note.Verifier {
	t.Helper()
	v, err := audit.NewVerifier(n.auditKey, audit.Origin(n.domain))
	if err != nil {
		t.Fatal(err)
	}
	return v
}
