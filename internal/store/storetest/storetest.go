// Package storetest is the conformance suite every store backend must pass.
// A backend's own test calls Run with a function that opens a fresh, empty
// store on real storage; the suite then checks the contract documented in
// package store end to end. Backend-specific behaviour (persistence across
// restarts, migrations, pragmas) is tested next to the backend.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/borderlink/borderlink/internal/store"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// Backend is the store API the suite exercises.
type Backend interface {
	Ping(ctx context.Context) error
	// Close must be idempotent: Run closes some backends itself, and open
	// is expected to register a Close with t.Cleanup as well.
	Close() error

	PutRecords(ctx context.Context, decls []*blv1.Declaration, risks []*blv1.RiskAssessment) error
	GetDeclaration(ctx context.Context, id string) (*blv1.Declaration, error)
	GetRiskAssessment(ctx context.Context, id string) (*blv1.RiskAssessment, error)
	SearchDeclarations(ctx context.Context, q store.DeclarationQuery, fn func(*blv1.Declaration) error) error
	CountRecords(ctx context.Context) (decls, risks int64, err error)

	AppendAudit(ctx context.Context, rec *blv1.AuditRecord) (uint64, error)
	ListAudit(ctx context.Context, q store.AuditQuery) ([]*blv1.AuditRecord, error)
}

