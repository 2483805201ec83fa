package bench

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/gateway"
	"github.com/borderlink/borderlink/internal/identity"
	"github.com/borderlink/borderlink/internal/keys"
	"github.com/borderlink/borderlink/internal/keys/vault"
	"github.com/borderlink/borderlink/internal/keys/vault/devserver"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// EnvVaultBin names the Vault binary for `borderlink bench` when
// --vault-bin is not given: the variable `make test` and the Vault tests
// use.
const EnvVaultBin = "BORDERLINK_VAULT_BIN"

// vaultRate is the offered load of the exchange-latency goal: p99 added
// by transit signing at 500 req/s.
const vaultRate = 500

// vaultSignConcurrency are the concurrent signers of the signature-rate
// part: 1 is the checkpointer (it signs one checkpoint at a time), 32 a
// busy gateway's concurrent receipts.
var vaultSignConcurrency = []int{1, 32}

// runVault is scenario 9: audit signatures through a real Vault dev
// server's transit engine, one request per signature and batched
// (vault.BatchSigner, what `serve` uses), against a local Ed25519 key;
// then the pull exchange with its receipts signed each way.
func runVault(ctx context.Context, cfg *Config, dir string, p *pki, sc *Scenario) error {
	bin := cfg.VaultBin
	if bin == "" {
		return fmt.Errorf("bench: vault: no Vault binary: pass --vault-bin or set %s (`make bench` builds bin/vault with `make vault-bin` and passes it)", EnvVaultBin)
	}
	srv, err := startBenchVault(ctx, bin, filepath.Join(dir, "vault"))
	if err != nil {
		return err
	}
	defer srv.Stop()
	origin := audit.Origin(provider)
	setup, err := vault.InitDev(ctx, srv.Addr, srv.RootToken, vault.InitDevOptions{
		TrustDomain: provider, SignerName: origin, SecretIDFile: filepath.Join(dir, "vault-secret-id"),
	})
	if err != nil {
		return fmt.Errorf("bench: vault: set up dev server: %w", err)
	}
	client, err := vault.New(ctx, setup.Config, vault.Options{})
	if err != nil {
		return fmt.Errorf("bench: vault: %w", err)
	}
	defer client.Close()
	transit, err := client.NewSigner(ctx, origin)
	if err != nil {
		return fmt.Errorf("bench: vault: %w", err)
	}
	batched := vault.NewBatchSigner(transit, vault.BatchOptions{})
	skey, _, err := audit.GenerateKey(origin)
	if err != nil {
		return fmt.Errorf("bench: vault: local key: %w", err)
	}
	local, err := note.NewSigner(skey)
	if err != nil {
		return fmt.Errorf("bench: vault: local key: %w", err)
	}
	sc.note("Vault %s dev server (`%s server -dev`, in-memory storage) on loopback, set up by `vault.InitDev` as `borderlink vault init-dev` does: the gateway's AppRole token and least-privilege policy, transit Ed25519 key `%s`. *transit*: `vault.Signer`, one `transit/sign` request per signature; *batched*: `vault.BatchSigner` (what `borderlink serve` uses; at most %d requests in flight, up to %d signatures each via `batch_input`); *local*: an Ed25519 note signer in process (the file key of a gateway without Vault). Every transit signature is checked against the public key before use. The Vault server is another process on the same cores: its CPU is in neither CPU/op nor *others' CPU* (taken out run by run) but, per op, in the *Vault CPU* columns above.",
		vaultVersion(ctx, srv.Bin), filepath.Base(srv.Bin), setup.Config.Transit.Key, vault.DefaultBatchInFlight, vault.DefaultBatchMax)

	if err := vaultSignRates(ctx, cfg, sc, srv, local, transit, batched); err != nil {
		return err
	}
	return vaultExchange(ctx, cfg, dir, p, sc, srv, local, transit, batched)
}

