package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/borderlink/borderlink/internal/config"
	"github.com/borderlink/borderlink/internal/gateway"
	"github.com/borderlink/borderlink/internal/policy"
	"github.com/borderlink/borderlink/internal/store/sqlite"
	"github.com/borderlink/borderlink/policies"
)

// memSample is what one memory case reports.
type memSample struct {
	RSS  float64 `json:"rss_mib"`  // VmRSS after GC and returning freed memory to the OS
	Heap float64 `json:"heap_mib"` // Go heap in use
}

// memCase builds a serving gateway (engine with agreements generated
// agreements on top of the shipped ones; the store at db, or a fresh one),
// opens one partner connection, and reads the process's memory.
func memCase(ctx context.Context, agreements int, db string) (memSample, error) {
	p, err := newPKI()
	if err != nil {
		return memSample{}, err
	}
	var fsys fs.FS = policies.FS
	if agreements > 0 {
		if fsys, err = policyFS(agreements); err != nil {
			return memSample{}, err
		}
	}
	engine, err := policy.NewEngine(ctx, provider, fsys, nil)
	if err != nil {
		return memSample{}, err
	}
	if db == "" {
		dir, err := os.MkdirTemp("", "borderlink-bench-mem-")
		if err != nil {
			return memSample{}, err
		}
		defer os.RemoveAll(dir)
		db = filepath.Join(dir, "gateway.db")
	}
	st, err := sqlite.Open(ctx, db)
	if err != nil {
		return memSample{}, err
	}
	defer st.Close()
	srv, err := serveGateway(ctx, p, st, engine)
	if err != nil {
		return memSample{}, err
	}
	defer srv.stop()
	cc, err := dial(ctx, srv.addr, p.gatewayCreds())
	if err != nil {
		return memSample{}, err
	}
	defer cc.Close()
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
		return memSample{}, err
	}
	runtime.GC()
	debug.FreeOSMemory()
	time.Sleep(100 * time.Millisecond)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s := memSample{RSS: float64(rssBytes()) / (1 << 20), Heap: float64(ms.HeapInuse) / (1 << 20)}
	runtime.KeepAlive(engine)
	return s, nil
}

// MemChild is `borderlink bench mem-child`: one memory case in a fresh
// process, reported as one JSON line on stdout. Not for people.
func MemChild(ctx context.Context, args []string, stdout io.Writer) error {
	fl := flag.NewFlagSet("bench mem-child", flag.ContinueOnError)
	agreements := fl.Int("agreements", 0, "generated agreements")
	db := fl.String("db", "", "SQLite file (default: a fresh one)")
	if err := fl.Parse(args); err != nil {
		return err
	}
	gateway.SetGCTarget(config.DefaultGCPercent) // as serve and the parent run
	s, err := memCase(ctx, *agreements, *db)
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(s)
}

func memChild(ctx context.Context, exe string, agreements int, db string) (memSample, error) {
	args := []string{"bench", "mem-child", "--agreements", strconv.Itoa(agreements)}
	if db != "" {
		args = append(args, "--db", db)
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return memSample{}, fmt.Errorf("%s %v: %w: %s", exe, args, err, stderr.String())
	}
	var s memSample
	if err := json.Unmarshal(out, &s); err != nil {
		return memSample{}, fmt.Errorf("mem-child output %q: %w", truncate(out, 200), err)
	}
	return s, nil
}

// runMemory is scenario 6: RSS of a serving gateway, idle, with many
// agreements, and over a large audit log.
func runMemory(ctx context.Context, cfg *Config, dir string, p *pki, sc *Scenario) error {
	tmpl, err := typicalAuditRecord(ctx)
	if err != nil {
		return err
	}
	db := filepath.Join(dir, "audit.db")
	t0 := time.Now()
	if err := fillAudit(ctx, db, cfg.AuditRecs, tmpl); err != nil {
		return err
	}
	var dbSize int64
	for _, suffix := range []string{"", "-wal"} {
		if fi, err := os.Stat(db + suffix); err == nil {
			dbSize += fi.Size()
		}
	}
	sc.note("Audit log of %d records (%.0f MiB on disk) filled in %s by a bulk insert (large transactions, synchronous=OFF) straight into audit_records with the record bytes AppendAudit would write, then one sqlite.Open so the store builds the Merkle tree hashes itself: one fsync per record would take far too long. Documented shortcut; see fillAudit.",
		cfg.AuditRecs, float64(dbSize)/(1<<20), time.Since(t0).Round(100*time.Millisecond))

	type memcase struct {
		id         string
		agreements int
		db         string
	}
	cases := []memcase{{"idle", 0, ""}}
	for _, n := range cfg.MemAgreements {
		cases = append(cases, memcase{fmt.Sprintf("agreements-%d", n), n, ""})
	}
	cases = append(cases, memcase{fmt.Sprintf("audit-%d", cfg.AuditRecs), 0, db})
	how := "in this process (RSS includes the harness; use the borderlink binary for clean numbers)"
	if cfg.Exe != "" {
		how = "each in a fresh child process of the same binary (`borderlink bench mem-child`), so RSS is the gateway's alone"
	}
	sc.note("Each case: a gateway serving on loopback with one open partner connection, after GC and FreeOSMemory; measured %s. Idle uses the shipped agreements; agreements-N adds N generated ones.", how)
	results := map[string]*Result{}
	for _, c := range cases {
		r := &Result{ID: "memory/" + c.id, Target: c.id, Mode: "single", Unit: "MiB", Primary: "value"}
		var heaps []float64
		for range cfg.Runs {
			var s memSample
			var err error
			if cfg.Exe != "" {
				s, err = memChild(ctx, cfg.Exe, c.agreements, c.db)
			} else {
				s, err = memCase(ctx, c.agreements, c.db)
			}
			if err != nil {
				return fmt.Errorf("memory %s: %w", c.id, err)
			}
			r.Runs = append(r.Runs, Stats{Value: s.RSS, RSS: s.RSS})
			heaps = append(heaps, s.Heap)
		}
		r.summarize()
		sc.Results = append(sc.Results, r)
		results[c.id] = r
		sc.note("%s: Go heap in use %.1f MiB (median).", c.id, median(heaps))
		cfg.logf("  %-36s RSS %6.1f MiB  heap %6.1f MiB", r.ID, r.Median.Value, median(heaps))
	}
	idle := results["idle"]
	for _, c := range cases[1:] {
		sc.ratio("RSS "+c.id+" / idle", results[c.id], idle, "value", "", 0, "")
	}
	return nil
}
