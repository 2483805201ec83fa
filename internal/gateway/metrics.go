package gateway

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/codes"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/keys/vault"
	"github.com/borderlink/borderlink/internal/store"
)

// metricsTimeout bounds the store reads of one scrape.
const metricsTimeout = 5 * time.Second

// metrics are the gateway's Prometheus metrics, in a registry of its own
// (no global state). Gauges are read at scrape time from the parts that
// own the state — the policy engine, the delivery queues, the audit log,
// the certificate — so they can never drift from what the status calls
// show; only the call counter is kept here.
type metrics struct {
	reg   *prometheus.Registry
	calls *prometheus.CounterVec
}

func newMetrics(g *Gateway) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "borderlink_grpc_calls_total",
			Help: "gRPC calls answered, by method and status code.",
		}, []string{"method", "code"}),
	}
	m.reg.MustRegister(m.calls, gatewayCollector{g},
		// The scheduler's metrics as well as the defaults: an exchange
		// waits for its audit fsync, and after the fsync the store's
		// writer waits for a processor; go_sched_latencies_seconds shows
		// that wait when the cores are short (docs/operations.md).
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.MetricsScheduler)),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if rk, ok := g.alog.receiptKeys.(interface{ NotAfter() time.Time }); ok {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "borderlink_audit_receipt_key_expiry_timestamp_seconds",
			Help: "When the key signing live receipts expires (Unix time). It is renewed two thirds into its life; when this comes near, renewals through Vault are failing and exchanges will fail at expiry.",
		}, func() float64 { return float64(rk.NotAfter().UnixNano()) / 1e9 }))
	}
	return m
}

func (m *metrics) call(method string, code codes.Code) {
	m.calls.WithLabelValues(method, code.String()).Inc()
}

// VaultStats is what the metrics read from a Vault client (*vault.Client).
type VaultStats interface {
	Stats() vault.Stats
}

// ReportVault adds the Vault client's metrics (failed requests by
// operation, last successful request) to the gateway's; run.go calls it
// when the key material comes from Vault. Calling it twice is an error.
func (g *Gateway) ReportVault(v VaultStats) error {
	if err := g.metrics.reg.Register(vaultCollector{v}); err != nil {
		return fmt.Errorf("gateway: vault metrics: %w", err)
	}
	return nil
}

var (
	descVaultErrors = prometheus.NewDesc("borderlink_vault_errors_total",
		"Requests to Vault that failed (transport error or HTTP error status: sealed, denied, ...), by operation.", []string{"operation"}, nil)
	descVaultLastSuccess = prometheus.NewDesc("borderlink_vault_last_success_timestamp_seconds",
		"When Vault last answered a request successfully (0 if never).", nil, nil)
	descVaultLogins = prometheus.NewDesc("borderlink_vault_logins_total",
		"Successful logins to Vault (1 at start; more mean the token had to be replaced).", nil, nil)
)

// vaultCollector reads a Vault client's counters at scrape time, like
// gatewayCollector: nothing is copied that could drift.
type vaultCollector struct{ v VaultStats }

func (c vaultCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descVaultErrors
	ch <- descVaultLastSuccess
	ch <- descVaultLogins
}

func (c vaultCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.v.Stats()
	for op, n := range st.Errors {
		ch <- prometheus.MustNewConstMetric(descVaultErrors, prometheus.CounterValue, float64(n), op)
	}
	last := 0.0
	if !st.LastSuccess.IsZero() {
		last = float64(st.LastSuccess.UnixNano()) / 1e9
	}
	ch <- prometheus.MustNewConstMetric(descVaultLastSuccess, prometheus.GaugeValue, last)
	ch <- prometheus.MustNewConstMetric(descVaultLogins, prometheus.CounterValue, float64(st.Logins))
}

// MetricsHandler serves the gateway's metrics in the Prometheus text
// format (docs/operations.md lists them).
func (g *Gateway) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(g.metrics.reg, promhttp.HandlerOpts{ErrorLog: nil})
}

