// Package validate is the one place that defines when a Borderlink record is
// acceptable. Ingest refuses any record for which these functions report a
// problem, so every other package may rely on what is checked here: IDs are
// short and printable, country and currency codes are real ISO codes, HS codes
// are digits only, amounts and masses are finite and not negative.
//
// Validation never stops at the first problem: a data clerk fixing a file
// wants the whole list at once. Problems are reported in proto field-number
// order, with indexes into repeated fields, so the output is stable and can be
// compared in tests and shown next to the record.
package validate

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// MaxIDLength bounds record IDs: they end up in audit records, URLs and
// database keys, and real MRNs are 18 characters.
const MaxIDLength = 64

// FieldError is one problem with one field of a record.
type FieldError struct {
	// Field is the proto path of the field relative to the record, with
	// zero-based indexes into repeated fields, e.g. "goods_items[2].hs_code".
	Field string
	// Reason is a sentence a data clerk understands: it names the bad value
	// and how to fix it.
	Reason string
}

func (e FieldError) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return e.Field + ": " + e.Reason
}

// Declaration returns every problem with d, in field order, or nil if d is
// valid. A nil d is treated as an empty declaration.
//
// acceptance_time is deliberately not compared with the current time: ingest
// loads historical data, and the clocks of the systems that stamp
// declarations drift. A future-time rule would also make validation depend on
// when it runs, and the same record must always get the same verdict.
func Declaration(d *blv1.Declaration) []FieldError {
	var c checker
	c.id("id", d.GetId(), "the declaration's reference (MRN or LRN)", "NL-2026-000123")
	if t := d.GetType(); t == blv1.DeclarationType_DECLARATION_TYPE_UNSPECIFIED {
		c.add("type", "missing; give the procedure: IMPORT, EXPORT or TRANSIT")
	} else if _, known := blv1.DeclarationType_name[int32(t)]; !known {
		c.add("type", "%d is not a declaration type; use IMPORT, EXPORT or TRANSIT", int32(t))
	}
	c.requiredTime("acceptance_time", d.GetAcceptanceTime(), "the time customs accepted the declaration")
	c.party("declarant", d.GetDeclarant())
	c.party("importer", d.GetImporter())
	c.party("exporter", d.GetExporter())
	c.requiredCountry("export_country", d.GetExportCountry(), "the country the goods leave")
	c.requiredCountry("destination_country", d.GetDestinationCountry(), "the country the goods go to")
	if len(d.GetGoodsItems()) == 0 {
		c.add("goods_items", "no goods items; a declaration needs at least one goods item")
	}
	for i, g := range d.GetGoodsItems() {
		c.goodsItem(fmt.Sprintf("goods_items[%d]", i), g)
	}
	if t := d.GetTransport(); t != nil {
		c.optionalCountry("transport.nationality", t.GetNationality())
	}
	for i, doc := range d.GetDocuments() {
		c.optionalTime(fmt.Sprintf("documents[%d].issue_time", i), doc.GetIssueTime())
	}
	c.money("invoice_amount", d.GetInvoiceAmount())
	c.mass("gross_mass_kg", d.GetGrossMassKg(), "gross")
	return c.errs
}

