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

// AppendStats counts a store's audit group commits since it opened, for
// metrics and benchmarks: how many transactions were committed (each one
// fsync of the log), how many appends they carried and how they were
// batched.
type AppendStats struct {
	// Commits are the audit transactions committed.
	Commits uint64
	// Appends are the appends those transactions carried: records, and
	// writes that rode along with no record of their own.
	Appends uint64
	// BatchSizes[i] counts the commits that carried more than
	// BatchSizeBounds[i-1] and at most BatchSizeBounds[i] appends.
	BatchSizes [len(BatchSizeBounds)]uint64
}

// Sub is the difference s − old: what happened between two readings.
func (s AppendStats) Sub(old AppendStats) AppendStats {
	d := AppendStats{Commits: s.Commits - old.Commits, Appends: s.Appends - old.Appends}
	for i := range d.BatchSizes {
		d.BatchSizes[i] = s.BatchSizes[i] - old.BatchSizes[i]
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
