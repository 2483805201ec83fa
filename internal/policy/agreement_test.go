package policy_test

import (
	"context"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/borderlink/borderlink/internal/policy"
	"github.com/borderlink/borderlink/policies"
)

const goodAgreement = `id: a-b
title: A and B
legal_basis: treaty 1
parties: [a.customs.example, b.customs.example]
valid:
  from: "2026-01-01T00:00:00Z"
  until: "2027-01-01T00:00:00Z"
status: active
grants:
  - id: a-to-b
    provider: a.customs.example
    recipient: b.customs.example
    actions: [declaration.get]
    purposes: [risk-assessment]
    conditions:
      hs_chapters: ["85"]
      destination_countries: [SG]
    release:
      declaration:
        fields: [id, importer]
        mask: [importer.name]
        pseudonymize: [importer.tax_id]
`

func TestLoadAgreementsShipped(t *testing.T) {
	as, err := policy.LoadAgreements(policies.FS)
	if err != nil {
		t.Fatalf("shipped agreements do not load: %v", err)
	}
	if len(as) < 3 {
		t.Errorf("loaded %d agreements, want at least 3", len(as))
	}
}

// TestAgreementErrors mutates a good agreement one defect at a time; each
// error must name the file, the line and the key, so a legal officer or an
// engineer can go straight to it.
func TestAgreementErrors(t *testing.T) {
	cases := []struct {
		name    string
		from    string
		to      string
		wantErr []string
	}{
		{"unknown key", "status: active", "status: active\nsignatory: me", []string{"a.yaml:9", "signatory", "unknown key"}},
		{"bad status", "status: active", "status: live", []string{"a.yaml:8", "status", `"live"`}},
		{"date without offset", `from: "2026-01-01T00:00:00Z"`, `from: "2026-01-01"`, []string{"a.yaml:6", "valid.from", "RFC 3339"}},
		{"from after until", `from: "2026-01-01T00:00:00Z"`, `from: "2028-01-01T00:00:00Z"`, []string{"valid", "before"}},
		{"unknown action", "actions: [declaration.get]", "actions: [declaration.delete]", []string{"a.yaml:13", "grants[0].actions[0]", "unknown action", "known actions"}},
		{"action without release", "actions: [declaration.get]", "actions: [declaration.get, risk.get]", []string{"grants[0].release", "no release.risk_assessment"}},
		{"unknown field path", "fields: [id, importer]", "fields: [id, importer, importer.nmae]", []string{"a.yaml:20", "grants[0].release.declaration.fields", "nmae"}},
		{"mask outside fields", "fields: [id, importer]", "fields: [id, importer.tax_id]", []string{"grants[0].release.declaration.mask[0]", "not released by fields"}},
		{"bad country", "destination_countries: [SG]", "destination_countries: [XX]", []string{"a.yaml:17", "destination_countries[0]", `"XX"`}},
		{"amount currency", "destination_countries: [SG]", "destination_countries: [SG]\n      invoice_amount: {currency: EURO, min: 10}", []string{"invoice_amount.currency", `"EURO"`, "ISO 4217"}},
		{"amount without bounds", "destination_countries: [SG]", "destination_countries: [SG]\n      invoice_amount: {currency: EUR}", []string{"invoice_amount", "min, max or both"}},
		{"amount min above max", "destination_countries: [SG]", "destination_countries: [SG]\n      invoice_amount: {currency: EUR, min: 500, max: 100}", []string{"invoice_amount", "below max"}},
		{"amount unknown key", "destination_countries: [SG]", "destination_countries: [SG]\n      invoice_amount: {currency: EUR, minimum: 5}", []string{"minimum", "unknown key"}},
		{"unquoted chapter", `hs_chapters: ["85"]`, "hs_chapters: [3]", []string{"hs_chapters[0]", "quote chapters"}},
		{"recipient not a party", "recipient: b.customs.example", "recipient: c.customs.example", []string{"grants[0].recipient", "not a party"}},
		{"agency recipient", "recipient: b.customs.example", `recipient: "spiffe://b.customs.example/agency/health"`, []string{"not a party"}},
		{"bad purpose", "purposes: [risk-assessment]", "purposes: [Risk Assessment]", []string{"grants[0].purposes[0]", "invalid"}},
		{"wrong type", "parties: [a.customs.example, b.customs.example]", "parties: a.customs.example", []string{"a.yaml:4", "cannot unmarshal"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := strings.Replace(goodAgreement, c.from, c.to, 1)
			if src == goodAgreement {
				t.Fatalf("mutation %q did not apply", c.from)
			}
			_, err := policy.LoadAgreements(fstest.MapFS{"agreements/a.yaml": &fstest.MapFile{Data: []byte(src)}})
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	if _, err := policy.LoadAgreements(fstest.MapFS{"agreements/a.yaml": &fstest.MapFile{Data: []byte(goodAgreement)}}); err != nil {
		t.Errorf("good agreement rejected: %v", err)
	}
}

func TestDuplicateAgreementIDs(t *testing.T) {
	fsys := fstest.MapFS{
		"agreements/a.yaml": &fstest.MapFile{Data: []byte(goodAgreement)},
		"agreements/b.yaml": &fstest.MapFile{Data: []byte(goodAgreement)},
	}
	_, err := policy.LoadAgreements(fsys)
	if err == nil || !strings.Contains(err.Error(), "agreements/b.yaml") || !strings.Contains(err.Error(), "also defined in agreements/a.yaml") {
		t.Fatalf("err = %v, want duplicate ID naming both files", err)
	}
}

// TestModulePackages: the decision rule lives only in exchange.rego; any
// other module must be a national rule, which can only take away.
func TestModulePackages(t *testing.T) {
	rego, _ := policies.FS.ReadFile("exchange.rego")
	agreement := []byte(goodAgreement)
	cases := []struct {
		name    string
		files   fstest.MapFS
		wantErr string
	}{
		{"national rule", fstest.MapFS{"national.rego": {Data: []byte("package borderlink.national\n\ndeny contains \"x\" if false\n")}}, ""},
		{"second decision module", fstest.MapFS{"more.rego": {Data: []byte("package borderlink.exchange\n\nextra := 1\n")}}, "more.rego: package borderlink.exchange"},
		{"other package", fstest.MapFS{"grant.rego": {Data: []byte("package borderlink\n\ngrants := {}\n")}}, "must declare package borderlink.national"},
		{"no exchange.rego", nil, "no exchange.rego"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fsys := fstest.MapFS{"agreements/a.yaml": {Data: agreement}}
			if c.name != "no exchange.rego" {
				fsys["exchange.rego"] = &fstest.MapFile{Data: rego}
			} else {
				fsys["national.rego"] = &fstest.MapFile{Data: []byte("package borderlink.national\n")}
			}
			for k, v := range c.files {
				fsys[k] = v
			}
			_, err := policy.Compile(context.Background(), fsys)
			if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
				t.Errorf("Compile = %v, want %q", err, c.wantErr)
			}
		})
	}
}
