package bench

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"google.golang.org/protobuf/proto"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/policy"
	storepkg "github.com/borderlink/borderlink/internal/store"
	"github.com/borderlink/borderlink/internal/store/sqlite"
	"github.com/borderlink/borderlink/policies"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// bareDSN opens path with the durability settings the store uses for its
// writer: WAL, synchronous=FULL (fsync on every commit).
func bareDSN(path, sync string) string {
	q := url.Values{"_pragma": {"busy_timeout(10000)", "journal_mode(WAL)", "synchronous(" + sync + ")"}}
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(path), RawQuery: q.Encode()}).String()
}

const bareAuditTable = `CREATE TABLE IF NOT EXISTS audit_records (
    seq INTEGER NOT NULL PRIMARY KEY, time INTEGER NOT NULL, request_id TEXT NOT NULL,
    side INTEGER NOT NULL, decision INTEGER NOT NULL, caller_id TEXT NOT NULL,
    action TEXT NOT NULL, agreement_id TEXT NOT NULL, record BLOB NOT NULL) STRICT`

// typicalAuditRecord is the provider record of an allowed 1 KB pull, the
// record the audit and memory scenarios append.
func typicalAuditRecord(ctx context.Context) (*blv1.AuditRecord, error) {
	engine, err := policy.NewEngine(ctx, provider, policies.FS, nil)
	if err != nil {
		return nil, err
	}
	pl, err := makePayload("1KB", 1024, 1, 1)
	if err != nil {
		return nil, err
	}
	return auditTemplate(engine, pl.decls[0])
}

// auditGoalRate is the verifiable-audit issue's append goal, records/s on
// the 2-core reference machine.
const auditGoalRate = 20000

