package validate

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

func load(t *testing.T, name string, m proto.Message) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := protojson.Unmarshal(b, m); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func validDeclaration(t *testing.T) *blv1.Declaration {
	d := &blv1.Declaration{}
	load(t, "declaration.json", d)
	return d
}

func validRisk(t *testing.T) *blv1.RiskAssessment {
	r := &blv1.RiskAssessment{}
	load(t, "risk_assessment.json", r)
	return r
}

func TestValidFixturesPass(t *testing.T) {
	if got := Declaration(validDeclaration(t)); got != nil {
		t.Errorf("Declaration(valid) = %v, want nil", got)
	}
	if got := RiskAssessment(validRisk(t)); got != nil {
		t.Errorf("RiskAssessment(valid) = %v, want nil", got)
	}
}

// Mutations that must stay valid: they pin down the edges of each rule.
func TestDeclarationAccepts(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(d *blv1.Declaration)
	}{
		{"id of 64 characters", func(d *blv1.Declaration) { d.Id = strings.Repeat("A", 64) }},
		{"id with every allowed symbol", func(d *blv1.Declaration) { d.Id = "nl-2026_00/1.a" }},
		{"6-digit hs code", func(d *blv1.Declaration) { d.GoodsItems[0].HsCode = "854231" }},
		{"origin not given", func(d *blv1.Declaration) { d.GoodsItems[0].OriginCountry = "" }},
		{"zero net mass", func(d *blv1.Declaration) { d.GoodsItems[0].NetMassKg = 0 }},
		{"no statistical value", func(d *blv1.Declaration) { d.GoodsItems[0].StatisticalValue = nil }},
		{"zero amount without currency", func(d *blv1.Declaration) { d.InvoiceAmount = &blv1.Money{} }},
		{"no transport", func(d *blv1.Declaration) { d.Transport = nil }},
		{"no parties", func(d *blv1.Declaration) { d.Declarant, d.Importer, d.Exporter = nil, nil, nil }},
		{"party without address", func(d *blv1.Declaration) { d.Importer.Address = nil }},
		{"acceptance far in the future", func(d *blv1.Declaration) {
			d.AcceptanceTime = &timestamppb.Timestamp{Seconds: 253402300799} // 9999-12-31T23:59:59Z
		}},
		{"epoch acceptance time", func(d *blv1.Declaration) { d.AcceptanceTime = &timestamppb.Timestamp{} }},
		{"transit", func(d *blv1.Declaration) { d.Type = blv1.DeclarationType_DECLARATION_TYPE_TRANSIT }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := validDeclaration(t)
			tt.mutate(d)
			if got := Declaration(d); got != nil {
				t.Errorf("Declaration() = %v, want nil", got)
			}
		})
	}
}

