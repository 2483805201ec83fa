package release_test

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/borderlink/borderlink/internal/release"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

const (
	sgGateway = "spiffe://sg.customs.example/gateway"
	nzGateway = "spiffe://nz.customs.example/gateway"
)

// testKey is bytes 0x00..0x1f, the key of the known-answer vectors.
func testKey() []byte {
	key := make([]byte, release.MinKeySize)
	for i := range key {
		key[i] = byte(i)
	}
	return key
}

func newPseudonymizer(t testing.TB) *release.Pseudonymizer {
	t.Helper()
	p, err := release.NewPseudonymizer(testKey())
	if err != nil {
		t.Fatalf("NewPseudonymizer: %v", err)
	}
	return p
}

// fullDeclaration returns a declaration with every field populated, including
// two goods items with nested money and two documents with timestamps.
func fullDeclaration() *blv1.Declaration {
	return &blv1.Declaration{
		Id:                 "NL-2026-000123",
		Type:               blv1.DeclarationType_DECLARATION_TYPE_EXPORT,
		AcceptanceTime:     &timestamppb.Timestamp{Seconds: 1795600000, Nanos: 250000000},
		DeclarationOffice:  "NL000396",
		Declarant:          party("Rotterdam Forwarding BV", "NL800000001B01", "Waalhaven 1", "Rotterdam", "3089 JH", "NL"),
		Importer:           party("Lion Trading Pte Ltd", "SG201912345K", "1 Harbour Front Ave", "Singapore", "098632", "SG"),
		Exporter:           party("Delta Electronics BV", "NL123456789B01", "Stationsplein 8", "Eindhoven", "5611 AB", "NL"),
		ExportCountry:      "NL",
		DestinationCountry: "SG",
		GoodsItems: []*blv1.GoodsItem{
			{
				Sequence: 1, Description: "Static converters (inverters)", HsCode: "850440", OriginCountry: "NL",
				NetMassKg: 1200.5, StatisticalValue: money("EUR", 48000, 0), PackageCount: 12,
			},
			{
				Sequence: 2, Description: "Lithium-ion accumulators", HsCode: "850760", OriginCountry: "CN",
				NetMassKg: 800, StatisticalValue: money("EUR", 31250, 500000000), PackageCount: 8,
			},
		},
		Transport: &blv1.Transport{
			Mode:              blv1.TransportMode_TRANSPORT_MODE_SEA,
			MeansId:           "IMO9811000",
			Nationality:       "LR",
			ContainerIds:      []string{"MSCU1234565", "MSCU7654321"},
			LoadingLocation:   "NLRTM",
			UnloadingLocation: "SGSIN",
		},
		Documents: []*blv1.Document{
			{Type: "N380", Reference: "INV-2026-0042", IssueTime: &timestamppb.Timestamp{Seconds: 1795000000}},
			{Type: "N861", Reference: "COO-NL-77812", IssueTime: &timestamppb.Timestamp{Seconds: 1795100000, Nanos: 1}},
		},
		InvoiceAmount: money("EUR", 79250, 500000000),
		GrossMassKg:   2150.75,
	}
}

// fullRiskAssessment returns a risk assessment with every field populated.
func fullRiskAssessment() *blv1.RiskAssessment {
	return &blv1.RiskAssessment{
		Id:            "RA-NL-2026-000987",
		DeclarationId: "NL-2026-000123",
		Score:         0.87,
		Level:         blv1.RiskLevel_RISK_LEVEL_HIGH,
		Indicators: []*blv1.RiskIndicator{
			{Code: "R-HS85-DUAL", Description: "Dual-use goods under HS chapter 85", Weight: 0.6},
			{Code: "R-ROUTE-TS", Description: "Transshipment route", Weight: 0.27},
		},
		ModelName:    "nl-targeting",
		ModelVersion: "2026.11.2",
		AssessedTime: &timestamppb.Timestamp{Seconds: 1795600100},
	}
}

func party(name, taxID, street, city, postcode, country string) *blv1.Party {
	return &blv1.Party{
		Name:    name,
		TaxId:   taxID,
		Address: &blv1.Address{Street: street, City: city, Postcode: postcode, Country: country},
	}
}

func money(currency string, units int64, nanos int32) *blv1.Money {
	return &blv1.Money{Currency: currency, Units: units, Nanos: nanos}
}

// snapshot returns an exact copy of m to compare it with later. Not
// proto.Clone: in protobuf-go v1.36.12 it drops a -0.0 held by an
// implicit-presence float field (merge tests v != 0), which Marshal, Has and
// proto.Equal all treat as populated; a wire round trip keeps it, and keeps
// unknown fields too.
func snapshot(t testing.TB, m proto.Message) proto.Message {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatalf("snapshot: marshal: %v", err)
	}
	out := m.ProtoReflect().New().Interface()
	if err := (proto.UnmarshalOptions{Resolver: partsTypes}).Unmarshal(b, out); err != nil {
		t.Fatalf("snapshot: unmarshal: %v", err)
	}
	return out
}
