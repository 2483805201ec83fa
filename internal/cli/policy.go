package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/borderlink/borderlink/internal/config"
	"github.com/borderlink/borderlink/internal/gateway"
	"github.com/borderlink/borderlink/internal/policy"
	"github.com/borderlink/borderlink/internal/store"
	"github.com/borderlink/borderlink/internal/store/sqlite"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

const policyUsage = `policy check [DIR]
       borderlink policy test [DIR]
       borderlink policy explain (--config FILE | --dir DIR --self DOMAIN | --remote [client flags]) --caller ID --action A --purpose P [--record FILE | --id ID] [--time RFC3339] [--json]
       borderlink policy diff --config FILE --against DIR [--since 24h] [--limit N] [--json]
       borderlink policy status [client flags]`

func runPolicy(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		fmt.Fprintf(e.stderr, "Usage: borderlink %s\n", policyUsage)
		return usagef("policy: name a subcommand: check, test, explain, diff or status")
	}
	switch args[0] {
	case "check":
		return policyCheck(ctx, e, args[1:])
	case "test":
		return policyTest(ctx, e, args[1:])
	case "explain":
		return policyExplain(ctx, e, args[1:])
	case "diff":
		return policyDiff(ctx, e, args[1:])
	case "status":
		return policyStatus(ctx, e, args[1:])
	}
	return usagef("policy: unknown subcommand %q: use check, test, explain, diff or status", args[0])
}

func dirArg(fs *flag.FlagSet) string {
	if fs.NArg() > 0 {
		return fs.Arg(0)
	}
	return "policies"
}

func policyCheck(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "policy check", "policy check [DIR]\n\nCompiles *.rego and validates agreements/*.yaml in DIR (default: policies). Errors name file, line, key and a hint.")
	if err := parse(fs, args); err != nil {
		return err
	}
	dir := dirArg(fs)
	set, err := policy.Compile(ctx, os.DirFS(dir))
	if err != nil {
		return fmt.Errorf("policy check %s:\n%w", dir, err)
	}
	grants := 0
	for _, a := range set.Agreements() {
		grants += len(a.Grants)
	}
	fmt.Fprintf(e.stdout, "%s: ok: %d agreement(s), %d grant(s), revision %s\n", dir, len(set.Agreements()), grants, set.Revision())
	if len(set.Agreements()) == 0 {
		fmt.Fprintf(e.stderr, "warning: %s has no agreements: every request will be denied\n", dir)
	}
	return nil
}

// policyTest runs the Rego tests and the golden decision cases of a policy
// directory and reports each one.
func policyTest(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "policy test", "policy test [DIR]\n\nRuns the Rego tests (*_test.rego) and the golden decision cases (testdata/decisions/*.yaml) of DIR (default: policies).")
	verbose := fs.Bool("v", false, "also list passing tests")
	if err := parse(fs, args); err != nil {
		return err
	}
	dir := dirArg(fs)
	fsys := os.DirFS(dir)
	if _, err := policy.Compile(ctx, fsys); err != nil {
		return fmt.Errorf("policy test %s:\n%w", dir, err)
	}
	failed, total := 0, 0
	report := func(pass bool, name, detail string) {
		total++
		if !pass {
			failed++
		}
		if !pass || *verbose {
			word := "PASS"
			if !pass {
				word = "FAIL"
			}
			fmt.Fprintf(e.stdout, "%s  %s%s\n", word, name, detail)
		}
	}
	regos, err := policy.RunRegoTests(ctx, fsys)
	if err != nil {
		return fmt.Errorf("policy test %s: %w", dir, err)
	}
	for _, r := range regos {
		detail := ""
		if r.Err != nil {
			detail = ": " + r.Err.Error()
		}
		report(r.Pass, r.Location+" "+r.Name, detail)
	}
	cases, err := policy.RunCases(ctx, fsys)
	if err != nil {
		return fmt.Errorf("policy test %s: %w", dir, err)
	}
	for _, c := range cases {
		detail := ""
		switch {
		case c.Err != nil:
			detail = ": " + c.Err.Error()
		case !c.Pass():
			want, _ := json.Marshal(c.Case.Want)
			got, _ := json.Marshal(c.Got)
			detail = fmt.Sprintf(" (%s)\n      want %s\n      got  %s", c.Case.Description, want, got)
		}
		report(c.Pass(), c.File, detail)
	}
	fmt.Fprintf(e.stdout, "%s: %d Rego test(s), %d decision case(s): %d passed, %d failed\n", dir, len(regos), len(cases), total-failed, failed)
	if failed > 0 {
		return fmt.Errorf("policy test %s: %d failed", dir, failed)
	}
	return nil
}