// RiskAssessment returns every problem with r, in field order, or nil if r is
// valid. A nil r is treated as an empty assessment.
//
// The level is not checked against the score: administrations use their own
// thresholds, and the level is the one they act on.
func RiskAssessment(r *blv1.RiskAssessment) []FieldError {
	var c checker
	c.id("id", r.GetId(), "the assessment's reference", "NL-RA-2026-000123")
	c.id("declaration_id", r.GetDeclarationId(), "the ID of the declaration assessed", "NL-2026-000123")
	// A score of 0 cannot be told apart from a missing one in proto3; it is a
	// legitimate "no risk found", so only the range is checked.
	switch s := r.GetScore(); {
	case math.IsNaN(s) || math.IsInf(s, 0):
		c.add("score", "%s is not a number; give a score from 0 to 1", formatFloat(s))
	case s < 0 || s > 1:
		c.add("score", "%s is outside 0 to 1; give the score as a fraction, e.g. 0.72 rather than 72", formatFloat(s))
	}
	if l := r.GetLevel(); l == blv1.RiskLevel_RISK_LEVEL_UNSPECIFIED {
		c.add("level", "missing; give the risk level: LOW, MEDIUM or HIGH")
	} else if _, known := blv1.RiskLevel_name[int32(l)]; !known {
		c.add("level", "%d is not a risk level; use LOW, MEDIUM or HIGH", int32(l))
	}
	for i, ind := range r.GetIndicators() {
		// Weights may be negative (mitigating factors) but must be numbers,
		// or every sum and chart built from them breaks.
		if w := ind.GetWeight(); math.IsNaN(w) || math.IsInf(w, 0) {
			c.add(fmt.Sprintf("indicators[%d].weight", i), "%s is not a number; give the indicator's weight as a number, e.g. 0.25", formatFloat(w))
		}
	}
	if strings.TrimSpace(r.GetModelName()) == "" {
		c.add("model_name", "missing; give the name of the model or rule set that produced the score")
	}
	c.optionalTime("assessed_time", r.GetAssessedTime())
	return c.errs
}

// Record validates whichever record r carries and returns its ID, so that an
// error report can name the record even when it is invalid. Field paths are
// relative to the declaration or risk assessment, as in agreements. A record
// with neither is an error on the oneof "kind".
func Record(r *blv1.IngestRecord) (id string, errs []FieldError) {
	switch k := r.GetKind().(type) {
	case *blv1.IngestRecord_Declaration:
		return k.Declaration.GetId(), Declaration(k.Declaration)
	case *blv1.IngestRecord_RiskAssessment:
		return k.RiskAssessment.GetId(), RiskAssessment(k.RiskAssessment)
	default:
		return "", []FieldError{{
			Field:  "kind",
			Reason: `empty record; put the record under "declaration" or "risk_assessment"`,
		}}
	}
}

// checker collects problems in the order the checks run.
type checker struct {
	errs []FieldError
}

