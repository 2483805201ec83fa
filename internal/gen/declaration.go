package gen

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// generator holds the state of one Generate call. It is never shared.
type generator struct {
	rng      *rand.Rand
	home     string
	partners []string
	// traders are the companies met so far, keyed by country and trade, so
	// that the same exporters come back, as they do in real data.
	traders map[string][]*trader
}

type trader struct {
	party        *blv1.Party
	declarations int
}

// maxTradersPerKey bounds how many companies share one country and trade;
// once reached, only known companies are reused.
const maxTradersPerKey = 6

// facts are what the risk model may notice about a declaration.
type facts struct {
	sensitive   bool // goods in a sensitive HS chapter
	undervalued bool // value per kg far below the chapter's norm
	routed      bool // transit, or foreign goods through a hub
	originOdd   bool // origin unusual for the goods
	docMissing  bool // foreign origin without a certificate of origin
	newTrader   bool // exporter or importer seen fewer than three times
	massOdd     bool // gross mass far above the net mass
}

// usdRates convert the generator's USD values to the invoicing currency.
var usdRates = map[string]float64{"USD": 1, "EUR": 0.92, "SGD": 1.34, "CNY": 7.2}

// transshipmentHubs are where goods of other origins are often re-exported.
var transshipmentHubs = map[string]bool{"AE": true, "SG": true, "HK": true, "MY": true, "PA": true}

func (g *generator) acceptanceTime(start time.Time) time.Time {
	start = start.UTC()
	midnight := time.Date(start.Year(), start.Month(), start.Day(), 0, 0, 0, 0, time.UTC)
	for {
		// Days 1..89 before Start's midnight keep every time inside
		// [Start-90d, Start).
		day := midnight.AddDate(0, 0, -(1 + g.rng.IntN(89)))
		weekend := day.Weekday() == time.Saturday || day.Weekday() == time.Sunday
		if weekend && g.rng.Float64() >= 0.35 {
			continue
		}
		hour := weighted(g.rng, 24, func(h int) float64 {
			switch {
			case h < 6:
				return 0.3
			case h < 8:
				return float64(h - 5)
			case h < 17:
				return 4
			case h < 19:
				return float64(20 - h)
			default:
				return 1
			}
		})
		return day.Add(time.Duration(hour)*time.Hour + time.Duration(g.rng.IntN(3600))*time.Second)
	}
}

