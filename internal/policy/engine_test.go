package policy_test

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"gopkg.in/yaml.v3"

	"github.com/borderlink/borderlink/internal/identity"
	"github.com/borderlink/borderlink/internal/policy"
	"github.com/borderlink/borderlink/policies"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

var update = flag.Bool("update", false, "rewrite the want sections of policies/testdata/decisions/*.yaml")

// TestGoldenDecisions runs every policies/testdata/decisions/*.yaml case
// (input → expected decision) against the shipped policy and agreements,
// through the same runner as `borderlink policy test`. Adding a case is
// adding a file; -update rewrites the want sections.
func TestGoldenDecisions(t *testing.T) {
	results, err := policy.RunCases(context.Background(), os.DirFS("../../policies"))
	if err != nil {
		t.Fatal(err)
	}
	if len(results) < 10 {
		t.Fatalf("found %d golden cases, want at least 10", len(results))
	}
	for _, r := range results {
		t.Run(strings.TrimSuffix(filepath.Base(r.File), ".yaml"), func(t *testing.T) {
			if r.Err != nil {
				t.Fatal(r.Err)
			}
			if *update {
				raw, err := os.ReadFile(filepath.Join("../../policies", r.File))
				if err != nil {
					t.Fatal(err)
				}
				writeWant(t, filepath.Join("../../policies", r.File), raw, r.Got)
				return
			}
			if diff := cmp.Diff(r.Case.Want, r.Got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("%s: %s\ndecision mismatch (-want +got):\n%s", r.File, r.Case.Description, diff)
			}
		})
	}
}