func policyExplain(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "policy explain", "policy explain (--config FILE | --dir DIR --self DOMAIN | --remote [client flags]) --caller ID --action A --purpose P [--record FILE | --id ID] [--time RFC3339] [--json]\n\nShows the decision, the agreement and grant that matched (or, for a deny, each grant considered and the first check it failed) and the exact field list released. Nothing is released or audited.")
	cfgPath := fs.String("config", "", "gateway config: its trust domain, policy directory and (for --id) store")
	dir := fs.String("dir", "", "policy directory to evaluate (with --self)")
	self := fs.String("self", "", "trust domain of the answering gateway (with --dir)")
	remote := fs.Bool("remote", false, "ask the running gateway (Admin API) instead, with its current policy")
	co := clientFlags(fs)
	callerID := fs.String("caller", "", "SPIFFE ID of the caller, e.g. spiffe://sg.customs.example/gateway")
	action := fs.String("action", "declaration.get", "declaration.get, declaration.search or risk.get")
	purpose := fs.String("purpose", "", "purpose of the request")
	recordFile := fs.String("record", "", "protojson file of the declaration or risk assessment asked for")
	recordID := fs.String("id", "", "ID of a stored record (with --config or --remote)")
	at := fs.String("time", "", "decision time, RFC 3339 (default now)")
	asJSON := fs.Bool("json", false, "print JSON instead of text")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *callerID == "" || *purpose == "" {
		return usagef("policy explain: --caller and --purpose are required")
	}
	if *recordFile != "" && *recordID != "" {
		return usagef("policy explain: give --record or --id, not both")
	}
	when := time.Now()
	if *at != "" {
		t, err := time.Parse(time.RFC3339, *at)
		if err != nil {
			return usagef("policy explain: --time %q is not RFC 3339", *at)
		}
		when = t
	}
	req := &blv1.ExplainDecisionRequest{Caller: *callerID, Action: *action, Purpose: *purpose, Time: timestamppb.New(when)}
	if *recordFile != "" {
		b, err := os.ReadFile(*recordFile)
		if err != nil {
			return fmt.Errorf("policy explain: %w", err)
		}
		if *action == gateway.ActionRiskGet {
			r := &blv1.RiskAssessment{}
			if err := protojson.Unmarshal(b, r); err != nil {
				return fmt.Errorf("policy explain: %s is not a protojson RiskAssessment: %w", *recordFile, err)
			}
			req.Record = &blv1.ExplainDecisionRequest_RiskAssessment{RiskAssessment: r}
		} else {
			d := &blv1.Declaration{}
			if err := protojson.Unmarshal(b, d); err != nil {
				return fmt.Errorf("policy explain: %s is not a protojson Declaration: %w", *recordFile, err)
			}
			req.Record = &blv1.ExplainDecisionRequest_Declaration{Declaration: d}
		}
	} else if *recordID != "" {
		req.Record = &blv1.ExplainDecisionRequest_RecordId{RecordId: *recordID}
	}

	var x policy.Explanation
	switch {
	case *remote:
		cc, err := dial(ctx, e, co)
		if err != nil {
			return err
		}
		defer cc.Close()
		resp, err := blv1.NewAdminClient(cc).ExplainDecision(ctx, req)
		if err != nil {
			return err
		}
		if x, err = gateway.ExplanationFromProto(resp); err != nil {
			return fmt.Errorf("policy explain: %w", err)
		}
	default:
		var err error
		if x, err = explainLocally(ctx, req, *cfgPath, *dir, *self); err != nil {
			return err
		}
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(x)
	}
	writeExplanation(e.stdout, x)
	return nil
}

