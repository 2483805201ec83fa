// Package store holds the contract shared by Borderlink's storage backends
// (store/sqlite today, store/postgres later): query types and sentinel
// errors. It contains no driver code.
//
// Every backend guarantees, and store/storetest checks, that:
//   - records are stored as deterministic protobuf bytes and read back
//     proto.Equal to what was put;
//   - PutRecords is all or nothing and upserts by id;
//   - lookups of unknown ids return an error wrapping ErrNotFound;
//   - the audit trail is append-only: sequence numbers start at 1 and are
//     gapless in commit order, and an append returns only once the record
//     is durably committed;
//   - searches never hold a write lock, so ingest and audit appends proceed
//     while a search is being consumed.
package store

import (
	"errors"
	"math"
	"slices"
	"strconv"
	"time"
)

var (
	// ErrNotFound is wrapped by lookups of ids that are not stored.
	ErrNotFound = errors.New("not found")

	// ErrStop, returned by a search callback, ends the iteration early; the
	// search then returns nil.
	ErrStop = errors.New("stop iteration")

	// ErrInvalid is wrapped when an argument cannot be stored or queried as
	// given (nil record, empty id, malformed filter). Callers map it to
	// InvalidArgument; it never means the database is unhealthy.
	ErrInvalid = errors.New("invalid argument")

	// ErrSchemaTooNew is wrapped when the database was migrated by a newer
	// binary than this one. Opening it anyway could misread or corrupt data
	// the newer schema relies on.
	ErrSchemaTooNew = errors.New("database schema is newer than this binary")
)

// DefaultAuditLimit is the page size ListAudit uses when AuditQuery.Limit is 0.
const DefaultAuditLimit = 1000

// DeclarationQuery filters declarations. Zero-valued fields do not filter;
// set fields are combined with AND.
type DeclarationQuery struct {
	// HSChapters are two-digit HS chapters ("85"). A declaration matches if
	// any of its goods items has an hs_code starting with one of them.
	HSChapters []string
	// ExportCountry and DestinationCountry match exactly (ISO 3166-1 alpha-2).
	ExportCountry, DestinationCountry string
	// AcceptedAfter is inclusive, AcceptedBefore exclusive; zero is unbounded.
	AcceptedAfter, AcceptedBefore time.Time
}

// AuditQuery filters the audit trail. Zero-valued fields do not filter;
// set fields are combined with AND.
type AuditQuery struct {
	RequestID string
	// Partner is the trust domain of the other side of the exchange: the
	// caller's on the provider side, the partner gateway's on the consumer
	// side.
	Partner string
	// Agreement, Action and CallerID match exactly.
	Agreement, Action, CallerID string
	// Decision and Side match the AuditDecision and AuditSide enum numbers;
	// 0 does not filter.
	Decision, Side int32
	// AfterSeq returns only records with Seq > AfterSeq, for paging.
	AfterSeq uint64
	// Since is inclusive, Until exclusive; zero is unbounded.
	Since, Until time.Time
	// Limit caps the number of records; 0 means DefaultAuditLimit.
	Limit int
}

// BatchSizeBounds are the upper bounds of AppendStats.BatchSizes: powers
// of two up to the largest group commit a backend takes.
var BatchSizeBounds = [...]int{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096}

// LatencyBounds are the upper bounds, in seconds, of the latency
// histograms of AppendStats: 25 µs to about 0.1 s in steps of √2, fine
// enough that a percentile read from them is within a step of the truth.
// They are rounded to three significant digits so that they read well as
// Prometheus bucket labels (le="3.54e-05", not le="3.535533905932738e-05").
var LatencyBounds = func() (b [25]float64) {
	for i := range b {
		b[i], _ = strconv.ParseFloat(strconv.FormatFloat(25e-6*math.Pow(math.Sqrt2, float64(i)), 'g', 3, 64), 64)
	}
	return b
}()

// Latencies is a histogram over LatencyBounds: Counts[i] counts the
// durations above LatencyBounds[i-1] and at most LatencyBounds[i]; the last
// count is those above every bound.
type Latencies struct {
	Counts [len(LatencyBounds) + 1]uint64
	Sum    float64 // seconds
}

// Observe counts one duration.
func (l *Latencies) Observe(d time.Duration) {
	s := d.Seconds()
	i, _ := slices.BinarySearch(LatencyBounds[:], s)
	l.Counts[i]++
	l.Sum += s
}

// Count is the number of durations counted.
func (l Latencies) Count() uint64 {
	var n uint64
	for _, c := range l.Counts {
		n += c
	}
	return n
}

