package policy_test

import (
	"context"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/borderlink/borderlink/internal/identity"
	"github.com/borderlink/borderlink/internal/policy"
	"github.com/borderlink/borderlink/policies"
)

// FuzzLoadAgreements feeds arbitrary bytes to the agreement parser: it must
// never panic, and whatever it accepts must be internally consistent (every
// grant's provider and recipient are parties, every action is known).
func FuzzLoadAgreements(f *testing.F) {
	f.Add([]byte(goodAgreement))
	for _, name := range []string{"agreements/nl-sg-risk-2026.yaml", "agreements/nl-health-2026.yaml", "agreements/cn-nl-transit-2026.yaml"} {
		b, err := policies.FS.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("id: [\n"))
	f.Add([]byte("grants:\n  - release:\n      declaration: &a\n        fields: *a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		as, err := policy.LoadAgreements(fstest.MapFS{"agreements/f.yaml": &fstest.MapFile{Data: data}})
		if err != nil {
			if !strings.Contains(err.Error(), "agreements/f.yaml") {
				t.Errorf("error does not name the file: %v", err)
			}
			return
		}
		for _, a := range as {
			parties := map[string]bool{}
			for _, p := range a.Parties {
				parties[p] = true
			}
			for _, g := range a.Grants {
				if !parties[g.Provider] || !parties[g.Recipient] || len(g.Actions) == 0 || len(g.Purposes) == 0 {
					t.Errorf("accepted an inconsistent grant %+v in %+v", g, a)
				}
			}
		}
	})
}

// FuzzDecide evaluates the shipped policy on arbitrary inputs: it must
// never error, and an allow must always name an agreement and grant made
// by this gateway to this caller (its domain's gateway or its exact ID).
func FuzzDecide(f *testing.F) {
	e, err := policy.NewEngine(context.Background(), "nl.customs.example", policies.FS, nil)
	if err != nil {
		f.Fatal(err)
	}
	grantsTo := map[string]string{}
	for _, a := range e.Agreements() {
		for _, g := range a.Grants {
			if g.Provider == "nl.customs.example" {
				grantsTo[a.ID+"/"+g.ID] = g.Recipient
			}
		}
	}
	f.Add("spiffe://sg.customs.example/gateway", "declaration.get", "risk-assessment", "85", "NL", "SG", true, int64(0))
	f.Add("spiffe://nl.customs.example/agency/health", "declaration.get", "sanitary-control", "03", "NO", "NL", true, int64(0))
	f.Add("spiffe://cn.customs.example/gateway", "risk.get", "transit-security", "86", "NL", "CN", true, int64(1e18))
	f.Fuzz(func(t *testing.T, caller, action, purpose, chapter, export, dest string, exists bool, offset int64) {
		id, err := identity.Parse(caller)
		if err != nil {
			return
		}
		in := policy.Input{Caller: id, Action: action, Purpose: purpose,
			Resource: policy.Resource{Type: "declaration", ID: "X", Exists: exists, Attributes: policy.Attributes{
				HSChapters: []string{chapter}, ExportCountry: export, DestinationCountry: dest}},
			Time: time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC).Add(time.Duration(offset % int64(100*365*24*time.Hour)))}
		d, err := e.Decide(context.Background(), in)
		if err != nil {
			t.Fatalf("Decide(%+v): %v", in, err)
		}
		if !d.Allow {
			if d.Code == "" || len(d.Fields) != 0 {
				t.Fatalf("deny without code or with fields: %+v", d)
			}
			return
		}
		recipient, ok := grantsTo[d.Agreement+"/"+d.Grant]
		if !ok || (recipient != caller && !(recipient == id.TrustDomain && id.Kind == identity.KindGateway)) {
			t.Fatalf("allowed %s under %s/%s granted to %q", caller, d.Agreement, d.Grant, recipient)
		}
	})
}
