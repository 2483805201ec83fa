// Package demo runs three customs administrations on this machine — each
// gateway a separate `borderlink serve` process with its own certificates,
// config and SQLite file — loads synthetic data into each and tours the
// exchanges a user cares about: allowed, narrowed for an agency, denied,
// and the audit trail on both sides. It needs no network beyond loopback
// and leaves no process behind.
package demo

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/childproc"
	"github.com/borderlink/borderlink/internal/client"
	"github.com/borderlink/borderlink/internal/devca"
	"github.com/borderlink/borderlink/internal/freeport"
	"github.com/borderlink/borderlink/internal/gen"
	"github.com/borderlink/borderlink/internal/importer"
	"github.com/borderlink/borderlink/policies"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// The three administrations of the demo.
const (
	NL = "nl.customs.example"
	SG = "sg.customs.example"
	CN = "cn.customs.example"
)

var domains = []string{NL, SG, CN}

// Options configure a demo run.
type Options struct {
	// Dir receives certificates, configs, databases and logs. It is wiped
	// of earlier demo state (not of anything else) at start.
	Dir string
	// Exe is the borderlink binary to start gateways with.
	Exe string
	// Count is the number of declarations per administration.
	Count int
	Out   io.Writer
	// Logger receives progress detail (the tour itself goes to Out).
	Logger *slog.Logger
	// Vault, when set, is the path of a vault binary: the demo starts one
	// Vault dev server on loopback and every gateway takes its certificate,
	// audit signing key and pseudonymisation key from it (see vault.go).
	Vault string
}

type node struct {
	domain string
	dir    string
	addr   string
	config string
	cmd    *exec.Cmd
	done   chan error
	conn   *grpc.ClientConn
	recs   []*blv1.IngestRecord
	// verifierFile holds the gateway's audit verifier key (public).
	verifierFile string
}

// Run performs the whole demo and stops every gateway it started, also
// when it fails or ctx is cancelled.
func Run(ctx context.Context, o Options) (err error) {
	if o.Count <= 0 {
		o.Count = 300
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	p := &printer{w: o.Out}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return err
	}
	if err := prepareDir(dir, o.Vault != ""); err != nil {
		return err
	}

	p.title("Setting up three administrations in " + dir)
	certDir := filepath.Join(dir, "certs")
	var vds map[string]*vaultDomain
	if o.Vault != "" {
		v, err := startVault(ctx, o.Vault, filepath.Join(dir, "vault", "server"))
		if err != nil {
			return err
		}
		// Registered before the gateways' stop, so it runs after it.
		defer v.stop()
		p.line("  started a Vault dev server on %s (log %s)", v.Addr, rel(dir, v.LogFile))
		if vds, err = setupVault(ctx, v, dir); err != nil {
			return err
		}
		for _, d := range domains {
			c := vds[d].setup.Config
			p.line("  vault init-dev %-20s mounts %s, %s, %s; AppRole role %s", d, c.PKI.Mount, c.Transit.Mount, c.KV.Mount, vds[d].setup.PolicyName)
		}
		if err := clientCerts(certDir, vds, time.Now()); err != nil {
			return fmt.Errorf("make client certificates: %w", err)
		}
	} else if err := devca.Generate(certDir, domains, time.Now(), o.Logger); err != nil {
		return fmt.Errorf("make certificates: %w", err)
	}
	policyDir := filepath.Join(dir, "policies")
	if err := writePolicies(policyDir); err != nil {
		return err
	}
	nodes, err := layout(dir, certDir, policyDir, vds)
	if err != nil {
		return err
	}
	defer func() {
		if serr := stopAll(nodes, o.Logger); serr != nil && err == nil {
			err = serr
		}
	}()
	for _, n := range nodes {
		if err := start(ctx, o.Exe, n); err != nil {
			return err
		}
		p.line("  started %-20s on %s  (config %s)", n.domain, n.addr, rel(dir, n.config))
	}
	for _, n := range nodes {
		if err := n.connect(ctx, certDir); err != nil {
			return err
		}
		if err := n.waitHealthy(ctx); err != nil {
			return err
		}
	}

	start := time.Now().UTC().Truncate(24 * time.Hour)
	for i, n := range nodes {
		partners := []string{}
		for _, d := range domains {
			if d != n.domain {
				partners = append(partners, countryOf(d))
			}
		}
		recs, err := gen.Generate(gen.Options{Domain: n.domain, Count: o.Count, Seed: uint64(2026 + i), Start: start, Partners: partners})
		if err != nil {
			return fmt.Errorf("generate data for %s: %w", n.domain, err)
		}
		n.recs = recs
		lines := make([]importer.Line, len(recs))
		for j, r := range recs {
			lines[j] = importer.Line{Number: uint64(j + 1), Record: r}
		}
		resp, err := importer.Send(ctx, blv1.NewIngestClient(n.conn), lines, false)
		if err != nil {
			return fmt.Errorf("import into %s: %w", n.domain, err)
		}
		p.line("  loaded %d synthetic records into %s", resp.GetImported(), n.domain)
	}

	t := &tour{p: p, nodes: map[string]*node{}, certDir: certDir, exe: o.Exe}
	for _, n := range nodes {
		t.nodes[n.domain] = n
	}
	if vds != nil {
		if t.keys, err = vaultKeySources(ctx, nodes, certDir, vds); err != nil {
			return err
		}
	}
	if err := t.run(ctx); err != nil {
		return err
	}
	p.title("Done")
	if vds != nil {
		p.line("Every gateway and the Vault dev server are stopped. Configs, logs and databases stay in %s;", dir)
		p.line("the gateways' keys were only in that Vault (in memory) and are gone: run the demo again.")
		return nil
	}
	p.line("Every gateway is stopped. Configs, logs and databases stay in %s;", dir)
	p.line("run a gateway yourself with: borderlink serve --config %s", nodes[0].config)
	return nil
}

