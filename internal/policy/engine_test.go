package policy_test

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"gopkg.in/yaml.v3"

	"github.com/borderlink/borderlink/internal/identity"
	"github.com/borderlink/borderlink/internal/policy"
	"github.com/borderlink/borderlink/policies"
)

var update = flag.Bool("update", false, "rewrite the want sections of policies/testdata/decisions/*.yaml")

type goldenCase struct {
	Description string `yaml:"description"`
	Self        string `yaml:"self"`
	Input       struct {
		Caller   string `yaml:"caller"`
		Action   string `yaml:"action"`
		Purpose  string `yaml:"purpose"`
		Resource struct {
			Type       string `yaml:"type"`
			ID         string `yaml:"id"`
			Exists     bool   `yaml:"exists"`
			Attributes struct {
				HSChapters         []string `yaml:"hs_chapters"`
				ExportCountry      string   `yaml:"export_country"`
				DestinationCountry string   `yaml:"destination_country"`
				RiskScore          *float64 `yaml:"risk_score"`
			} `yaml:"attributes"`
		} `yaml:"resource"`
		Time string `yaml:"time"`
	} `yaml:"input"`
	Want wantDecision `yaml:"want"`
}

type wantDecision struct {
	Allow        bool               `yaml:"allow"`
	Entitled     bool               `yaml:"entitled"`
	Agreement    string             `yaml:"agreement,omitempty"`
	Grant        string             `yaml:"grant,omitempty"`
	Fields       []string           `yaml:"fields,omitempty,flow"`
	Mask         []string           `yaml:"mask,omitempty,flow"`
	Pseudonymize []string           `yaml:"pseudonymize,omitempty,flow"`
	Reasons      []string           `yaml:"reasons,flow"`
	Obligations  policy.Obligations `yaml:"obligations,omitempty,flow"`
}

// TestGoldenDecisions runs every policies/testdata/decisions/*.yaml case
// (input → expected decision) against the shipped policy and agreements.
// Adding a case is adding a file.
func TestGoldenDecisions(t *testing.T) {
	files, err := filepath.Glob("../../policies/testdata/decisions/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden decision cases found (err %v)", err)
	}
	engines := map[string]*policy.Engine{}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var c goldenCase
			dec := yaml.NewDecoder(strings.NewReader(string(raw)))
			dec.KnownFields(true)
			if err := dec.Decode(&c); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			e := engines[c.Self]
			if e == nil {
				e, err = policy.NewEngine(context.Background(), c.Self, policies.FS, nil)
				if err != nil {
					t.Fatal(err)
				}
				engines[c.Self] = e
			}
			caller, err := identity.Parse(c.Input.Caller)
			if err != nil {
				t.Fatalf("input.caller: %v", err)
			}
			at, err := time.Parse(time.RFC3339, c.Input.Time)
			if err != nil {
				t.Fatalf("input.time: %v", err)
			}
			r := c.Input.Resource
			in := policy.Input{Caller: caller, Action: c.Input.Action, Purpose: c.Input.Purpose, Time: at,
				Resource: policy.Resource{Type: r.Type, ID: r.ID, Exists: r.Exists, Attributes: policy.Attributes{
					HSChapters: r.Attributes.HSChapters, ExportCountry: r.Attributes.ExportCountry,
					DestinationCountry: r.Attributes.DestinationCountry, RiskScore: r.Attributes.RiskScore,
				}}}
			d, err := e.Decide(context.Background(), in)
			if err != nil {
				t.Fatalf("Decide: %v", err)
			}
			got := wantDecision{Allow: d.Allow, Entitled: d.Entitled, Agreement: d.Agreement, Grant: d.Grant,
				Fields: d.Fields, Mask: d.Mask, Pseudonymize: d.Pseudonymize, Reasons: d.Reasons, Obligations: d.Obligations}
			if *update {
				writeWant(t, f, raw, got)
				return
			}
			if diff := cmp.Diff(c.Want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("%s: %s\ndecision mismatch (-want +got):\n%s", f, c.Description, diff)
			}
		})
	}
}

func writeWant(t *testing.T, file string, raw []byte, got wantDecision) {
	t.Helper()
	head, _, ok := strings.Cut(string(raw), "\nwant:")
	if !ok {
		t.Fatalf("%s: no want section", file)
	}
	b, err := yaml.Marshal(map[string]any{"want": got})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(head+"\n"+string(b)), 0o644); err != nil {
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
