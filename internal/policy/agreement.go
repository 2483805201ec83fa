package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
	"gopkg.in/yaml.v3"

	"github.com/borderlink/borderlink/internal/identity"
	"github.com/borderlink/borderlink/internal/release"
	"github.com/borderlink/borderlink/internal/validate"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// Agreement is one data-sharing agreement as written in
// policies/agreements/*.yaml. docs/policies.md documents every key.
type Agreement struct {
	ID          string       `yaml:"id"`
	Title       string       `yaml:"title"`
	LegalBasis  string       `yaml:"legal_basis"`
	Parties     []string     `yaml:"parties"`
	Valid       Window       `yaml:"valid"`
	Status      string       `yaml:"status"`
	Obligations *Obligations `yaml:"obligations"`
	Grants      []Grant      `yaml:"grants"`

	// File is the path the agreement was loaded from, for error messages.
	File string `yaml:"-"`
}

// Window is an agreement's validity: from inclusive, until exclusive. Both
// are RFC 3339 timestamps with an explicit offset, because agreements are
// signed across time zones and a bare date is ambiguous.
type Window struct {
	From  string `yaml:"from"`
	Until string `yaml:"until"`
}

// Grant lets one recipient receive data from one provider.
type Grant struct {
	ID          string                  `yaml:"id"`
	Provider    string                  `yaml:"provider"`
	Recipient   string                  `yaml:"recipient"`
	Actions     []string                `yaml:"actions"`
	Purposes    []string                `yaml:"purposes"`
	Conditions  Conditions              `yaml:"conditions"`
	Release     map[string]ReleaseRules `yaml:"release"`
	Obligations *Obligations            `yaml:"obligations"`
	// MaxResults caps how many records one search may return under this
	// grant; 0 leaves the gateway's own limit.
	MaxResults int `yaml:"max_results"`
	// RateLimit caps the calls the recipient may make under this grant.
	RateLimit *RateLimit `yaml:"rate_limit"`
}

// RateLimit is a token bucket per recipient and grant: Requests per Per,
// with bursts up to Burst (default Requests).
type RateLimit struct {
	Requests int    `yaml:"requests"`
	Per      string `yaml:"per"`
	Burst    int    `yaml:"burst"`
}

// ReleaseRules are the field paths released for one record type.
type ReleaseRules struct {
	Fields       []string `yaml:"fields"`
	Mask         []string `yaml:"mask"`
	Pseudonymize []string `yaml:"pseudonymize"`
}

// Conditions restrict a grant to records with these attributes; an empty
// list does not restrict. All non-empty lists must match.
type Conditions struct {
	HSChapters           []string `yaml:"hs_chapters"`
	HSHeadings           []string `yaml:"hs_headings"`
	ExportCountries      []string `yaml:"export_countries"`
	DestinationCountries []string `yaml:"destination_countries"`
	OriginCountries      []string `yaml:"origin_countries"`
	// AcceptedFrom (inclusive) and AcceptedUntil (exclusive) bound the
	// declaration's acceptance time, RFC 3339 with offset.
	AcceptedFrom  string `yaml:"accepted_from"`
	AcceptedUntil string `yaml:"accepted_until"`
	// MinRiskScore releases only risk assessments scoring at least this.
	MinRiskScore *float64 `yaml:"min_risk_score"`
	// InvoiceAmount restricts the declaration's invoice amount.
	InvoiceAmount *AmountRange `yaml:"invoice_amount"`
}

// AmountRange matches amounts in one currency from Min (inclusive) to Max
// (exclusive); either bound may be absent. There is no currency
// conversion: an amount in any other currency does not match, because an
// exchange rate chosen by the gateway would decide what the agreement
// releases.
type AmountRange struct {
	Currency string   `yaml:"currency"`
	Min      *float64 `yaml:"min"`
	Max      *float64 `yaml:"max"`
}

