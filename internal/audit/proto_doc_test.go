package audit_test

import (
	"os"
	"strings"
	"testing"
)

// TestCallerIDDocumented: the schema's comment on AuditRecord.caller_id
// names every kind of caller the records carry (docs/architecture.md,
// field 6), not only the own system on the consumer side.
func TestCallerIDDocumented(t *testing.T) {
	b, err := os.ReadFile("../../proto/borderlink/v1/audit.proto")
	if err != nil {
		t.Fatal(err)
	}
	before, _, ok := strings.Cut(string(b), "string caller_id = 6;")
	if !ok {
		t.Fatal("audit.proto has no caller_id = 6")
	}
	var comment []string
	lines := strings.Split(strings.TrimRight(before, " \n"), "\n")
	for i := len(lines) - 1; i >= 0 && strings.HasPrefix(strings.TrimSpace(lines[i]), "//"); i-- {
		comment = append([]string{strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(lines[i]), "//"))}, comment...)
	}
	text := strings.Join(comment, " ")
	for _, want := range []string{"provider side", "own system", "sender's gateway", "alert.deliver", "alert.cancel", "operator"} {
		if !strings.Contains(text, want) {
			t.Errorf("caller_id comment %q does not mention %q", text, want)
		}
	}
}