// runAudit is scenario 3: AppendAudit of the SQLite store as it is at this
// commit, with concurrent appenders, against a bare insert loop (one
// transaction and fsync per record, same table shape and pragmas).
func runAudit(ctx context.Context, cfg *Config, dir string, p *pki, sc *Scenario) error {
	tmpl, err := typicalAuditRecord(ctx)
	if err != nil {
		return err
	}
	st, err := sqlite.Open(ctx, filepath.Join(dir, "store.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	appendOp := func(ctx context.Context) error {
		_, err := st.AppendAudit(ctx, freshAudit(tmpl))
		return err
	}

	db, err := sql.Open("sqlite", bareDSN(filepath.Join(dir, "bare.db"), "FULL"))
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, bareAuditTable); err != nil {
		return err
	}
	var seq int64
	insert := func(ctx context.Context) error {
		rec := freshAudit(tmpl)
		seq++
		rec.Seq, rec.Version = uint64(seq), 1
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(rec)
		if err != nil {
			return err
		}
		_, err = db.ExecContext(ctx, `INSERT INTO audit_records (seq, time, request_id, side, decision, caller_id, action, agreement_id, record)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, seq, rec.GetTime().AsTime().UnixNano(), rec.GetRequestId(), int64(rec.GetSide()),
			int64(rec.GetDecision()), rec.GetCallerId(), rec.GetAction(), rec.GetAgreementId(), b)
		return err
	}
	size := proto.Size(tmpl)
	sc.note("Audit record: %d bytes encoded (a provider record of an allowed pull, policy input included). Store: sqlite.Store.AppendAudit as it is at this commit, in three configurations timed in turn on one store: a closed loop of %d concurrent appenders, one of four times as many, and an open loop offering %d appends/s (one goroutine per append, latency from its intended start). A closed loop of N appenders can reach at most N ÷ the time of one group commit, so it shows the rate at that concurrency; the open loop shows whether the store keeps up with the goal's rate, which is what the goal asks. Group commits, their sizes and the time spent waiting, building and committing are counted by the store (Store.AppendStats, also the gateway's borderlink_audit_commits_total, borderlink_audit_batch_size, borderlink_audit_queue_seconds, borderlink_audit_build_seconds and borderlink_audit_sync_seconds) over each configuration's timed runs; each commit is one fsync of the WAL. Baseline: one goroutine, one INSERT per autocommit transaction, WAL + synchronous=FULL, same columns, no triggers.", size, cfg.Appenders, auditGoalRate)

	warm(ctx, cfg, cfg.Appenders, appendOp)
	warm(ctx, cfg, 1, insert)
	// Group commit shares one fsync among the appends waiting for it, so
	// its throughput grows with the number of concurrent exchanges; a
	// gateway at the rate has many more in flight than 16.
	busy := 4 * cfg.Appenders
	store := &Result{ID: "audit/store-append", Target: fmt.Sprintf("store.AppendAudit, %d appenders", cfg.Appenders), Mode: "closed", Unit: "record"}
	storeBusy := &Result{ID: "audit/store-append-busy", Target: fmt.Sprintf("store.AppendAudit, %d appenders", busy), Mode: "closed", Unit: "record"}
	storeOpen := &Result{ID: "audit/store-append-open", Target: fmt.Sprintf("store.AppendAudit, open loop at %d/s", auditGoalRate), Mode: "open", Rate: auditGoalRate, Unit: "record"}
	bare := &Result{ID: "audit/bare-insert", Target: "bare insert loop", Baseline: true, Mode: "closed", Unit: "record"}
	commits := map[*Result]*commitCount{store: {}, storeBusy: {}, storeOpen: {}}
	interleave(ctx, cfg, sc, measurement{store, commits[store].counting(st, closedLoop(cfg.Appenders, cfg.dur(), appendOp))},
		measurement{storeBusy, commits[storeBusy].counting(st, closedLoop(busy, cfg.dur(), appendOp))},
		measurement{storeOpen, commits[storeOpen].counting(st, openLoop(auditGoalRate, cfg.dur(), appendOp))},
		measurement{bare, closedLoop(1, cfg.dur(), insert)})
	sc.ratio("appends/s store (concurrent) / bare insert loop (group commit should make this > 1)", store, bare, "throughput", "", 0, "")
	sc.ratio(fmt.Sprintf("appends/s store (%d appenders) / bare insert loop", busy), storeBusy, bare, "throughput", "", 0, "")
	// The goal is a rate the store must sustain: offered at that rate,
	// open loop, it must keep up. A closed loop of N appenders measures
	// the rate at that concurrency instead, which is at most N / (time of
	// one group commit): reported, not held to the goal.
	if len(storeOpen.Runs) > 0 {
		keptUp(sc, storeOpen, cfg.dur())
	}
	for _, r := range []*Result{store, storeBusy, storeOpen} {
		if len(r.Runs) == 0 {
			continue
		}
		if r != storeOpen {
			sc.addRatio(fmt.Sprintf("appends/s, %s (absolute; bounded by appenders ÷ group commit time)", r.Target), r.Median.Throughput, r.Spread["throughput"], "", 0, "")
		}
		c := commits[r]
		var secs float64
		for _, run := range r.Runs {
			secs += run.Seconds
		}
		sc.addRatio(fmt.Sprintf("%s: group commits (fsyncs)/s, all timed runs together", r.Target), float64(c.Commits)/secs, 0, "", 0, "")
		sc.addRatio(fmt.Sprintf("%s: mean appends per group commit, all timed runs together", r.Target), c.MeanBatch(), 0, "", 0, "")
		sc.note("Batch sizes, %s, over its timed runs: %s. %s", r.Target, c.distribution(), c.phases())
	}

	// A Merkle log must not slow down as it grows: append again to a log
	// that already holds many records.
	if big := cfg.AuditRecs / 10; big > 0 {
		path := filepath.Join(dir, "big.db")
		if err := fillAudit(ctx, path, big, tmpl); err != nil {
			return err
		}
		bst, err := sqlite.Open(ctx, path)
		if err != nil {
			return err
		}
		defer bst.Close()
		bigOp := func(ctx context.Context) error {
			_, err := bst.AppendAudit(ctx, freshAudit(tmpl))
			return err
		}
		warm(ctx, cfg, cfg.Appenders, bigOp)
		grown := repeat(ctx, cfg, sc, &Result{ID: "audit/store-append-grown", Target: fmt.Sprintf("store.AppendAudit, log of %d", big), Mode: "closed", Unit: "record"},
			closedLoop(cfg.Appenders, cfg.dur(), bigOp))
		sc.ratio(fmt.Sprintf("appends/s into a log of %d records / into a new log", big), grown, store, "throughput", "", 0, "")
	}
	if err := runVerify(ctx, cfg, sc, st); err != nil {
		return err
	}
	return profileScenario(ctx, cfg, sc, closedLoop(cfg.Appenders, cfg.dur(), appendOp))
}

// Kept-up rule for the open loop at the goal's rate: the store keeps up
// when, in every run, it completes at least keptUpShare of the offered
// appends per second, none fails or is dropped, the p99 stays within
// keptUpP99, and the last append completes within keptUpP99 of the run's
// end. A store just short of the rate still completes ~95% of it in a
// short run, but its queue grows all run long; the drain bound catches
// that directly, whatever the run's length, while a steady queue keeps
// every append within a few group commits.
const (
	keptUpShare = 0.95
	keptUpP99   = 20 * time.Millisecond
)

// keptUp adds the append goal's verdict for the open loop r, whose runs
// offered appends for d each.
func keptUp(sc *Scenario, r *Result, d time.Duration) {
	var errs int64
	met := len(r.Runs) > 0
	worstP99, worstDrain := 0.0, 0.0
	for _, run := range r.Runs {
		errs += run.Errors
		drain := max(0, run.Seconds-d.Seconds())
		worstP99, worstDrain = max(worstP99, run.P99), max(worstDrain, drain)
		met = met && run.Errors == 0 && run.Throughput >= keptUpShare*r.Rate &&
			run.P99 <= float64(keptUpP99.Microseconds()) && drain <= keptUpP99.Seconds()
	}
	sc.Ratios = append(sc.Ratios, Ratio{
		Name:  fmt.Sprintf("appends/s at %.0f/s offered, open loop (absolute; keeps up: see the goal)", r.Rate),
		Value: r.Median.Throughput, Spread: r.Spread["throughput"], Met: &met,
		Goal: fmt.Sprintf("keeps up with %.0f/s in every run: ≥ %.0f%% done, none failed, p99 and drain ≤ %v", r.Rate, 100*keptUpShare, keptUpP99),
	})
	sc.note("Open loop at %.0f appends/s: median %.0f/s done; worst run p99 %.2f ms, last append done %.1f ms after the last arrival was due; %d appends failed or dropped over all runs.",
		r.Rate, r.Median.Throughput, worstP99/1000, worstDrain*1000, errs)
}

// commitCount adds up a store's group commits over the timed runs of one
// configuration.
type commitCount struct{ storepkg.AppendStats }

// counting wraps loop so that the store's commits during each run are
// added to c.
func (c *commitCount) counting(st *sqlite.Store, loop func(context.Context) sample) func(context.Context) sample {
	return func(ctx context.Context) sample {
		before := st.AppendStats()
		s := loop(ctx)
		c.AppendStats = c.Add(st.AppendStats().Sub(before))
		return s
	}
}

// phases says where an append's wait went, from the store's own timings
// (read from histograms with √2 steps, so each figure is within a step).
func (c *commitCount) phases() string {
	if c.Commits == 0 {
		return ""
	}
	ms := func(l storepkg.Latencies, q float64) string {
		v := l.Quantile(q)
		if v >= storepkg.LatencyBounds[len(storepkg.LatencyBounds)-1] {
			return fmt.Sprintf("≥ %.0f", 1000*v) // beyond the last bound
		}
		return fmt.Sprintf("%.2f", 1000*v)
	}
	return fmt.Sprintf("Store's timings (estimates from histograms with √2 steps), p50 / p99 in ms: waiting to be taken into a batch %s / %s (mostly the commit before), building a batch (the writer lock, effects, sequencing, tree hashes, inserts) %s / %s, COMMIT (WAL write and fsync) %s / %s.",
		ms(c.Queue, .5), ms(c.Queue, .99), ms(c.Build, .5), ms(c.Build, .99), ms(c.Sync, .5), ms(c.Sync, .99))
}

// distribution is the share of commits per batch size bucket, e.g.
// "1: 3%, 2: 10%, 3–4: 40%, 5–8: 47%".
func (c *commitCount) distribution() string {
	var parts []string
	lo := 1
	for i, n := range c.BatchSizes {
		hi := storepkg.BatchSizeBounds[i]
		if n > 0 {
			label := fmt.Sprint(hi)
			if lo < hi {
				label = fmt.Sprintf("%d–%d", lo, hi)
			}
			parts = append(parts, fmt.Sprintf("%s: %.0f%%", label, 100*float64(n)/float64(c.Commits)))
		}
		lo = hi + 1
	}
	if len(parts) == 0 {
		return "no commits"
	}
	return strings.Join(parts, ", ")
}

// runVerify measures audit.VerifyLog (what `borderlink audit verify`
// runs) over every record the store now holds, with one signed checkpoint
// of the whole log, against hashing the same leaves with SHA-256 once
// (the least any verification must do).
func runVerify(ctx context.Context, cfg *Config, sc *Scenario, st *sqlite.Store) error {
	size, err := st.AuditTreeSize(ctx)
	if err != nil {
		return err
	}
	leaves, err := st.AuditLeaves(ctx, 0, size)
	if err != nil {
		return err
	}
	origin := audit.Origin(provider)
	skey, vkey, err := audit.GenerateKey(origin)
	if err != nil {
		return err
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		return err
	}
	verifier, err := audit.NewVerifier(vkey, origin)
	if err != nil {
		return err
	}
	cp, err := audit.NewCheckpointer(st, signer, origin, nil)
	if err != nil {
		return err
	}
	msg, err := cp.Sign(ctx)
	if err != nil {
		return err
	}
	in := audit.LogInput{Leaves: leaves, Checkpoints: [][]byte{msg}, Verifier: verifier}
	if _, err := audit.VerifyLog(in); err != nil {
		return fmt.Errorf("bench: the benchmark's own audit log does not verify: %w", err)
	}
	once := func(f func() error) func(context.Context) sample {
		return func(context.Context) sample {
			t0 := time.Now()
			err := f()
			s := sample{ops: int64(len(leaves)), elapsed: time.Since(t0)}
			if err != nil {
				s.ops, s.errs = 0, 1
			}
			return s
		}
	}
	verify := &Result{ID: "audit/verify", Target: "audit.VerifyLog", Mode: "single", Unit: "record"}
	hash := &Result{ID: "audit/sha256-leaves", Target: "SHA-256 of every leaf", Baseline: true, Mode: "single", Unit: "record"}
	interleave(ctx, cfg, sc,
		measurement{verify, once(func() error { _, err := audit.VerifyLog(in); return err })},
		measurement{hash, once(func() error {
			for _, l := range leaves {
				sha256.Sum256(l)
			}
			return nil
		})})
	sc.note("Verify: audit.VerifyLog over the %d records appended above (leaves already in memory, as `audit verify` has them after reading an export), one signed checkpoint: %.1f million records/min (median).",
		len(leaves), 60*verify.Median.Throughput/1e6)
	sc.ratio("verify records/s / SHA-256 of the same leaves", verify, hash, "throughput", "", 0, "")
	return nil
}

// fillAudit puts n audit records into the store file at path (created and
// migrated by sqlite.Open first) with large transactions straight into
// audit_records: the same table, columns and record bytes AppendAudit
// writes, but without one fsync per record, which would take hours for
// 10⁶ records; then the store builds the tree hashes on its next Open.
// The file must be new.
func fillAudit(ctx context.Context, path string, n int, tmpl *blv1.AuditRecord) error {
	st, err := sqlite.Open(ctx, path)
	if err != nil {
		return err
	}
	if err := st.Close(); err != nil {
		return err
	}
	db, err := sql.Open("sqlite", bareDSN(path, "OFF"))
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	var next int64
	if err := db.QueryRowContext(ctx, "SELECT COALESCE(MAX(seq), 0) + 1 FROM audit_records").Scan(&next); err != nil {
		return fmt.Errorf("fill audit: %w", err)
	}
	const batch = 20000
	marshal := proto.MarshalOptions{Deterministic: true}
	for done := 0; done < n; {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO audit_records (seq, time, request_id, side, decision, caller_id, action, agreement_id, record)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			tx.Rollback()
			return fmt.Errorf("fill audit: %w (has the audit_records schema changed? update fillAudit)", err)
		}
		for i := 0; i < batch && done < n; i, done = i+1, done+1 {
			rec := freshAudit(tmpl)
			rec.Seq, rec.Version = uint64(next), 1
			b, err := marshal.Marshal(rec)
			if err != nil {
				tx.Rollback()
				return err
			}
			if _, err := stmt.ExecContext(ctx, next, rec.GetTime().AsTime().UnixNano(), rec.GetRequestId(), int64(rec.GetSide()),
				int64(rec.GetDecision()), rec.GetCallerId(), rec.GetAction(), rec.GetAgreementId(), b); err != nil {
				tx.Rollback()
				return fmt.Errorf("fill audit seq %d: %w", next, err)
			}
			next++
		}
		stmt.Close()
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	if err := db.Close(); err != nil {
		return err
	}
	// Opening the store once builds the Merkle tree of the filled records
	// (the store's own backfill of records without tree hashes), so the
	// measured processes open a consistent log.
	st, err = sqlite.Open(ctx, path)
	if err != nil {
		return fmt.Errorf("fill audit: reopen: %w", err)
	}
	return st.Close()
}
