package validate_test

import (
	"fmt"

	"github.com/borderlink/borderlink/internal/validate"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

func ExampleRecord() {
	rec := &blv1.IngestRecord{Kind: &blv1.IngestRecord_RiskAssessment{RiskAssessment: &blv1.RiskAssessment{
		Id:            "NL-RA-2026-000001",
		DeclarationId: "NL-2026-000001",
		Score:         72,
		Level:         blv1.RiskLevel_RISK_LEVEL_HIGH,
		ModelName:     "borderlink-demo-risk",
	}}}
	id, errs := validate.Record(rec)
	for _, e := range errs {
		fmt.Println(id, e)
	}
	// Output:
	// NL-RA-2026-000001 score: 72 is outside 0 to 1; give the score as a fraction, e.g. 0.72 rather than 72
}