// Run runs the conformance suite. open must return a new, empty backend for
// each call and arrange its Close with t.Cleanup. Subtests run sequentially,
// so open need not be safe for parallel use.
func Run(t *testing.T, open func(t *testing.T) Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b Backend)
	}{
		{"Ping", testPing},
		{"RoundTrip", testRoundTrip},
		{"EmptyPut", testEmptyPut},
		{"Upsert", testUpsert},
		{"AllOrNothing", testAllOrNothing},
		{"NotFound", testNotFound},
		{"Search", testSearch},
		{"SearchInvalid", testSearchInvalid},
		{"SearchStop", testSearchStop},
		{"SearchManyPages", testSearchManyPages},
		{"SearchCallbackMayWrite", testSearchCallbackMayWrite},
		{"AuditAppend", testAuditAppend},
		{"AuditInvalid", testAuditInvalid},
		{"AuditConcurrentGapless", testAuditConcurrent},
		{"AuditList", testAuditList},
		{"AuditPaging", testAuditPaging},
		{"Closed", testClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

// T0 is the reference time of the fixtures.
var T0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// Declaration returns a fully populated declaration accepted at T0 plus
// offset, with one goods item per HS code, for round-trip and search tests.
func Declaration(id string, offset time.Duration, export, dest string, hsCodes ...string) *blv1.Declaration {
	d := &blv1.Declaration{
		Id:                id,
		Type:              blv1.DeclarationType_DECLARATION_TYPE_EXPORT,
		AcceptanceTime:    timestamppb.New(T0.Add(offset)),
		DeclarationOffice: "NL000396",
		Declarant:         &blv1.Party{Name: "Forwarder BV", TaxId: "NL123456789"},
		Importer: &blv1.Party{Name: "Importer Pte", TaxId: "201912345K", Address: &blv1.Address{
			Street: "1 Harbour Rd", City: "Singapore", Postcode: "018956", Country: dest,
		}},
		Exporter:           &blv1.Party{Name: "Exporter BV", TaxId: "NL987654321"},
		ExportCountry:      export,
		DestinationCountry: dest,
		Transport: &blv1.Transport{
			Mode: blv1.TransportMode_TRANSPORT_MODE_SEA, MeansId: "9811000", Nationality: "NL",
			ContainerIds: []string{"MSKU1234565"}, LoadingLocation: "NLRTM", UnloadingLocation: "SGSIN",
		},
		Documents:     []*blv1.Document{{Type: "N380", Reference: "INV-" + id, IssueTime: timestamppb.New(T0.Add(-48 * time.Hour))}},
		InvoiceAmount: &blv1.Money{Currency: "EUR", Units: 12500, Nanos: 500000000},
		GrossMassKg:   1234.5,
	}
	for i, hs := range hsCodes {
		d.GoodsItems = append(d.GoodsItems, &blv1.GoodsItem{
			Sequence: uint32(i + 1), Description: "goods " + hs, HsCode: hs, OriginCountry: export,
			NetMassKg: 100, StatisticalValue: &blv1.Money{Currency: "EUR", Units: 1000}, PackageCount: 3,
		})
	}
	return d
}

// RiskAssessment returns a populated risk assessment of declaration declID.
func RiskAssessment(id, declID string, score float64) *blv1.RiskAssessment {
	return &blv1.RiskAssessment{
		Id: id, DeclarationId: declID, Score: score, Level: blv1.RiskLevel_RISK_LEVEL_MEDIUM,
		Indicators: []*blv1.RiskIndicator{{Code: "R12", Description: "route", Weight: 0.4}},
		ModelName:  "targeting", ModelVersion: "2026.11",
		AssessedTime: timestamppb.New(T0.Add(time.Minute)),
	}
}

// AuditRecord returns an unsequenced audit record at T0 plus offset.
func AuditRecord(requestID string, offset time.Duration) *blv1.AuditRecord {
	return &blv1.AuditRecord{
		Time:           timestamppb.New(T0.Add(offset)),
		Side:           blv1.AuditSide_AUDIT_SIDE_PROVIDER,
		RequestId:      requestID,
		CallerId:       "spiffe://sg.customs.example/gateway",
		PeerId:         "spiffe://sg.customs.example/gateway",
		Action:         "declaration.get",
		Purpose:        "risk-assessment",
		ResourceIds:    []string{"NL-2026-000123"},
		Decision:       blv1.AuditDecision_AUDIT_DECISION_ALLOW,
		AgreementId:    "nl-sg-2026",
		PolicyRevision: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		ReleasedFields: []string{"id", "goods_items.hs_code"},
		ReleaseSha256:  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		Status:         "OK",
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func mustPut(t *testing.T, b Backend, decls []*blv1.Declaration, risks []*blv1.RiskAssessment) {
	t.Helper()
	if err := b.PutRecords(ctxT(t), decls, risks); err != nil {
		t.Fatalf("PutRecords: %v", err)
	}
}

func wantCount(t *testing.T, b Backend, wantDecls, wantRisks int64) {
	t.Helper()
	d, r, err := b.CountRecords(ctxT(t))
	if err != nil {
		t.Fatalf("CountRecords: %v", err)
	}
	if d != wantDecls || r != wantRisks {
		t.Errorf("CountRecords = (%d, %d), want (%d, %d)", d, r, wantDecls, wantRisks)
	}
}

func testPing(t *testing.T, b Backend) {
	if err := b.Ping(ctxT(t)); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	wantCount(t, b, 0, 0)
}

func testRoundTrip(t *testing.T, b Backend) {
	ctx := ctxT(t)
	d := Declaration("NL-2026-000001", 0, "NL", "SG", "851712", "8471300000")
	d.GoodsItems[0].Description = "ünïcødé ✓" // bytes survive, not just ASCII
	r := RiskAssessment("RA-1", d.GetId(), 0.73)
	mustPut(t, b, []*blv1.Declaration{d}, []*blv1.RiskAssessment{r})

	gotD, err := b.GetDeclaration(ctx, d.GetId())
	if err != nil {
		t.Fatalf("GetDeclaration: %v", err)
	}
	if !proto.Equal(gotD, d) {
		t.Errorf("GetDeclaration = %v, want %v", gotD, d)
	}
	gotR, err := b.GetRiskAssessment(ctx, r.GetId())
	if err != nil {
		t.Fatalf("GetRiskAssessment: %v", err)
	}
	if !proto.Equal(gotR, r) {
		t.Errorf("GetRiskAssessment = %v, want %v", gotR, r)
	}
	wantCount(t, b, 1, 1)
}

func testEmptyPut(t *testing.T, b Backend) {
	if err := b.PutRecords(ctxT(t), nil, nil); err != nil {
		t.Fatalf("PutRecords(nil, nil) = %v, want nil", err)
	}
	wantCount(t, b, 0, 0)
}

func testUpsert(t *testing.T, b Backend) {
	ctx := ctxT(t)
	old := Declaration("D1", 0, "NL", "SG", "851712")
	mustPut(t, b, []*blv1.Declaration{old}, []*blv1.RiskAssessment{RiskAssessment("R1", "D1", 0.1)})

	// Every indexed field changes, so stale index rows would show in searches.
	updated := Declaration("D1", time.Hour, "DE", "US", "847130", "940360")
	newRisk := RiskAssessment("R1", "D2", 0.9)
	mustPut(t, b, []*blv1.Declaration{updated}, []*blv1.RiskAssessment{newRisk})

	gotD, err := b.GetDeclaration(ctx, "D1")
	if err != nil {
		t.Fatalf("GetDeclaration: %v", err)
	}
	if !proto.Equal(gotD, updated) {
		t.Errorf("GetDeclaration = %v, want %v", gotD, updated)
	}
	gotR, err := b.GetRiskAssessment(ctx, "R1")
	if err != nil {
		t.Fatalf("GetRiskAssessment: %v", err)
	}
	if !proto.Equal(gotR, newRisk) {
		t.Errorf("GetRiskAssessment = %v, want %v", gotR, newRisk)
	}
	wantCount(t, b, 1, 1)

	for _, tc := range []struct {
		name string
		q    store.DeclarationQuery
		want []string
	}{
		{"old chapter", store.DeclarationQuery{HSChapters: []string{"85"}}, nil},
		{"new chapter", store.DeclarationQuery{HSChapters: []string{"94"}}, []string{"D1"}},
		{"old export", store.DeclarationQuery{ExportCountry: "NL"}, nil},
		{"new destination", store.DeclarationQuery{DestinationCountry: "US"}, []string{"D1"}},
		{"old time", store.DeclarationQuery{AcceptedBefore: T0.Add(time.Minute)}, nil},
	} {
		if got := searchIDs(t, b, tc.q); !slices.Equal(got, tc.want) {
			t.Errorf("after upsert, search %s = %q, want %q", tc.name, got, tc.want)
		}
	}

	// Upserting the same id twice in one batch keeps the last.
	a, c := Declaration("D2", 0, "NL", "SG", "01"), Declaration("D2", 0, "NL", "JP", "02")
	mustPut(t, b, []*blv1.Declaration{a, c}, nil)
	if got, err := b.GetDeclaration(ctx, "D2"); err != nil || !proto.Equal(got, c) {
		t.Errorf("GetDeclaration(D2) = %v, %v; want the last of the batch", got, err)
	}
}

func testAllOrNothing(t *testing.T, b Backend) {
	ctx := ctxT(t)
	existing := Declaration("EXISTING", 0, "NL", "SG", "851712")
	existingRisk := RiskAssessment("EXISTING-R", "EXISTING", 0.5)
	mustPut(t, b, []*blv1.Declaration{existing}, []*blv1.RiskAssessment{existingRisk})

	changed := Declaration("EXISTING", time.Hour, "DE", "US", "010121")
	noTime := Declaration("NO-TIME", 0, "NL", "SG", "851712")
	noTime.AcceptanceTime = nil
	badTime := Declaration("BAD-TIME", 0, "NL", "SG", "851712")
	badTime.AcceptanceTime.Nanos = 2e9

	tests := []struct {
		name  string
		decls []*blv1.Declaration
		risks []*blv1.RiskAssessment
	}{
		{"nil declaration after valid ones",
			[]*blv1.Declaration{Declaration("NEW", 0, "NL", "SG", "01"), changed, nil}, nil},
		{"declaration without id",
			[]*blv1.Declaration{changed, Declaration("", 0, "NL", "SG", "01")}, nil},
		{"declaration without acceptance time", []*blv1.Declaration{changed, noTime}, nil},
		{"declaration with invalid acceptance time", []*blv1.Declaration{changed, badTime}, nil},
		{"nil risk assessment after valid declarations",
			[]*blv1.Declaration{changed}, []*blv1.RiskAssessment{RiskAssessment("NEW-R", "NEW", 1), nil}},
		{"risk assessment without id",
			[]*blv1.Declaration{changed}, []*blv1.RiskAssessment{RiskAssessment("EXISTING-R", "X", 1), RiskAssessment("", "X", 1)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := b.PutRecords(ctx, tc.decls, tc.risks)
			if !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("PutRecords = %v, want an error wrapping store.ErrInvalid", err)
			}
			wantCount(t, b, 1, 1)
			if got, err := b.GetDeclaration(ctx, "EXISTING"); err != nil || !proto.Equal(got, existing) {
				t.Errorf("GetDeclaration(EXISTING) = %v, %v; want it unchanged", got, err)
			}
			if got, err := b.GetRiskAssessment(ctx, "EXISTING-R"); err != nil || !proto.Equal(got, existingRisk) {
				t.Errorf("GetRiskAssessment(EXISTING-R) = %v, %v; want it unchanged", got, err)
			}
			if got := searchIDs(t, b, store.DeclarationQuery{HSChapters: []string{"01"}}); len(got) != 0 {
				t.Errorf("search chapter 01 = %q, want none (chapter rows of the failed batch)", got)
			}
		})
	}
}

func testNotFound(t *testing.T, b Backend) {
	ctx := ctxT(t)
	mustPut(t, b, []*blv1.Declaration{Declaration("D1", 0, "NL", "SG", "85")}, []*blv1.RiskAssessment{RiskAssessment("R1", "D1", 0)})
	for _, id := range []string{"missing", "", "d1", "R1"} {
		if _, err := b.GetDeclaration(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetDeclaration(%q) error = %v, want store.ErrNotFound", id, err)
		}
	}
	for _, id := range []string{"missing", "", "r1", "D1"} {
		if _, err := b.GetRiskAssessment(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetRiskAssessment(%q) error = %v, want store.ErrNotFound", id, err)
		}
	}
}

func searchIDs(t *testing.T, b Backend, q store.DeclarationQuery) []string {
	t.Helper()
	var ids []string
	err := b.SearchDeclarations(ctxT(t), q, func(d *blv1.Declaration) error {
		ids = append(ids, d.GetId())
		return nil
	})
	if err != nil {
		t.Fatalf("SearchDeclarations(%+v): %v", q, err)
	}
	return ids
}

func searchFixture() []*blv1.Declaration {
	return []*blv1.Declaration{
		Declaration("A", 3*time.Hour, "NL", "SG", "851712", "847130"),
		Declaration("B", 2*time.Hour, "NL", "CN", "940360"),
		Declaration("C", 2*time.Hour, "DE", "SG", "8517620000"), // same time as B: id breaks the tie
		Declaration("D", 1*time.Hour, "NL", "SG", "010121", "851712", "851713"),
		Declaration("E", 0, "BE", "US", "300490"),
		Declaration("F", -time.Hour, "NL", "SG"), // no goods items: never matches a chapter
		Declaration("G", -2*time.Hour, "NL", "SG", "8", "94"),
	}
}

func testSearch(t *testing.T, b Backend) {
	mustPut(t, b, searchFixture(), nil)
	tests := []struct {
		name string
		q    store.DeclarationQuery
		want []string
	}{
		{"no filter", store.DeclarationQuery{}, []string{"A", "B", "C", "D", "E", "F", "G"}},
		{"one chapter", store.DeclarationQuery{HSChapters: []string{"85"}}, []string{"A", "C", "D"}},
		{"any of chapters", store.DeclarationQuery{HSChapters: []string{"94", "30"}}, []string{"B", "E", "G"}},
		{"repeated chapter", store.DeclarationQuery{HSChapters: []string{"85", "85"}}, []string{"A", "C", "D"}},
		{"chapter without matches", store.DeclarationQuery{HSChapters: []string{"99"}}, nil},
		{"chapter is a prefix not a substring", store.DeclarationQuery{HSChapters: []string{"17"}}, nil},
		{"export country", store.DeclarationQuery{ExportCountry: "NL"}, []string{"A", "B", "D", "F", "G"}},
		{"destination country", store.DeclarationQuery{DestinationCountry: "SG"}, []string{"A", "C", "D", "F", "G"}},
		{"country is case sensitive", store.DeclarationQuery{ExportCountry: "nl"}, nil},
		{"accepted after is inclusive", store.DeclarationQuery{AcceptedAfter: T0.Add(2 * time.Hour)}, []string{"A", "B", "C"}},
		{"accepted before is exclusive", store.DeclarationQuery{AcceptedBefore: T0.Add(2 * time.Hour)}, []string{"D", "E", "F", "G"}},
		{"time window", store.DeclarationQuery{AcceptedAfter: T0, AcceptedBefore: T0.Add(3 * time.Hour)}, []string{"B", "C", "D", "E"}},
		{"empty time window", store.DeclarationQuery{AcceptedAfter: T0, AcceptedBefore: T0}, nil},
		{"nanosecond bound", store.DeclarationQuery{AcceptedAfter: T0.Add(3*time.Hour + 1)}, nil},
		{"far bounds", store.DeclarationQuery{AcceptedAfter: time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC), AcceptedBefore: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)}, []string{"A", "B", "C", "D", "E", "F", "G"}},
		{"chapter and export", store.DeclarationQuery{HSChapters: []string{"85"}, ExportCountry: "NL"}, []string{"A", "D"}},
		{"chapter, countries and time", store.DeclarationQuery{
			HSChapters: []string{"85", "94"}, ExportCountry: "NL", DestinationCountry: "SG",
			AcceptedAfter: T0.Add(-2 * time.Hour), AcceptedBefore: T0.Add(3 * time.Hour),
		}, []string{"D", "G"}},
		{"all filters, no match", store.DeclarationQuery{HSChapters: []string{"30"}, ExportCountry: "NL"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := searchIDs(t, b, tc.q); !slices.Equal(got, tc.want) {
				t.Errorf("SearchDeclarations ids = %q, want %q", got, tc.want)
			}
		})
	}

	// Results are the stored records, not just their ids.
	want := searchFixture()[0]
	var got *blv1.Declaration
	err := b.SearchDeclarations(ctxT(t), store.DeclarationQuery{}, func(d *blv1.Declaration) error {
		got = d
		return store.ErrStop
	})
	if err != nil || !proto.Equal(got, want) {
		t.Errorf("first search result = %v, %v; want %v, nil", got, err, want)
	}
}

func testSearchInvalid(t *testing.T, b Backend) {
	for _, ch := range []string{"8", "851", "", "ab", "8a"} {
		err := b.SearchDeclarations(ctxT(t), store.DeclarationQuery{HSChapters: []string{"85", ch}}, func(*blv1.Declaration) error {
			t.Fatal("callback called for an invalid query")
			return nil
		})
		if !errors.Is(err, store.ErrInvalid) {
			t.Errorf("SearchDeclarations(chapter %q) = %v, want store.ErrInvalid", ch, err)
		}
	}
}

func testSearchStop(t *testing.T, b Backend) {
	mustPut(t, b, searchFixture(), nil)
	errBoom := errors.New("boom")
	tests := []struct {
		name    string
		stopAt  int   // callback call that returns err (1-based)
		err     error // returned by the callback at stopAt
		wantErr error
		wantIDs []string
	}{
		{"ErrStop after two", 2, store.ErrStop, nil, []string{"A", "B"}},
		{"wrapped ErrStop", 1, fmt.Errorf("enough: %w", store.ErrStop), nil, []string{"A"}},
		{"callback error is returned", 3, errBoom, errBoom, []string{"A", "B", "C"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var ids []string
			err := b.SearchDeclarations(ctxT(t), store.DeclarationQuery{}, func(d *blv1.Declaration) error {
				ids = append(ids, d.GetId())
				if len(ids) == tc.stopAt {
					return tc.err
				}
				return nil
			})
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("SearchDeclarations error = %v, want %v", err, tc.wantErr)
			}
			if !slices.Equal(ids, tc.wantIDs) {
				t.Errorf("callback saw %q, want %q", ids, tc.wantIDs)
			}
		})
	}
}

