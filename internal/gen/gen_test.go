package gen

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/borderlink/borderlink/internal/validate"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

var start = time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)

func nlOptions(count int, seed uint64) Options {
	return Options{Domain: "nl.customs.example", Count: count, Seed: seed, Start: start, Partners: []string{"SG", "CN"}}
}

func generate(t testing.TB, opts Options) []*blv1.IngestRecord {
	t.Helper()
	recs, err := Generate(opts)
	if err != nil {
		t.Fatalf("Generate(%+v): %v", opts, err)
	}
	return recs
}

func jsonl(t testing.TB, recs []*blv1.IngestRecord) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := WriteJSONL(&b, recs); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestGolden(t *testing.T) {
	got := jsonl(t, generate(t, nlOptions(3, 1)))
	path := filepath.Join("testdata", "golden_3.jsonl")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (run go test -update if the change is intended)\n got: %s\nwant: %s", path, got, want)
	}
}

func TestDeterministic(t *testing.T) {
	opts := nlOptions(200, 99)
	a, b := jsonl(t, generate(t, opts)), jsonl(t, generate(t, opts))
	if !bytes.Equal(a, b) {
		t.Fatal("two runs with the same options differ")
	}
	opts.Seed++
	if c := jsonl(t, generate(t, opts)); bytes.Equal(a, c) {
		t.Error("different seeds gave the same output")
	}
}

func TestJSONLRoundTrip(t *testing.T) {
	recs := generate(t, nlOptions(5, 3))
	lines := strings.Split(string(jsonl(t, recs)), "\n")
	if got, want := len(lines), len(recs)+1; got != want || lines[len(lines)-1] != "" {
		t.Fatalf("got %d newline-separated parts, want %d records each ending in a newline", got, len(recs))
	}
	for i, line := range lines[:len(recs)] {
		if !strings.HasPrefix(line, `{"declaration":{"id":`) && !strings.HasPrefix(line, `{"risk_assessment":{"id":`) {
			t.Errorf("line %d does not use proto field names: %.60s", i+1, line)
		}
		var rec blv1.IngestRecord
		if err := protojson.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
	}
}

func TestEveryRecordValid(t *testing.T) {
	tests := []struct {
		domain   string
		seed     uint64
		partners []string
	}{
		{"nl.customs.example", 1, []string{"SG", "CN"}},
		{"nl.customs.example", 2, nil},
		{"sg.customs.example", 3, []string{"NL"}},
		{"cn.customs.example", 4, []string{"SG", "NL", "DE"}},
		{"mt.customs.example", 5, []string{"KE"}}, // no country profiles: generic data
		{"de.customs.example", 6, []string{"DE"}}, // partner is home: ignored
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.domain, tt.seed), func(t *testing.T) {
			recs := generate(t, Options{Domain: tt.domain, Count: 1000, Seed: tt.seed, Start: start, Partners: tt.partners})
			if got, want := len(recs), 2000; got != want {
				t.Fatalf("got %d records, want %d", got, want)
			}
			invalid := 0
			for i, rec := range recs {
				if id, errs := validate.Record(rec); errs != nil {
					invalid++
					if invalid <= 5 {
						t.Errorf("record %d (%s): %v", i, id, errs)
					}
				}
			}
			if invalid > 0 {
				t.Errorf("%d of %d records invalid", invalid, len(recs))
			}
		})
	}
}

var (
	declIDRe    = regexp.MustCompile(`^NL-\d{4}-\d{6}$`)
	riskIDRe    = regexp.MustCompile(`^NL-RA-\d{4}-\d{6}$`)
	hsRe        = regexp.MustCompile(`^\d{8}(\d{2})?$`)
	containerRe = regexp.MustCompile(`^[A-Z]{3}U\d{7}$`)
	imoRe       = regexp.MustCompile(`^IMO\d{7}$`)
)

