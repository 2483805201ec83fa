package importer_test

import (
	"strings"
	"testing"

	"github.com/borderlink/borderlink/internal/importer"
)

const validLine = `{"risk_assessment":{"id":"NL-RA-1","declaration_id":"NL-1","score":0.5,"level":"RISK_LEVEL_MEDIUM","model_name":"m"}}`

func TestRead(t *testing.T) {
	in := strings.Join([]string{
		validLine,
		"",
		`{"risk_assessment":{"id":"NL-RA-2","declaration_id":"NL-1","score":1.5,"level":"RISK_LEVEL_HIGH","model_name":"m"}}`,
		`{"declaration": `,
		`{"unknown_kind": {}}`,
		`{}`,
	}, "\n")
	lines, problems, err := importer.Read(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 1 || lines[0].Number != 1 {
		t.Fatalf("valid lines = %+v, want line 1 only", lines)
	}
	want := []struct {
		line  uint64
		field string
		text  string
	}{
		{3, "score", "1.5"},
		{4, "", "not a valid record"},
		{5, "", "not a valid record"},
		{6, "kind", ""},
	}
	if len(problems) != len(want) {
		t.Fatalf("problems = %v, want %d", problems, len(want))
	}
	for i, w := range want {
		p := problems[i]
		if p.Line != w.line || p.Field != w.field || !strings.Contains(p.String(), w.text) {
			t.Errorf("problem %d = %+v (%s), want line %d field %q mentioning %q", i, p, p, w.line, w.field, w.text)
		}
	}
}

// FuzzRead: no input may panic the reader, and every line is accounted
// for exactly once, as valid or as a problem.
func FuzzRead(f *testing.F) {
	f.Add(validLine + "\n" + `{"declaration":{}}`)
	f.Add("\n\n{")
	f.Fuzz(func(t *testing.T, in string) {
		lines, problems, err := importer.Read(strings.NewReader(in))
		if err != nil {
			return
		}
		seen := map[uint64]bool{}
		for _, l := range lines {
			if seen[l.Number] {
				t.Fatalf("line %d returned twice", l.Number)
			}
			seen[l.Number] = true
		}
		for _, l := range lines {
			if containsLine(problems, l.Number) {
				t.Fatalf("line %d both valid and invalid", l.Number)
			}
		}
	})
}

func containsLine(ps []importer.Problem, n uint64) bool {
	for _, p := range ps {
		if p.Line == n {
			return true
		}
	}
	return false
}