func (g *generator) declaration(accepted time.Time, seq int) (*blv1.Declaration, facts) {
	r := g.rng
	var f facts

	typ := blv1.DeclarationType_DECLARATION_TYPE_EXPORT
	exp, dst := g.home, g.foreign(g.home)
	switch x := r.Float64(); {
	case x < 0.30:
		typ = blv1.DeclarationType_DECLARATION_TYPE_IMPORT
		exp, dst = dst, g.home
	case x < 0.40:
		// Goods entering here on their way to a neighbouring country, the
		// way Rotterdam feeds Germany.
		typ = blv1.DeclarationType_DECLARATION_TYPE_TRANSIT
		dst = g.neighbour()
		exp = g.foreign(g.home, dst)
		f.routed = true
	}

	itemWeights := [...]float64{40, 25, 15, 12, 8}
	n := 1 + weighted(r, len(itemWeights), func(i int) float64 { return itemWeights[i] })
	chs := make([]*chapter, n)
	chs[0] = g.chapter()
	for i := 1; i < n; i++ {
		chs[i] = chs[0]
		if r.Float64() < 0.4 {
			chs[i] = g.chapter()
		}
	}

	// Consignment value in USD: log-normal, median 15k, most between 1k and
	// 100k, a few in the millions.
	usd := math.Min(math.Max(logNormal(r, 15000, 1.6)*chs[0].valueScale, 200), 50e6)
	declaredShare := 1.0
	if r.Float64() < 0.05 {
		declaredShare = uniform(r, 0.15, 0.35)
		f.undervalued = true
	}
	currency := g.currency(exp)
	rate := usdRates[currency]

	exporter := g.trader(exp, chs[0])
	importer := g.trader(dst, chs[0])
	f.newTrader = exporter.declarations < 3 || importer.declarations < 3
	exporter.declarations++
	importer.declarations++

	shares := make([]float64, n)
	var shareSum float64
	for i := range shares {
		shares[i] = uniform(r, 0.2, 1)
		shareSum += shares[i]
	}
	var (
		items      []*blv1.GoodsItem
		netSum     float64
		foreignOri bool
	)
	for i, ch := range chs {
		itemUSD := usd * shares[i] / shareSum
		sub := pick(r, ch.subheadings)
		origin := g.origin(ch, exp)
		if origin != exp {
			foreignOri = true
			if transshipmentHubs[exp] {
				f.routed = true
			}
		}
		if len(ch.origins) > 0 && !slices.Contains(ch.origins, origin) {
			f.originOdd = true
		}
		f.sensitive = f.sensitive || ch.sensitive
		// Mass follows the true value; an undervalued line declares less.
		net := math.Max(round1(itemUSD/ch.usdPerKg*logNormal(r, 1, 0.35)), 0.1)
		netSum += net
		pkgs := max(1, int(math.Round(net/ch.kgPerPackage*uniform(r, 0.7, 1.3))))
		// Statistical value adds freight and insurance to the border, so it
		// runs a little above the invoice share.
		stat := itemUSD * declaredShare * rate * uniform(r, 0.98, 1.08)
		items = append(items, &blv1.GoodsItem{
			Sequence:         uint32(i + 1),
			Description:      sub.description,
			HsCode:           g.hsCode(sub.code),
			OriginCountry:    origin,
			NetMassKg:        net,
			StatisticalValue: money(currency, stat),
			PackageCount:     uint32(pkgs),
		})
	}

	gross := math.Ceil(netSum*uniform(r, 1.04, 1.2)*10) / 10
	if r.Float64() < 0.03 {
		gross = math.Ceil(netSum*uniform(r, 1.8, 3)*10) / 10
		f.massOdd = true
	}

	// The transport is the one crossing this administration's border: for a
	// transit, the leg from the export country to here.
	to := dst
	if typ == blv1.DeclarationType_DECLARATION_TYPE_TRANSIT {
		to = g.home
	}
	transport, tdoc := g.transport(exp, to, chs[0], netSum, usd, accepted)
	docs := []*blv1.Document{g.invoice(accepted)}
	if tdoc != nil {
		docs = append(docs, tdoc)
	}
	if r.Float64() < 0.35 {
		docs = append(docs, &blv1.Document{
			Type:      docOrigin,
			Reference: fmt.Sprintf("COO-%s-%d-%s", exp, accepted.Year(), fill(r, "#####")),
			IssueTime: day(accepted.Add(-time.Duration(1+r.IntN(15)) * 24 * time.Hour)),
		})
	} else if foreignOri {
		f.docMissing = true
	}

	declarant := g.declarant(typ, exporter, importer)

	return &blv1.Declaration{
		Id:                 fmt.Sprintf("%s-%04d-%06d", g.home, accepted.Year(), seq),
		Type:               typ,
		AcceptanceTime:     timestamppb.New(accepted),
		DeclarationOffice:  g.home + pick(r, declarationOffices),
		Declarant:          declarant,
		Importer:           proto.Clone(importer.party).(*blv1.Party),
		Exporter:           proto.Clone(exporter.party).(*blv1.Party),
		ExportCountry:      exp,
		DestinationCountry: dst,
		GoodsItems:         items,
		Transport:          transport,
		Documents:          docs,
		InvoiceAmount:      money(currency, usd*declaredShare*rate),
		GrossMassKg:        gross,
	}, f
}

// foreign draws a trading partner other than the excluded countries: one of
// Options.Partners half the time, otherwise by world trade weight.
func (g *generator) foreign(exclude ...string) string {
	r := g.rng
	if len(g.partners) > 0 && r.Float64() < 0.5 {
		p := pick(r, g.partners)
		if !slices.Contains(exclude, p) {
			return p
		}
	}
	i := weighted(r, len(tradeWeights), func(i int) float64 {
		if slices.Contains(exclude, tradeWeights[i].cc) {
			return 0
		}
		return tradeWeights[i].weight
	})
	return tradeWeights[i].cc
}

// neighbour draws a country reachable over land from here, for goods in
// transit; where there is none, any trading partner.
func (g *generator) neighbour() string {
	region := landRegions[g.home]
	near := func(i int) float64 {
		if cc := tradeWeights[i].cc; region != "" && cc != g.home && landRegions[cc] == region {
			return tradeWeights[i].weight
		}
		return 0
	}
	for i := range tradeWeights {
		if near(i) > 0 {
			return tradeWeights[weighted(g.rng, len(tradeWeights), near)].cc
		}
	}
	return g.foreign(g.home)
}

func (g *generator) chapter() *chapter {
	return &chapters[weighted(g.rng, len(chapters), func(i int) float64 { return chapters[i].weight })]
}

