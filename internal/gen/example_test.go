package gen_test

import (
	"fmt"
	"os"
	"time"

	"github.com/borderlink/borderlink/internal/gen"
)

func ExampleGenerate() {
	recs, err := gen.Generate(gen.Options{
		Domain:   "nl.customs.example",
		Count:    2,
		Seed:     1,
		Start:    time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC),
		Partners: []string{"SG", "CN"},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	for _, r := range recs {
		if d := r.GetDeclaration(); d != nil {
			fmt.Println(d.GetId(), d.GetExportCountry(), "->", d.GetDestinationCountry())
		} else {
			ra := r.GetRiskAssessment()
			fmt.Println(ra.GetId(), ra.GetLevel())
		}
	}
	// Output:
	// NL-2026-000001 NL -> CN
	// NL-RA-2026-000001 RISK_LEVEL_LOW
	// NL-2026-000002 BE -> FR
	// NL-RA-2026-000002 RISK_LEVEL_LOW
}
