// Package policy decides, with Open Policy Agent evaluated in-process,
// whether a caller may receive a record and which of its fields.
//
// Guarantees: the Rego query is prepared once per policy set and swapped
// atomically on reload (a failed reload keeps the previous set); every
// evaluation problem — an error, an undefined result, more than one result,
// a result not shaped like a decision — is a deny. The policy revision is a
// SHA-256 over every policy module and agreement file that was loaded, so an
// audit record names exactly the rules that decided it.
package policy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/borderlink/borderlink/internal/identity"
)

// Query is the one rule a decision comes from.
const Query = "data.borderlink.exchange.decision"

// Input is what the gateway knows about a request when it asks for a
// decision. It becomes the JSON input documented in docs/policies.md.
type Input struct {
	// Provider is the trust domain whose grants are consulted (input.self);
	// empty means this gateway's own. A gateway receiving pushed data sets
	// it to the sender's domain to ask whether its own copy of their
	// agreement lets the sender push this to it.
	Provider string
	Caller   identity.ID
	Action   string
	Purpose  string
	Resource Resource
	Time     time.Time
}

// Resource describes the record asked for. Exists is false when the record
// is not in the store (the policy then only tells whether the caller would
// have been entitled) or for a search before any record is read.
type Resource struct {
	Type       string
	ID         string
	Exists     bool
	Attributes Attributes
}

// Attributes are the record properties agreements may put conditions on.
type Attributes struct {
	HSChapters         []string `json:"hs_chapters"`
	HSHeadings         []string `json:"hs_headings,omitempty"`
	ExportCountry      string   `json:"export_country,omitempty"`
	DestinationCountry string   `json:"destination_country,omitempty"`
	OriginCountries    []string `json:"origin_countries,omitempty"`
	RiskScore          *float64 `json:"risk_score,omitempty"`
	// InvoiceAmount is the declaration's invoice amount in InvoiceCurrency
	// (ISO 4217); nil when the declaration states none.
	InvoiceAmount   *float64 `json:"-"`
	InvoiceCurrency string   `json:"-"`
	// Accepted is the declaration's acceptance time (zero: unknown).
	Accepted time.Time `json:"-"`
}

// Decision is the policy's answer. Only Allow == true releases anything.
type Decision struct {
	Allow        bool     `json:"allow"`
	Entitled     bool     `json:"entitled"`
	Agreement    string   `json:"agreement"`
	Grant        string   `json:"grant"`
	Fields       []string `json:"fields"`
	Mask         []string `json:"mask"`
	Pseudonymize []string `json:"pseudonymize"`
	// Withhold lists paths national rules remove from the release, even
	// beneath released paths.
	Withhold []string `json:"withhold"`
	// Code is a stable reason code for a deny (docs/policies.md), empty on
	// allow. Reasons are the sentences the policy discloses.
	Code        string      `json:"code"`
	Reasons     []string    `json:"reasons"`
	Obligations Obligations `json:"obligations"`
	// MaxResults caps a search (0: no cap from the agreements).
	MaxResults int `json:"max_results"`
	// RateLimit of the grant that allowed the request (zero: none).
	RateLimit Rate `json:"rate_limit"`
	// GoodsItems narrows a released declaration to the goods items within
	// the grant's HS conditions (empty lists: all items).
	GoodsItems ItemFilter `json:"goods_items"`

	// Revision of the policy set that made the decision.
	Revision string `json:"-"`
}

// ItemFilter keeps the goods items whose HS code is in every list that is
// set: HSChapters (two digits) and HSHeadings (four digits).
type ItemFilter struct {
	HSChapters []string `json:"hs_chapters"`
	HSHeadings []string `json:"hs_headings"`
}

// Rate is a token bucket: PerSecond tokens per second, Burst at most.
type Rate struct {
	PerSecond float64 `json:"per_second,omitempty"`
	Burst     int     `json:"burst,omitempty"`
}

// ErrEvaluation wraps every way evaluation can fail; the decision returned
// with it is always a deny.
var ErrEvaluation = errors.New("policy evaluation failed")

// Engine evaluates the exchange policy for one gateway (its trust domain is
// input.self). It is safe for concurrent use.
type Engine struct {
	self   string
	keys   inputKeys
	logger *slog.Logger
	cur    atomic.Pointer[Set]

	mu     sync.Mutex
	status Status
}