// testSearchManyPages stores more matches than a backend is likely to read
// at once, with many equal acceptance times, so paging and tie-breaking
// are both exercised.
func testSearchManyPages(t *testing.T, b Backend) {
	const n = 700
	var decls []*blv1.Declaration
	var want []string
	for i := range n {
		// 7 declarations per minute; ids sort in insertion order within a minute.
		decls = append(decls, Declaration(fmt.Sprintf("M%04d", i), time.Duration(i/7)*time.Minute, "NL", "SG", "851712"))
	}
	// Shuffle insertion order deterministically so the store cannot rely on it.
	slices.SortFunc(decls, func(a, c *blv1.Declaration) int { return cmpReversed(a.GetId(), c.GetId()) })
	mustPut(t, b, decls, nil)
	for m := (n - 1) / 7; m >= 0; m-- {
		for j := range 7 {
			if i := m*7 + j; i < n {
				want = append(want, fmt.Sprintf("M%04d", i))
			}
		}
	}
	got := searchIDs(t, b, store.DeclarationQuery{HSChapters: []string{"85"}, ExportCountry: "NL"})
	if !slices.Equal(got, want) {
		t.Errorf("search over %d declarations: got %d ids, want %d in (time desc, id asc) order; first difference at %d",
			n, len(got), len(want), firstDiff(got, want))
	}
	var stopped []string
	err := b.SearchDeclarations(ctxT(t), store.DeclarationQuery{}, func(d *blv1.Declaration) error {
		stopped = append(stopped, d.GetId())
		if len(stopped) == 300 {
			return store.ErrStop
		}
		return nil
	})
	if err != nil || !slices.Equal(stopped, want[:300]) {
		t.Errorf("search stopped after 300: err %v, got %d ids, first difference at %d", err, len(stopped), firstDiff(stopped, want[:300]))
	}
}