// vaultSignRates is part a: signatures/s of each signer at each
// concurrency, interleaved run by run.
func vaultSignRates(ctx context.Context, cfg *Config, sc *Scenario, srv *benchVault, local note.Signer, transit *vault.Signer, batched *vault.BatchSigner) error {
	var idx atomic.Int64
	sign := func(s note.Signer) op {
		return func(context.Context) error {
			i := idx.Add(1)
			var h tlog.Hash
			h[0], h[1] = byte(i), byte(i>>8)
			_, err := audit.SignReceipt(s, audit.Receipt{Origin: s.Name(), Index: i, LeafHash: h, Time: time.Now(),
				RequestID: newRequestID(), Caller: identity.GatewayID(recipient).String()})
			return err
		}
	}
	targets := []struct {
		name string
		s    note.Signer
	}{{"local", local}, {"transit", transit}, {"batched", batched}}
	for _, c := range vaultSignConcurrency {
		var ms []measurement
		res := map[string]*Result{}
		vcpu := map[string]*[]vaultRun{}
		for _, t := range targets {
			o := sign(t.s)
			warm(ctx, cfg, c, o)
			r := &Result{ID: fmt.Sprintf("vault/sign/%s/c%d", t.name, c), Target: fmt.Sprintf("%s, %d signer(s)", t.name, c),
				Baseline: t.name == "local", Mode: "closed", Unit: "sig"}
			res[t.name], vcpu[t.name] = r, new([]vaultRun)
			ms = append(ms, measurement{r, srv.cpuPerOp(closedLoop(c, cfg.dur(), o), vcpu[t.name])})
		}
		before := batched.Stats()
		interleave(ctx, cfg, sc, ms...)
		after := batched.Stats()
		for name, r := range res {
			setVaultRuns(r, *vcpu[name])
		}
		what := fmt.Sprintf("%d signer(s)", c)
		if c == 1 {
			what += ", as the checkpointer signs"
		}
		sc.ratio(fmt.Sprintf("signatures/s transit, one request each / local key (%s)", what), res["transit"], res["local"], "throughput", "", 0, "")
		sc.ratio(fmt.Sprintf("signatures/s transit, batched / local key (%s)", what), res["batched"], res["local"], "throughput", "", 0, "")
		if c > 1 {
			sc.ratio(fmt.Sprintf("signatures/s transit, batched / one request each (%s)", what), res["batched"], res["transit"], "throughput", "", 0, "")
			sc.ratio(fmt.Sprintf("Vault server CPU per signature, batched / one request each (%s)", what), res["batched"], res["transit"], "value", "", 0, "")
		}
		if n := after.Requests - before.Requests; n > 0 {
			sc.note("%d signer(s): the batched signer sent %d transit requests for %d signatures in the timed runs (%.1f per request; largest batch so far %d).",
				c, n, after.Signatures-before.Signatures, float64(after.Signatures-before.Signatures)/float64(n), after.Largest)
		}
	}
	return ctx.Err()
}

