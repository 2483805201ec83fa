package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/config"
	"github.com/borderlink/borderlink/internal/store"
	"github.com/borderlink/borderlink/internal/store/sqlite"
)

func runAudit(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || args[0] != "list" {
		return usagef("audit: the only subcommand is list: audit list --config FILE [--request-id ID] [--since RFC3339] [--limit N] [--json]")
	}
	fs := newFlagSet(e, "audit list", "audit list --config FILE [--request-id ID] [--after-seq N] [--since RFC3339] [--until RFC3339] [--limit N] [--json]\n\nReads the audit trail from the gateway's store (the running gateway may stay up).")
	cfgPath := fs.String("config", "", "gateway configuration file; its store is read")
	reqID := fs.String("request-id", "", "only records of this exchange")
	afterSeq := fs.Uint64("after-seq", 0, "only records after this sequence number")
	since := fs.String("since", "", "only records at or after this RFC 3339 time")
	until := fs.String("until", "", "only records before this RFC 3339 time")
	limit := fs.Int("limit", 100, "maximum records (at most 1000)")
	asJSON := fs.Bool("json", false, "print protojson lines instead of a table")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if *cfgPath == "" {
		return usagef("audit list: --config is required")
	}
	if *limit < 1 || *limit > 1000 {
		return usagef("audit list: --limit must be between 1 and 1000")
	}
	q := store.AuditQuery{RequestID: *reqID, AfterSeq: *afterSeq, Limit: *limit}
	for _, t := range []struct {
		flag, val string
		dst       *time.Time
	}{{"--since", *since, &q.Since}, {"--until", *until, &q.Until}} {
		if t.val == "" {
			continue
		}
		v, err := time.Parse(time.RFC3339, t.val)
		if err != nil {
			return usagef("audit list: %s %q is not an RFC 3339 time", t.flag, t.val)
		}
		*t.dst = v
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	st, err := sqlite.Open(ctx, cfg.Store.SQLite.Path)
	if err != nil {
		return fmt.Errorf("audit list: %w", err)
	}
	defer st.Close()
	recs, err := st.ListAudit(ctx, q)
	if err != nil {
		return fmt.Errorf("audit list: %w", err)
	}
	if *asJSON {
		return audit.WriteJSONL(e.stdout, recs)
	}
	return audit.WriteTable(e.stdout, recs)
}