// prepareDir removes the state of an earlier demo run, but only the parts
// the demo itself creates, so a mistaken --dir cannot wipe unrelated files.
// The Vault variant also removes certs/: its client certificates are made
// afresh (their CA key is never written), and no gateway key of an earlier
// file-based run may stay behind.
func prepareDir(dir string, withVault bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("demo dir: %w", err)
	}
	subs := append([]string{"policies", "vault"}, domains...)
	if withVault {
		subs = append(subs, "certs")
	}
	for _, sub := range subs {
		if err := os.RemoveAll(filepath.Join(dir, sub)); err != nil {
			return fmt.Errorf("clean demo dir: %w", err)
		}
	}
	return nil
}

func writePolicies(dst string) error {
	return fs.WalkDir(policies.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(dst, path)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := fs.ReadFile(policies.FS, path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}

func countryOf(domain string) string {
	label, _, _ := strings.Cut(domain, ".")
	return strings.ToUpper(label)
}

// layout picks loopback ports and writes each gateway's config. With vds
// (the Vault variant) the gateways' keys come from Vault and no key file is
// written.
func layout(dir, certDir, policyDir string, vds map[string]*vaultDomain) ([]*node, error) {
	addrs, err := freeport.Addrs(len(domains))
	if err != nil {
		return nil, err
	}
	var nodes []*node
	for i, d := range domains {
		nodes = append(nodes, &node{domain: d, dir: filepath.Join(dir, d), addr: addrs[i]})
	}
	if vds != nil {
		return nodes, layoutVault(nodes, certDir, policyDir, vds)
	}
	// Each gateway's audit key is made here, not at its first start, so
	// that every config can name its partners' verifier keys.
	auditKeys := map[string]string{}
	for _, n := range nodes {
		if err := os.MkdirAll(n.dir, 0o700); err != nil {
			return nil, err
		}
		_, vkey, err := audit.LoadOrCreateKey(filepath.Join(n.dir, "audit.key"), audit.Origin(n.domain), true)
		if err != nil {
			return nil, err
		}
		auditKeys[n.domain] = vkey
		n.verifierFile = filepath.Join(n.dir, "audit.key.pub")
	}
	for _, n := range nodes {
		if err := os.MkdirAll(n.dir, 0o700); err != nil {
			return nil, err
		}
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(n.dir, "pseudonym.key"), key, 0o600); err != nil {
			return nil, err
		}
		var b strings.Builder
		fmt.Fprintf(&b, "# Demo gateway of %s, written by `borderlink demo`.\n", n.domain)
		fmt.Fprintf(&b, "trust_domain: %s\nlisten: %s\n", n.domain, n.addr)
		fmt.Fprintf(&b, "tls:\n  cert_file: %s\n  key_file: %s\n",
			filepath.Join(certDir, n.domain, "gateway.pem"), filepath.Join(certDir, n.domain, "gateway-key.pem"))
		fmt.Fprintf(&b, "trust_bundles:\n")
		for _, d := range domains {
			fmt.Fprintf(&b, "  %s: %s\n", d, filepath.Join(certDir, "bundle", d+".pem"))
		}
		fmt.Fprintf(&b, "peers:\n")
		for _, m := range nodes {
			if m != n {
				fmt.Fprintf(&b, "  %s:\n    address: %s\n    audit_key: %s\n", m.domain, m.addr, auditKeys[m.domain])
			}
		}
		fmt.Fprintf(&b, "store:\n  sqlite:\n    path: gateway.db\n")
		fmt.Fprintf(&b, "policy:\n  dir: %s\n", policyDir)
		fmt.Fprintf(&b, "pseudonymization:\n  key_file: pseudonym.key\n")
		fmt.Fprintf(&b, "audit:\n  key_file: audit.key\n")
		n.config = filepath.Join(n.dir, "gateway.yaml")
		if err := os.WriteFile(n.config, []byte(b.String()), 0o600); err != nil {
			return nil, err
		}
	}
	return nodes, nil
}

func layoutVault(nodes []*node, certDir, policyDir string, vds map[string]*vaultDomain) error {
	for _, n := range nodes {
		if err := os.MkdirAll(n.dir, 0o700); err != nil {
			return err
		}
		// The auditor of step 8 trusts only the published verifier key.
		n.verifierFile = filepath.Join(n.dir, "audit-verifier.pub")
		if err := os.WriteFile(n.verifierFile, []byte(vds[n.domain].setup.VerifierKey+"\n"), 0o644); err != nil {
			return err
		}
		var b strings.Builder
		fmt.Fprintf(&b, "# Demo gateway of %s, written by `borderlink demo --vault-bin`.\n", n.domain)
		fmt.Fprintf(&b, "trust_domain: %s\nlisten: %s\n", n.domain, n.addr)
		vc, err := vaultConfig(n, nodes, certDir, vds)
		if err != nil {
			return err
		}
		b.WriteString(vc)
		fmt.Fprintf(&b, "store:\n  sqlite:\n    path: gateway.db\n")
		fmt.Fprintf(&b, "policy:\n  dir: %s\n", policyDir)
		n.config = filepath.Join(n.dir, "gateway.yaml")
		if err := os.WriteFile(n.config, []byte(b.String()), 0o600); err != nil {
			return err
		}
	}
	return nil
}

func start(ctx context.Context, exe string, n *node) error {
	logf, err := os.Create(filepath.Join(n.dir, "gateway.log"))
	if err != nil {
		return err
	}
	// Not exec.CommandContext: shutdown must be a SIGTERM and a wait, not
	// a kill, so the gateways' graceful stop is part of the demo.
	cmd := exec.Command(exe, "serve", "--config", n.config, "--log-format", "json")
	cmd.Stdout, cmd.Stderr = logf, logf
	childproc.DieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start gateway %s: %w", n.domain, err)
	}
	n.cmd = cmd
	n.done = make(chan error, 1)
	go func() { n.done <- cmd.Wait(); logf.Close() }()
	return nil
}