var (
	descPolicyInfo = prometheus.NewDesc("borderlink_policy_info",
		"The policy revision in force (always 1).", []string{"revision"}, nil)
	descPolicyAgreements = prometheus.NewDesc("borderlink_policy_agreements",
		"Agreements in the policy set in force.", nil, nil)
	descPolicyReloadFailing = prometheus.NewDesc("borderlink_policy_reload_failing",
		"1 when the last policy reload failed (the previous set stays in force), else 0.", nil, nil)
	descPolicyLoaded = prometheus.NewDesc("borderlink_policy_loaded_timestamp_seconds",
		"When the policy set in force was loaded.", nil, nil)
	descPending = prometheus.NewDesc("borderlink_delivery_pending",
		"Alerts queued for a partner and not yet delivered.", []string{"partner"}, nil)
	descOldest = prometheus.NewDesc("borderlink_delivery_oldest_pending_seconds",
		"Age of the oldest pending alert for a partner (0 when none is pending).", []string{"partner"}, nil)
	descSettled = prometheus.NewDesc("borderlink_delivery_entries",
		"Outbox entries by partner and final state (delivered, refused, cancelled).", []string{"partner", "state"}, nil)
	descRetries = prometheus.NewDesc("borderlink_delivery_retries_total",
		"Failed delivery attempts since the gateway started.", []string{"partner"}, nil)
	descBreaker = prometheus.NewDesc("borderlink_delivery_breaker_open",
		"1 while a partner's circuit breaker is open or half-open, else 0.", []string{"partner"}, nil)
	descTreeSize = prometheus.NewDesc("borderlink_audit_records",
		"Records in the audit log (its tree size).", nil, nil)
	descCheckpointSize = prometheus.NewDesc("borderlink_audit_checkpoint_records",
		"Records covered by the latest signed checkpoint of the audit log (0 before the first). Behind borderlink_audit_records for longer than a few checkpoint intervals: checkpoints are not being signed (see the log).", nil, nil)
	descAuditCommits = prometheus.NewDesc("borderlink_audit_commits_total",
		"Audit group commits since the gateway started: transactions of the audit log, each one fsync.", nil, nil)
	descAuditAppends = prometheus.NewDesc("borderlink_audit_appends_total",
		"Appends the audit group commits carried since the gateway started (records, and writes that commit with them).", nil, nil)
	descAuditBatch = prometheus.NewDesc("borderlink_audit_batch_size",
		"Appends per audit group commit. Batches of 1 under load mean every exchange waits for its own fsync.", nil, nil)
	descAuditQueue = prometheus.NewDesc("borderlink_audit_queue_seconds",
		"Per committed audit append (records, and writes batched with them), the time from its request until a group commit took it: mostly the commit before it.", nil, nil)
	descAuditBuild = prometheus.NewDesc("borderlink_audit_build_seconds",
		"Per audit group commit, the time from taking its appends to COMMIT: waiting for the writer connection and write lock, effects, sequencing, Merkle tree hashes and inserts.", nil, nil)
	descAuditSync = prometheus.NewDesc("borderlink_audit_sync_seconds",
		"Per audit group commit, the time COMMIT took: writing the WAL and its fsync (the disk), and under heavy load, for the commit that takes the WAL past 1,000 pages, SQLite's automatic checkpoint.", nil, nil)
	descWALCheckpoints = prometheus.NewDesc("borderlink_store_wal_checkpoints_total",
		"WAL checkpoints the store ran off the commit path since the gateway started (copying committed pages into the database file; under light load only), by result: ok, partial (a reader still used older pages; run again 200 ms later) or failed (retried with backoff).", []string{"result"}, nil)
	descSplitViews = prometheus.NewDesc("borderlink_audit_split_views",
		"Split-view incidents of a partner's audit log whose evidence is kept (two checkpoints it signed that cannot both be true): one per way it was detected (directly, or through one witness's gossip), however long the fork lasts. Evidence is never deleted, so this never goes back down: an increase is a new incident; see borderlink audit split-views.", []string{"origin"}, nil)
	descSplitViewDetections = prometheus.NewDesc("borderlink_audit_split_view_detections",
		"How many times split views of a partner's audit log were detected in all (every witnessing round that sees a fork again counts). Alert on an increase: unlike borderlink_audit_split_views it moves when a fork already kept is seen again or a later fork of the same partner is caught.", []string{"origin"}, nil)
	descGossipUnproven = prometheus.NewDesc("borderlink_audit_gossip_unproven",
		fmt.Sprintf("1 while a partner has left a checkpoint of its log that another witness gossiped unproven (no consistency proof with the one this gateway accepted) for %d witnessing rounds or more, else 0: it may be hiding a split view.", GossipUnprovenRounds), []string{"origin"}, nil)
	descWitnessUnproven = prometheus.NewDesc("borderlink_audit_witness_unproven",
		fmt.Sprintf("1 while a partner has left a checkpoint it showed this gateway, larger than the one accepted from it, unproven (no consistency proof between the two) for %d witnessing rounds or more, else 0: it may be hiding a split view from its witnesses.", GossipUnprovenRounds), []string{"origin"}, nil)
	descCertExpiry = prometheus.NewDesc("borderlink_certificate_expiry_timestamp_seconds",
		"When the gateway's own certificate expires.", nil, nil)
	descScrapeErrors = prometheus.NewDesc("borderlink_metrics_read_errors",
		"Sources that could not be read for this scrape (their metrics are missing).", []string{"source"}, nil)
)