// Status tells operators which policy set is in force and whether the
// last reload failed (in which case the previous set is still in force).
type Status struct {
	Revision    string
	Agreements  int
	LoadedAt    time.Time
	LastError   string
	LastErrorAt time.Time
}

// Set is one compiled policy set: the prepared query, the agreements it was
// built from and their revision.
type Set struct {
	query      rego.PreparedEvalQuery
	explain    rego.PreparedEvalQuery
	revision   string
	agreements []Agreement
}

// Revision is the content hash of the set.
func (s *Set) Revision() string { return s.revision }

// Agreements are the validated agreements of the set.
func (s *Set) Agreements() []Agreement { return s.agreements }

// NewEngine loads and compiles the policy set in fsys (top-level *.rego and
// agreements/*.yaml) for the gateway of trust domain self.
func NewEngine(ctx context.Context, self string, fsys fs.FS, logger *slog.Logger) (*Engine, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	e := &Engine{self: self, keys: newInputKeys(), logger: logger}
	if err := e.Reload(ctx, fsys); err != nil {
		return nil, err
	}
	return e, nil
}

// Reload compiles the policy set in fsys and, only if that fully succeeds,
// swaps it in. On error the engine keeps serving the previous set.
func (e *Engine) Reload(ctx context.Context, fsys fs.FS) error {
	c, err := Compile(ctx, fsys)
	e.mu.Lock()
	defer e.mu.Unlock()
	if err != nil {
		e.status.LastError = err.Error()
		e.status.LastErrorAt = time.Now()
		return err
	}
	prev := e.cur.Swap(c)
	e.status = Status{Revision: c.revision, Agreements: len(c.agreements), LoadedAt: time.Now()}
	if prev == nil || prev.revision != c.revision {
		e.logger.Info("policy loaded", "revision", c.revision, "agreements", len(c.agreements))
	}
	return nil
}

// Status reports the policy set in force and the last reload error.
func (e *Engine) Status() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.status
}

// Revision is the content hash of the policy set in use.
func (e *Engine) Revision() string { return e.cur.Load().revision }

// Agreements returns the agreements of the policy set in use.
func (e *Engine) Agreements() []Agreement { return e.cur.Load().agreements }

// Compile loads, validates and prepares a policy set without installing it;
// `borderlink policy check` uses it directly.
func Compile(ctx context.Context, fsys fs.FS) (*Set, error) {
	modules, err := regoFiles(fsys)
	if err != nil {
		return nil, fmt.Errorf("list policy modules: %w", err)
	}
	if !slices.Contains(modules, "exchange.rego") {
		return nil, errors.New("no exchange.rego in the policy directory: it holds the decision rule (copy policies/exchange.rego from the Borderlink repository)")
	}
	agreements, err := LoadAgreements(fsys)
	if err != nil {
		return nil, fmt.Errorf("load agreements: %w", err)
	}
	ymls, err := agreementFiles(fsys)
	if err != nil {
		return nil, fmt.Errorf("list agreements: %w", err)
	}

	h := sha256.New()
	// Data is kept as AST values: converting the grants from Go values on
	// every read cost more than the rest of a decision.
	store := inmem.NewFromObjectWithOpts(map[string]any{"borderlink": Data(agreements)}, inmem.OptReturnASTValuesOnRead(true))
	var opts []func(*rego.Rego)
	for _, f := range modules {
		src, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, fmt.Errorf("read policy %s: %w", f, err)
		}
		if err := checkPackage(f, src); err != nil {
			return nil, err
		}
		hashFile(h, f, src)
		opts = append(opts, rego.Module(f, string(src)))
	}
	for _, f := range ymls {
		src, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, fmt.Errorf("read agreement %s: %w", f, err)
		}
		hashFile(h, f, src)
	}
	prepare := func(query string) (rego.PreparedEvalQuery, error) {
		all := append([]func(*rego.Rego){rego.Query(query), rego.SetRegoVersion(ast.RegoV1), rego.Store(store)}, opts...)
		return rego.New(all...).PrepareForEval(ctx)
	}
	pq, err := prepare(Query)
	if err != nil {
		return nil, fmt.Errorf("compile policy: %w", err)
	}
	eq, err := prepare(ExplainQuery)
	if err != nil {
		return nil, fmt.Errorf("compile policy: %w", err)
	}
	return &Set{query: pq, explain: eq, revision: "sha256:" + hex.EncodeToString(h.Sum(nil)), agreements: agreements}, nil
}