// Obligations bind the recipient of a release.
type Obligations struct {
	RetentionDays uint32 `yaml:"retention_days" json:"retention_days"`
	OnwardSharing bool   `yaml:"onward_sharing" json:"onward_sharing"`
	// OnwardRecipients, with OnwardSharing, names the only parties the
	// recipient may share with (trust domains or SPIFFE IDs); empty: anyone.
	OnwardRecipients []string `yaml:"onward_recipients,omitempty" json:"onward_recipients,omitempty"`
	Attribution      string   `yaml:"attribution" json:"attribution"`
}

// Actions a grant may allow, and the record type each one reads.
// "subscribe" reads whichever record types the grant releases
// (anyDataset); alert.deliver pushes risk assessments to the recipient's
// gateway.
var actionDatasets = map[string]string{
	"declaration.get":    "declaration",
	"declaration.search": "declaration",
	"risk.get":           "risk_assessment",
	"alert.deliver":      "risk_assessment",
	"subscribe":          anyDataset,
}

// anyDataset marks an action that reads every record type its grant
// releases.
const anyDataset = "*"

// Record types a grant may release, with their message descriptors so that
// field paths are checked against the real schema.
var datasetDescriptors = map[string]protoreflect.MessageDescriptor{
	"declaration":     (&blv1.Declaration{}).ProtoReflect().Descriptor(),
	"risk_assessment": (&blv1.RiskAssessment{}).ProtoReflect().Descriptor(),
}