// vaultExchange is part b: the pull exchange (1 KB declarations, the pull
// scenario's fixture and load generator) at vaultRate req/s open loop and
// closed loop, by three gateways that differ only in their signer.
func vaultExchange(ctx context.Context, cfg *Config, dir string, p *pki, sc *Scenario, srv *benchVault, local note.Signer, transit *vault.Signer, batched *vault.BatchSigner) error {
	type target struct {
		name         string
		audit        gateway.AuditOptions
		call         op
		closed, open *Result
	}
	// delegated is what `borderlink serve` does with Vault: live receipts
	// signed by a receipt key that transit certified (ADR 0011), the
	// checkpoints by transit, batched.
	rk, err := keys.NewReceiptKeys(ctx, batched, keys.DefaultReceiptKeyTTL, nil, nil)
	if err != nil {
		return fmt.Errorf("bench: vault: %w", err)
	}
	defer rk.Stop()
	targets := []*target{{name: "local", audit: gateway.AuditOptions{Signer: local}},
		{name: "delegated", audit: gateway.AuditOptions{Signer: batched, ReceiptKeys: rk}},
		{name: "batched", audit: gateway.AuditOptions{Signer: batched}}, {name: "transit", audit: gateway.AuditOptions{Signer: transit}}}
	for _, t := range targets {
		tdir := filepath.Join(dir, "gateway-"+t.name)
		if err := os.MkdirAll(tdir, 0o755); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		f, err := newSignedPullFixture(ctx, tdir, p, pullPayloads[:1], cfg.Records, false, nil, t.audit)
		if err != nil {
			return err
		}
		defer f.close()
		pool, err := newClientPool(ctx, f.gw.addr, p.gatewayCreds(), cfg.Conns)
		if err != nil {
			return err
		}
		defer pool.close()
		pl := f.payloads[0]
		t.call = func(ctx context.Context) error {
			resp, err := pool.exchange().GetDeclaration(ctx, &blv1.GetDeclarationRequest{Id: pl.id(), Purpose: purpose})
			if err == nil && resp.GetReceipt() == "" {
				err = errors.New("bench: answer without a receipt")
			}
			return err
		}
		what := "pull, receipts by " + t.name
		t.closed = &Result{ID: "vault/pull/" + t.name + "/closed", Target: what, Baseline: t.name == "local", Payload: pl.name, Mode: "closed", Unit: "req"}
		t.open = &Result{ID: fmt.Sprintf("vault/pull/%s/open@%d", t.name, vaultRate), Target: what, Baseline: t.name == "local",
			Payload: pl.name, Mode: "open", Rate: vaultRate, Unit: "req", Primary: "p99_us"}
		warm(ctx, cfg, cfg.Concurrency, t.call)
	}
	var closed, open []measurement
	vcpu := map[*Result]*[]vaultRun{}
	for _, t := range targets {
		vcpu[t.closed], vcpu[t.open] = new([]vaultRun), new([]vaultRun)
		closed = append(closed, measurement{t.closed, srv.cpuPerOp(closedLoop(cfg.Concurrency, cfg.dur(), t.call), vcpu[t.closed])})
		open = append(open, measurement{t.open, srv.cpuPerOp(openLoop(vaultRate, cfg.dur(), t.call), vcpu[t.open])})
	}
	before := batched.Stats()
	interleave(ctx, cfg, sc, open...)
	mid := batched.Stats()
	interleave(ctx, cfg, sc, closed...)
	after := batched.Stats()
	for r, v := range vcpu {
		setVaultRuns(r, *v)
	}
	loc, del, bat, tra := targets[0], targets[1], targets[2], targets[3]
	ms := func(a, b float64) float64 { return (a - b) / 1000 }
	sc.derived(fmt.Sprintf("pull 1KB: p99 added at %d req/s by Vault-backed receipts as `serve` signs them (receipt key certified by transit), ms (p99 − local key's p99)", vaultRate), del.open, loc.open, "p99_us", ms, "<=", 2, "≤ 2 ms")
	sc.derived(fmt.Sprintf("pull 1KB: p50 added at %d req/s by receipts of a transit-certified receipt key, ms", vaultRate), del.open, loc.open, "p50_us", ms, "", 0, "")
	sc.ratio(fmt.Sprintf("pull 1KB: throughput with a transit-certified receipt key / local key (closed loop, %d workers)", cfg.Concurrency), del.closed, loc.closed, "throughput", "", 0, "")
	sc.derived(fmt.Sprintf("pull 1KB: p99 added at %d req/s by batched transit receipts (receipt_key_ttl: 0), ms", vaultRate), bat.open, loc.open, "p99_us", ms, "", 0, "")
	sc.derived(fmt.Sprintf("pull 1KB: p50 added at %d req/s by batched transit receipts, ms", vaultRate), bat.open, loc.open, "p50_us", ms, "", 0, "")
	sc.derived(fmt.Sprintf("pull 1KB: p99 added at %d req/s by one transit request per receipt, ms (for comparison)", vaultRate), tra.open, loc.open, "p99_us", ms, "", 0, "")
	sc.ratio(fmt.Sprintf("pull 1KB: throughput with batched transit receipts / local key (closed loop, %d workers)", cfg.Concurrency), bat.closed, loc.closed, "throughput", "", 0, "")
	sc.ratio(fmt.Sprintf("pull 1KB: throughput with one transit request per receipt / local key (closed loop, %d workers)", cfg.Concurrency), tra.closed, loc.closed, "throughput", "", 0, "")
	sc.ratio(fmt.Sprintf("Vault server CPU per exchange at %d req/s, batched / one request per receipt", vaultRate), bat.open, tra.open, "value", "", 0, "")
	per := func(a, b vault.BatchStats) string {
		if n := b.Requests - a.Requests; n > 0 {
			return fmt.Sprintf("%d requests for %d receipts and checkpoints (%.1f per request)", n, b.Signatures-a.Signatures, float64(b.Signatures-a.Signatures)/float64(n))
		}
		return "no requests"
	}
	sc.note("Exchange: four gateways built alike (own SQLite file, the same 1 KB declarations, %d client connections), differing only in how receipts and checkpoints are signed (checkpoints every %s): *local* key; *delegated*, what `serve` does with Vault: receipts by an in-memory receipt key whose delegation transit signed (valid %s, ADR 0011), checkpoints by the batched transit signer; *batched*: every receipt through the batched transit signer (`vault.transit.receipt_key_ttl: 0`); *transit*: one request per receipt. Each answer must carry a receipt. The batched transit signer (shared by the delegated and batched gateways) sent %s at %d req/s and %s in the closed loop (%d workers).",
		cfg.Conns, audit.DefaultCheckpointInterval, keys.DefaultReceiptKeyTTL, per(before, mid), vaultRate, per(mid, after), cfg.Concurrency)
	return profileScenario(ctx, cfg, sc, closedLoop(cfg.Concurrency, cfg.dur(), bat.call))
}