// Quantile estimates the q-quantile (0 < q ≤ 1) in seconds by linear
// interpolation within its bucket; 0 when nothing was counted. A quantile
// in the overflow bucket is reported as the largest bound.
func (l Latencies) Quantile(q float64) float64 {
	n := l.Count()
	if n == 0 {
		return 0
	}
	rank := q * float64(n)
	var cum float64
	for i, c := range l.Counts {
		if c == 0 || cum+float64(c) < rank {
			cum += float64(c)
			continue
		}
		if i == len(LatencyBounds) {
			return LatencyBounds[i-1]
		}
		lo := 0.0
		if i > 0 {
			lo = LatencyBounds[i-1]
		}
		return lo + (LatencyBounds[i]-lo)*(rank-cum)/float64(c)
	}
	return LatencyBounds[len(LatencyBounds)-1]
}

// combine applies op count by count and to the sums: Add and Sub.
func (l Latencies) combine(o Latencies, op func(a, b uint64) uint64, opSum func(a, b float64) float64) Latencies {
	d := Latencies{Sum: opSum(l.Sum, o.Sum)}
	for i := range d.Counts {
		d.Counts[i] = op(l.Counts[i], o.Counts[i])
	}
	return d
}

// AppendStats counts a store's audit group commits since it opened, for
// metrics and benchmarks: how many transactions were committed (each one
// fsync of the log), how many appends they carried, how they were batched
// and where an append's wait went.
type AppendStats struct {
	// Commits are the audit transactions committed.
	Commits uint64
	// Appends are the appends those transactions carried: records, and
	// writes that rode along with no record of their own.
	Appends uint64
	// BatchSizes[i] counts the commits that carried more than
	// BatchSizeBounds[i-1] and at most BatchSizeBounds[i] appends.
	BatchSizes [len(BatchSizeBounds)]uint64
	// Queue is, per committed append, the time from its request to the
	// start of the batch that took it: mostly the previous batch's commit.
	Queue Latencies
	// Build is, per commit, the time from taking the batch to COMMIT:
	// getting the writer connection and the write lock (other writes of
	// the gateway outside the group commit, such as imports, delivery
	// attempts, outbox pruning and checkpoints, hold them briefly), then
	// running the appends' effects, sequencing, tree hashes and inserts.
	Build Latencies
	// Sync is, per commit, the time COMMIT took: writing the WAL and
	// fsyncing it, and for a commit that takes the WAL past the automatic
	// checkpoint threshold, that checkpoint (copying the WAL into the
	// database file, with its own fsync). The sqlite store runs
	// checkpoints off the commit path under light load, so that this
	// happens only under heavy load.
	Sync Latencies
}

// WALCheckpointStats counts the checkpoints a store with a write-ahead
// log ran off the commit path (copying committed pages into the database
// file) since it was opened.
type WALCheckpointStats struct {
	// Runs are the checkpoints run, Failed those that returned an error
	// (a later run, or the writer's own checkpoint, then copies the WAL),
	// and Partial those that could not copy the
	// whole WAL because a reader was still using older pages.
	Runs, Failed, Partial uint64
	// LastError is the error of the last run, nil if it succeeded.
	LastError error
}

// Sub is the difference s − old: what happened between two readings.
func (s AppendStats) Sub(old AppendStats) AppendStats {
	return s.combine(old, func(a, b uint64) uint64 { return a - b }, func(a, b float64) float64 { return a - b })
}

// Add is s + d: differences of several periods added up.
func (s AppendStats) Add(d AppendStats) AppendStats {
	return s.combine(d, func(a, b uint64) uint64 { return a + b }, func(a, b float64) float64 { return a + b })
}

func (s AppendStats) combine(o AppendStats, op func(a, b uint64) uint64, opSum func(a, b float64) float64) AppendStats {
	d := AppendStats{Commits: op(s.Commits, o.Commits), Appends: op(s.Appends, o.Appends),
		Queue: s.Queue.combine(o.Queue, op, opSum), Build: s.Build.combine(o.Build, op, opSum), Sync: s.Sync.combine(o.Sync, op, opSum)}
	for i := range d.BatchSizes {
		d.BatchSizes[i] = op(s.BatchSizes[i], o.BatchSizes[i])
	}
	return d
}

// MeanBatch is the mean number of appends per commit (0 without commits).
func (s AppendStats) MeanBatch() float64 {
	if s.Commits == 0 {
		return 0
	}
	return float64(s.Appends) / float64(s.Commits)
}
