// Package gen makes synthetic but plausible customs records for the demo,
// tests and benchmarks.
//
// Output is a pure function of Options: the same Options give byte-identical
// JSONL on every run, machine and build. The generator draws from one seeded
// PCG stream in a fixed order, never reads the clock and never ranges over a
// map. Every record it makes passes internal/validate; the tests hold it to
// that.
package gen

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/borderlink/borderlink/internal/validate"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// MaxCount is the most declarations one run can make: IDs carry a 6-digit
// sequence number per year.
const MaxCount = 999_999

// Window is how far before Options.Start acceptance times reach.
const Window = 90 * 24 * time.Hour

// pcgStream is the second PCG word. It is fixed so that Options.Seed alone
// selects the stream; changing it changes every golden file.
const pcgStream = 0x626f726465726c6b // "borderlk"

// Options says what to generate.
type Options struct {
	// Domain is the issuing administration's trust domain, e.g.
	// "nl.customs.example". Its first label is the administration's country.
	Domain string
	// Count is the number of declarations; each is followed by its risk
	// assessment, so Generate returns 2*Count records.
	Count int
	Seed  uint64
	// Start ends the 90-day window of acceptance times. It is given by the
	// caller, never taken from the clock, so output is reproducible.
	Start time.Time
	// Partners are ISO 3166-1 alpha-2 codes of countries that should appear
	// often as destination or export country, e.g. []string{"SG", "CN"}.
	Partners []string
}

// Generate makes Count declarations, each followed by its risk assessment,
// in order of acceptance time.
func Generate(opts Options) ([]*blv1.IngestRecord, error) {
	home, err := opts.check()
	if err != nil {
		return nil, err
	}
	g := &generator{
		rng:     rand.New(rand.NewPCG(opts.Seed, pcgStream)),
		home:    home,
		traders: make(map[string][]*trader),
	}
	for _, p := range opts.Partners {
		if p != home {
			g.partners = append(g.partners, p)
		}
	}

	// Times first, sorted, so that sequence numbers rise with time as they
	// do in a real customs system.
	times := make([]time.Time, opts.Count)
	for i := range times {
		times[i] = g.acceptanceTime(opts.Start)
	}
	slices.SortStableFunc(times, func(a, b time.Time) int { return a.Compare(b) })

	recs := make([]*blv1.IngestRecord, 0, 2*opts.Count)
	seq := make(map[int]int) // per year, as real declaration numbers restart yearly
	for _, t := range times {
		seq[t.Year()]++
		d, facts := g.declaration(t, seq[t.Year()])
		ra := g.riskAssessment(d, facts, seq[t.Year()])
		recs = append(recs,
			&blv1.IngestRecord{Kind: &blv1.IngestRecord_Declaration{Declaration: d}},
			&blv1.IngestRecord{Kind: &blv1.IngestRecord_RiskAssessment{RiskAssessment: ra}})
	}
	return recs, nil
}

// check validates the options and returns the administration's country.
func (o Options) check() (string, error) {
	label, _, _ := strings.Cut(o.Domain, ".")
	home := strings.ToUpper(label)
	if len(label) != 2 || strings.ToLower(label) != label || !validate.Country(home) {
		return "", fmt.Errorf("gen: domain %q: the first label must be the lower-case ISO 3166-1 alpha-2 code of the administration's country, e.g. \"nl\" in \"nl.customs.example\"", o.Domain)
	}
	if o.Count < 0 || o.Count > MaxCount {
		return "", fmt.Errorf("gen: count %d: must be from 0 to %d", o.Count, MaxCount)
	}
	if o.Start.IsZero() {
		return "", errors.New("gen: start is required: acceptance times are spread over the 90 days before it")
	}
	if y := o.Start.Add(-Window).UTC().Year(); y < 1000 || o.Start.UTC().Year() > 9999 {
		return "", fmt.Errorf("gen: start %s: must be between the years 1000 and 9999 so IDs carry a 4-digit year", o.Start.Format(time.RFC3339))
	}
	for _, p := range o.Partners {
		if !validate.Country(p) {
			return "", fmt.Errorf("gen: partner %q: not an ISO 3166-1 alpha-2 country code; use e.g. \"SG\"", p)
		}
	}
	return home, nil
}

// WriteJSONL writes one protojson object per line, with the .proto field
// names, each line newline-terminated.
//
// protojson deliberately varies its whitespace between builds so that nobody
// depends on its exact bytes; compacting the output restores the
// byte-for-byte stability that golden files and content digests need.
func WriteJSONL(w io.Writer, recs []*blv1.IngestRecord) error {
	opts := protojson.MarshalOptions{UseProtoNames: true}
	var line bytes.Buffer
	for i, rec := range recs {
		b, err := opts.Marshal(rec)
		if err != nil {
			return fmt.Errorf("gen: marshal record %d: %w", i, err)
		}
		line.Reset()
		if err := json.Compact(&line, b); err != nil {
			return fmt.Errorf("gen: compact record %d: %w", i, err)
		}
		line.WriteByte('\n')
		if _, err := w.Write(line.Bytes()); err != nil {
			return fmt.Errorf("gen: write record %d: %w", i, err)
		}
	}
	return nil
}