// TestShapes checks the promises the demo and other tests rely on, record by
// record.
func TestShapes(t *testing.T) {
	recs := generate(t, nlOptions(500, 11))
	seen := make(map[string]bool)
	var prev time.Time
	for i := 0; i < len(recs); i += 2 {
		d, ra := recs[i].GetDeclaration(), recs[i+1].GetRiskAssessment()
		if d == nil || ra == nil {
			t.Fatalf("records %d, %d: want a declaration followed by its risk assessment", i, i+1)
		}
		id := d.GetId()
		if !declIDRe.MatchString(id) || seen[id] {
			t.Errorf("declaration id %q: want unique NL-YYYY-NNNNNN", id)
		}
		seen[id] = true
		if !riskIDRe.MatchString(ra.GetId()) || ra.GetDeclarationId() != id {
			t.Errorf("risk %q for %q: want NL-RA-YYYY-NNNNNN about the preceding declaration", ra.GetId(), ra.GetDeclarationId())
		}
		if y := d.GetAcceptanceTime().AsTime().Format("2006"); !strings.Contains(id, "-"+y+"-") {
			t.Errorf("%s: year differs from acceptance time %s", id, d.GetAcceptanceTime().AsTime())
		}
		at := d.GetAcceptanceTime().AsTime()
		if at.Before(start.Add(-Window)) || !at.Before(start) {
			t.Errorf("%s: accepted %s, want within 90 days before %s", id, at, start)
		}
		if at.Before(prev) {
			t.Errorf("%s: accepted %s, before the previous declaration (%s)", id, at, prev)
		}
		prev = at
		if n := len(d.GetGoodsItems()); n < 1 || n > 5 {
			t.Errorf("%s: %d goods items, want 1 to 5", id, n)
		}
		var net, stat float64
		for _, g := range d.GetGoodsItems() {
			if !hsRe.MatchString(g.GetHsCode()) {
				t.Errorf("%s: hs_code %q, want 8 or 10 digits", id, g.GetHsCode())
			}
			net += g.GetNetMassKg()
			stat += amount(g.GetStatisticalValue())
			if g.GetStatisticalValue().GetCurrency() != d.GetInvoiceAmount().GetCurrency() {
				t.Errorf("%s: statistical value in %s, invoice in %s", id, g.GetStatisticalValue().GetCurrency(), d.GetInvoiceAmount().GetCurrency())
			}
		}
		if d.GetGrossMassKg() < net {
			t.Errorf("%s: gross mass %v below the sum of net masses %v", id, d.GetGrossMassKg(), net)
		}
		if inv := amount(d.GetInvoiceAmount()); stat < 0.97*inv || stat > 1.09*inv+0.05 {
			t.Errorf("%s: statistical values sum to %.2f, invoice is %.2f", id, stat, inv)
		}
		tr := d.GetTransport()
		if tr.GetMode() == blv1.TransportMode_TRANSPORT_MODE_SEA && !imoRe.MatchString(tr.GetMeansId()) {
			t.Errorf("%s: sea means_id %q, want IMO and 7 digits", id, tr.GetMeansId())
		}
		for _, c := range tr.GetContainerIds() {
			if !containerRe.MatchString(c) || int(c[10]-'0') != iso6346Check(c) {
				t.Errorf("%s: container %q is not a valid ISO 6346 number", id, c)
			}
		}
		switch d.GetType() {
		case blv1.DeclarationType_DECLARATION_TYPE_EXPORT:
			if d.GetExportCountry() != "NL" {
				t.Errorf("%s: export from %s, want NL", id, d.GetExportCountry())
			}
		case blv1.DeclarationType_DECLARATION_TYPE_IMPORT:
			if d.GetDestinationCountry() != "NL" {
				t.Errorf("%s: import to %s, want NL", id, d.GetDestinationCountry())
			}
		}
		if d.GetExportCountry() == d.GetDestinationCountry() {
			t.Errorf("%s: exported to its own country %s", id, d.GetExportCountry())
		}
		wantLevel := blv1.RiskLevel_RISK_LEVEL_LOW
		switch s := ra.GetScore(); {
		case s >= 0.7:
			wantLevel = blv1.RiskLevel_RISK_LEVEL_HIGH
		case s >= 0.4:
			wantLevel = blv1.RiskLevel_RISK_LEVEL_MEDIUM
		}
		if ra.GetLevel() != wantLevel {
			t.Errorf("%s: score %v has level %v, want %v", ra.GetId(), ra.GetScore(), ra.GetLevel(), wantLevel)
		}
		if ra.GetModelName() != "borderlink-demo-risk" || ra.GetModelVersion() != "1.3.0" {
			t.Errorf("%s: model %s %s", ra.GetId(), ra.GetModelName(), ra.GetModelVersion())
		}
	}
}

func amount(m *blv1.Money) float64 {
	return float64(m.GetUnits()) + float64(m.GetNanos())/1e9
}

