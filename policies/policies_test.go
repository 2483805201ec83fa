package policies_test

import (
	"context"
	"os"
	"regexp"
	"testing"

	"github.com/borderlink/borderlink/internal/policy"
	"github.com/borderlink/borderlink/policies"
)

// TestRego runs the Rego unit tests (*_test.rego) in-process with the OPA
// version the gateway embeds, through the runner of `borderlink policy
// test`. `make test` also runs them under upstream `opa test`.
func TestRego(t *testing.T) {
	results, err := policy.RunRegoTests(context.Background(), policies.FS)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if !r.Pass {
			t.Errorf("%s (%s): FAIL %v", r.Name, r.Location, r.Err)
		}
	}
	if len(results) < 20 {
		t.Errorf("ran %d Rego tests, want at least 20: were tests renamed away from test_?", len(results))
	}
}

// TestUpstreamOPAVersionMatches keeps the OPA CLI used by `make opa-test`
// (tools/opa/go.mod) at the version the gateway embeds (go.mod), so the
// compatibility check tests the same language.
func TestUpstreamOPAVersionMatches(t *testing.T) {
	re := regexp.MustCompile(`github\.com/open-policy-agent/opa (v[0-9][^\s]*)`)
	version := func(path string) string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		m := re.FindSubmatch(b)
		if m == nil {
			t.Fatalf("%s does not require github.com/open-policy-agent/opa", path)
		}
		return string(m[1])
	}
	if app, tool := version("../go.mod"), version("../tools/opa/go.mod"); app != tool {
		t.Errorf("go.mod embeds OPA %s but tools/opa/go.mod builds the opa CLI at %s: align them", app, tool)
	}
}