var (
	idPattern      = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	purposePattern = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)
	chapterPattern = regexp.MustCompile(`^(0[1-9]|[1-9][0-9])$`)
	headingPattern = regexp.MustCompile(`^(0[1-9]|[1-9][0-9])[0-9]{2}$`)
	domainPattern  = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$`)
)

// LoadError is a problem in one agreement file, located as precisely as
// the YAML allows.
type LoadError struct {
	File string
	Line int
	Key  string
	Msg  string
	Hint string
}

func (e *LoadError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, ": %s", e.Key)
	}
	fmt.Fprintf(&b, ": %s", e.Msg)
	if e.Hint != "" {
		fmt.Fprintf(&b, " (hint: %s)", e.Hint)
	}
	return b.String()
}

// LoadAgreements reads every agreements/*.yaml file of fsys, decodes it
// strictly and validates it. All files' errors are returned together so
// that one run of `borderlink policy check` shows everything to fix.
func LoadAgreements(fsys fs.FS) ([]Agreement, error) {
	files, err := fs.Glob(fsys, "agreements/*.yaml")
	if err != nil {
		return nil, fmt.Errorf("list agreements: %w", err)
	}
	more, err := fs.Glob(fsys, "agreements/*.yml")
	if err != nil {
		return nil, fmt.Errorf("list agreements: %w", err)
	}
	files = append(files, more...)
	sort.Strings(files)

	var (
		out  []Agreement
		errs []error
		seen = map[string]string{}
	)
	for _, f := range files {
		data, err := fs.ReadFile(fsys, f)
		if err != nil {
			errs = append(errs, fmt.Errorf("read agreement %s: %w", f, err))
			continue
		}
		a, ferrs := parseAgreement(f, data)
		if len(ferrs) > 0 {
			errs = append(errs, ferrs...)
			continue
		}
		if prev, ok := seen[a.ID]; ok {
			errs = append(errs, &LoadError{File: f, Key: "id", Msg: fmt.Sprintf("agreement %q is also defined in %s", a.ID, prev), Hint: "agreement IDs must be unique"})
			continue
		}
		seen[a.ID] = f
		out = append(out, a)
	}
	return out, errors.Join(errs...)
}

func parseAgreement(file string, data []byte) (Agreement, []error) {
	var a Agreement
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&a); err != nil {
		return a, []error{yamlError(file, err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return a, []error{&LoadError{File: file, Line: extra.Line, Msg: "more than one YAML document", Hint: "put each agreement in its own file"}}
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return a, []error{yamlError(file, err)}
	}
	a.File = file
	v := &validator{file: file, root: &root}
	v.agreement(&a)
	return a, v.errs
}

// yamlError turns yaml.v3's "yaml: line 7: field foo not found in type
// policy.Grant" into a LoadError naming the file, line and key.
func yamlError(file string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		var errs []error
		for _, m := range te.Errors {
			errs = append(errs, yamlMessage(file, m))
		}
		return errors.Join(errs...)
	}
	return yamlMessage(file, strings.TrimPrefix(err.Error(), "yaml: "))
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
var yamlUnknown = regexp.MustCompile(`^field (\S+) not found in type \S+$`)

func yamlMessage(file, msg string) error {
	e := &LoadError{File: file, Msg: msg}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		fmt.Sscan(m[1], &e.Line)
		e.Msg = m[2]
	}
	if m := yamlUnknown.FindStringSubmatch(e.Msg); m != nil {
		e.Key = m[1]
		e.Msg = "unknown key"
		e.Hint = "see docs/policies.md for the keys an agreement may have"
	}
	return e
}

type validator struct {
	file string
	root *yaml.Node
	errs []error
}

// fail records a problem at the YAML node found by walking keys and list
// indexes from the document root (best effort: the line is 0 if not found).
func (v *validator) fail(msg, hint string, at ...any) {
	var keys []string
	for _, k := range at {
		switch k := k.(type) {
		case string:
			keys = append(keys, k)
		case int:
			keys = append(keys, fmt.Sprintf("[%d]", k))
		}
	}
	key := strings.ReplaceAll(strings.Join(keys, "."), ".[", "[")
	v.errs = append(v.errs, &LoadError{File: v.file, Line: lineOf(v.root, at), Key: key, Msg: msg, Hint: hint})
}

func lineOf(n *yaml.Node, at []any) int {
	if n == nil {
		return 0
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, k := range at {
		for n.Kind == yaml.AliasNode && n.Alias != nil {
			n = n.Alias
		}
		switch k := k.(type) {
		case string:
			if n.Kind != yaml.MappingNode {
				return line
			}
			found := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == k {
					line = n.Content[i].Line
					n = n.Content[i+1]
					found = true
					break
				}
			}
			if !found {
				return line
			}
		case int:
			if n.Kind != yaml.SequenceNode || k >= len(n.Content) {
				return line
			}
			n = n.Content[k]
			line = n.Line
		}
	}
	return line
}

func (v *validator) agreement(a *Agreement) {
	if !idPattern.MatchString(a.ID) {
		v.fail(fmt.Sprintf("agreement id %q is missing or invalid", a.ID), "use lower-case letters, digits and dashes, e.g. nl-sg-risk-2026", "id")
	}
	if strings.TrimSpace(a.Title) == "" {
		v.fail("title is required", "a short human-readable name of the agreement", "title")
	}
	if strings.TrimSpace(a.LegalBasis) == "" {
		v.fail("legal_basis is required", "the reference of the legal instrument this agreement implements", "legal_basis")
	}
	switch a.Status {
	case "draft", "active", "suspended":
	default:
		v.fail(fmt.Sprintf("status %q is not one of draft, active, suspended", a.Status), "only active agreements release data", "status")
	}
	parties := map[string]bool{}
	for i, p := range a.Parties {
		if !isDomain(p) && !isSPIFFE(p) {
			v.fail(fmt.Sprintf("party %q is neither a trust domain nor a SPIFFE ID", p), `e.g. nl.customs.example or "spiffe://nl.customs.example/agency/health"`, "parties", i)
		}
		parties[p] = true
	}
	if len(a.Parties) < 2 {
		v.fail("an agreement needs at least two parties", "", "parties")
	}
	from, errFrom := parseTime(a.Valid.From)
	if errFrom != nil {
		v.fail(errFrom.Error(), `RFC 3339 with an explicit offset, e.g. "2026-01-01T00:00:00+01:00"`, "valid", "from")
	}
	until, errUntil := parseTime(a.Valid.Until)
	if errUntil != nil {
		v.fail(errUntil.Error(), `RFC 3339 with an explicit offset, e.g. "2028-01-01T00:00:00Z"`, "valid", "until")
	}
	if errFrom == nil && errUntil == nil && !from.Before(until) {
		v.fail("valid.from must be before valid.until", "", "valid")
	}
	if len(a.Grants) == 0 {
		v.fail("an agreement needs at least one grant", "", "grants")
	}
	if a.Obligations != nil {
		v.obligations(a.Obligations, "obligations")
	}
	grantIDs := map[string]bool{}
	for i := range a.Grants {
		g := &a.Grants[i]
		if !idPattern.MatchString(g.ID) {
			v.fail(fmt.Sprintf("grant id %q is missing or invalid", g.ID), "lower-case letters, digits and dashes", "grants", i, "id")
		} else if grantIDs[g.ID] {
			v.fail(fmt.Sprintf("grant id %q is used twice", g.ID), "grant IDs must be unique within an agreement", "grants", i, "id")
		}
		grantIDs[g.ID] = true
		v.grant(g, parties, i)
	}
}

func (v *validator) grant(g *Grant, parties map[string]bool, i int) {
	if !isDomain(g.Provider) {
		v.fail(fmt.Sprintf("provider %q is not a trust domain", g.Provider), "the provider is the administration whose gateway releases the data", "grants", i, "provider")
	} else if !parties[g.Provider] {
		v.fail(fmt.Sprintf("provider %q is not a party of the agreement", g.Provider), "add it to parties", "grants", i, "provider")
	}
	switch {
	case isDomain(g.Recipient) || isSPIFFE(g.Recipient):
		if !parties[g.Recipient] {
			v.fail(fmt.Sprintf("recipient %q is not a party of the agreement", g.Recipient), "add it to parties", "grants", i, "recipient")
		}
		if g.Recipient == g.Provider {
			v.fail("recipient is the provider itself", "a gateway does not need a grant to read its own data", "grants", i, "recipient")
		}
	default:
		v.fail(fmt.Sprintf("recipient %q is neither a trust domain nor a SPIFFE ID", g.Recipient), `a trust domain means that administration's gateway; an agency needs its SPIFFE ID`, "grants", i, "recipient")
	}
	if len(g.Actions) == 0 {
		v.fail("a grant needs at least one action", knownActions(), "grants", i, "actions")
	}
	for j, act := range g.Actions {
		ds, ok := actionDatasets[act]
		if !ok {
			v.fail(fmt.Sprintf("unknown action %q", act), knownActions(), "grants", i, "actions", j)
			continue
		}
		if ds == anyDataset {
			if len(g.Release) == 0 {
				v.fail(fmt.Sprintf("action %s streams the record types the grant releases but the grant releases none", act), "add release.declaration or release.risk_assessment, or remove the action", "grants", i, "release")
			}
			continue
		}
		if _, ok := g.Release[ds]; !ok {
			v.fail(fmt.Sprintf("action %s reads %s records but the grant has no release.%s", act, ds, ds), "list the fields to release, or remove the action", "grants", i, "release")
		}
		if act == "alert.deliver" && !isDomain(g.Recipient) {
			v.fail(fmt.Sprintf("action alert.deliver pushes to a gateway but recipient %q is not a trust domain", g.Recipient), "name the partner administration's trust domain; agencies pull with risk.get or subscribe", "grants", i, "recipient")
		}
	}
	if len(g.Purposes) == 0 {
		v.fail("a grant needs at least one purpose", "e.g. risk-assessment", "grants", i, "purposes")
	}
	for j, p := range g.Purposes {
		if !purposePattern.MatchString(p) {
			v.fail(fmt.Sprintf("purpose %q is invalid", p), "lower-case letters, digits and dashes, e.g. risk-assessment", "grants", i, "purposes", j)
		}
	}
	for j, c := range g.Conditions.HSChapters {
		if !chapterPattern.MatchString(c) {
			v.fail(fmt.Sprintf("HS chapter %q is not two digits 01-99", c), `quote chapters in YAML: "03", not 03`, "grants", i, "conditions", "hs_chapters", j)
		}
	}
	for j, h := range g.Conditions.HSHeadings {
		if !headingPattern.MatchString(h) {
			v.fail(fmt.Sprintf("HS heading %q is not four digits", h), `quote headings in YAML: "0302", not 0302`, "grants", i, "conditions", "hs_headings", j)
		}
	}
	var from, until time.Time
	if c := g.Conditions.AcceptedFrom; c != "" {
		t, err := parseTime(c)
		if err != nil {
			v.fail(err.Error(), `RFC 3339 with an explicit offset, e.g. "2026-01-01T00:00:00Z"`, "grants", i, "conditions", "accepted_from")
		}
		from = t
	}
	if c := g.Conditions.AcceptedUntil; c != "" {
		t, err := parseTime(c)
		if err != nil {
			v.fail(err.Error(), `RFC 3339 with an explicit offset, e.g. "2027-01-01T00:00:00Z"`, "grants", i, "conditions", "accepted_until")
		}
		until = t
	}
	if !from.IsZero() && !until.IsZero() && !from.Before(until) {
		v.fail("accepted_from must be before accepted_until", "", "grants", i, "conditions")
	}
	if s := g.Conditions.MinRiskScore; s != nil && (*s < 0 || *s > 1) {
		v.fail(fmt.Sprintf("min_risk_score %v is outside 0..1", *s), "risk scores run from 0 (no risk) to 1", "grants", i, "conditions", "min_risk_score")
	}
	if r := g.Conditions.InvoiceAmount; r != nil {
		at := []any{"grants", i, "conditions", "invoice_amount"}
		if !validate.Currency(r.Currency) {
			v.fail(fmt.Sprintf("currency %q is not an ISO 4217 code", r.Currency), "e.g. currency: EUR; amounts in other currencies never match (no conversion)", append(at, "currency")...)
		}
		switch {
		case r.Min == nil && r.Max == nil:
			v.fail("invoice_amount needs min, max or both", "e.g. min: 10000 (inclusive), max: 1000000 (exclusive)", at...)
		case r.Min != nil && *r.Min < 0, r.Max != nil && *r.Max <= 0:
			v.fail("invoice_amount bounds must be positive (min may be 0)", "", at...)
		case r.Min != nil && r.Max != nil && *r.Min >= *r.Max:
			v.fail(fmt.Sprintf("min %v must be below max %v", *r.Min, *r.Max), "max is exclusive", at...)
		}
	}
	if rl := g.RateLimit; rl != nil {
		if rl.Requests < 1 {
			v.fail(fmt.Sprintf("rate_limit.requests %d must be at least 1", rl.Requests), "e.g. requests: 600, per: 1m", "grants", i, "rate_limit", "requests")
		}
		if d, err := time.ParseDuration(rl.Per); err != nil || d <= 0 {
			v.fail(fmt.Sprintf("rate_limit.per %q is not a positive duration", rl.Per), "e.g. 1s, 1m, 1h", "grants", i, "rate_limit", "per")
		}
		if rl.Burst < 0 {
			v.fail("rate_limit.burst is negative", "0 means the same as requests", "grants", i, "rate_limit", "burst")
		}
	}
	if obl := g.Obligations; obl != nil {
		v.obligations(obl, "grants", i, "obligations")
	}
	if g.MaxResults < 0 {
		v.fail("max_results is negative", "0 means no limit beyond the gateway's own", "grants", i, "max_results")
	}
	for key, list := range map[string][]string{"export_countries": g.Conditions.ExportCountries, "destination_countries": g.Conditions.DestinationCountries, "origin_countries": g.Conditions.OriginCountries} {
		for j, c := range list {
			if !validate.Country(c) {
				v.fail(fmt.Sprintf("%q is not an ISO 3166-1 alpha-2 country code", c), "upper case, e.g. NL", "grants", i, "conditions", key, j)
			}
		}
	}
	datasets := make([]string, 0, len(g.Release))
	for ds := range g.Release {
		datasets = append(datasets, ds)
	}
	sort.Strings(datasets)
	for _, ds := range datasets {
		rules := g.Release[ds]
		md, ok := datasetDescriptors[ds]
		if !ok {
			v.fail(fmt.Sprintf("unknown record type %q", ds), "declaration or risk_assessment", "grants", i, "release", ds)
			continue
		}
		for _, list := range []struct {
			key   string
			paths []string
		}{{"fields", rules.Fields}, {"mask", rules.Mask}, {"pseudonymize", rules.Pseudonymize}} {
			if err := release.CheckPaths(md, list.paths); err != nil {
				v.fail(err.Error(), "field paths are proto field names joined by dots, e.g. importer.tax_id", "grants", i, "release", ds, list.key)
			}
		}
		for _, list := range []struct {
			key   string
			paths []string
		}{{"mask", rules.Mask}, {"pseudonymize", rules.Pseudonymize}} {
			for j, p := range list.paths {
				if !covered(rules.Fields, p) {
					v.fail(fmt.Sprintf("%s path %q is not released by fields, so it would never be sent", list.key, p), "add it (or a parent) to fields", "grants", i, "release", ds, list.key, j)
				}
			}
		}
	}
}

