package audit

// This file presents the audit trail to people: operators and auditors
// read it as a table, tools as JSONL.

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// WriteTable prints records as an aligned table, one line per record.
// Digests are shortened to 12 hex digits, which is enough to match the
// two sides of an exchange by eye; JSONL output keeps them whole.
func WriteTable(w io.Writer, recs []*blv1.AuditRecord) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME (UTC)\tSIDE\tREQUEST\tCALLER\tPARTNER GATEWAY\tACTION\tPURPOSE\tDECISION\tSTATUS\tAGREEMENT\tRESOURCES\tFIELDS\tSHA-256")
	for _, r := range recs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n",
			r.GetSeq(),
			r.GetTime().AsTime().UTC().Format(time.DateTime),
			side(r.GetSide()),
			short(r.GetRequestId(), 8),
			trimScheme(r.GetCallerId()),
			partner(r),
			r.GetAction(),
			r.GetPurpose(),
			decision(r.GetDecision()),
			r.GetStatus(),
			dash(r.GetAgreementId()),
			resources(r.GetResourceIds()),
			len(r.GetReleasedFields()),
			dash(short(r.GetReleaseSha256(), 12)),
		)
	}
	return tw.Flush()
}

// WriteJSONL prints one protojson record per line.
func WriteJSONL(w io.Writer, recs []*blv1.AuditRecord) error {
	opts := protojson.MarshalOptions{UseProtoNames: true}
	for _, r := range recs {
		b, err := opts.Marshal(r)
		if err != nil {
			return fmt.Errorf("encode audit record %d: %w", r.GetSeq(), err)
		}
		if _, err := fmt.Fprintf(w, "%s\n", b); err != nil {
			return err
		}
	}
	return nil
}

// partner names the other gateway on the consumer side; on the provider
// side the caller column already says who asked.
func partner(r *blv1.AuditRecord) string {
	if r.GetSide() == blv1.AuditSide_AUDIT_SIDE_CONSUMER {
		return trimScheme(r.GetPeerId())
	}
	return "-"
}

func trimScheme(id string) string { return strings.TrimPrefix(id, "spiffe://") }

func side(s blv1.AuditSide) string {
	switch s {
	case blv1.AuditSide_AUDIT_SIDE_PROVIDER:
		return "provider"
	case blv1.AuditSide_AUDIT_SIDE_CONSUMER:
		return "consumer"
	}
	return "?"
}

func decision(d blv1.AuditDecision) string {
	switch d {
	case blv1.AuditDecision_AUDIT_DECISION_ALLOW:
		return "allow"
	case blv1.AuditDecision_AUDIT_DECISION_DENY:
		return "deny"
	case blv1.AuditDecision_AUDIT_DECISION_ERROR:
		return "error"
	}
	return "?"
}

func resources(ids []string) string {
	switch len(ids) {
	case 0:
		return "-"
	case 1:
		return ids[0]
	}
	return fmt.Sprintf("%s +%d", ids[0], len(ids)-1)
}

func short(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func dash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}