func cmpReversed(a, b string) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// testSearchCallbackMayWrite checks that a search holds no write lock while
// its callback runs: writes from inside the callback must complete.
func testSearchCallbackMayWrite(t *testing.T, b Backend) {
	mustPut(t, b, searchFixture(), nil)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	calls := 0
	err := b.SearchDeclarations(ctx, store.DeclarationQuery{}, func(d *blv1.Declaration) error {
		calls++
		if err := b.PutRecords(ctx, nil, []*blv1.RiskAssessment{RiskAssessment("R-"+d.GetId(), d.GetId(), 0.5)}); err != nil {
			return fmt.Errorf("PutRecords inside search: %w", err)
		}
		if _, err := b.AppendAudit(ctx, AuditRecord("req-"+d.GetId(), 0)); err != nil {
			return fmt.Errorf("AppendAudit inside search: %w", err)
		}
		if _, err := b.GetDeclaration(ctx, d.GetId()); err != nil {
			return fmt.Errorf("GetDeclaration inside search: %w", err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("SearchDeclarations: %v", err)
	}
	if calls != len(searchFixture()) {
		t.Errorf("callback called %d times, want %d", calls, len(searchFixture()))
	}
	wantCount(t, b, int64(len(searchFixture())), int64(len(searchFixture())))
}

func testAuditAppend(t *testing.T, b Backend) {
	ctx := ctxT(t)
	var appended []*blv1.AuditRecord
	for i := range 5 {
		rec := AuditRecord(fmt.Sprintf("req-%d", i), time.Duration(i)*time.Second)
		if i == 3 {
			rec.Version = 1 // explicit version 1 is accepted too
		}
		want := proto.CloneOf(rec)
		seq, err := b.AppendAudit(ctx, rec)
		if err != nil {
			t.Fatalf("AppendAudit #%d: %v", i, err)
		}
		if seq != uint64(i+1) {
			t.Errorf("AppendAudit #%d seq = %d, want %d", i, seq, i+1)
		}
		want.Seq, want.Version = seq, 1
		if !proto.Equal(rec, want) {
			t.Errorf("after AppendAudit, rec = %v, want it with seq and version set: %v", rec, want)
		}
		appended = append(appended, want)
	}
	got, err := b.ListAudit(ctx, store.AuditQuery{})
	if err != nil {
		t.Fatalf("ListAudit: %v", err)
	}
	if len(got) != len(appended) {
		t.Fatalf("ListAudit returned %d records, want %d", len(got), len(appended))
	}
	for i := range got {
		if !proto.Equal(got[i], appended[i]) {
			t.Errorf("ListAudit[%d] = %v, want %v", i, got[i], appended[i])
		}
	}
	// Deterministic bytes: what the caller marshals after the append is what
	// was stored, so it can hash the leaf without reading it back.
	for i := range got {
		gb, _ := proto.MarshalOptions{Deterministic: true}.Marshal(got[i])
		wb, _ := proto.MarshalOptions{Deterministic: true}.Marshal(appended[i])
		if string(gb) != string(wb) {
			t.Errorf("record %d: stored bytes differ from the caller's deterministic bytes", i)
		}
	}
}

func testAuditInvalid(t *testing.T, b Backend) {
	ctx := ctxT(t)
	if _, err := b.AppendAudit(ctx, AuditRecord("first", 0)); err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	withSeq := AuditRecord("with-seq", 0)
	withSeq.Seq = 7
	v2 := AuditRecord("v2", 0)
	v2.Version = 2
	noTime := AuditRecord("no-time", 0)
	noTime.Time = nil
	badTime := AuditRecord("bad-time", 0)
	badTime.Time.Nanos = -1
	for _, tc := range []struct {
		name string
		rec  *blv1.AuditRecord
	}{
		{"nil", nil},
		{"seq already set", withSeq},
		{"unknown version", v2},
		{"no time", noTime},
		{"invalid time", badTime},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := proto.CloneOf(tc.rec)
			if _, err := b.AppendAudit(ctx, tc.rec); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("AppendAudit = %v, want store.ErrInvalid", err)
			}
			if tc.rec != nil && !proto.Equal(tc.rec, before) {
				t.Errorf("failed AppendAudit modified rec: %v, want %v", tc.rec, before)
			}
		})
	}
	// Rejected appends take no sequence number.
	if seq, err := b.AppendAudit(ctx, AuditRecord("second", 0)); err != nil || seq != 2 {
		t.Errorf("AppendAudit after rejections = %d, %v; want 2, nil", seq, err)
	}
	if _, err := b.ListAudit(ctx, store.AuditQuery{Limit: -1}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("ListAudit(limit -1) = %v, want store.ErrInvalid", err)
	}
}

