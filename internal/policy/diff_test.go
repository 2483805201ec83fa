package policy_test

import (
	"context"
	"encoding/json"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/borderlink/borderlink/internal/identity"
	"github.com/borderlink/borderlink/internal/policy"
	"github.com/borderlink/borderlink/policies"
)

// copyFS copies the shipped policy set, applying edits to named files.
func copyFS(t *testing.T, edits map[string]func(string) string) fstest.MapFS {
	t.Helper()
	out := fstest.MapFS{}
	err := fs.WalkDir(policies.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(policies.FS, p)
		if err != nil {
			return err
		}
		if f, ok := edits[p]; ok {
			b = []byte(f(string(b)))
		}
		out[p] = &fstest.MapFile{Data: b}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDiff(t *testing.T) {
	ctx := context.Background()
	current, err := policy.Compile(ctx, copyFS(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	proposed, err := policy.Compile(ctx, copyFS(t, map[string]func(string) string{
		// Stop pseudonymising the exporter's tax ID for SG, and suspend the
		// health covenant.
		"agreements/nl-sg-risk-2026.yaml": func(s string) string {
			s = strings.Replace(s, "retention_days: 365", "retention_days: 730", 1)
			return strings.Replace(s, "        pseudonymize: [exporter.tax_id]\n", "", 1)
		},
		"agreements/nl-health-2026.yaml": func(s string) string {
			return strings.Replace(s, "status: active", "status: suspended", 1)
		},
	}))
	if err != nil {
		t.Fatal(err)
	}
	e, err := policy.NewEngine(ctx, "nl.customs.example", policies.FS, nil)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	input := func(caller, purpose string, dest string, chapters ...string) string {
		b, _ := json.Marshal(e.InputDocument(policy.Input{
			Caller: identity.MustParse(caller), Action: "declaration.get", Purpose: purpose, Time: at,
			Resource: policy.Resource{Type: "declaration", ID: "NL-" + dest, Exists: true,
				Attributes: policy.Attributes{HSChapters: chapters, ExportCountry: "NL", DestinationCountry: dest}},
		}))
		return string(b)
	}
	recorded := []policy.Recorded{
		{Seq: 1, Input: input("spiffe://sg.customs.example/gateway", "risk-assessment", "SG", "85"), Allowed: true},
		{Seq: 2, Input: input("spiffe://nl.customs.example/agency/health", "sanitary-control", "NL", "03"), Allowed: true},
		{Seq: 3, Input: input("spiffe://sg.customs.example/gateway", "marketing", "SG", "85"), Allowed: false},
		{Seq: 4, Input: input("spiffe://cn.customs.example/gateway", "risk-assessment", "SG", "85"), Allowed: true},
	}
	changes, n, err := policy.Diff(ctx, current, proposed, func(yield func(policy.Recorded) error) error {
		for _, r := range recorded {
			if err := yield(r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 || len(changes) != 3 {
		t.Fatalf("replayed %d, changes %+v; want 4 replayed and changes for seq 1, 2 and 4", n, changes)
	}
	if c := changes[0]; c.Seq != 1 || !c.Before.Allow || !c.After.Allow || len(c.Before.Pseudonymize) != 1 || len(c.After.Pseudonymize) != 0 ||
		!strings.Contains(c.Summary(), "masking/pseudonymisation changed") || !strings.Contains(c.Summary(), "obligations or limits changed") {
		t.Errorf("change 1 = %+v (%s)", c, c.Summary())
	}
	if c := changes[1]; c.Seq != 2 || !c.Before.Allow || c.After.Allow || c.After.Code != "NOT_IN_FORCE" || !strings.Contains(c.Summary(), "allow→deny") {
		t.Errorf("change 2 = %+v (%s)", c, c.Summary())
	}
	if c := changes[2]; c.Seq != 4 || !c.Drifted || c.Before.Allow || c.After.Allow {
		t.Errorf("change 3 = %+v, want a drifted record (allowed then, denied by both sets now)", c)
	}
}

// TestDiffGoodsItems: narrowing an HS condition changes which goods items
// of a mixed consignment are released, with the same fields; diff must say
// which lines stop (or start) leaving.
func TestDiffGoodsItems(t *testing.T) {
	ctx := context.Background()
	narrow := func(s string) string {
		i := strings.Index(s, "hs_chapters: [")
		j := strings.Index(s[i:], "]")
		return s[:i] + `hs_chapters: ["01", "02", "03"]` + s[i+j+1:]
	}
	current, err := policy.Compile(ctx, copyFS(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	proposed, err := policy.Compile(ctx, copyFS(t, map[string]func(string) string{"agreements/nl-health-2026.yaml": narrow}))
	if err != nil {
		t.Fatal(err)
	}
	e, err := policy.NewEngine(ctx, "nl.customs.example", policies.FS, nil)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	input := func(attrs policy.Attributes) string {
		attrs.ExportCountry, attrs.DestinationCountry = "NL", "NL"
		b, _ := json.Marshal(e.InputDocument(policy.Input{
			Caller: identity.MustParse("spiffe://nl.customs.example/agency/health"), Action: "declaration.get", Purpose: "sanitary-control", Time: at,
			Resource: policy.Resource{Type: "declaration", ID: "NL-1", Exists: true, Attributes: attrs},
		}))
		return string(b)
	}
	tests := []struct {
		name           string
		attrs          policy.Attributes
		added, removed []string
		changed        bool
	}{
		{"fish and sausages: sausages stop", policy.Attributes{HSChapters: []string{"03", "16"}, HSHeadings: []string{"0302", "1601"}}, nil, []string{"1601"}, true},
		{"short code counts as its chapter", policy.Attributes{HSChapters: []string{"03", "16"}, HSHeadings: []string{"0302"}}, nil, []string{"16"}, true},
		{"fish only: nothing changes", policy.Attributes{HSChapters: []string{"03"}, HSHeadings: []string{"0302"}}, nil, nil, false},
		{"sausages only: now denied", policy.Attributes{HSChapters: []string{"16", "85"}, HSHeadings: []string{"1601", "8517"}}, nil, []string{"1601"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			changes, _, err := policy.Diff(ctx, current, proposed, func(yield func(policy.Recorded) error) error {
				return yield(policy.Recorded{Seq: 1, Input: input(tc.attrs), Allowed: true})
			})
			if err != nil {
				t.Fatal(err)
			}
			if !tc.changed {
				if len(changes) != 0 {
					t.Fatalf("changes %+v, want none", changes)
				}
				return
			}
			if len(changes) != 1 {
				t.Fatalf("changes %+v, want one", changes)
			}
			c := changes[0]
			// A deny also removes every field; otherwise only items change.
			if !slices.Equal(c.ItemsAdded, tc.added) || !slices.Equal(c.ItemsRemoved, tc.removed) || (len(c.Removed) > 0) != !c.After.Allow || len(c.Added) > 0 {
				t.Errorf("items added %v removed %v (fields +%v -%v, allowed after: %v), want added %v removed %v", c.ItemsAdded, c.ItemsRemoved, c.Added, c.Removed, c.After.Allow, tc.added, tc.removed)
			}
			if !strings.Contains(c.Summary(), "goods items removed: HS "+strings.Join(tc.removed, ", ")) {
				t.Errorf("summary %q does not name the removed items", c.Summary())
			}
		})
	}
}