// One case per rule: the mutation breaks exactly that rule.
func TestDeclarationRules(t *testing.T) {
	tests := []struct {
		name       string
		mutate     func(d *blv1.Declaration)
		wantField  string
		wantReason string
	}{
		{"id missing", func(d *blv1.Declaration) { d.Id = "" },
			"id", `missing; give the declaration's reference`},
		{"id too long", func(d *blv1.Declaration) { d.Id = strings.Repeat("A", 65) },
			"id", "is 65 characters long; shorten it to at most 64"},
		{"id with space", func(d *blv1.Declaration) { d.Id = "NL 2026" },
			"id", `"NL 2026" contains ' '`},
		{"id with non-ASCII letter", func(d *blv1.Declaration) { d.Id = "NL-2026-É1" },
			"id", `contains 'É'`},
		{"type unspecified", func(d *blv1.Declaration) { d.Type = blv1.DeclarationType_DECLARATION_TYPE_UNSPECIFIED },
			"type", "missing; give the procedure: IMPORT, EXPORT or TRANSIT"},
		{"type unknown number", func(d *blv1.Declaration) { d.Type = 9 },
			"type", "9 is not a declaration type"},
		{"acceptance_time missing", func(d *blv1.Declaration) { d.AcceptanceTime = nil },
			"acceptance_time", "missing; give the time customs accepted"},
		{"acceptance_time before year 1", func(d *blv1.Declaration) {
			d.AcceptanceTime = &timestamppb.Timestamp{Seconds: -62135596801}
		}, "acceptance_time", "seconds -62135596801, nanos 0 is not a valid time"},
		{"acceptance_time nanos overflow", func(d *blv1.Declaration) {
			d.AcceptanceTime = &timestamppb.Timestamp{Seconds: 1, Nanos: 1_000_000_000}
		}, "acceptance_time", "nanos 1000000000 is not a valid time"},
		{"declarant country unknown", func(d *blv1.Declaration) { d.Declarant.Address.Country = "XX" },
			"declarant.address.country", `"XX" is not an ISO 3166-1 alpha-2 country code`},
		{"importer country lower case", func(d *blv1.Declaration) { d.Importer.Address.Country = "sg" },
			"importer.address.country", `write it in capitals without spaces: "SG"`},
		{"exporter country UK", func(d *blv1.Declaration) { d.Exporter.Address.Country = "UK" },
			"exporter.address.country", `"UK" is not an ISO 3166-1 alpha-2 country code; use "GB"`},
		{"export_country missing", func(d *blv1.Declaration) { d.ExportCountry = "" },
			"export_country", "missing; give the ISO 3166-1 alpha-2 code of the country the goods leave"},
		{"export_country alpha-3", func(d *blv1.Declaration) { d.ExportCountry = "NLD" },
			"export_country", `it is the alpha-3 code, use the two-letter code "NL"`},
		{"destination_country missing", func(d *blv1.Declaration) { d.DestinationCountry = "" },
			"destination_country", "missing; give the ISO 3166-1 alpha-2 code of the country the goods go to"},
		{"destination_country EU", func(d *blv1.Declaration) { d.DestinationCountry = "EU" },
			"destination_country", "give the member state's two-letter code"},
		{"no goods items", func(d *blv1.Declaration) { d.GoodsItems = nil },
			"goods_items", "a declaration needs at least one goods item"},
		{"hs_code missing", func(d *blv1.Declaration) { d.GoodsItems[1].HsCode = "" },
			"goods_items[1].hs_code", "missing; give the 6- to 10-digit HS code"},
		{"hs_code with dots", func(d *blv1.Declaration) { d.GoodsItems[1].HsCode = "8504.40.90" },
			"goods_items[1].hs_code", `"8504.40.90" is not an HS code; use 6 to 10 digits with no dots or spaces, e.g. "85044090"`},
		{"hs_code too short", func(d *blv1.Declaration) { d.GoodsItems[0].HsCode = "85423" },
			"goods_items[0].hs_code", `"85423" is not an HS code`},
		{"hs_code too long", func(d *blv1.Declaration) { d.GoodsItems[0].HsCode = "85423100001" },
			"goods_items[0].hs_code", `"85423100001" is not an HS code`},
		{"hs_code with letters", func(d *blv1.Declaration) { d.GoodsItems[0].HsCode = "8542AB" },
			"goods_items[0].hs_code", `e.g. "85171300"`},
		{"origin_country unknown", func(d *blv1.Declaration) { d.GoodsItems[0].OriginCountry = "ZZ" },
			"goods_items[0].origin_country", `"ZZ" is not an ISO 3166-1 alpha-2 country code`},
		{"net mass negative", func(d *blv1.Declaration) { d.GoodsItems[0].NetMassKg = -1.5 },
			"goods_items[0].net_mass_kg", "-1.5 kg is negative; give the net mass in kilograms"},
		{"net mass NaN", func(d *blv1.Declaration) { d.GoodsItems[0].NetMassKg = math.NaN() },
			"goods_items[0].net_mass_kg", "NaN is not a number"},
		{"net mass infinite", func(d *blv1.Declaration) { d.GoodsItems[0].NetMassKg = math.Inf(1) },
			"goods_items[0].net_mass_kg", "+Inf is not a number"},
		{"statistical value without currency", func(d *blv1.Declaration) { d.GoodsItems[0].StatisticalValue.Currency = "" },
			"goods_items[0].statistical_value.currency", "an amount of 41000.5 needs its ISO 4217 currency code"},
		{"statistical value nanos only, no currency", func(d *blv1.Declaration) {
			d.GoodsItems[0].StatisticalValue = &blv1.Money{Nanos: 10_000_000}
		}, "goods_items[0].statistical_value.currency", "an amount of 0.01 needs"},
		{"statistical value currency lower case", func(d *blv1.Declaration) { d.GoodsItems[0].StatisticalValue.Currency = "eur" },
			"goods_items[0].statistical_value.currency", `"eur" is not an active ISO 4217 currency code; write it in capitals without spaces: "EUR"`},
		{"statistical value negative", func(d *blv1.Declaration) { d.GoodsItems[0].StatisticalValue.Units = -5 },
			"goods_items[0].statistical_value.units", "-5 is negative; amounts must be 0 or more"},
		{"statistical value nanos negative", func(d *blv1.Declaration) { d.GoodsItems[0].StatisticalValue.Nanos = -1 },
			"goods_items[0].statistical_value.nanos", "-1 is outside 0 to 999999999"},
		{"statistical value nanos overflow", func(d *blv1.Declaration) { d.GoodsItems[0].StatisticalValue.Nanos = 1_000_000_000 },
			"goods_items[0].statistical_value.nanos", "1000000000 is outside 0 to 999999999"},
		{"transport nationality unknown", func(d *blv1.Declaration) { d.Transport.Nationality = "XX" },
			"transport.nationality", `"XX" is not an ISO 3166-1 alpha-2 country code`},
		{"document issue_time invalid", func(d *blv1.Declaration) {
			d.Documents[1].IssueTime = &timestamppb.Timestamp{Nanos: -1}
		}, "documents[1].issue_time", "is not a valid time"},
		{"invoice currency withdrawn", func(d *blv1.Declaration) { d.InvoiceAmount.Currency = "HRK" },
			"invoice_amount.currency", `"HRK" is not an active ISO 4217 currency code; use the three-letter code`},
		{"invoice currency with zero amount still checked", func(d *blv1.Declaration) {
			d.InvoiceAmount = &blv1.Money{Currency: "EURO"}
		}, "invoice_amount.currency", `"EURO" is not an active ISO 4217 currency code`},
		{"gross mass negative", func(d *blv1.Declaration) { d.GrossMassKg = -0.1 },
			"gross_mass_kg", "-0.1 kg is negative; give the gross mass"},
		{"gross mass infinite", func(d *blv1.Declaration) { d.GrossMassKg = math.Inf(-1) },
			"gross_mass_kg", "-Inf is not a number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := validDeclaration(t)
			tt.mutate(d)
			got := Declaration(d)
			if len(got) != 1 {
				t.Fatalf("Declaration() = %v, want exactly one error on %s", got, tt.wantField)
			}
			if got[0].Field != tt.wantField {
				t.Errorf("Field = %q, want %q", got[0].Field, tt.wantField)
			}
			if !strings.Contains(got[0].Reason, tt.wantReason) {
				t.Errorf("Reason = %q, want it to contain %q", got[0].Reason, tt.wantReason)
			}
		})
	}
}