// appendStatser is a store that counts its audit group commits.
type appendStatser interface {
	AppendStats() store.AppendStats
}

// walCheckpointer is a store that checkpoints its WAL off the commit path.
type walCheckpointer interface {
	WALCheckpoints() store.WALCheckpointStats
}

// gatewayCollector reads the gateway's state at scrape time.
type gatewayCollector struct{ g *Gateway }

func (c gatewayCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPolicyInfo, descPolicyAgreements, descPolicyReloadFailing, descPolicyLoaded,
		descPending, descOldest, descSettled, descRetries, descBreaker, descTreeSize, descCheckpointSize, descAuditCommits, descAuditAppends, descAuditBatch, descAuditQueue, descAuditBuild, descAuditSync, descWALCheckpoints, descSplitViews, descSplitViewDetections, descGossipUnproven, descWitnessUnproven, descCertExpiry, descScrapeErrors} {
		ch <- d
	}
}

func (c gatewayCollector) Collect(ch chan<- prometheus.Metric) {
	g := c.g
	ctx, cancel := context.WithTimeout(context.Background(), metricsTimeout)
	defer cancel()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	failed := func(source string) { gauge(descScrapeErrors, 1, source) }

	st := g.opts.Policy.Status()
	gauge(descPolicyInfo, 1, st.Revision)
	gauge(descPolicyAgreements, float64(st.Agreements))
	failing := 0.0
	if st.LastError != "" {
		failing = 1
	}
	gauge(descPolicyReloadFailing, failing)
	if !st.LoadedAt.IsZero() {
		gauge(descPolicyLoaded, float64(st.LoadedAt.UnixNano())/1e9)
	}

	if ds, ok := g.opts.Store.(deliveryStore); ok {
		partners := map[string]bool{}
		stats, err := ds.OutboxStats(ctx)
		if err != nil {
			g.log.Warn("metrics: outbox unreadable", "error", err)
			failed("outbox")
		} else {
			now := g.now()
			for _, s := range stats {
				partners[s.Recipient] = true
				gauge(descPending, float64(s.Count[store.OutboxPending]), s.Recipient)
				age := 0.0
				if !s.OldestPending.IsZero() {
					age = now.Sub(s.OldestPending).Seconds()
				}
				gauge(descOldest, age, s.Recipient)
				for _, state := range []store.OutboxState{store.OutboxDelivered, store.OutboxRefused, store.OutboxCancelled} {
					gauge(descSettled, float64(s.Count[state]), s.Recipient, state.String())
				}
			}
		}
		if g.deliverer != nil {
			for _, p := range g.deliverer.Stats() {
				// A partner with no entry has an empty queue; when the
				// outbox was unreadable its queue is unknown, not empty.
				if !partners[p.Partner] && err == nil {
					gauge(descPending, 0, p.Partner)
					gauge(descOldest, 0, p.Partner)
				}
				ch <- prometheus.MustNewConstMetric(descRetries, prometheus.CounterValue, float64(p.Retries), p.Partner)
				open := 0.0
				if p.Breaker != "closed" {
					open = 1
				}
				gauge(descBreaker, open, p.Partner)
			}
		}
	}

	if g.alog.store != nil {
		if n, err := g.alog.store.AuditTreeSize(ctx); err != nil {
			g.log.Warn("metrics: audit log unreadable", "error", err)
			failed("audit")
		} else {
			gauge(descTreeSize, float64(n))
		}
		switch n, _, err := g.alog.store.LatestAuditCheckpoint(ctx); {
		case errors.Is(err, audit.ErrNoCheckpoint):
			gauge(descCheckpointSize, 0)
		case err != nil:
			g.log.Warn("metrics: audit checkpoint unreadable", "error", err)
			failed("audit_checkpoint")
		default:
			gauge(descCheckpointSize, float64(n))
		}
	}

	if as, ok := g.opts.Store.(appendStatser); ok {
		st := as.AppendStats()
		ch <- prometheus.MustNewConstMetric(descAuditCommits, prometheus.CounterValue, float64(st.Commits))
		ch <- prometheus.MustNewConstMetric(descAuditAppends, prometheus.CounterValue, float64(st.Appends))
		bounds := make([]float64, len(store.BatchSizeBounds))
		for i, b := range store.BatchSizeBounds {
			bounds[i] = float64(b)
		}
		// The count is the buckets' total, not Commits, which is read
		// separately and may already include a batch the buckets do not.
		ch <- constHistogram(descAuditBatch, bounds, st.BatchSizes[:], float64(st.Appends))
		for d, l := range map[*prometheus.Desc]store.Latencies{descAuditQueue: st.Queue, descAuditBuild: st.Build, descAuditSync: st.Sync} {
			ch <- constHistogram(d, store.LatencyBounds[:], l.Counts[:], l.Sum)
		}
	}

	if wc, ok := g.opts.Store.(walCheckpointer); ok {
		st := wc.WALCheckpoints()
		for result, n := range map[string]uint64{"ok": st.Runs - st.Partial - st.Failed, "partial": st.Partial, "failed": st.Failed} {
			ch <- prometheus.MustNewConstMetric(descWALCheckpoints, prometheus.CounterValue, float64(n), result)
		}
	}

	if ss, ok := g.opts.Store.(splitViewStore); ok {
		if counts, err := ss.SplitViewCounts(ctx); err != nil {
			g.log.Warn("metrics: split view evidence unreadable", "error", err)
			failed("split_views")
		} else {
			// Every witnessed partner gets a series, 0 until its first
			// incident, so that an alert on an increase has a series to
			// watch from the start (none when witnessing is off: 0 would
			// claim a check that is not made); evidence about a partner
			// no longer configured still counts.
			if g.alog.witnessed != nil {
				for d := range g.alog.verifiers {
					if _, ok := counts[audit.Origin(d)]; !ok {
						counts[audit.Origin(d)] = audit.SplitViewTally{}
					}
				}
			}
			for o, n := range counts {
				gauge(descSplitViews, float64(n.Incidents), o)
				gauge(descSplitViewDetections, float64(n.Detections), o)
			}
		}
	}

	if g.alog.witnessed != nil {
		// A series per witnessed partner, like the split views.
		reported, direct := g.alog.unprovenReported()
		for d := range g.alog.verifiers {
			v, w := 0.0, 0.0
			if reported[d] {
				v = 1
			}
			if direct[d] {
				w = 1
			}
			gauge(descGossipUnproven, v, audit.Origin(d))
			gauge(descWitnessUnproven, w, audit.Origin(d))
		}
	}

	if cert := g.opts.KeyPair.Certificate(); cert != nil && len(cert.Certificate) > 0 {
		leaf := cert.Leaf
		if leaf == nil {
			var err error
			if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
				failed("certificate")
				return
			}
		}
		gauge(descCertExpiry, float64(leaf.NotAfter.Unix()))
	}
}

// constHistogram is a Prometheus histogram of counts per bucket: counts[i]
// are the observations above bounds[i-1] and at most bounds[i], and any
// counts beyond the bounds (above every bound) are in the +Inf bucket
// only. The count is the total of all of them.
func constHistogram(d *prometheus.Desc, bounds []float64, counts []uint64, sum float64) prometheus.Metric {
	buckets := make(map[float64]uint64, len(bounds))
	var cum uint64
	for i, b := range bounds {
		cum += counts[i]
		buckets[b] = cum
	}
	for _, c := range counts[len(bounds):] {
		cum += c
	}
	return prometheus.MustNewConstHistogram(d, cum, sum, buckets)
}