func testAuditConcurrent(t *testing.T, b Backend) {
	const workers, each = 8, 50
	ctx := ctxT(t)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		seqs []uint64
		errs []error
	)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				rec := AuditRecord(fmt.Sprintf("w%d-%d", w, i), time.Duration(i)*time.Millisecond)
				seq, err := b.AppendAudit(ctx, rec)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					seqs = append(seqs, seq)
					if rec.GetSeq() != seq {
						errs = append(errs, fmt.Errorf("rec.Seq = %d, returned seq %d", rec.GetSeq(), seq))
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent AppendAudit: %v", err)
	}
	slices.Sort(seqs)
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("returned seqs are not 1..%d without gaps or duplicates: position %d is %d", workers*each, i, s)
		}
	}
	got, err := b.ListAudit(ctx, store.AuditQuery{})
	if err != nil {
		t.Fatalf("ListAudit: %v", err)
	}
	if len(got) != workers*each {
		t.Fatalf("ListAudit returned %d records, want %d", len(got), workers*each)
	}
	perWorker := map[string]int{}
	for i, rec := range got {
		if rec.GetSeq() != uint64(i+1) {
			t.Fatalf("ListAudit[%d].Seq = %d, want %d", i, rec.GetSeq(), i+1)
		}
		// Within one worker, appends are sequential, so commit order (seq)
		// must follow the worker's own order.
		var w, n int
		fmt.Sscanf(rec.GetRequestId(), "w%d-%d", &w, &n)
		key := fmt.Sprint(w)
		if n != perWorker[key] {
			t.Fatalf("seq %d is %s, want w%d-%d next for that worker", rec.GetSeq(), rec.GetRequestId(), w, perWorker[key])
		}
		perWorker[key]++
	}
}