func TestDeclarationReportsAllInFieldOrder(t *testing.T) {
	d := validDeclaration(t)
	// Broken in reverse field order, to show the report does not follow the
	// order of the mistakes.
	d.GrossMassKg = math.NaN()
	d.InvoiceAmount.Currency = ""
	d.GoodsItems[1].HsCode = "85.04"
	d.GoodsItems[0].NetMassKg = -1
	d.GoodsItems[0].OriginCountry = "XX"
	d.DestinationCountry = "sg"
	d.Exporter.Address.Country = "UK"
	d.AcceptanceTime = nil
	d.Type = 0
	d.Id = ""

	var got []string
	for _, e := range Declaration(d) {
		got = append(got, e.Field)
	}
	want := []string{
		"id",
		"type",
		"acceptance_time",
		"exporter.address.country",
		"destination_country",
		"goods_items[0].origin_country",
		"goods_items[0].net_mass_kg",
		"goods_items[1].hs_code",
		"invoice_amount.currency",
		"gross_mass_kg",
	}
	if !slices.Equal(got, want) {
		t.Errorf("fields = %q\nwant     %q", got, want)
	}
}

func TestEmptyDeclaration(t *testing.T) {
	want := []string{"id", "type", "acceptance_time", "export_country", "destination_country", "goods_items"}
	for _, d := range []*blv1.Declaration{nil, {}} {
		var got []string
		for _, e := range Declaration(d) {
			got = append(got, e.Field)
		}
		if !slices.Equal(got, want) {
			t.Errorf("Declaration(%v) fields = %q, want %q", d, got, want)
		}
	}
}

