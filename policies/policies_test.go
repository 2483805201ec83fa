package policies_test

import (
	"context"
	"os"
	"regexp"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/tester"

	"github.com/borderlink/borderlink/policies"
)

// TestRego runs the Rego unit tests (exchange_test.rego) in-process with
// the OPA version the gateway embeds. `make test` also runs them under
// upstream `opa test` (see opa-test in the Makefile).
func TestRego(t *testing.T) {
	modules := map[string]*ast.Module{}
	for _, name := range []string{"exchange.rego", "exchange_test.rego"} {
		src, err := policies.FS.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		m, err := ast.ParseModuleWithOpts(name, string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			t.Fatalf("parse %s: %v", name, err)
		}
		modules[name] = m
	}
	ch, err := tester.NewRunner().SetModules(modules).RunTests(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for r := range ch {
		n++
		if r.Error != nil {
			t.Errorf("%s: error: %v", r.Name, r.Error)
		} else if r.Fail {
			t.Errorf("%s (%s:%d): FAIL", r.Name, r.Location.File, r.Location.Row)
		}
	}
	if n < 10 {
		t.Errorf("ran %d Rego tests, want at least 10: were tests renamed away from test_?", n)
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