func (v *validator) obligations(o *Obligations, at ...any) {
	if len(o.OnwardRecipients) > 0 && !o.OnwardSharing {
		v.fail("onward_recipients is set but onward_sharing is false", "set onward_sharing: true to allow sharing with those parties", append(at, "onward_recipients")...)
	}
	for j, r := range o.OnwardRecipients {
		if !isDomain(r) && !isSPIFFE(r) {
			v.fail(fmt.Sprintf("onward recipient %q is neither a trust domain nor a SPIFFE ID", r), "", append(at, "onward_recipients", j)...)
		}
	}
}

func knownActions() string {
	acts := make([]string, 0, len(actionDatasets))
	for a := range actionDatasets {
		acts = append(acts, a)
	}
	slices.Sort(acts)
	return "known actions: " + strings.Join(acts, ", ")
}

// covered reports whether path is one of fields or lies beneath one.
func covered(fields []string, p string) bool {
	for _, f := range fields {
		if p == f || strings.HasPrefix(p, f+".") {
			return true
		}
	}
	return false
}

func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, errors.New("timestamp is required")
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not an RFC 3339 timestamp with offset", s)
	}
	return t, nil
}

func isDomain(s string) bool { return domainPattern.MatchString(s) }

func isSPIFFE(s string) bool {
	if !strings.HasPrefix(s, "spiffe://") {
		return false
	}
	_, err := identity.Parse(s)
	return err == nil
}

// agreementFiles is used by Revision to hash exactly the files that were
// loaded.
func agreementFiles(fsys fs.FS) ([]string, error) {
	var files []string
	for _, pat := range []string{"agreements/*.yaml", "agreements/*.yml"} {
		m, err := fs.Glob(fsys, pat)
		if err != nil {
			return nil, err
		}
		files = append(files, m...)
	}
	sort.Strings(files)
	return files, nil
}

// regoFiles lists the policy modules (tests excluded: they never decide).
func regoFiles(fsys fs.FS) ([]string, error) {
	m, err := fs.Glob(fsys, "*.rego")
	if err != nil {
		return nil, err
	}
	out := m[:0]
	for _, f := range m {
		if !strings.HasSuffix(path.Base(f), "_test.rego") {
			out = append(out, f)
		}
	}
	sort.Strings(out)
	return out, nil
}