func TestRiskAssessmentRules(t *testing.T) {
	tests := []struct {
		name       string
		mutate     func(r *blv1.RiskAssessment)
		wantField  string
		wantReason string
	}{
		{"id missing", func(r *blv1.RiskAssessment) { r.Id = "" },
			"id", "missing; give the assessment's reference"},
		{"id bad character", func(r *blv1.RiskAssessment) { r.Id = "RA#1" },
			"id", `"RA#1" contains '#'`},
		{"declaration_id missing", func(r *blv1.RiskAssessment) { r.DeclarationId = "" },
			"declaration_id", "missing; give the ID of the declaration assessed"},
		{"declaration_id too long", func(r *blv1.RiskAssessment) { r.DeclarationId = strings.Repeat("9", 100) },
			"declaration_id", "is 100 characters long"},
		{"score above 1", func(r *blv1.RiskAssessment) { r.Score = 72 },
			"score", "72 is outside 0 to 1; give the score as a fraction"},
		{"score negative", func(r *blv1.RiskAssessment) { r.Score = -0.01 },
			"score", "-0.01 is outside 0 to 1"},
		{"score NaN", func(r *blv1.RiskAssessment) { r.Score = math.NaN() },
			"score", "NaN is not a number"},
		{"level unspecified", func(r *blv1.RiskAssessment) { r.Level = blv1.RiskLevel_RISK_LEVEL_UNSPECIFIED },
			"level", "missing; give the risk level: LOW, MEDIUM or HIGH"},
		{"level unknown number", func(r *blv1.RiskAssessment) { r.Level = 4 },
			"level", "4 is not a risk level"},
		{"indicator weight infinite", func(r *blv1.RiskAssessment) { r.Indicators[1].Weight = math.Inf(1) },
			"indicators[1].weight", "+Inf is not a number"},
		{"model_name missing", func(r *blv1.RiskAssessment) { r.ModelName = "" },
			"model_name", "missing; give the name of the model"},
		{"model_name blank", func(r *blv1.RiskAssessment) { r.ModelName = "  " },
			"model_name", "missing"},
		{"assessed_time invalid", func(r *blv1.RiskAssessment) {
			r.AssessedTime = &timestamppb.Timestamp{Seconds: 253402300800}
		}, "assessed_time", "seconds 253402300800, nanos 0 is not a valid time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validRisk(t)
			tt.mutate(r)
			got := RiskAssessment(r)
			if len(got) != 1 {
				t.Fatalf("RiskAssessment() = %v, want exactly one error on %s", got, tt.wantField)
			}
			if got[0].Field != tt.wantField {
				t.Errorf("Field = %q, want %q", got[0].Field, tt.wantField)
			}
			if !strings.Contains(got[0].Reason, tt.wantReason) {
				t.Errorf("Reason = %q, want it to contain %q", got[0].Reason, tt.wantReason)
			}
		})
	}
}