func (n *node) connect(ctx context.Context, certDir string) error {
	cc, _, err := client.Dial(ctx, client.Options{
		Address:    n.addr,
		CertFile:   filepath.Join(certDir, n.domain, "system-cli.pem"),
		KeyFile:    filepath.Join(certDir, n.domain, "system-cli-key.pem"),
		BundleFile: filepath.Join(certDir, "bundle", n.domain+".pem"),
	})
	if err != nil {
		return fmt.Errorf("connect to %s: %w", n.domain, err)
	}
	n.conn = cc
	return nil
}

func (n *node) waitHealthy(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	hc := healthpb.NewHealthClient(n.conn)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		select {
		case err := <-n.done:
			return fmt.Errorf("gateway %s exited during start (%v); see %s", n.domain, err, filepath.Join(n.dir, "gateway.log"))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gateway %s not healthy after 30s (last error: %v); see %s", n.domain, err, filepath.Join(n.dir, "gateway.log"))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stopAll asks every gateway to stop (SIGTERM, graceful) and kills any
// that has not exited after 15 s.
func stopAll(nodes []*node, logger *slog.Logger) error {
	var errs []error
	for _, n := range nodes {
		if n.conn != nil {
			n.conn.Close()
		}
		if n.cmd != nil && n.cmd.Process != nil {
			_ = n.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, n := range nodes {
		if n.cmd == nil {
			continue
		}
		select {
		case err := <-n.done:
			if err != nil {
				errs = append(errs, fmt.Errorf("gateway %s exited with %v; see %s", n.domain, err, filepath.Join(n.dir, "gateway.log")))
			}
		case <-time.After(15 * time.Second):
			logger.Warn("gateway did not stop in time; killing", "domain", n.domain)
			_ = n.cmd.Process.Kill()
			<-n.done
			errs = append(errs, fmt.Errorf("gateway %s did not stop within 15s", n.domain))
		}
	}
	return errors.Join(errs...)
}

func rel(base, path string) string {
	if r, err := filepath.Rel(base, path); err == nil {
		return filepath.Join(filepath.Base(base), r)
	}
	return path
}