// ExplainQuery lists each grant offered to the caller with the first check
// it fails.
const ExplainQuery = "data.borderlink.exchange.explanation"

// checkPackage keeps the "national rules only take away" guarantee: the
// decision rule lives in exchange.rego alone, and every other module is a
// national rule (package borderlink.national...), which exchange.rego only
// uses to subtract.
func checkPackage(file string, src []byte) error {
	m, err := ast.ParseModuleWithOpts(file, string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		return fmt.Errorf("compile policy: %w", err)
	}
	pkg := strings.TrimPrefix(m.Package.Path.String(), "data.")
	switch {
	case path.Base(file) == "exchange.rego" && pkg == "borderlink.exchange":
		return nil
	case path.Base(file) != "exchange.rego" && (pkg == "borderlink.national" || strings.HasPrefix(pkg, "borderlink.national.")):
		return nil
	case path.Base(file) == "exchange.rego":
		return fmt.Errorf("%s: package %s: exchange.rego must declare package borderlink.exchange", file, pkg)
	}
	return fmt.Errorf("%s: package %s: policy modules other than exchange.rego hold national rules and must declare package borderlink.national (they can only deny or withhold, never grant)", file, pkg)
}

// hashFile frames each file with its name and length so that moving bytes
// between files changes the revision.
func hashFile(h interface{ Write([]byte) (int, error) }, name string, src []byte) {
	fmt.Fprintf(h, "%s\x00%d\x00", name, len(src))
	h.Write(src)
}

// Data builds the document OPA sees as data.borderlink: grants indexed by
// provider and recipient, so that a decision reads only the grants made to
// its caller.
func Data(agreements []Agreement) map[string]any {
	grants := map[string]map[string][]any{}
	for _, a := range agreements {
		from, _ := parseTime(a.Valid.From)
		until, _ := parseTime(a.Valid.Until)
		for _, g := range a.Grants {
			obl := a.Obligations
			if g.Obligations != nil {
				obl = g.Obligations
			}
			if obl == nil {
				obl = &Obligations{}
			}
			release := map[string]any{}
			for ds, r := range g.Release {
				size := 0
				if md, ok := datasetDescriptors[ds]; ok {
					size = breadth(md, r.Fields)
				}
				release[ds] = map[string]any{
					"fields":       nonNil(r.Fields),
					"mask":         nonNil(r.Mask),
					"pseudonymize": nonNil(r.Pseudonymize),
					// Leaf fields released: what "narrowest wins" compares.
					"size": json.Number(fmt.Sprint(size)),
				}
			}
			conditions := map[string]any{}
			for key, list := range map[string][]string{
				"hs_chapters":           g.Conditions.HSChapters,
				"hs_headings":           g.Conditions.HSHeadings,
				"export_countries":      g.Conditions.ExportCountries,
				"destination_countries": g.Conditions.DestinationCountries,
				"origin_countries":      g.Conditions.OriginCountries,
			} {
				if len(list) > 0 {
					conditions[key] = nonNil(list)
				}
			}
			if t, err := parseTime(g.Conditions.AcceptedFrom); err == nil {
				conditions["accepted_from_ns"] = json.Number(fmt.Sprint(t.UnixNano()))
			}
			if t, err := parseTime(g.Conditions.AcceptedUntil); err == nil {
				conditions["accepted_until_ns"] = json.Number(fmt.Sprint(t.UnixNano()))
			}
			if g.Conditions.MinRiskScore != nil {
				conditions["min_risk_score"] = json.Number(fmt.Sprint(*g.Conditions.MinRiskScore))
			}
			if r := g.Conditions.InvoiceAmount; r != nil {
				amount := map[string]any{"currency": r.Currency}
				if r.Min != nil {
					amount["min"] = json.Number(fmt.Sprint(*r.Min))
				}
				if r.Max != nil {
					amount["max"] = json.Number(fmt.Sprint(*r.Max))
				}
				conditions["invoice_amount"] = amount
			}
			entry := map[string]any{
				"agreement":      a.ID,
				"id":             g.ID,
				"status":         a.Status,
				"valid_from_ns":  json.Number(fmt.Sprint(from.UnixNano())),
				"valid_until_ns": json.Number(fmt.Sprint(until.UnixNano())),
				"actions":        nonNil(g.Actions),
				"purposes":       nonNil(g.Purposes),
				"release":        release,
				"conditions":     conditions,
				"max_results":    json.Number(fmt.Sprint(g.MaxResults)),
				"obligations":    obligationsData(obl),
				"rate_limit":     rateLimitData(g.RateLimit),
			}
			if grants[g.Provider] == nil {
				grants[g.Provider] = map[string][]any{}
			}
			grants[g.Provider][g.Recipient] = append(grants[g.Provider][g.Recipient], entry)
		}
	}
	out := map[string]any{}
	for p, byRecipient := range grants {
		m := map[string]any{}
		for r, list := range byRecipient {
			m[r] = list
		}
		out[p] = m
	}
	return map[string]any{"grants": out}
}

