package gateway_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/borderlink/borderlink/internal/release"
	"github.com/borderlink/borderlink/internal/store/storetest"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// TestGoodsItemsNarrowedToGrant: the health agency's grant covers food
// chapters only. For a mixed consignment it gets the fish line and not the
// electronics line, and the release and both digests describe exactly
// what it got.
func TestGoodsItemsNarrowedToGrant(t *testing.T) {
	f := startFederation(t)
	ctx := context.Background()
	nl := f.nodes[nlDomain]
	mixed := storetest.Declaration("NL-MIXED", 4*time.Hour, "NO", "NL", "03024200", "85044000", "0303")
	mustPut(t, nl, []*blv1.Declaration{mixed}, nil)

	ex := blv1.NewExchangeClient(f.conn(t, nlDomain, "spiffe://nl.customs.example/agency/health", nil))
	resp, err := ex.GetDeclaration(ctx, &blv1.GetDeclarationRequest{Id: "NL-MIXED", Purpose: "sanitary-control"})
	if err != nil {
		t.Fatalf("GetDeclaration: %v", err)
	}
	var codes []string
	for _, it := range resp.GetDeclaration().GetGoodsItems() {
		codes = append(codes, it.GetHsCode())
	}
	if !slices.Equal(codes, []string{"03024200", "0303"}) {
		t.Errorf("released goods items %v, want only the food lines", codes)
	}
	digest, _ := release.Digest(resp.GetDeclaration())
	if resp.GetRelease().GetSha256() != digest {
		t.Errorf("release digest %s does not describe the narrowed record %s", resp.GetRelease().GetSha256(), digest)
	}
	var recs []*blv1.AuditRecord
	for _, r := range allAudit(t, nl) {
		if r.GetResourceIds()[0] == "NL-MIXED" {
			recs = append(recs, r)
		}
	}
	if len(recs) != 1 || recs[0].GetReleaseSha256() != digest {
		t.Errorf("audit = %v, want one record with the narrowed digest", recs)
	}

	// SG's grant has no HS condition: it gets every line of a declaration
	// bound for SG.
	sgBound := storetest.Declaration("NL-MIXED-SG", 5*time.Hour, "NL", "SG", "03024200", "85044000")
	mustPut(t, nl, []*blv1.Declaration{sgBound}, nil)
	got, err := f.local(t, sgDomain).GetPartnerDeclaration(ctx, &blv1.GetPartnerDeclarationRequest{Partner: nlDomain, Id: "NL-MIXED-SG", Purpose: "risk-assessment"})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(got.GetDeclaration().GetGoodsItems()); n != 2 {
		t.Errorf("SG got %d goods items, want 2", n)
	}
}