// explainLocally evaluates a policy directory the way the gateway would,
// reusing the gateway's own explain code on a store-less or store-backed
// lookup.
func explainLocally(ctx context.Context, req *blv1.ExplainDecisionRequest, cfgPath, dir, self string) (policy.Explanation, error) {
	var st gateway.Store
	switch {
	case cfgPath != "" && dir == "":
		cfg, err := config.Load(cfgPath)
		if err != nil {
			return policy.Explanation{}, err
		}
		dir, self = cfg.Policy.Dir, cfg.TrustDomain
		s, err := sqlite.Open(ctx, cfg.Store.SQLite.Path)
		if err != nil {
			return policy.Explanation{}, fmt.Errorf("policy explain: %w", err)
		}
		defer s.Close()
		st = s
	case dir != "" && self != "" && cfgPath == "":
		if req.GetRecordId() != "" {
			return policy.Explanation{}, usagef("policy explain: --id needs a store: use --config or --remote")
		}
	default:
		return policy.Explanation{}, usagef("policy explain: use --config FILE, or --dir DIR with --self DOMAIN, or --remote")
	}
	engine, err := policy.NewEngine(ctx, self, os.DirFS(dir), nil)
	if err != nil {
		return policy.Explanation{}, fmt.Errorf("policy explain %s:\n%w", dir, err)
	}
	resp, err := gateway.Explain(ctx, engine, st, req)
	if err != nil {
		return policy.Explanation{}, err
	}
	return gateway.ExplanationFromProto(resp)
}

func writeExplanation(w io.Writer, x policy.Explanation) {
	d := x.Decision
	if d.Allow {
		fmt.Fprintf(w, "decision:      ALLOW under agreement %s, grant %s\n", d.Agreement, d.Grant)
		fmt.Fprintf(w, "released:      %s\n", orNone(d.Fields))
		fmt.Fprintf(w, "masked:        %s\n", orNone(d.Mask))
		fmt.Fprintf(w, "pseudonymised: %s\n", orNone(d.Pseudonymize))
		if len(d.Withhold) > 0 {
			fmt.Fprintf(w, "withheld:      %s (national rules)\n", strings.Join(d.Withhold, ", "))
		}
		fmt.Fprintf(w, "obligations:   retention %d days, onward sharing %v, attribution %q\n", d.Obligations.RetentionDays, d.Obligations.OnwardSharing, d.Obligations.Attribution)
		if len(d.Obligations.OnwardRecipients) > 0 {
			fmt.Fprintf(w, "onward only to: %s\n", strings.Join(d.Obligations.OnwardRecipients, ", "))
		}
		if d.RateLimit.PerSecond > 0 {
			fmt.Fprintf(w, "rate limit:    %g/s, burst %d\n", d.RateLimit.PerSecond, d.RateLimit.Burst)
		}
	} else {
		fmt.Fprintf(w, "decision:      DENY (%s) %s\n", d.Code, strings.Join(d.Reasons, "; "))
	}
	if d.MaxResults > 0 {
		fmt.Fprintf(w, "max results:   %d\n", d.MaxResults)
	}
	fmt.Fprintf(w, "policy:        %s\n", d.Revision)
	fmt.Fprintf(w, "grants offered to the caller: %d\n", len(x.Grants))
	for _, g := range x.Grants {
		verdict := "matches"
		if g.Failed != "" {
			verdict = "fails: " + g.Failed
		}
		fmt.Fprintf(w, "  %-40s %s\n", g.Agreement+"/"+g.Grant, verdict)
	}
	if in, err := json.Marshal(x.Input); err == nil {
		fmt.Fprintf(w, "input:         %s\n", in)
	}
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "(none)"
	}
	return strings.Join(s, ", ")
}

