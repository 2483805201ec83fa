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
	"sort"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/borderlink/borderlink/internal/identity"
)

// Query is the one rule a decision comes from.
const Query = "data.borderlink.exchange.decision"

// Input is what the gateway knows about a request when it asks for a
// decision. It becomes the JSON input documented in docs/policies.md.
type Input struct {
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
	ExportCountry      string   `json:"export_country,omitempty"`
	DestinationCountry string   `json:"destination_country,omitempty"`
	OriginCountries    []string `json:"origin_countries,omitempty"`
	RiskScore          *float64 `json:"risk_score,omitempty"`
}

// Decision is the policy's answer. Only Allow == true releases anything.
type Decision struct {
	Allow        bool        `json:"allow"`
	Entitled     bool        `json:"entitled"`
	Agreement    string      `json:"agreement"`
	Grant        string      `json:"grant"`
	Fields       []string    `json:"fields"`
	Mask         []string    `json:"mask"`
	Pseudonymize []string    `json:"pseudonymize"`
	Reasons      []string    `json:"reasons"`
	Obligations  Obligations `json:"obligations"`

	// Revision of the policy set that made the decision.
	Revision string `json:"-"`
}

// ErrEvaluation wraps every way evaluation can fail; the decision returned
// with it is always a deny.
var ErrEvaluation = errors.New("policy evaluation failed")

// Engine evaluates the exchange policy for one gateway (its trust domain is
// input.self). It is safe for concurrent use.
type Engine struct {
	self   string
	logger *slog.Logger
	cur    atomic.Pointer[Set]
}

// Set is one compiled policy set: the prepared query, the agreements it was
// built from and their revision.
type Set struct {
	query      rego.PreparedEvalQuery
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
	e := &Engine{self: self, logger: logger}
	if err := e.Reload(ctx, fsys); err != nil {
		return nil, err
	}
	return e, nil
}

// Reload compiles the policy set in fsys and, only if that fully succeeds,
// swaps it in. On error the engine keeps serving the previous set.
func (e *Engine) Reload(ctx context.Context, fsys fs.FS) error {
	c, err := Compile(ctx, fsys)
	if err != nil {
		return err
	}
	prev := e.cur.Swap(c)
	if prev == nil || prev.revision != c.revision {
		e.logger.Info("policy loaded", "revision", c.revision, "agreements", len(c.agreements))
	}
	return nil
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
	if len(modules) == 0 {
		return nil, errors.New("no policy modules (*.rego) found in the policy directory; copy policies/exchange.rego from the Borderlink repository")
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
	opts := []func(*rego.Rego){
		rego.Query(Query),
		rego.SetRegoVersion(ast.RegoV1),
		rego.Store(inmem.NewFromObject(map[string]any{"borderlink": Data(agreements)})),
	}
	for _, f := range modules {
		src, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, fmt.Errorf("read policy %s: %w", f, err)
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
	pq, err := rego.New(opts...).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("compile policy: %w", err)
	}
	return &Set{query: pq, revision: "sha256:" + hex.EncodeToString(h.Sum(nil)), agreements: agreements}, nil
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
				release[ds] = map[string]any{
					"fields":       nonNil(r.Fields),
					"mask":         nonNil(r.Mask),
					"pseudonymize": nonNil(r.Pseudonymize),
				}
			}
			conditions := map[string]any{}
			if len(g.Conditions.HSChapters) > 0 {
				conditions["hs_chapters"] = g.Conditions.HSChapters
			}
			if len(g.Conditions.ExportCountries) > 0 {
				conditions["export_countries"] = g.Conditions.ExportCountries
			}
			if len(g.Conditions.DestinationCountries) > 0 {
				conditions["destination_countries"] = g.Conditions.DestinationCountries
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
				"obligations": map[string]any{
					"retention_days": json.Number(fmt.Sprint(obl.RetentionDays)),
					"onward_sharing": obl.OnwardSharing,
					"attribution":    obl.Attribution,
				},
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
	return map[string]any{
		"self": e.self,
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
	deny := Decision{Reasons: []string{"policy evaluation failed"}, Revision: c.revision}
	if in.Caller.IsZero() {
		return deny, fmt.Errorf("%w: no caller identity", ErrEvaluation)
	}
	rs, err := c.query.Eval(ctx, rego.EvalInput(e.InputDocument(in)))
	if err != nil {
		return deny, fmt.Errorf("%w: %w", ErrEvaluation, err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return deny, fmt.Errorf("%w: %s returned %d results, want exactly 1", ErrEvaluation, Query, len(rs))
	}
	raw, err := json.Marshal(rs[0].Expressions[0].Value)
	if err != nil {
		return deny, fmt.Errorf("%w: encode result: %w", ErrEvaluation, err)
	}
	var d Decision
	if err := decodeStrict(raw, &d); err != nil {
		return deny, fmt.Errorf("%w: result is not a decision: %w", ErrEvaluation, err)
	}
	d.Revision = c.revision
	if d.Allow && (d.Agreement == "" || d.Grant == "") {
		return deny, fmt.Errorf("%w: allow without agreement and grant", ErrEvaluation)
	}
	sort.Strings(d.Fields)
	return d, nil
}

func decodeStrict(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}