// hsCode extends a 6-digit subheading to 8 (combined nomenclature) or 10
// digits (TARIC), the way national tariffs do.
func (g *generator) hsCode(six string) string {
	code := six + pick(g.rng, []string{"00", "00", "10", "20", "80", "90"})
	if g.rng.Float64() < 0.5 {
		code += pick(g.rng, []string{"00", "00", "10", "90"})
	}
	return code
}

func (g *generator) origin(ch *chapter, exp string) string {
	r := g.rng
	x := r.Float64()
	switch {
	case len(ch.origins) > 0 && !slices.Contains(ch.origins, exp) && x < 0.6:
		return pick(r, ch.origins)
	case x < 0.85:
		return exp
	default:
		return pick(r, []string{"CN", "CN", "CN", "VN", "DE", "US", "IN", "TW", "MY", "KR"})
	}
}

func (g *generator) currency(exp string) string {
	if euroArea[exp] {
		return "EUR"
	}
	c := profileOf(exp).currency
	// Much of China's trade is invoiced in dollars.
	if c == "CNY" && g.rng.Float64() < 0.6 {
		return "USD"
	}
	return c
}

// money rounds an amount to cents.
func money(currency string, amount float64) *blv1.Money {
	cents := int64(math.Round(amount * 100))
	return &blv1.Money{Currency: currency, Units: cents / 100, Nanos: int32(cents%100) * 10_000_000}
}

// trader returns a company of country cc dealing in ch: a new one while the
// pool is small, otherwise mostly a known one, favouring the first met.
func (g *generator) trader(cc string, ch *chapter) *trader {
	return g.company(cc+"/"+ch.code, cc, ch.nouns)
}

func (g *generator) company(key, cc string, nouns []string) *trader {
	r := g.rng
	pool := g.traders[key]
	if len(pool) == 0 || (len(pool) < maxTradersPerKey && r.Float64() < 0.35) {
		p := profileOf(cc)
		t := &trader{party: &blv1.Party{
			Name:    fmt.Sprintf("%s %s %s", pick(r, companyAdjectives), pick(r, nouns), pick(r, p.legalForms)),
			TaxId:   fill(r, pick(r, p.taxIDs)),
			Address: g.address(cc, p),
		}}
		g.traders[key] = append(pool, t)
		return t
	}
	// Squaring skews towards the start of the pool: a few big traders.
	u := r.Float64()
	return pool[int(u*u*float64(len(pool)))]
}

func (g *generator) address(cc string, p profile) *blv1.Address {
	r := g.rng
	a := &blv1.Address{
		Street:  fmt.Sprintf(p.street, 1+r.IntN(250), pick(r, p.streetNames)),
		City:    pick(r, p.cities),
		Country: cc,
	}
	if p.postcode != "" {
		a.Postcode = fill(r, p.postcode)
	}
	return a
}

// declarant is the trader on the administration's side lodging its own
// declaration, or a customs broker of the administration's country.
func (g *generator) declarant(typ blv1.DeclarationType, exporter, importer *trader) *blv1.Party {
	self := g.rng.Float64() < 0.3
	switch {
	case self && typ == blv1.DeclarationType_DECLARATION_TYPE_EXPORT:
		return proto.Clone(exporter.party).(*blv1.Party)
	case self && typ == blv1.DeclarationType_DECLARATION_TYPE_IMPORT:
		return proto.Clone(importer.party).(*blv1.Party)
	}
	broker := g.company(g.home+"/broker", g.home, brokerNouns)
	broker.declarations++
	return proto.Clone(broker.party).(*blv1.Party)
}

func (g *generator) invoice(accepted time.Time) *blv1.Document {
	r := g.rng
	issued := day(accepted.Add(-time.Duration(1+r.IntN(20)) * 24 * time.Hour))
	if r.Float64() < 0.08 {
		return &blv1.Document{Type: docProforma, Reference: fmt.Sprintf("PI-%d-%s", accepted.Year(), fill(r, "####")), IssueTime: issued}
	}
	return &blv1.Document{Type: docInvoice, Reference: fmt.Sprintf("INV-%d-%s", accepted.Year(), fill(r, "#####")), IssueTime: issued}
}