func testAuditList(t *testing.T, b Backend) {
	ctx := ctxT(t)
	// seq: 1..6; request ids and times chosen so filters overlap.
	fixture := []struct {
		req    string
		offset time.Duration
	}{
		{"r1", 0}, {"r2", time.Second}, {"r1", 2 * time.Second},
		{"r3", 2 * time.Second}, {"r1", 4 * time.Second}, {"r2", -time.Hour}, // times need not follow seq
	}
	for _, f := range fixture {
		if _, err := b.AppendAudit(ctx, AuditRecord(f.req, f.offset)); err != nil {
			t.Fatalf("AppendAudit: %v", err)
		}
	}
	tests := []struct {
		name string
		q    store.AuditQuery
		want []uint64
	}{
		{"all", store.AuditQuery{}, []uint64{1, 2, 3, 4, 5, 6}},
		{"request id", store.AuditQuery{RequestID: "r1"}, []uint64{1, 3, 5}},
		{"unknown request id", store.AuditQuery{RequestID: "nope"}, nil},
		{"after seq", store.AuditQuery{AfterSeq: 4}, []uint64{5, 6}},
		{"after last seq", store.AuditQuery{AfterSeq: 6}, nil},
		{"after huge seq", store.AuditQuery{AfterSeq: 1 << 63}, nil},
		{"since is inclusive", store.AuditQuery{Since: T0.Add(2 * time.Second)}, []uint64{3, 4, 5}},
		{"until is exclusive", store.AuditQuery{Until: T0.Add(2 * time.Second)}, []uint64{1, 2, 6}},
		{"since and until", store.AuditQuery{Since: T0, Until: T0.Add(4 * time.Second)}, []uint64{1, 2, 3, 4}},
		{"limit", store.AuditQuery{Limit: 2}, []uint64{1, 2}},
		{"request id, after seq, limit", store.AuditQuery{RequestID: "r1", AfterSeq: 1, Limit: 1}, []uint64{3}},
		{"request id and window", store.AuditQuery{RequestID: "r1", Since: T0.Add(time.Second), Until: T0.Add(5 * time.Second)}, []uint64{3, 5}},
		{"request id and since", store.AuditQuery{RequestID: "r2", Since: T0}, []uint64{2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			recs, err := b.ListAudit(ctx, tc.q)
			if err != nil {
				t.Fatalf("ListAudit: %v", err)
			}
			var got []uint64
			for _, r := range recs {
				got = append(got, r.GetSeq())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("ListAudit(%+v) seqs = %v, want %v", tc.q, got, tc.want)
			}
		})
	}
}

