package release_test

import (
	"fmt"
	"log"

	"github.com/borderlink/borderlink/internal/release"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

func ExampleApply() {
	decl := &blv1.Declaration{
		Id:            "NL-2026-000123",
		ExportCountry: "NL",
		Importer:      &blv1.Party{Name: "Lion Trading Pte Ltd", TaxId: "SG201912345K"},
		GoodsItems: []*blv1.GoodsItem{
			{HsCode: "850440", Description: "Static converters", NetMassKg: 1200.5},
			{HsCode: "850760", Description: "Lithium-ion accumulators", NetMassKg: 800},
		},
	}
	// In the gateway the key comes from internal/keys.
	p, err := release.NewPseudonymizer([]byte("example key, at least 32 bytes long"))
	if err != nil {
		log.Fatal(err)
	}
	rules := release.Rules{
		Fields:       []string{"id", "importer", "goods_items.hs_code"},
		Mask:         []string{"importer.name"},
		Pseudonymize: []string{"importer.tax_id"},
	}
	out, res, err := release.Apply(decl, rules, "spiffe://sg.customs.example/gateway", p)
	if err != nil {
		log.Fatal(err)
	}
	released := out.(*blv1.Declaration)
	fmt.Println("id:", released.GetId())
	fmt.Println("export country:", released.GetExportCountry() != "")
	fmt.Println("importer:", released.GetImporter().GetName(), released.GetImporter().GetTaxId())
	for _, item := range released.GetGoodsItems() {
		fmt.Println("goods item:", item.GetHsCode(), item.GetDescription(), item.GetNetMassKg())
	}
	fmt.Println("fields:", res.Fields)
	fmt.Println("masked:", res.Masked)
	fmt.Println("pseudonymized:", res.Pseudonymized)
	// Output:
	// id: NL-2026-000123
	// export country: false
	// importer: *** ps_vmsnl7a2nxandcr6i7ph2ruedgs3sfoc
	// goods item: 850440  0
	// goods item: 850760  0
	// fields: [goods_items.hs_code id importer.name importer.tax_id]
	// masked: [importer.name]
	// pseudonymized: [importer.tax_id]
}
