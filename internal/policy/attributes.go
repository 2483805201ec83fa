package policy

import (
	"sort"
	"time"

	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// DeclarationAttributes are the properties of a declaration that
// agreements may put conditions on. The gateway, `policy explain` and the
// tests all derive them here, so a condition means the same everywhere.
func DeclarationAttributes(d *blv1.Declaration) Attributes {
	chapters := map[string]bool{}
	headings := map[string]bool{}
	origins := map[string]bool{}
	for _, it := range d.GetGoodsItems() {
		hs := it.GetHsCode()
		if len(hs) >= 2 {
			chapters[hs[:2]] = true
		}
		if len(hs) >= 4 {
			headings[hs[:4]] = true
		}
		if it.GetOriginCountry() != "" {
			origins[it.GetOriginCountry()] = true
		}
	}
	var accepted time.Time
	if d.GetAcceptanceTime() != nil {
		accepted = d.GetAcceptanceTime().AsTime()
	}
	var amount *float64
	if m := d.GetInvoiceAmount(); m != nil && m.GetCurrency() != "" {
		v := float64(m.GetUnits()) + float64(m.GetNanos())/1e9
		amount = &v
	}
	return Attributes{
		InvoiceCurrency:    d.GetInvoiceAmount().GetCurrency(),
		InvoiceAmount:      amount,
		HSChapters:         sortedSet(chapters),
		HSHeadings:         sortedSet(headings),
		ExportCountry:      d.GetExportCountry(),
		DestinationCountry: d.GetDestinationCountry(),
		OriginCountries:    sortedSet(origins),
		Accepted:           accepted,
	}
}

// RiskAttributes describe a risk assessment by its score and, when the
// declaration it is about is known (decl may be nil), by that declaration.
func RiskAttributes(r *blv1.RiskAssessment, decl *blv1.Declaration) Attributes {
	var a Attributes
	if decl != nil {
		a = DeclarationAttributes(decl)
	}
	score := r.GetScore()
	a.RiskScore = &score
	return a
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