func testAuditPaging(t *testing.T, b Backend) {
	ctx := ctxT(t)
	const n = store.DefaultAuditLimit + 37
	for i := range n {
		if _, err := b.AppendAudit(ctx, AuditRecord(fmt.Sprint(i), 0)); err != nil {
			t.Fatalf("AppendAudit: %v", err)
		}
	}
	first, err := b.ListAudit(ctx, store.AuditQuery{})
	if err != nil {
		t.Fatalf("ListAudit: %v", err)
	}
	if len(first) != store.DefaultAuditLimit {
		t.Errorf("ListAudit with Limit 0 returned %d, want %d", len(first), store.DefaultAuditLimit)
	}
	var all []*blv1.AuditRecord
	for after := uint64(0); ; {
		page, err := b.ListAudit(ctx, store.AuditQuery{AfterSeq: after, Limit: 100})
		if err != nil {
			t.Fatalf("ListAudit(after %d): %v", after, err)
		}
		if len(page) == 0 {
			break
		}
		all = append(all, page...)
		after = page[len(page)-1].GetSeq()
	}
	if len(all) != n {
		t.Fatalf("paging returned %d records, want %d", len(all), n)
	}
	for i, rec := range all {
		if want := AuditRecord(fmt.Sprint(i), 0); rec.GetSeq() != uint64(i+1) || rec.GetRequestId() != want.GetRequestId() {
			t.Fatalf("page record %d = seq %d request %q, want seq %d request %q", i, rec.GetSeq(), rec.GetRequestId(), i+1, want.GetRequestId())
		}
	}
}

func testClosed(t *testing.T, b Backend) {
	ctx := ctxT(t)
	mustPut(t, b, []*blv1.Declaration{Declaration("D1", 0, "NL", "SG", "85")}, nil)
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	if _, err := b.GetDeclaration(ctx, "D1"); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetDeclaration after Close = %v, want a non-NotFound error", err)
	}
	if _, err := b.AppendAudit(ctx, AuditRecord("late", 0)); err == nil {
		t.Error("AppendAudit after Close succeeded")
	}
	if err := b.Ping(ctx); err == nil {
		t.Error("Ping after Close succeeded")
	}
}
