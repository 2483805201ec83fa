package audit

import (
	"fmt"
	"sort"

	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// Discrepancy is one way two gateways' logs disagree about an exchange.
type Discrepancy struct {
	RequestID string
	Problem   string
}

// Reconciliation is the outcome of matching our consumer records of
// exchanges with one partner against the partner's provider records of the
// same exchanges.
type Reconciliation struct {
	Matched       int           // exchanges both logs agree on
	NotCompared   int           // our records of calls the partner may never have seen (failed calls, refusals before sending)
	Discrepancies []Discrepancy // sorted by request id
}

// Reconcile matches ours (our consumer-side records with the partner) with
// theirs (the partner's provider-side records where we were the caller),
// by request id. It reports exchanges logged on one side only and
// exchanges whose decision or release digest differ. Receipts are checked
// separately (CheckReceiptInLog), as they need the partner's proofs.
//
// Alerts the partner pushed to us are among both: our consumer-side
// records of receiving them, its provider-side alert.deliver records.
func Reconcile(ours, theirs []*blv1.AuditRecord) Reconciliation {
	return reconcile(ours, theirs, func(o *blv1.AuditRecord) bool {
		// The partner may never have seen the call (unreachable, timed
		// out before it answered).
		return o.GetDecision() == blv1.AuditDecision_AUDIT_DECISION_ERROR && o.GetStatus() != "DATA_LOSS"
	}, unsentAlert)
}

// unsentAlert holds for a sender's record of an alert that was refused
// without the recipient's receipt: refused by the sender before sending,
// or turned away by the recipient before it stored anything. The
// recipient has no record of it.
func unsentAlert(r *blv1.AuditRecord) bool {
	return r.GetAction() == actionAlertDeliver && r.GetSide() == blv1.AuditSide_AUDIT_SIDE_PROVIDER &&
		r.GetDecision() != blv1.AuditDecision_AUDIT_DECISION_ALLOW && r.GetPartnerReceipt() == ""
}

// actionAlertDeliver is gateway.ActionAlertDeliver (audit cannot import
// the gateway).
const actionAlertDeliver = "alert.deliver"

// ReconcilePushes is Reconcile for the other direction: ours are our
// provider-side alert.deliver records for the partner (the alerts we
// pushed), theirs the partner's consumer-side records of the alerts we
// pushed to it, matched by message ID (each side's request ID). A refusal
// that carries no receipt from the partner is not compared when the
// partner has no record of it: we refused it before sending (the agreement
// had changed since publication), or the partner turned it away before
// storing anything (a malformed alert).
func ReconcilePushes(ours, theirs []*blv1.AuditRecord) Reconciliation {
	return reconcile(ours, theirs, func(o *blv1.AuditRecord) bool {
		return o.GetDecision() != blv1.AuditDecision_AUDIT_DECISION_ALLOW && o.GetPartnerReceipt() == ""
	}, func(*blv1.AuditRecord) bool { return false })
}

// reconcile matches by request id; unseenOurs and unseenTheirs say which
// records of each side the other may legitimately never have logged.
func reconcile(ours, theirs []*blv1.AuditRecord, unseenOurs, unseenTheirs func(*blv1.AuditRecord) bool) Reconciliation {
	var r Reconciliation
	byID := map[string]*blv1.AuditRecord{}
	for _, t := range theirs {
		byID[t.GetRequestId()] = t
	}
	seen := map[string]bool{}
	for _, o := range ours {
		id := o.GetRequestId()
		seen[id] = true
		t, ok := byID[id]
		if !ok && unseenOurs(o) {
			r.NotCompared++
			continue
		}
		switch {
		case !ok:
			r.Discrepancies = append(r.Discrepancies, Discrepancy{id, fmt.Sprintf("recorded by us (seq %d) but not by the partner", o.GetSeq())})
		case o.GetStatus() == "DATA_LOSS":
			r.Discrepancies = append(r.Discrepancies, Discrepancy{id, fmt.Sprintf("we rejected the partner's answer (seq %d): %v; the partner recorded %s (seq %d)",
				o.GetSeq(), o.GetReasons(), t.GetDecision(), t.GetSeq())})
		case o.GetDecision() != t.GetDecision():
			r.Discrepancies = append(r.Discrepancies, Discrepancy{id, fmt.Sprintf("we recorded %s (seq %d), the partner %s (seq %d)",
				o.GetDecision(), o.GetSeq(), t.GetDecision(), t.GetSeq())})
		case o.GetReleaseSha256() != t.GetReleaseSha256():
			r.Discrepancies = append(r.Discrepancies, Discrepancy{id, fmt.Sprintf("we recorded release %q (seq %d), the partner %q (seq %d)",
				o.GetReleaseSha256(), o.GetSeq(), t.GetReleaseSha256(), t.GetSeq())})
		default:
			r.Matched++
		}
	}
	for _, t := range theirs {
		if !seen[t.GetRequestId()] && unseenTheirs(t) {
			r.NotCompared++
			continue
		}
		if !seen[t.GetRequestId()] {
			r.Discrepancies = append(r.Discrepancies, Discrepancy{t.GetRequestId(), fmt.Sprintf("recorded by the partner (seq %d) but not by us", t.GetSeq())})
		}
	}
	sort.SliceStable(r.Discrepancies, func(i, j int) bool { return r.Discrepancies[i].RequestID < r.Discrepancies[j].RequestID })
	return r
}