func writeWant(t *testing.T, file string, raw []byte, got policy.Expected) {
	t.Helper()
	head, _, ok := strings.Cut(string(raw), "\nwant:")
	if !ok {
		t.Fatalf("%s: no want section", file)
	}
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(map[string]any{"want": got}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(head+"\n"+b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRevisionChangesWithContent(t *testing.T) {
	ctx := context.Background()
	base := fstest.MapFS{}
	for _, name := range []string{"exchange.rego", "agreements/nl-sg-risk-2026.yaml"} {
		b, err := policies.FS.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		base[name] = &fstest.MapFile{Data: b}
	}
	a, err := policy.Compile(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	again, err := policy.Compile(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	if a.Revision() != again.Revision() {
		t.Errorf("same content, different revisions %s, %s", a.Revision(), again.Revision())
	}
	changed := fstest.MapFS{}
	for k, v := range base {
		changed[k] = v
	}
	changed["agreements/nl-sg-risk-2026.yaml"] = &fstest.MapFile{Data: append([]byte("# a comment\n"), base["agreements/nl-sg-risk-2026.yaml"].Data...)}
	b, err := policy.Compile(ctx, changed)
	if err != nil {
		t.Fatal(err)
	}
	if a.Revision() == b.Revision() {
		t.Errorf("changed agreement file kept revision %s", a.Revision())
	}
}

func TestReloadKeepsOldSetOnError(t *testing.T) {
	ctx := context.Background()
	e, err := policy.NewEngine(ctx, "nl.customs.example", policies.FS, nil)
	if err != nil {
		t.Fatal(err)
	}
	before := e.Revision()
	broken := fstest.MapFS{
		"exchange.rego":         &fstest.MapFile{Data: []byte("package borderlink.exchange\n\ndecision := {")},
		"agreements/empty.yaml": &fstest.MapFile{Data: []byte("id: x\n")},
	}
	if err := e.Reload(ctx, broken); err == nil {
		t.Fatal("Reload of a broken policy set succeeded")
	}
	if got := e.Revision(); got != before {
		t.Errorf("revision after failed reload = %s, want %s", got, before)
	}
	if st := e.Status(); st.Revision != before || st.LastError == "" || st.LastErrorAt.IsZero() {
		t.Errorf("status after failed reload = %+v, want the old revision and the error", st)
	}
	d, err := e.Decide(ctx, policy.Input{
		Caller: identity.GatewayID("sg.customs.example"), Action: "declaration.get", Purpose: "risk-assessment",
		Resource: policy.Resource{Type: "declaration", ID: "X", Exists: true, Attributes: policy.Attributes{HSChapters: []string{"85"}, DestinationCountry: "SG"}},
		Time:     time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC),
	})
	if err != nil || !d.Allow {
		t.Errorf("old policy no longer decides after failed reload: %+v, %v", d, err)
	}
}

// TestFailClosed swaps in policies that misbehave in each way the engine
// must treat as a deny.
func TestFailClosed(t *testing.T) {
	agreement, err := policies.FS.ReadFile("agreements/nl-sg-risk-2026.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"undefined":               "package borderlink.exchange\n\ndecision := {\"allow\": true} if false\n",
		"not an object":           "package borderlink.exchange\n\ndecision := true\n",
		"unknown key":             "package borderlink.exchange\n\ndecision := {\"allow\": true, \"agreement\": \"a\", \"grant\": \"g\", \"everything\": true}\n",
		"allow without agreement": "package borderlink.exchange\n\ndecision := {\"allow\": true}\n",
		"runtime error":           "package borderlink.exchange\n\ndecision := {\"allow\": true, \"agreement\": \"a\", \"grant\": \"g\", \"fields\": [x]} if {\n\tx := 1 / 0\n}\n",
		"conflict":                "package borderlink.exchange\n\ndecision := {\"allow\": true, \"agreement\": \"a\", \"grant\": \"g\"}\n\ndecision := {\"allow\": false} if input.action\n",
	}
	for name, src := range cases {
		t.Run(name, func(t *testing.T) {
			fsys := fstest.MapFS{
				"exchange.rego":                   &fstest.MapFile{Data: []byte(src)},
				"agreements/nl-sg-risk-2026.yaml": &fstest.MapFile{Data: agreement},
			}
			e, err := policy.NewEngine(context.Background(), "nl.customs.example", fsys, nil)
			if err != nil {
				t.Fatalf("compile: %v", err)
			}
			d, err := e.Decide(context.Background(), policy.Input{Caller: identity.GatewayID("sg.customs.example"), Action: "declaration.get", Time: time.Now()})
			if d.Allow {
				t.Fatalf("decision allowed: %+v", d)
			}
			if err == nil {
				t.Fatalf("no error for a misbehaving policy; decision %+v", d)
			}
		})
	}
}

// TestReloadUnderLoad swaps between two policy sets while decisions run:
// every decision must come whole from one set (allow exactly when it was
// made under the set that grants), never from a mixture.
func TestReloadUnderLoad(t *testing.T) {
	ctx := context.Background()
	rego, err := policies.FS.ReadFile("exchange.rego")
	if err != nil {
		t.Fatal(err)
	}
	agreement, err := policies.FS.ReadFile("agreements/nl-sg-risk-2026.yaml")
	if err != nil {
		t.Fatal(err)
	}
	grants := fstest.MapFS{"exchange.rego": {Data: rego}, "agreements/a.yaml": {Data: agreement}}
	suspended := fstest.MapFS{"exchange.rego": {Data: rego}, "agreements/a.yaml": {Data: []byte(strings.Replace(string(agreement), "status: active", "status: suspended", 1))}}
	e, err := policy.NewEngine(ctx, "nl.customs.example", grants, nil)
	if err != nil {
		t.Fatal(err)
	}
	allowRev := e.Revision()
	in := policy.Input{
		Caller: identity.GatewayID("sg.customs.example"), Action: "declaration.get", Purpose: "risk-assessment",
		Resource: policy.Resource{Type: "declaration", ID: "X", Exists: true, Attributes: policy.Attributes{HSChapters: []string{"85"}, DestinationCountry: "SG"}},
		Time:     time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC),
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				d, err := e.Decide(ctx, in)
				if err != nil {
					t.Error(err)
					return
				}
				if d.Allow != (d.Revision == allowRev) {
					t.Errorf("decision allow=%v under revision %s (allowing revision %s)", d.Allow, d.Revision, allowRev)
					return
				}
			}
		}()
	}
	for i := range 20 {
		fsys := grants
		if i%2 == 0 {
			fsys = suspended
		}
		if err := e.Reload(ctx, fsys); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
	if st := e.Status(); st.Revision != allowRev || st.LastError != "" {
		t.Errorf("status after reloads = %+v", st)
	}
}

func TestBreadthCountsLeaves(t *testing.T) {
	ctx := context.Background()
	// Agreement b lists more paths but releases fewer leaves than a.
	b := strings.NewReplacer("id: a-b", "id: b-a", "id: a-to-b", "id: b-grant",
		"fields: [id, importer]", "fields: [id, importer.name, importer.tax_id, importer.address.country]").Replace(goodAgreement)
	rego, _ := policies.FS.ReadFile("exchange.rego")
	fsys := fstest.MapFS{
		"exchange.rego":     {Data: rego},
		"agreements/a.yaml": {Data: []byte(goodAgreement)},
		"agreements/b.yaml": {Data: []byte(b)},
	}
	e, err := policy.NewEngine(ctx, "a.customs.example", fsys, nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := e.Decide(ctx, policy.Input{
		Caller: identity.GatewayID("b.customs.example"), Action: "declaration.get", Purpose: "risk-assessment",
		Resource: policy.Resource{Type: "declaration", ID: "X", Exists: true, Attributes: policy.Attributes{HSChapters: []string{"85"}, DestinationCountry: "SG"}},
		Time:     time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC),
	})
	if err != nil || !d.Allow {
		t.Fatalf("decision %+v, %v", d, err)
	}
	if d.Agreement != "b-a" {
		t.Errorf("agreement %s won; want b-a, which releases 4 leaves where a-b's \"importer\" releases 7", d.Agreement)
	}
}

// TestInvoiceAmountCondition: a grant limited to invoices of EUR 10,000 up
// to 50,000 decides on the declaration's invoice amount as the gateway
// derives it, through Engine.Decide and through a replay of the stored
// input document alike; another currency never matches.
func TestInvoiceAmountCondition(t *testing.T) {
	ctx := context.Background()
	rego, err := policies.FS.ReadFile("exchange.rego")
	if err != nil {
		t.Fatal(err)
	}
	agreement, err := policies.FS.ReadFile("agreements/nl-sg-risk-2026.yaml")
	if err != nil {
		t.Fatal(err)
	}
	limited := strings.Replace(string(agreement), "      destination_countries: [SG]\n", "      destination_countries: [SG]\n      invoice_amount: {currency: EUR, min: 10000, max: 50000}\n", 1)
	e, err := policy.NewEngine(ctx, "nl.customs.example", fstest.MapFS{"exchange.rego": {Data: rego}, "agreements/a.yaml": {Data: []byte(limited)}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		currency string
		units    int64
		nanos    int32
		allow    bool
	}{
		{"inside", "EUR", 20000, 0, true},
		{"at min", "EUR", 10000, 0, true},
		{"just below max", "EUR", 49999, 990000000, true},
		{"at max", "EUR", 50000, 0, false},
		{"below min", "EUR", 9999, 500000000, false},
		{"other currency", "USD", 20000, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &blv1.Declaration{Id: "X", DestinationCountry: "SG", GoodsItems: []*blv1.GoodsItem{{HsCode: "850440"}},
				InvoiceAmount: &blv1.Money{Currency: tc.currency, Units: tc.units, Nanos: tc.nanos}}
			in := policy.Input{
				Caller: identity.GatewayID("sg.customs.example"), Action: "declaration.get", Purpose: "risk-assessment",
				Resource: policy.Resource{Type: "declaration", ID: "X", Exists: true, Attributes: policy.DeclarationAttributes(d)},
				Time:     time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC),
			}
			got, err := e.Decide(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			replayed, err := e.Set().Decide(ctx, e.InputDocument(in))
			if err != nil {
				t.Fatal(err)
			}
			if got.Allow != tc.allow || replayed.Allow != tc.allow {
				t.Errorf("allow = %v (replayed %v), want %v; %v", got.Allow, replayed.Allow, tc.allow, got.Reasons)
			}
		})
	}
}