func TestRiskAssessmentAccepts(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(r *blv1.RiskAssessment)
	}{
		{"score 0", func(r *blv1.RiskAssessment) { r.Score = 0 }},
		{"score 1", func(r *blv1.RiskAssessment) { r.Score = 1 }},
		{"negative weight", func(r *blv1.RiskAssessment) { r.Indicators[0].Weight = -0.2 }},
		{"no indicators", func(r *blv1.RiskAssessment) { r.Indicators = nil }},
		{"no assessed time", func(r *blv1.RiskAssessment) { r.AssessedTime = nil }},
		{"level disagrees with score", func(r *blv1.RiskAssessment) { r.Level = blv1.RiskLevel_RISK_LEVEL_LOW }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validRisk(t)
			tt.mutate(r)
			if got := RiskAssessment(r); got != nil {
				t.Errorf("RiskAssessment() = %v, want nil", got)
			}
		})
	}
}

func TestRiskAssessmentReportsAllInFieldOrder(t *testing.T) {
	var got []string
	for _, e := range RiskAssessment(&blv1.RiskAssessment{
		Score:      2,
		Indicators: []*blv1.RiskIndicator{{Weight: 0.1}, {Weight: math.NaN()}},
	}) {
		got = append(got, e.Field)
	}
	want := []string{"id", "declaration_id", "score", "level", "indicators[1].weight", "model_name"}
	if !slices.Equal(got, want) {
		t.Errorf("fields = %q\nwant     %q", got, want)
	}
}

func TestRecord(t *testing.T) {
	badDecl := validDeclaration(t)
	badDecl.ExportCountry = "XX"
	tests := []struct {
		name       string
		rec        *blv1.IngestRecord
		wantID     string
		wantFields []string
	}{
		{"valid declaration",
			&blv1.IngestRecord{Kind: &blv1.IngestRecord_Declaration{Declaration: validDeclaration(t)}},
			"NL-2026-000123", nil},
		{"invalid declaration keeps its id",
			&blv1.IngestRecord{Kind: &blv1.IngestRecord_Declaration{Declaration: badDecl}},
			"NL-2026-000123", []string{"export_country"}},
		{"valid risk assessment",
			&blv1.IngestRecord{Kind: &blv1.IngestRecord_RiskAssessment{RiskAssessment: validRisk(t)}},
			"NL-RA-2026-000123", nil},
		{"nil declaration in the oneof",
			&blv1.IngestRecord{Kind: &blv1.IngestRecord_Declaration{}},
			"", []string{"id", "type", "acceptance_time", "export_country", "destination_country", "goods_items"}},
		{"empty oneof", &blv1.IngestRecord{}, "", []string{"kind"}},
		{"nil record", nil, "", []string{"kind"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, errs := Record(tt.rec)
			if id != tt.wantID {
				t.Errorf("id = %q, want %q", id, tt.wantID)
			}
			var got []string
			for _, e := range errs {
				got = append(got, e.Field)
			}
			if !slices.Equal(got, tt.wantFields) {
				t.Errorf("fields = %q, want %q", got, tt.wantFields)
			}
		})
	}
}

func TestFieldErrorError(t *testing.T) {
	tests := []struct {
		err  FieldError
		want string
	}{
		{FieldError{"goods_items[2].hs_code", `"85" is not an HS code`}, `goods_items[2].hs_code: "85" is not an HS code`},
		{FieldError{"", "empty record"}, "empty record"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestLongValueIsShortenedInReason(t *testing.T) {
	d := validDeclaration(t)
	d.Id = strings.Repeat("x", 1000)
	got := Declaration(d)[0].Reason
	if len(got) > 200 {
		t.Errorf("Reason is %d bytes long, want the value shortened: %q", len(got), got)
	}
}