func obligationsData(o *Obligations) map[string]any {
	m := map[string]any{
		"retention_days": json.Number(fmt.Sprint(o.RetentionDays)),
		"onward_sharing": o.OnwardSharing,
		"attribution":    o.Attribution,
	}
	if len(o.OnwardRecipients) > 0 {
		m["onward_recipients"] = nonNil(o.OnwardRecipients)
	}
	return m
}

// rateLimitData turns a grant's rate limit into tokens per second and a
// burst; an absent limit is {} (no limit).
func rateLimitData(rl *RateLimit) map[string]any {
	if rl == nil {
		return map[string]any{}
	}
	per, _ := time.ParseDuration(rl.Per)
	burst := rl.Burst
	if burst == 0 {
		burst = rl.Requests
	}
	return map[string]any{
		"per_second": json.Number(fmt.Sprint(float64(rl.Requests) / per.Seconds())),
		"burst":      json.Number(fmt.Sprint(burst)),
	}
}

func nonNil(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// InputDocument is the JSON-shaped input the policy sees (docs/policies.md).
func (e *Engine) InputDocument(in Input) map[string]any {
	attrs := map[string]any{"hs_chapters": toAny(in.Resource.Attributes.HSChapters)}
	if len(in.Resource.Attributes.HSHeadings) > 0 {
		attrs["hs_headings"] = toAny(in.Resource.Attributes.HSHeadings)
	}
	if !in.Resource.Attributes.Accepted.IsZero() {
		attrs["accepted_ns"] = in.Resource.Attributes.Accepted.UnixNano()
	}
	if in.Resource.Attributes.ExportCountry != "" {
		attrs["export_country"] = in.Resource.Attributes.ExportCountry
	}
	if in.Resource.Attributes.DestinationCountry != "" {
		attrs["destination_country"] = in.Resource.Attributes.DestinationCountry
	}
	if len(in.Resource.Attributes.OriginCountries) > 0 {
		attrs["origin_countries"] = toAny(in.Resource.Attributes.OriginCountries)
	}
	if in.Resource.Attributes.RiskScore != nil {
		attrs["risk_score"] = *in.Resource.Attributes.RiskScore
	}
	if a := in.Resource.Attributes; a.InvoiceAmount != nil {
		attrs["invoice_amount"] = map[string]any{"currency": a.InvoiceCurrency, "value": *a.InvoiceAmount}
	}
	self := e.self
	if in.Provider != "" {
		self = in.Provider
	}
	return map[string]any{
		"self": self,
		"caller": map[string]any{
			"id":     in.Caller.String(),
			"domain": in.Caller.TrustDomain,
			"kind":   in.Caller.Kind,
			"name":   in.Caller.Name,
		},
		"action":  in.Action,
		"purpose": in.Purpose,
		"resource": map[string]any{
			"type":       in.Resource.Type,
			"id":         in.Resource.ID,
			"exists":     in.Resource.Exists,
			"attributes": attrs,
		},
		"time": in.Time.UTC().Format(time.RFC3339Nano),
	}
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// Decide evaluates the policy. It never returns Allow together with an
// error; on error the decision is a deny carrying a generic reason (the
// detail is in the error, for the log, not for the caller).
func (e *Engine) Decide(ctx context.Context, in Input) (Decision, error) {
	c := e.cur.Load()
	if in.Caller.IsZero() {
		return c.denyOnError(), fmt.Errorf("%w: no caller identity", ErrEvaluation)
	}
	if v := e.inputValue(in); v != nil {
		return c.decide(ctx, rego.EvalParsedInput(v))
	}
	return c.Decide(ctx, e.InputDocument(in))
}

func (s *Set) denyOnError() Decision {
	return Decision{Code: "POLICY_ERROR", Reasons: []string{"policy evaluation failed"}, Revision: s.revision}
}

// Decide evaluates the set on an input document as documented in
// docs/policies.md (what InputDocument builds, or what an audit record's
// policy_input holds). Same fail-closed rules as Engine.Decide.
func (s *Set) Decide(ctx context.Context, doc map[string]any) (Decision, error) {
	return s.decide(ctx, rego.EvalInput(doc))
}

func (s *Set) decide(ctx context.Context, input rego.EvalOption) (Decision, error) {
	deny := s.denyOnError()
	rs, err := evalTerm(ctx, s.query, input)
	if err != nil {
		return deny, fmt.Errorf("%w: %w", ErrEvaluation, err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return deny, fmt.Errorf("%w: %s returned %d results, want exactly 1", ErrEvaluation, Query, len(rs))
	}
	var d Decision
	t, ok := rs[0].Expressions[0].Value.(*ast.Term)
	if !ok || !decodeDecision(t.Value, &d) {
		// Anything decodeDecision does not take (an unknown or
		// differently cased key, a null, a wrong type) goes through JSON
		// as before, which accepts or rejects it.
		d = Decision{}
		v := rs[0].Expressions[0].Value
		if ok {
			if v, err = ast.JSONWithOpt(t.Value, ast.JSONOpt{}); err != nil {
				return deny, fmt.Errorf("%w: %w", ErrEvaluation, err)
			}
		}
		raw, err := json.Marshal(v)
		if err != nil {
			return deny, fmt.Errorf("%w: encode result: %w", ErrEvaluation, err)
		}
		if err := decodeStrict(raw, &d); err != nil {
			return deny, fmt.Errorf("%w: result is not a decision: %w", ErrEvaluation, err)
		}
	}
	d.Revision = s.revision
	if d.Allow && (d.Agreement == "" || d.Grant == "") {
		return deny, fmt.Errorf("%w: allow without agreement and grant", ErrEvaluation)
	}
	// A policy written before goods_items existed (or one that drops it)
	// would otherwise release every goods item: fail closed.
	if d.Allow && !hasItemFilter(rs[0].Expressions[0].Value) {
		return deny, fmt.Errorf("%w: allow without goods_items {hs_chapters: [...], hs_headings: [...]}", ErrEvaluation)
	}
	if !d.Allow && d.Code == "" {
		return deny, fmt.Errorf("%w: deny without a reason code", ErrEvaluation)
	}
	sort.Strings(d.Fields)
	return d, nil
}

// evalTerm evaluates a prepared query, leaving the results as AST terms
// (decodeDecision reads them without a JSON round trip). Cancelling ctx
// cancels the evaluation, as rego does by default, without a goroutine per
// evaluation; metrics are not collected.
func evalTerm(ctx context.Context, pq rego.PreparedEvalQuery, opts ...rego.EvalOption) (rego.ResultSet, error) {
	c := topdown.NewCancel()
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, c.Cancel)
		defer stop()
	}
	opts = append(opts, rego.EvalExternalCancel(c), rego.EvalMetrics(noMetrics), rego.EvalGenerateJSON(keepTerm))
	return pq.Eval(ctx, opts...)
}

var noMetrics = metrics.NoOp()

func keepTerm(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil }

// GrantCheck is one grant offered to the caller and the first check it
// failed; Failed is empty for a grant that allows the request.
type GrantCheck struct {
	Agreement string `json:"agreement"`
	Grant     string `json:"grant"`
	Failed    string `json:"failed"`
}

// Explanation is a decision with the grants that were considered.
type Explanation struct {
	Input    map[string]any `json:"input"`
	Decision Decision       `json:"decision"`
	Grants   []GrantCheck   `json:"grants"`
}

// Explain decides and lists every grant offered to the caller with the
// first condition it failed, for `borderlink policy explain`.
func (e *Engine) Explain(ctx context.Context, in Input) (Explanation, error) {
	return e.cur.Load().Explain(ctx, e.InputDocument(in))
}

// Explain is Engine.Explain on an input document.
func (s *Set) Explain(ctx context.Context, doc map[string]any) (Explanation, error) {
	d, err := s.Decide(ctx, doc)
	if err != nil {
		return Explanation{}, err
	}
	x := Explanation{Input: doc, Decision: d}
	rs, err := s.explain.Eval(ctx, rego.EvalInput(doc))
	if err != nil {
		return x, fmt.Errorf("%w: explain: %w", ErrEvaluation, err)
	}
	if len(rs) == 1 && len(rs[0].Expressions) == 1 {
		raw, err := json.Marshal(rs[0].Expressions[0].Value)
		if err != nil {
			return x, fmt.Errorf("%w: explain: %w", ErrEvaluation, err)
		}
		if err := json.Unmarshal(raw, &x.Grants); err != nil {
			return x, fmt.Errorf("%w: explain: %w", ErrEvaluation, err)
		}
	}
	sort.Slice(x.Grants, func(i, j int) bool {
		if x.Grants[i].Agreement != x.Grants[j].Agreement {
			return x.Grants[i].Agreement < x.Grants[j].Agreement
		}
		return x.Grants[i].Grant < x.Grants[j].Grant
	})
	return x, nil
}

// Set returns the policy set in use.
func (e *Engine) Set() *Set { return e.cur.Load() }

func decodeStrict(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// inputValue is InputDocument(in) as the AST value rego.EvalInput makes of
// it (the same value, built without the intermediate map and its JSON
// round trip of numbers), or nil for an input only that path can convert.
// inputKeys are the keys of the input document as terms, made once per
// engine: a term built per decision for each key was a sixth of the
// allocations of a whole decision. Terms are never modified by evaluation.
type inputKeys struct {
	AcceptedNs         *ast.Term
	Action             *ast.Term
	Attributes         *ast.Term
	Caller             *ast.Term
	Currency           *ast.Term
	DestinationCountry *ast.Term
	Domain             *ast.Term
	Exists             *ast.Term
	ExportCountry      *ast.Term
	HsChapters         *ast.Term
	HsHeadings         *ast.Term
	Id                 *ast.Term
	InvoiceAmount      *ast.Term
	Kind               *ast.Term
	Name               *ast.Term
	OriginCountries    *ast.Term
	Purpose            *ast.Term
	Resource           *ast.Term
	RiskScore          *ast.Term
	Self               *ast.Term
	Time               *ast.Term
	Type               *ast.Term
	Value              *ast.Term
}

func newInputKeys() inputKeys {
	return inputKeys{
		AcceptedNs:         ast.StringTerm("accepted_ns"),
		Action:             ast.StringTerm("action"),
		Attributes:         ast.StringTerm("attributes"),
		Caller:             ast.StringTerm("caller"),
		Currency:           ast.StringTerm("currency"),
		DestinationCountry: ast.StringTerm("destination_country"),
		Domain:             ast.StringTerm("domain"),
		Exists:             ast.StringTerm("exists"),
		ExportCountry:      ast.StringTerm("export_country"),
		HsChapters:         ast.StringTerm("hs_chapters"),
		HsHeadings:         ast.StringTerm("hs_headings"),
		Id:                 ast.StringTerm("id"),
		InvoiceAmount:      ast.StringTerm("invoice_amount"),
		Kind:               ast.StringTerm("kind"),
		Name:               ast.StringTerm("name"),
		OriginCountries:    ast.StringTerm("origin_countries"),
		Purpose:            ast.StringTerm("purpose"),
		Resource:           ast.StringTerm("resource"),
		RiskScore:          ast.StringTerm("risk_score"),
		Self:               ast.StringTerm("self"),
		Time:               ast.StringTerm("time"),
		Type:               ast.StringTerm("type"),
		Value:              ast.StringTerm("value"),
	}
}

func (e *Engine) inputValue(in Input) ast.Value {
	k := &e.keys
	a := in.Resource.Attributes
	attrs := make([][2]*ast.Term, 0, 7)
	attrs = append(attrs, ast.Item(k.HsChapters, stringsTerm(a.HSChapters)))
	if len(a.HSHeadings) > 0 {
		attrs = append(attrs, ast.Item(k.HsHeadings, stringsTerm(a.HSHeadings)))
	}
	if !a.Accepted.IsZero() {
		attrs = append(attrs, ast.Item(k.AcceptedNs, numberTerm(strconv.FormatInt(a.Accepted.UnixNano(), 10))))
	}
	if a.ExportCountry != "" {
		attrs = append(attrs, ast.Item(k.ExportCountry, ast.StringTerm(a.ExportCountry)))
	}
	if a.DestinationCountry != "" {
		attrs = append(attrs, ast.Item(k.DestinationCountry, ast.StringTerm(a.DestinationCountry)))
	}
	if len(a.OriginCountries) > 0 {
		attrs = append(attrs, ast.Item(k.OriginCountries, stringsTerm(a.OriginCountries)))
	}
	if a.RiskScore != nil {
		// encoding/json's spelling, as the round trip gives it.
		raw, err := json.Marshal(*a.RiskScore)
		if err != nil {
			return nil
		}
		attrs = append(attrs, ast.Item(k.RiskScore, numberTerm(string(raw))))
	}
	if a.InvoiceAmount != nil {
		raw, err := json.Marshal(*a.InvoiceAmount)
		if err != nil {
			return nil
		}
		attrs = append(attrs, ast.Item(k.InvoiceAmount, ast.ObjectTerm(
			ast.Item(k.Currency, ast.StringTerm(a.InvoiceCurrency)),
			ast.Item(k.Value, numberTerm(string(raw))),
		)))
	}
	self := e.self
	if in.Provider != "" {
		self = in.Provider
	}
	return ast.NewObject(
		ast.Item(k.Self, ast.StringTerm(self)),
		ast.Item(k.Caller, ast.ObjectTerm(
			ast.Item(k.Id, ast.StringTerm(in.Caller.String())),
			ast.Item(k.Domain, ast.StringTerm(in.Caller.TrustDomain)),
			ast.Item(k.Kind, ast.StringTerm(in.Caller.Kind)),
			ast.Item(k.Name, ast.StringTerm(in.Caller.Name)),
		)),
		ast.Item(k.Action, ast.StringTerm(in.Action)),
		ast.Item(k.Purpose, ast.StringTerm(in.Purpose)),
		ast.Item(k.Resource, ast.ObjectTerm(
			ast.Item(k.Type, ast.StringTerm(in.Resource.Type)),
			ast.Item(k.Id, ast.StringTerm(in.Resource.ID)),
			ast.Item(k.Exists, ast.InternedTerm(in.Resource.Exists)),
			ast.Item(k.Attributes, ast.ObjectTerm(attrs...)),
		)),
		ast.Item(k.Time, ast.StringTerm(in.Time.UTC().Format(time.RFC3339Nano))),
	)
}

func stringsTerm(s []string) *ast.Term {
	terms := make([]*ast.Term, len(s))
	for i, v := range s {
		terms[i] = ast.StringTerm(v)
	}
	return ast.ArrayTerm(terms...)
}

// numberTerm converts a JSON number as rego.EvalInput does.
func numberTerm(s string) *ast.Term {
	v, err := ast.InterfaceToValue(json.Number(s))
	if err != nil {
		return ast.NullTerm() // not reached: s comes from strconv or encoding/json
	}
	return ast.NewTerm(v)
}

// decodeDecision fills d from a decision object exactly as decodeStrict
// would from its JSON, for objects whose keys are all Decision's own
// (spelled as its JSON tags) with values of the right types. It returns
// false for anything else, leaving the verdict to decodeStrict.
func decodeDecision(v ast.Value, d *Decision) bool {
	return decodeObject(v, func(key string, v ast.Value) bool {
		switch key {
		case "allow":
			return decodeBool(v, &d.Allow)
		case "entitled":
			return decodeBool(v, &d.Entitled)
		case "agreement":
			return decodeString(v, &d.Agreement)
		case "grant":
			return decodeString(v, &d.Grant)
		case "fields":
			return decodeStrings(v, &d.Fields)
		case "mask":
			return decodeStrings(v, &d.Mask)
		case "pseudonymize":
			return decodeStrings(v, &d.Pseudonymize)
		case "withhold":
			return decodeStrings(v, &d.Withhold)
		case "code":
			return decodeString(v, &d.Code)
		case "reasons":
			return decodeStrings(v, &d.Reasons)
		case "obligations":
			return decodeObligations(v, &d.Obligations)
		case "max_results":
			return decodeInt(v, &d.MaxResults)
		case "rate_limit":
			return decodeRate(v, &d.RateLimit)
		case "goods_items":
			return decodeObject(v, func(key string, v ast.Value) bool {
				switch key {
				case "hs_chapters":
					return decodeStrings(v, &d.GoodsItems.HSChapters)
				case "hs_headings":
					return decodeStrings(v, &d.GoodsItems.HSHeadings)
				}
				return false
			})
		}
		return false
	})
}

// hasItemFilter reports whether the decision object v carries the key
// goods_items, spelled exactly, with both HS lists as arrays.
func hasItemFilter(v any) bool {
	t, ok := v.(*ast.Term)
	if !ok {
		return false
	}
	obj, ok := t.Value.(ast.Object)
	if !ok {
		return false
	}
	gi := obj.Get(ast.InternedTerm("goods_items"))
	if gi == nil {
		return false
	}
	f, ok := gi.Value.(ast.Object)
	if !ok {
		return false
	}
	for _, key := range []string{"hs_chapters", "hs_headings"} {
		l := f.Get(ast.InternedTerm(key))
		if l == nil {
			return false
		}
		if _, ok := l.Value.(*ast.Array); !ok {
			return false
		}
	}
	return true
}

// decodeObject calls field for each key of the object v, stopping at the
// first failure; it fails when v is not an object or a key is not a
// string.
func decodeObject(v ast.Value, field func(key string, v ast.Value) bool) bool {
	obj, ok := v.(ast.Object)
	if !ok {
		return false
	}
	good := true
	obj.Foreach(func(k, t *ast.Term) {
		if !good {
			return
		}
		key, ok := k.Value.(ast.String)
		good = ok && field(string(key), t.Value)
	})
	return good
}

func decodeObligations(v ast.Value, o *Obligations) bool {
	return decodeObject(v, func(key string, v ast.Value) bool {
		switch key {
		case "retention_days":
			n, ok := v.(ast.Number)
			if !ok {
				return false
			}
			u, err := strconv.ParseUint(string(n), 10, 32)
			if err != nil {
				return false
			}
			o.RetentionDays = uint32(u)
			return true
		case "onward_sharing":
			return decodeBool(v, &o.OnwardSharing)
		case "onward_recipients":
			return decodeStrings(v, &o.OnwardRecipients)
		case "attribution":
			return decodeString(v, &o.Attribution)
		}
		return false
	})
}

func decodeRate(v ast.Value, r *Rate) bool {
	return decodeObject(v, func(key string, v ast.Value) bool {
		switch key {
		case "per_second":
			n, ok := v.(ast.Number)
			if !ok || !json.Valid([]byte(n)) {
				return false
			}
			f, err := strconv.ParseFloat(string(n), 64)
			if err != nil {
				return false
			}
			r.PerSecond = f
			return true
		case "burst":
			return decodeInt(v, &r.Burst)
		}
		return false
	})
}

func decodeBool(v ast.Value, out *bool) bool {
	b, ok := v.(ast.Boolean)
	*out = bool(b)
	return ok
}

// decodeString takes valid UTF-8 only: JSON would replace invalid bytes.
func decodeString(v ast.Value, out *string) bool {
	s, ok := v.(ast.String)
	*out = string(s)
	return ok && utf8.ValidString(*out)
}

func decodeInt(v ast.Value, out *int) bool {
	n, ok := v.(ast.Number)
	if !ok {
		return false
	}
	i, err := strconv.ParseInt(string(n), 10, 64)
	*out = int(i)
	return err == nil
}

func decodeStrings(v ast.Value, out *[]string) bool {
	a, ok := v.(*ast.Array)
	if !ok {
		return false
	}
	s := make([]string, a.Len())
	for i := range s {
		if !decodeString(a.Elem(i).Value, &s[i]) {
			return false
		}
	}
	*out = s
	return true
}