func TestDistribution(t *testing.T) {
	recs := generate(t, nlOptions(2000, 7))
	levels := map[blv1.RiskLevel]int{}
	chapters := map[string]int{}
	types := map[blv1.DeclarationType]int{}
	modes := map[blv1.TransportMode]int{}
	counterpart := map[string]int{}
	var values []float64
	for _, rec := range recs {
		if ra := rec.GetRiskAssessment(); ra != nil {
			levels[ra.GetLevel()]++
			continue
		}
		d := rec.GetDeclaration()
		types[d.GetType()]++
		modes[d.GetTransport().GetMode()]++
		values = append(values, amount(d.GetInvoiceAmount()))
		for _, c := range []string{d.GetExportCountry(), d.GetDestinationCountry()} {
			if c != "NL" {
				counterpart[c]++
			}
		}
		for _, g := range d.GetGoodsItems() {
			chapters[g.GetHsCode()[:2]]++
		}
	}
	n := 2000.0
	high, medium := float64(levels[blv1.RiskLevel_RISK_LEVEL_HIGH])/n, float64(levels[blv1.RiskLevel_RISK_LEVEL_MEDIUM])/n
	t.Logf("HIGH %.1f%%, MEDIUM %.1f%%; types %v; modes %v", 100*high, 100*medium, types, modes)
	if high < 0.04 || high > 0.14 {
		t.Errorf("HIGH share %.1f%%, want 4%% to 14%%", 100*high)
	}
	if medium < 0.12 || medium > 0.30 {
		t.Errorf("MEDIUM share %.1f%%, want about 20%%", 100*medium)
	}
	if top := argmax(chapters); top != "85" {
		t.Errorf("most frequent chapter %s (%v), want 85", top, chapters)
	}
	if top := argmax(types); top != blv1.DeclarationType_DECLARATION_TYPE_EXPORT {
		t.Errorf("most frequent type %v, want EXPORT", top)
	}
	if top := argmax(modes); top != blv1.TransportMode_TRANSPORT_MODE_SEA {
		t.Errorf("most frequent mode %v, want SEA", top)
	}
	if chapters["93"] == 0 || chapters["93"] > chapters["85"]/20 {
		t.Errorf("chapter 93 on %d lines, chapter 85 on %d: want arms rare but present", chapters["93"], chapters["85"])
	}
	if sg, cn, us := counterpart["SG"], counterpart["CN"], counterpart["US"]; sg <= us || cn <= us {
		t.Errorf("partners SG %d, CN %d not more frequent than US %d", sg, cn, us)
	}
	var mid, millions int
	for _, v := range values {
		switch {
		case v >= 1e6:
			millions++
		case v >= 1000 && v <= 100_000:
			mid++
		}
	}
	if share := float64(mid) / n; share < 0.6 {
		t.Errorf("%.0f%% of invoices between 1k and 100k, want most", 100*share)
	}
	if millions == 0 || millions > 100 {
		t.Errorf("%d invoices of a million or more, want a few", millions)
	}
}

func argmax[K comparable](m map[K]int) K {
	var best K
	n := -1
	for k, v := range m {
		if v > n {
			best, n = k, v
		}
	}
	return best
}

func TestOptionsErrors(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(o *Options)
		want   string
	}{
		{"empty domain", func(o *Options) { o.Domain = "" }, `domain ""`},
		{"first label not a country", func(o *Options) { o.Domain = "customs.example" }, "first label must be"},
		{"unassigned country", func(o *Options) { o.Domain = "xx.customs.example" }, `domain "xx.customs.example"`},
		{"upper-case label", func(o *Options) { o.Domain = "NL.customs.example" }, "lower-case"},
		{"negative count", func(o *Options) { o.Count = -1 }, "count -1"},
		{"count over the ID space", func(o *Options) { o.Count = MaxCount + 1 }, "count 1000000"},
		{"no start", func(o *Options) { o.Start = time.Time{} }, "start is required"},
		{"start before year 1000", func(o *Options) { o.Start = time.Date(999, 1, 1, 0, 0, 0, 0, time.UTC) }, "4-digit year"},
		{"bad partner", func(o *Options) { o.Partners = []string{"SG", "sg"} }, `partner "sg"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := nlOptions(1, 1)
			tt.mutate(&opts)
			_, err := Generate(opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Generate() error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestZeroCount(t *testing.T) {
	recs := generate(t, nlOptions(0, 1))
	if len(recs) != 0 {
		t.Errorf("got %d records, want none", len(recs))
	}
	if got := jsonl(t, recs); len(got) != 0 {
		t.Errorf("WriteJSONL wrote %q, want nothing", got)
	}
}

func TestCheckDigits(t *testing.T) {
	// Known numbers: ISO 6346's own example and a registered vessel.
	if got := iso6346Check("CSQU305438"); got != 3 {
		t.Errorf("iso6346Check(CSQU305438) = %d, want 3", got)
	}
	if got := imoCheck(907472); got != 9 {
		t.Errorf("imoCheck(907472) = %d, want 9 (IMO 9074729)", got)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, fmt.Errorf("disk full") }

func TestWriteJSONLError(t *testing.T) {
	err := WriteJSONL(failWriter{}, generate(t, nlOptions(1, 1)))
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("WriteJSONL() error = %v, want the writer's error", err)
	}
}