// vaultRun is what the Vault server used during one timed run.
type vaultRun struct {
	perOp float64 // CPU time per op, µs
	cores float64 // CPU time / wall time
}

// cpuPerOp wraps loop so that each run appends to into the Vault
// server's CPU time (user + system): what signing costs Vault, which runs
// in another process and so is not in CPU/op.
func (v *benchVault) cpuPerOp(loop func(context.Context) sample, into *[]vaultRun) func(context.Context) sample {
	return func(ctx context.Context) sample {
		c0, t0 := v.cpu(), time.Now()
		s := loop(ctx)
		used, wall := v.cpu()-c0, time.Since(t0)
		var r vaultRun
		if s.ops > 0 {
			r.perOp = float64(used.Microseconds()) / float64(s.ops)
		}
		if wall > 0 {
			r.cores = used.Seconds() / wall.Seconds()
		}
		*into = append(*into, r)
		return s
	}
}

// setVaultRuns records, run by run, the Vault server's CPU per op in r's
// Stats.Value and takes it out of OtherCPU (Vault is part of what is
// measured, not a neighbour), then summarizes r again.
func setVaultRuns(r *Result, runs []vaultRun) {
	for i := range r.Runs {
		if i < len(runs) {
			r.Runs[i].Value = runs[i].perOp
			r.Runs[i].OtherCPU = max(0, r.Runs[i].OtherCPU-runs[i].cores)
		}
	}
	r.summarize()
}

// cpu is the Vault server's CPU time so far (utime + stime of
// /proc/PID/stat), 0 if unknown.
func (v *benchVault) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", v.PID()))
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses and
	// may contain spaces: state is field 3, utime 14, stime 15.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / userHZ
}

// benchVault is a Vault dev server started for the scenario.
type benchVault struct {
	*devserver.Server
}

// startBenchVault starts `bin server -dev` on a free loopback port with
// dir as its working directory and HOME (its log: dir/vault.log) and
// waits until it is healthy. The kernel kills it if the bench dies.
func startBenchVault(ctx context.Context, bin, dir string) (*benchVault, error) {
	srv, err := devserver.Start(ctx, bin, devserver.Options{Dir: dir, RootToken: "bench-" + rand.Text()})
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	return &benchVault{srv}, nil
}

// vaultVersion is what `bin version` prints, e.g. "v1.21.0".
func vaultVersion(ctx context.Context, bin string) string {
	out, err := exec.CommandContext(ctx, bin, "version").Output()
	if err != nil {
		return "(version unknown)"
	}
	f := strings.Fields(string(out))
	if len(f) >= 2 {
		return f[1]
	}
	return strings.TrimSpace(string(out))
}