// transport picks the mode from geography, goods, mass and value density,
// and returns the means of transport with its transport document.
func (g *generator) transport(from, to string, ch *chapter, netKg, usd float64, accepted time.Time) (*blv1.Transport, *blv1.Document) {
	r := g.rng
	pe, pd := profileOf(from), profileOf(to)
	land := landRegions[from] != "" && landRegions[from] == landRegions[to]

	// Only goods worth their freight fly, and nothing of container-ship size.
	air := 0.04
	switch density := usd / netKg; {
	case netKg > 20_000:
		air = 0
	case density >= 60:
		air = 0.6
	case density >= 20:
		air = 0.25
	}
	road := 40.0
	if netKg > 24_000 { // more than a lorry carries
		road = 0
	}

	mode := blv1.TransportMode_TRANSPORT_MODE_SEA
	switch {
	case ch.code == "27": // bulk fuels go by tanker
	case ch.code == "71" && r.Float64() < 0.8: // valuables fly
		mode = blv1.TransportMode_TRANSPORT_MODE_AIR
	case land:
		modes := [...]blv1.TransportMode{
			blv1.TransportMode_TRANSPORT_MODE_SEA,
			blv1.TransportMode_TRANSPORT_MODE_ROAD,
			blv1.TransportMode_TRANSPORT_MODE_RAIL,
			blv1.TransportMode_TRANSPORT_MODE_AIR,
		}
		modeWeights := [...]float64{30, road, 12, 50 * air}
		mode = modes[weighted(r, len(modes), func(i int) float64 { return modeWeights[i] })]
	case r.Float64() < air:
		mode = blv1.TransportMode_TRANSPORT_MODE_AIR
	}

	t := &blv1.Transport{Mode: mode}
	issued := day(accepted.Add(-time.Duration(r.IntN(6)) * 24 * time.Hour))
	var doc *blv1.Document
	switch mode {
	case blv1.TransportMode_TRANSPORT_MODE_SEA:
		t.MeansId = imoNumber(r)
		t.Nationality = flagStates[weighted(r, len(flagStates), func(i int) float64 { return flagStates[i].weight })].cc
		if ch.code != "27" {
			containerWeights := [...]float64{50, 25, 15, 10}
			for range 1 + weighted(r, len(containerWeights), func(i int) float64 { return containerWeights[i] }) {
				t.ContainerIds = append(t.ContainerIds, containerID(r))
			}
		}
		t.LoadingLocation, t.UnloadingLocation = pick(r, pe.seaports), pick(r, pd.seaports)
		doc = &blv1.Document{Type: docBillOfLading, Reference: fill(r, "@@@@#########"), IssueTime: issued}
	case blv1.TransportMode_TRANSPORT_MODE_AIR:
		code := "CV"
		switch {
		case len(pe.airlines) > 0 && (len(pd.airlines) == 0 || r.Float64() < 0.6):
			code = pick(r, pe.airlines)
		case len(pd.airlines) > 0:
			code = pick(r, pd.airlines)
		}
		a := airlines[code]
		t.MeansId = fmt.Sprintf("%s%d", code, 100+r.IntN(9900))
		t.Nationality = a.country
		t.LoadingLocation, t.UnloadingLocation = pick(r, pe.airports), pick(r, pd.airports)
		doc = &blv1.Document{Type: docAirWaybill, Reference: airWaybill(r, a.awbPrefix), IssueTime: issued}
	case blv1.TransportMode_TRANSPORT_MODE_ROAD:
		haulier := from
		if r.Float64() < 0.4 {
			haulier = to
		}
		t.MeansId = fill(r, profileOf(haulier).plate)
		t.Nationality = haulier
		if r.Float64() < 0.4 {
			t.ContainerIds = []string{containerID(r)}
		}
		t.LoadingLocation, t.UnloadingLocation = pick(r, pe.seaports), pick(r, pd.seaports)
		doc = &blv1.Document{Type: docRoadCMR, Reference: fmt.Sprintf("CMR-%s-%s", haulier, fill(r, "######")), IssueTime: issued}
	case blv1.TransportMode_TRANSPORT_MODE_RAIL:
		// Shaped like a UIC wagon number (check digit not computed).
		t.MeansId = fill(r, "## ## #### ###-#")
		t.Nationality = from
		t.ContainerIds = []string{containerID(r)}
		t.LoadingLocation, t.UnloadingLocation = pick(r, pe.seaports), pick(r, pd.seaports)
		doc = &blv1.Document{Type: docRailCIM, Reference: fmt.Sprintf("CIM-%s", fill(r, "########")), IssueTime: issued}
	}
	return t, doc
}

// day truncates to midnight UTC: documents carry a date, not a time.
func day(t time.Time) *timestamppb.Timestamp {
	t = t.UTC()
	return timestamppb.New(time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC))
}
