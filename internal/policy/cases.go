package policy

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"path"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/tester"
	"gopkg.in/yaml.v3"

	"github.com/borderlink/borderlink/internal/identity"
)

// CasesGlob is where golden decision cases live in a policy directory.
const CasesGlob = "testdata/decisions/*.yaml"

// Case is one golden decision case: an input and the decision expected for
// it under the policy set of its directory. One case per file, so adding a
// case is adding a file (docs/policies.md).
type Case struct {
	Description string    `yaml:"description"`
	Self        string    `yaml:"self"`
	Input       CaseInput `yaml:"input"`
	Want        Expected  `yaml:"want"`
}

// CaseInput is the readable form of Input used in case files.
type CaseInput struct {
	Caller   string `yaml:"caller"`
	Action   string `yaml:"action"`
	Purpose  string `yaml:"purpose"`
	Resource struct {
		Type       string `yaml:"type"`
		ID         string `yaml:"id"`
		Exists     bool   `yaml:"exists"`
		Attributes struct {
			HSChapters         []string `yaml:"hs_chapters"`
			HSHeadings         []string `yaml:"hs_headings"`
			ExportCountry      string   `yaml:"export_country"`
			DestinationCountry string   `yaml:"destination_country"`
			OriginCountries    []string `yaml:"origin_countries"`
			AcceptedTime       string   `yaml:"accepted_time"`
			RiskScore          *float64 `yaml:"risk_score"`
		} `yaml:"attributes"`
	} `yaml:"resource"`
	Time string `yaml:"time"`
}

// Expected is the part of a decision a case pins down.
type Expected struct {
	Allow        bool        `yaml:"allow"`
	Entitled     bool        `yaml:"entitled"`
	Agreement    string      `yaml:"agreement,omitempty"`
	Grant        string      `yaml:"grant,omitempty"`
	Fields       []string    `yaml:"fields,omitempty,flow"`
	Mask         []string    `yaml:"mask,omitempty,flow"`
	Pseudonymize []string    `yaml:"pseudonymize,omitempty,flow"`
	Withhold     []string    `yaml:"withhold,omitempty,flow"`
	Code         string      `yaml:"code,omitempty"`
	Reasons      []string    `yaml:"reasons,flow"`
	Obligations  Obligations `yaml:"obligations,omitempty,flow"`
	MaxResults   int         `yaml:"max_results,omitempty"`
}

// ToInput converts a case input, with errors naming the key.
func (c CaseInput) ToInput() (Input, error) {
	caller, err := identity.Parse(c.Caller)
	if err != nil {
		return Input{}, fmt.Errorf("input.caller: %w", err)
	}
	at, err := time.Parse(time.RFC3339, c.Time)
	if err != nil {
		return Input{}, fmt.Errorf("input.time: %q is not RFC 3339", c.Time)
	}
	r := c.Resource
	in := Input{Caller: caller, Action: c.Action, Purpose: c.Purpose, Time: at,
		Resource: Resource{Type: r.Type, ID: r.ID, Exists: r.Exists, Attributes: Attributes{
			HSChapters: r.Attributes.HSChapters, HSHeadings: r.Attributes.HSHeadings,
			ExportCountry: r.Attributes.ExportCountry, DestinationCountry: r.Attributes.DestinationCountry,
			OriginCountries: r.Attributes.OriginCountries, RiskScore: r.Attributes.RiskScore,
		}}}
	if r.Attributes.AcceptedTime != "" {
		if in.Resource.Attributes.Accepted, err = time.Parse(time.RFC3339, r.Attributes.AcceptedTime); err != nil {
			return Input{}, fmt.Errorf("input.resource.attributes.accepted_time: %q is not RFC 3339", r.Attributes.AcceptedTime)
		}
	}
	return in, nil
}

// Expect reduces a decision to what cases compare.
func Expect(d Decision) Expected {
	return Expected{Allow: d.Allow, Entitled: d.Entitled, Agreement: d.Agreement, Grant: d.Grant,
		Fields: d.Fields, Mask: d.Mask, Pseudonymize: d.Pseudonymize, Withhold: d.Withhold, Code: d.Code, Reasons: d.Reasons,
		Obligations: d.Obligations, MaxResults: d.MaxResults}
}

// Equal compares two expectations, treating nil and empty lists alike.
func (e Expected) Equal(o Expected) bool {
	norm := func(x Expected) Expected {
		for _, l := range []*[]string{&x.Fields, &x.Mask, &x.Pseudonymize, &x.Withhold, &x.Reasons} {
			if len(*l) == 0 {
				*l = nil
			}
		}
		return x
	}
	return reflect.DeepEqual(norm(e), norm(o))
}

// CaseResult is the outcome of one case file.
type CaseResult struct {
	File string
	Case Case
	Got  Expected
	Err  error
}

// Pass reports whether the case ran and matched.
func (r CaseResult) Pass() bool { return r.Err == nil && r.Case.Want.Equal(r.Got) }

// RunCases evaluates every case file of fsys against the policy set in
// fsys, building one engine per trust domain named by the cases.
func RunCases(ctx context.Context, fsys fs.FS) ([]CaseResult, error) {
	files, err := fs.Glob(fsys, CasesGlob)
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	engines := map[string]*Engine{}
	var out []CaseResult
	for _, f := range files {
		r := CaseResult{File: f}
		raw, err := fs.ReadFile(fsys, f)
		if err == nil {
			dec := yaml.NewDecoder(bytes.NewReader(raw))
			dec.KnownFields(true)
			err = dec.Decode(&r.Case)
		}
		if err != nil {
			r.Err = fmt.Errorf("%s: %w", f, err)
			out = append(out, r)
			continue
		}
		e := engines[r.Case.Self]
		if e == nil {
			if e, err = NewEngine(ctx, r.Case.Self, fsys, nil); err != nil {
				return nil, err
			}
			engines[r.Case.Self] = e
		}
		in, err := r.Case.Input.ToInput()
		if err != nil {
			r.Err = fmt.Errorf("%s: %w", f, err)
			out = append(out, r)
			continue
		}
		d, err := e.Decide(ctx, in)
		if err != nil {
			r.Err = fmt.Errorf("%s: %w", f, err)
		}
		r.Got = Expect(d)
		out = append(out, r)
	}
	return out, nil
}

// RegoResult is the outcome of one Rego test rule.
type RegoResult struct {
	Name     string
	Location string
	Pass     bool
	Err      error
}

// RunRegoTests runs the test_ rules of every top-level *.rego file of fsys
// with the embedded OPA, as `opa test` would.
func RunRegoTests(ctx context.Context, fsys fs.FS) ([]RegoResult, error) {
	files, err := fs.Glob(fsys, "*.rego")
	if err != nil {
		return nil, err
	}
	modules := map[string]*ast.Module{}
	for _, f := range files {
		src, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, err
		}
		m, err := ast.ParseModuleWithOpts(f, string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", f, err)
		}
		modules[f] = m
	}
	ch, err := tester.NewRunner().SetModules(modules).RunTests(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("run Rego tests: %w", err)
	}
	var out []RegoResult
	for r := range ch {
		res := RegoResult{Name: r.Name, Pass: r.Pass(), Err: r.Error}
		if r.Location != nil {
			res.Location = fmt.Sprintf("%s:%d", path.Base(r.Location.File), r.Location.Row)
		}
		out = append(out, res)
	}
	slices.SortFunc(out, func(a, b RegoResult) int { return strings.Compare(a.Location+a.Name, b.Location+b.Name) })
	return out, nil
}
