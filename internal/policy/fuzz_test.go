package policy_test

import (
	"strings"
	"testing"
	"testing/fstest"

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