// policyDiff replays recorded decisions under the policy in force and under
// a proposed one and prints every decision that would change.
func policyDiff(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "policy diff", "policy diff --config FILE --against DIR [--since 24h] [--limit N] [--json]\n\nReplays the policy inputs stored in the audit trail (never payloads) under the gateway's current policy directory and under DIR, and prints every decision that would change: allow→deny, deny→allow, fields added or removed, another agreement.")
	cfgPath := fs.String("config", "", "gateway config: its policy directory and store")
	against := fs.String("against", "", "proposed policy directory")
	since := fs.Duration("since", 24*time.Hour, "replay records of this period")
	limit := fs.Int("limit", 10000, "replay at most this many records")
	asJSON := fs.Bool("json", false, "print one JSON object per changed decision")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *cfgPath == "" || *against == "" {
		return usagef("policy diff: --config and --against are required")
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	current, err := policy.Compile(ctx, os.DirFS(cfg.Policy.Dir))
	if err != nil {
		return fmt.Errorf("policy diff: current policy %s:\n%w", cfg.Policy.Dir, err)
	}
	proposed, err := policy.Compile(ctx, os.DirFS(*against))
	if err != nil {
		return fmt.Errorf("policy diff: proposed policy %s:\n%w", *against, err)
	}
	st, err := sqlite.Open(ctx, cfg.Store.SQLite.Path)
	if err != nil {
		return fmt.Errorf("policy diff: %w", err)
	}
	defer st.Close()
	skipped := 0
	changes, replayed, err := policy.Diff(ctx, current, proposed, func(yield func(policy.Recorded) error) error {
		var after uint64
		for n := 0; n < *limit; {
			recs, err := st.ListAudit(ctx, store.AuditQuery{AfterSeq: after, Since: time.Now().Add(-*since), Limit: min(1000, *limit-n)})
			if err != nil {
				return err
			}
			if len(recs) == 0 {
				return nil
			}
			for _, r := range recs {
				after = r.GetSeq()
				n++
				// Searches store only their entitlement check (no record),
				// and rate-limited calls were refused after an allow: neither
				// replays as the decision that was recorded.
				if r.GetSide() != blv1.AuditSide_AUDIT_SIDE_PROVIDER || r.GetPolicyInput() == "" ||
					r.GetAction() == gateway.ActionDeclarationSearch || r.GetStatus() == "RESOURCE_EXHAUSTED" {
					skipped++
					continue
				}
				if err := yield(policy.Recorded{Seq: r.GetSeq(), RequestID: r.GetRequestId(), Input: r.GetPolicyInput(),
					Allowed: r.GetDecision() == blv1.AuditDecision_AUDIT_DECISION_ALLOW}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("policy diff: %w", err)
	}
	for _, c := range changes {
		if *asJSON {
			b, _ := json.Marshal(c)
			fmt.Fprintf(e.stdout, "%s\n", b)
			continue
		}
		fmt.Fprintf(e.stdout, "seq %d  %s  %s %s %s: %s\n", c.Seq, short(c.RequestID), c.Caller, c.Action, c.Resource, c.Summary())
	}
	fmt.Fprintf(e.stderr, "replayed %d decision(s) of the last %s: %d would change (%d search or rate-limited record(s) not replayable)\n", replayed, *since, len(changes), skipped)
	return nil
}

func short(s string) string {
	if len(s) > 8 {
		return s[:8]
	}
	return s
}

func policyStatus(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "policy status", "policy status [client flags]\n\nAsks the running gateway (Admin API) which policy revision is in force and whether the last reload failed.")
	co := clientFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	cc, err := dial(ctx, e, co)
	if err != nil {
		return err
	}
	defer cc.Close()
	st, err := blv1.NewAdminClient(cc).PolicyStatus(ctx, &blv1.PolicyStatusRequest{})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "revision:   %s\nagreements: %d\nloaded:     %s\n", st.GetRevision(), st.GetAgreements(), st.GetLoadedTime().AsTime().Format(time.RFC3339))
	if st.GetLastError() != "" {
		fmt.Fprintf(e.stdout, "last reload FAILED at %s (the revision above stays in force):\n%s\n", st.GetLastErrorTime().AsTime().Format(time.RFC3339), st.GetLastError())
		return errors.New("the last policy reload failed")
	}
	return nil
}