func (c *checker) add(field, format string, args ...any) {
	c.errs = append(c.errs, FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
}

func (c *checker) id(field, id, what, example string) {
	if id == "" {
		c.add(field, "missing; give %s, e.g. %q", what, example)
		return
	}
	if n := utf8.RuneCountInString(id); n > MaxIDLength {
		c.add(field, "%s is %d characters long; shorten it to at most %d", quote(id), n, MaxIDLength)
		return
	}
	for _, r := range id {
		if !idRune(r) {
			c.add(field, "%s contains %q, which an ID may not contain; use only letters A-Z and a-z, digits, \"-\", \"_\", \"/\" and \".\"", quote(id), r)
			return
		}
	}
}

func idRune(r rune) bool {
	switch {
	case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		return true
	}
	return strings.ContainsRune("-_/.", r)
}

func (c *checker) requiredTime(field string, ts *timestamppb.Timestamp, what string) {
	if ts == nil {
		c.add(field, "missing; give %s, e.g. \"2026-11-25T10:00:00Z\"", what)
		return
	}
	c.optionalTime(field, ts)
}

func (c *checker) optionalTime(field string, ts *timestamppb.Timestamp) {
	if ts == nil || ts.CheckValid() == nil {
		return
	}
	c.add(field, "seconds %d, nanos %d is not a valid time; give a time between 0001-01-01 and 9999-12-31 UTC", ts.GetSeconds(), ts.GetNanos())
}

func (c *checker) requiredCountry(field, code, what string) {
	if code == "" {
		c.add(field, "missing; give the ISO 3166-1 alpha-2 code of %s, e.g. \"NL\"", what)
		return
	}
	c.optionalCountry(field, code)
}

func (c *checker) optionalCountry(field, code string) {
	if code != "" && !Country(code) {
		c.add(field, "%s", countryReason(code))
	}
}

func (c *checker) party(field string, p *blv1.Party) {
	if a := p.GetAddress(); a != nil {
		c.optionalCountry(field+".address.country", a.GetCountry())
	}
}

func (c *checker) goodsItem(field string, g *blv1.GoodsItem) {
	c.hsCode(field+".hs_code", g.GetHsCode())
	c.optionalCountry(field+".origin_country", g.GetOriginCountry())
	c.mass(field+".net_mass_kg", g.GetNetMassKg(), "net")
	c.money(field+".statistical_value", g.GetStatisticalValue())
}

func (c *checker) hsCode(field, code string) {
	if code == "" {
		c.add(field, "missing; give the 6- to 10-digit HS code of the goods, e.g. \"85171300\"")
		return
	}
	if hsDigits(code) {
		return
	}
	// Clerks copy codes from tariff books that print "8517.13.00"; say exactly
	// what to type instead.
	example := "85171300"
	if stripped := strings.NewReplacer(".", "", " ", "", "-", "").Replace(code); hsDigits(stripped) {
		example = stripped
	}
	c.add(field, "%s is not an HS code; use 6 to 10 digits with no dots or spaces, e.g. %q", quote(code), example)
}

func hsDigits(code string) bool {
	if len(code) < 6 || len(code) > 10 {
		return false
	}
	for i := 0; i < len(code); i++ {
		if code[i] < '0' || code[i] > '9' {
			return false
		}
	}
	return true
}

func (c *checker) mass(field string, kg float64, kind string) {
	switch {
	case math.IsNaN(kg) || math.IsInf(kg, 0):
		c.add(field, "%s is not a number; give the %s mass in kilograms, 0 or more", formatFloat(kg), kind)
	case kg < 0:
		c.add(field, "%s kg is negative; give the %s mass in kilograms, 0 or more", formatFloat(kg), kind)
	}
}

// money follows google.type.Money: a non-negative whole part and a nano part
// of the same sign, in an ISO 4217 currency. An absent amount is not an error.
func (c *checker) money(field string, m *blv1.Money) {
	if m == nil {
		return
	}
	units, nanos := m.GetUnits(), m.GetNanos()
	switch cur := m.GetCurrency(); {
	case cur == "" && (units != 0 || nanos != 0):
		c.add(field+".currency", "missing; an amount of %s needs its ISO 4217 currency code, e.g. \"EUR\"", formatAmount(units, nanos))
	case cur != "" && !Currency(cur):
		c.add(field+".currency", "%s", currencyReason(cur))
	}
	if units < 0 {
		c.add(field+".units", "%d is negative; amounts must be 0 or more", units)
	}
	if nanos < 0 || nanos > 999_999_999 {
		c.add(field+".nanos", "%d is outside 0 to 999999999; give the fraction in billionths, e.g. 500000000 for .50", nanos)
	}
}

// quote quotes a value for a reason, shortened so that a pasted paragraph
// does not swamp the error list.
func quote(s string) string {
	const max = 40
	if utf8.RuneCountInString(s) <= max {
		return strconv.Quote(s)
	}
	r := []rune(s)
	return strconv.Quote(string(r[:max])) + "…"
}

func formatFloat(f float64) string {
	return strconv.FormatFloat(f, 'g', -1, 64)
}

func formatAmount(units int64, nanos int32) string {
	if nanos == 0 {
		return strconv.FormatInt(units, 10)
	}
	frac := strings.TrimRight(fmt.Sprintf("%09d", abs32(nanos)), "0")
	sign := ""
	if units == 0 && nanos < 0 {
		sign = "-"
	}
	return fmt.Sprintf("%s%d.%s", sign, units, frac)
}

func abs32(n int32) int64 {
	if n < 0 {
		return -int64(n)
	}
	return int64(n)
}
