package gen

// Reference tables. They are read-only: the generator only indexes them, and
// every slice is walked in its written order, which keeps output stable.
//
// HS subheadings and UN/LOCODEs are real so that the demo reads like trade
// data; companies, streets, cities and tax IDs are invented.

// chapter is an HS chapter with what the generator needs to make plausible
// goods lines for it.
type chapter struct {
	code   string
	weight float64 // share of goods lines, roughly as in EU/Asia trade
	// usdPerKg is a typical customs value density: it turns a value into a
	// mass, and a declaration far below it is "undervalued".
	usdPerKg float64
	// valueScale shifts the consignment value: a car shipment is worth more
	// than a pallet of bananas.
	valueScale   float64
	kgPerPackage float64
	// sensitive chapters attract the R-HS-SENSITIVE indicator (strategic,
	// excise or high-value goods).
	sensitive bool
	// origins, when set, are where these goods usually grow or are mined.
	origins []string
	// nouns name the trade of a company dealing in the chapter.
	nouns       []string
	subheadings []subheading
}

type subheading struct {
	code, description string
}

var chapters = []chapter{
	{code: "85", weight: 22, usdPerKg: 45, valueScale: 1.2, kgPerPackage: 9,
		nouns: []string{"Electronics", "Circuits", "Power Systems", "Semiconductor"},
		subheadings: []subheading{
			{"851713", "Smartphones"},
			{"854231", "Processors and controllers, electronic integrated circuits"},
			{"850440", "Static converters (power supplies, inverters)"},
			{"850760", "Lithium-ion accumulators"},
			{"854143", "Photovoltaic cells assembled in modules or made up into panels"},
			{"851830", "Headphones and earphones"},
			{"852872", "Colour television receivers"},
			{"853400", "Printed circuits"},
		}},
	{code: "84", weight: 16, usdPerKg: 22, valueScale: 1.5, kgPerPackage: 35,
		nouns: []string{"Machinery", "Engineering", "Industrial Equipment"},
		subheadings: []subheading{
			{"847130", "Portable computers (laptops)"},
			{"847150", "Processing units for automatic data-processing machines"},
			{"841510", "Air-conditioning machines, wall or window type"},
			{"842952", "Excavators with a 360-degree revolving superstructure"},
			{"848180", "Taps, cocks and valves"},
			{"844332", "Printers connected to a data-processing machine"},
			{"841830", "Chest freezers of a capacity not exceeding 800 litres"},
		}},
	{code: "87", weight: 8, usdPerKg: 12, valueScale: 2.5, kgPerPackage: 400,
		nouns: []string{"Motors", "Automotive", "Auto Parts"},
		subheadings: []subheading{
			{"870380", "Passenger cars with only an electric motor for propulsion"},
			{"870323", "Passenger cars, spark-ignition engine of 1,500 to 3,000 cc"},
			{"870899", "Parts and accessories of motor vehicles"},
			{"870829", "Parts and accessories of bodies of motor vehicles"},
			{"871200", "Bicycles, not motorised"},
			{"871410", "Parts and accessories of motorcycles"},
		}},
	{code: "39", weight: 8, usdPerKg: 2.2, valueScale: 1, kgPerPackage: 25,
		nouns: []string{"Polymers", "Plastics", "Packaging"},
		subheadings: []subheading{
			{"390110", "Polyethylene in primary forms, specific gravity below 0.94"},
			{"390761", "Polyethylene terephthalate, viscosity number 78 ml/g or higher"},
			{"392321", "Sacks and bags of polymers of ethylene"},
			{"392690", "Other articles of plastics"},
		}},
	{code: "61", weight: 5, usdPerKg: 24, valueScale: 0.7, kgPerPackage: 12,
		nouns: []string{"Apparel", "Knitwear", "Textiles"},
		subheadings: []subheading{
			{"610910", "T-shirts, knitted, of cotton"},
			{"611020", "Jerseys and pullovers, knitted, of cotton"},
			{"610462", "Women's trousers, knitted, of cotton"},
		}},
	{code: "62", weight: 5, usdPerKg: 28, valueScale: 0.7, kgPerPackage: 12,
		nouns: []string{"Apparel", "Fashion", "Garments"},
		subheadings: []subheading{
			{"620342", "Men's trousers of cotton (jeans)"},
			{"620640", "Women's blouses of man-made fibres"},
			{"620140", "Men's anoraks and wind-jackets of man-made fibres"},
		}},
	{code: "94", weight: 6, usdPerKg: 5, valueScale: 0.8, kgPerPackage: 30,
		nouns: []string{"Furniture", "Interiors", "Home"},
		subheadings: []subheading{
			{"940360", "Wooden furniture"},
			{"940171", "Upholstered seats with metal frames"},
			{"940421", "Mattresses of cellular rubber or plastics"},
		}},
	{code: "30", weight: 6, usdPerKg: 110, valueScale: 1.5, kgPerPackage: 8, sensitive: true,
		nouns: []string{"Pharma", "Life Sciences", "Healthcare"},
		subheadings: []subheading{
			{"300490", "Medicaments, in measured doses for retail sale"},
			{"300215", "Immunological products, in measured doses"},
			{"300241", "Vaccines for human medicine"},
		}},
	{code: "03", weight: 4, usdPerKg: 7, valueScale: 0.8, kgPerPackage: 20,
		origins: []string{"NO", "VN", "IN", "EC", "CL", "IS"},
		nouns:   []string{"Seafood", "Fisheries", "Ocean Foods"},
		subheadings: []subheading{
			{"030617", "Frozen shrimps and prawns"},
			{"030389", "Frozen fish, whole"},
			{"030441", "Fresh fillets of salmon"},
		}},
	{code: "08", weight: 4, usdPerKg: 1.6, valueScale: 0.6, kgPerPackage: 18,
		origins: []string{"EC", "CO", "CR", "ZA", "PE", "ES", "MA", "CL"},
		nouns:   []string{"Fresh Produce", "Fruit", "Harvest"},
		subheadings: []subheading{
			{"080390", "Bananas, fresh"},
			{"080510", "Oranges, fresh"},
			{"080440", "Avocados, fresh"},
			{"081010", "Strawberries, fresh"},
		}},
	{code: "09", weight: 3, usdPerKg: 5, valueScale: 0.9, kgPerPackage: 60,
		origins: []string{"BR", "VN", "CO", "ET", "KE", "IN", "LK"},
		nouns:   []string{"Coffee", "Tea Traders", "Spice"},
		subheadings: []subheading{
			{"090111", "Coffee, not roasted, not decaffeinated"},
			{"090230", "Black tea in packings not exceeding 3 kg"},
			{"090411", "Pepper, neither crushed nor ground"},
		}},
	{code: "22", weight: 4, usdPerKg: 4, valueScale: 0.9, kgPerPackage: 15, sensitive: true,
		nouns: []string{"Beverages", "Wines & Spirits", "Drinks"},
		subheadings: []subheading{
			{"220421", "Wine of fresh grapes in containers of 2 litres or less"},
			{"220830", "Whiskies"},
			{"220300", "Beer made from malt"},
		}},
	{code: "27", weight: 4, usdPerKg: 0.75, valueScale: 4, kgPerPackage: 1000, sensitive: true,
		origins: []string{"SA", "AE", "NO", "US", "QA", "NG"},
		nouns:   []string{"Energy", "Petroleum", "Fuels"},
		subheadings: []subheading{
			{"271012", "Light petroleum oils (motor spirit)"},
			{"271019", "Medium and heavy petroleum oils, lubricating oils"},
			{"271111", "Liquefied natural gas"},
		}},
	{code: "71", weight: 2, usdPerKg: 4000, valueScale: 3, kgPerPackage: 2, sensitive: true,
		origins: []string{"CH", "ZA", "AE", "IN", "BE"},
		nouns:   []string{"Bullion", "Jewellers", "Precious Metals"},
		subheadings: []subheading{
			{"710812", "Gold, unwrought, non-monetary"},
			{"711319", "Jewellery of precious metal other than silver"},
			{"710239", "Non-industrial diamonds, worked"},
		}},
	{code: "93", weight: 0.3, usdPerKg: 90, valueScale: 1, kgPerPackage: 20, sensitive: true,
		nouns: []string{"Sporting Arms", "Defence Supply"},
		subheadings: []subheading{
			{"930320", "Sporting, hunting or target-shooting shotguns"},
			{"930630", "Cartridges and parts thereof"},
		}},
}

// companyAdjectives and the chapter nouns make names like "Golden Circuit
// Electronics"; the legal form comes from the company's country.
var companyAdjectives = []string{
	"Northern", "Golden", "Blue", "Pacific", "Royal", "Silver", "Orient", "Delta",
	"Summit", "Evergreen", "Crescent", "Lotus", "Polar", "Atlas", "Harbour",
	"Meridian", "Jade", "Coral", "Horizon", "Sunrise", "Westland", "Eastern",
	"Sterling", "Apex", "Unity", "Keystone", "Zenith", "Bright", "Grand", "Nova",
}

var brokerNouns = []string{"Customs Services", "Forwarding", "Logistics", "Shipping Agency", "Freight"}

// profile is what makes a party, a port or a vehicle look like it belongs to
// a country.
type profile struct {
	legalForms []string
	// Patterns for fill: '#' digit, '%' digit 1-9, '@' letter, '*' USCC
	// character; anything else is literal. One is picked at random.
	taxIDs []string
	// street is a fmt format with %[1]d the house number, %[2]s the name.
	street      string
	streetNames []string
	cities      []string
	postcode    string // fill pattern; "" where the country has none
	seaports    []string
	airports    []string
	airlines    []string // IATA codes, see airlines
	plate       string   // fill pattern of a vehicle registration
	currency    string   // invoicing currency of its exporters
}

var profiles = map[string]profile{
	"NL": {legalForms: []string{"B.V.", "B.V.", "N.V."}, taxIDs: []string{"NL#########B01", "NL#########B02"},
		street: "%[2]sstraat %[1]d", streetNames: []string{"Molen", "Haven", "Kade", "Linden", "Zeil", "Pakhuis", "Sluis"},
		cities: []string{"Kanaalhoven", "Lindendam", "Oosterkaai", "Zeewolderbroek"}, postcode: "%### @@",
		seaports: []string{"NLRTM", "NLRTM", "NLAMS", "NLVLI"}, airports: []string{"NLAMS"}, airlines: []string{"KL"},
		plate: "##-@@@-#", currency: "EUR"},
	"DE": {legalForms: []string{"GmbH", "GmbH", "GmbH & Co. KG", "AG"}, taxIDs: []string{"DE###########"},
		street: "%[2]sstraße %[1]d", streetNames: []string{"Hafen", "Linden", "Industrie", "Werft", "Mühlen", "Speicher"},
		cities: []string{"Hafenfeld", "Lindenbrück", "Neuwerder", "Altmühlhausen"}, postcode: "%####",
		seaports: []string{"DEHAM", "DEHAM", "DEBRV"}, airports: []string{"DEFRA", "DELEJ"}, airlines: []string{"LH"},
		plate: "@@-@@ ###", currency: "EUR"},
	"BE": {legalForms: []string{"BV", "NV"}, taxIDs: []string{"BE0#########"},
		street: "%[2]sstraat %[1]d", streetNames: []string{"Dok", "Schelde", "Kaai", "Veer"},
		cities: []string{"Scheldehoven", "Dokkerzele", "Nieuwpoortel"}, postcode: "%###",
		seaports: []string{"BEANR", "BEANR", "BEZEE"}, airports: []string{"BELGG", "BEBRU"}, airlines: []string{"SN"},
		plate: "#-@@@-###", currency: "EUR"},
	"FR": {legalForms: []string{"SAS", "SARL", "SA"}, taxIDs: []string{"FR##############"},
		street: "%[1]d rue des %[2]s", streetNames: []string{"Tanneurs", "Docks", "Tisserands", "Armateurs", "Entrepôts"},
		cities: []string{"Port-Marcillac", "Villeneuve-sur-Quai", "Saint-Aubin-du-Port"}, postcode: "%####",
		seaports: []string{"FRLEH", "FRMRS"}, airports: []string{"FRCDG"}, airlines: []string{"AF"},
		plate: "@@-###-@@", currency: "EUR"},
	"IT": {legalForms: []string{"S.r.l.", "S.p.A."}, taxIDs: []string{"IT###########"},
		street: "Via dei %[2]s %[1]d", streetNames: []string{"Mercanti", "Cantieri", "Velai", "Magazzini"},
		cities: []string{"Porto San Lorenzo", "Villanova Marina", "Borgo Darsena"}, postcode: "%####",
		seaports: []string{"ITGOA", "ITSPE"}, airports: []string{"ITMXP"}, airlines: []string{"AZ"},
		plate: "@@ ###@@", currency: "EUR"},
	"ES": {legalForms: []string{"S.L.", "S.A."}, taxIDs: []string{"ES@########"},
		street: "Calle de los %[2]s %[1]d", streetNames: []string{"Navieros", "Almacenes", "Toneleros", "Muelles"},
		cities: []string{"Villamar del Puerto", "Santa Ana del Muelle", "Puerto Alcázar"}, postcode: "%####",
		seaports: []string{"ESVLC", "ESALG", "ESBCN"}, airports: []string{"ESMAD"}, airlines: []string{"IB"},
		plate: "#### @@@", currency: "EUR"},
	"PL": {legalForms: []string{"Sp. z o.o.", "S.A."}, taxIDs: []string{"PL##########00000"},
		street: "ul. %[2]s %[1]d", streetNames: []string{"Portowa", "Magazynowa", "Kupiecka", "Stoczniowa"},
		cities: []string{"Portowo", "Nowy Brzeg", "Zatoczyn"}, postcode: "##-###",
		seaports: []string{"PLGDN", "PLGDY"}, airports: []string{"PLWAW"}, airlines: []string{"LO"},
		plate: "@@ #####", currency: "EUR"},
	"GB": {legalForms: []string{"Ltd", "Limited", "PLC"}, taxIDs: []string{"GB#########000"},
		street: "%[1]d %[2]s Road", streetNames: []string{"Wharf", "Mill", "Chandlers", "Quayside", "Ropewalk"},
		cities: []string{"Eastharbour", "Millbrook-on-Sea", "Stowmarsh", "Kingsferry"}, postcode: "@@# #@@",
		seaports: []string{"GBFXT", "GBSOU", "GBLGP"}, airports: []string{"GBLHR"}, airlines: []string{"BA"},
		plate: "@@## @@@", currency: "USD"},
	"US": {legalForms: []string{"Inc.", "LLC", "Corp."}, taxIDs: []string{"##-#######"},
		street: "%[1]d %[2]s Avenue", streetNames: []string{"Harbor", "Commerce", "Lakeview", "Industrial", "Bayside"},
		cities: []string{"Bayport Heights", "Lakemont City", "East Riverton", "Pine Hollow"}, postcode: "%####",
		seaports: []string{"USLAX", "USLGB", "USNYC", "USSAV"}, airports: []string{"USCHI", "USLAX"}, airlines: []string{"FX", "5X", "AA"},
		plate: "@@@-####", currency: "USD"},
	"SG": {legalForms: []string{"Pte. Ltd."}, taxIDs: []string{"199######@", "200######@", "201######@"},
		street: "%[1]d %[2]s", streetNames: []string{"Pandan Loop", "Tuas Harbour Drive", "Keris Link", "Seletar Cargo Road", "Jurong Pier Way"},
		cities: []string{"Singapore"}, postcode: "######",
		seaports: []string{"SGSIN"}, airports: []string{"SGSIN"}, airlines: []string{"SQ"},
		plate: "X@####@", currency: "SGD"},
	"CN": {legalForms: []string{"Co., Ltd."}, taxIDs: []string{"91310115MA********", "91440300MA********", "91330206MA********", "91320500MA********"},
		street: "No. %[1]d %[2]s Road", streetNames: []string{"Gangcheng", "Haibin", "Xinhua", "Jinqiao", "Binjiang", "Hangkong"},
		cities: []string{"Haigang", "Xinhai", "Donggang", "Lingang New Area"}, postcode: "%#####",
		seaports: []string{"CNSHA", "CNSHA", "CNNGB", "CNSZX", "CNTAO"}, airports: []string{"CNPVG", "CNCAN"}, airlines: []string{"CA", "MU", "CZ"},
		plate: "沪A#####", currency: "CNY"},
	"HK": {legalForms: []string{"Limited", "Company Limited"}, taxIDs: []string{"%#######"},
		street: "%[1]d %[2]s Road", streetNames: []string{"Container Port", "Terminal", "Wharf", "Godown"},
		cities:   []string{"Hong Kong"},
		seaports: []string{"HKHKG"}, airports: []string{"HKHKG"}, airlines: []string{"CX"},
		plate: "@@####", currency: "USD"},
	"JP": {legalForms: []string{"K.K.", "Co., Ltd."}, taxIDs: []string{"%############"},
		street: "%[2]s %[1]d-chome", streetNames: []string{"Minato-Kaigan", "Higashi-Futo", "Shinko", "Kaigan-dori"},
		cities: []string{"Higashi-Minato", "Kaigandori", "Nishiura"}, postcode: "###-####",
		seaports: []string{"JPTYO", "JPYOK", "JPUKB", "JPNGO"}, airports: []string{"JPNRT"}, airlines: []string{"JL", "NH"},
		plate: "## @ ####", currency: "USD"},
	"KR": {legalForms: []string{"Co., Ltd."}, taxIDs: []string{"%##-##-#####"},
		street: "%[1]d %[2]s-ro", streetNames: []string{"Hangman", "Sinhang", "Bada", "Saemul"},
		cities: []string{"Namhang-si", "Seohae-si", "Haeundo"}, postcode: "#####",
		seaports: []string{"KRPUS", "KRPUS", "KRINC"}, airports: []string{"KRSEL"}, airlines: []string{"KE", "OZ"},
		plate: "##@####", currency: "USD"},
	"IN": {legalForms: []string{"Pvt. Ltd.", "Ltd."}, taxIDs: []string{"27@@@@@####@1Z#", "24@@@@@####@1Z#", "33@@@@@####@1Z#"},
		street: "Plot %[1]d, %[2]s Industrial Area", streetNames: []string{"Sagar", "Bandar", "Samudra", "Navapur"},
		cities: []string{"Sagarnagar", "Bandargaon", "Samudrapur"}, postcode: "%#####",
		seaports: []string{"INNSA", "INMUN", "INMAA"}, airports: []string{"INBOM", "INDEL"}, airlines: []string{"AI"},
		plate: "MH## @@ ####", currency: "USD"},
	"VN": {legalForms: []string{"Co., Ltd.", "JSC"}, taxIDs: []string{"0#########"},
		street: "%[1]d %[2]s Street", streetNames: []string{"Cang Moi", "Tan Cang", "Ben Nghe", "Hai Dang"},
		cities: []string{"Tan Hai", "Binh Cang", "Cang Moi"}, postcode: "######",
		seaports: []string{"VNSGN", "VNHPH", "VNCMT"}, airports: []string{"VNSGN", "VNHAN"}, airlines: []string{"VN"},
		plate: "##C-#####", currency: "USD"},
	"TH": {legalForms: []string{"Co., Ltd.", "Public Co., Ltd."}, taxIDs: []string{"0105#########"},
		street: "%[1]d Soi %[2]s", streetNames: []string{"Tha Rua", "Laem Thong", "Bang Na", "Sukhaphiban"},
		cities: []string{"Laem Thong", "Ban Tha Rua", "Si Racha Nuea"}, postcode: "%####",
		seaports: []string{"THLCH", "THBKK"}, airports: []string{"THBKK"}, airlines: []string{"TG"},
		plate: "##-####", currency: "USD"},
	"MY": {legalForms: []string{"Sdn. Bhd.", "Bhd."}, taxIDs: []string{"20#0########"},
		street: "%[1]d Jalan %[2]s", streetNames: []string{"Pelabuhan", "Perindustrian", "Kelang Lama", "Bandar Baru"},
		cities: []string{"Pelabuhan Baru", "Bandar Kelang Jaya", "Taman Perdana"}, postcode: "%####",
		seaports: []string{"MYPKG", "MYTPP"}, airports: []string{"MYKUL"}, airlines: []string{"MH"},
		plate: "@@@ ####", currency: "USD"},
	"AE": {legalForms: []string{"LLC", "FZE", "FZCO"}, taxIDs: []string{"100#########003"},
		street: "Plot %[1]d, %[2]s", streetNames: []string{"Al Marsa Industrial", "Ras Al Meena", "Free Zone South"},
		cities:   []string{"Jebel Al Marsa", "Ras Al Meena", "Al Sahil"},
		seaports: []string{"AEJEA", "AEJEA", "AEKLF"}, airports: []string{"AEDXB", "AEDWC"}, airlines: []string{"EK", "EY"},
		plate: "@ #####", currency: "USD"},
	"TR": {legalForms: []string{"A.Ş.", "Ltd. Şti."}, taxIDs: []string{"%#########"},
		street: "%[2]s Caddesi No:%[1]d", streetNames: []string{"Liman", "Gümrük", "Rıhtım", "Tersane"},
		cities: []string{"Limanköy", "Yenikent", "Denizpınar"}, postcode: "%####",
		seaports: []string{"TRMER", "TRAMB", "TRIZM"}, airports: []string{"TRIST"}, airlines: []string{"TK"},
		plate: "## @@@ ###", currency: "USD"},
	"BR": {legalForms: []string{"Ltda.", "S.A."}, taxIDs: []string{"##.###.###/0001-##"},
		street: "Rua dos %[2]s, %[1]d", streetNames: []string{"Estivadores", "Armazéns", "Navegantes", "Mercadores"},
		cities: []string{"Porto Novo do Sul", "Vila Portuária", "São Marcos da Baía"}, postcode: "#####-###",
		seaports: []string{"BRSSZ", "BRPNG", "BRRIG"}, airports: []string{"BRGRU"}, airlines: []string{"JJ"},
		plate: "@@@#@##", currency: "USD"},
}

// genericProfile stands in for countries without a profile: plain English
// names, a country-prefixed tax ID and the UN/LOCODE "ZZZ" (other location).
func genericProfile(cc string) profile {
	return profile{
		legalForms:  []string{"Ltd.", "Ltd.", "Co."},
		taxIDs:      []string{cc + "##########"},
		street:      "%[1]d %[2]s Road",
		streetNames: []string{"Harbour", "Industrial", "Commerce", "Market"},
		cities:      []string{"Northport", "Eastvale", "Westhaven"},
		postcode:    "#####",
		seaports:    []string{cc + "ZZZ"},
		airports:    []string{cc + "ZZZ"},
		plate:       "@@-###-@@",
		currency:    "USD",
	}
}

func profileOf(cc string) profile {
	if p, ok := profiles[cc]; ok {
		return p
	}
	return genericProfile(cc)
}

// euro area members among the generic countries invoice in EUR too.
var euroArea = map[string]bool{
	"AT": true, "BE": true, "CY": true, "DE": true, "EE": true, "ES": true, "FI": true, "FR": true,
	"GR": true, "HR": true, "IE": true, "IT": true, "LT": true, "LU": true, "LV": true, "MT": true,
	"NL": true, "PT": true, "SI": true, "SK": true,
}

// airline is an IATA carrier with its nationality and its air waybill prefix.
type airline struct {
	country   string
	awbPrefix string
}

var airlines = map[string]airline{
	"KL": {"NL", "074"}, "LH": {"DE", "020"}, "SN": {"BE", "082"}, "AF": {"FR", "057"},
	"AZ": {"IT", "055"}, "IB": {"ES", "075"}, "LO": {"PL", "080"}, "BA": {"GB", "125"},
	"FX": {"US", "023"}, "5X": {"US", "406"}, "AA": {"US", "001"}, "SQ": {"SG", "618"},
	"CA": {"CN", "999"}, "MU": {"CN", "781"}, "CZ": {"CN", "784"}, "CX": {"HK", "160"},
	"JL": {"JP", "131"}, "NH": {"JP", "205"}, "KE": {"KR", "180"}, "OZ": {"KR", "988"},
	"AI": {"IN", "098"}, "VN": {"VN", "738"}, "TG": {"TH", "217"}, "MH": {"MY", "232"},
	"EK": {"AE", "176"}, "EY": {"AE", "607"}, "TK": {"TR", "235"}, "JJ": {"BR", "957"},
	"CV": {"LU", "172"}, // Cargolux flies where no home carrier is listed
}

// tradeWeights is how often a country is the other side of a declaration,
// before partners are added.
var tradeWeights = []struct {
	cc     string
	weight float64
}{
	{"CN", 10}, {"US", 9}, {"DE", 8}, {"GB", 6}, {"FR", 5}, {"JP", 4}, {"KR", 4},
	{"IN", 4}, {"BR", 3}, {"AE", 3}, {"TR", 3}, {"VN", 3}, {"SG", 3}, {"BE", 3},
	{"NL", 3}, {"IT", 3}, {"ES", 2}, {"PL", 2}, {"MY", 2}, {"TH", 2}, {"HK", 2},
	{"CA", 1.5}, {"MX", 1.5}, {"AU", 1.5}, {"TW", 1.5}, {"ZA", 1}, {"SA", 1}, {"CH", 1},
}

// flagStates are ship registries weighted by the world fleet they carry.
var flagStates = []struct {
	cc     string
	weight float64
}{
	{"PA", 18}, {"LR", 16}, {"MH", 12}, {"HK", 8}, {"SG", 8}, {"MT", 6}, {"CN", 5},
	{"BS", 4}, {"GR", 4}, {"DK", 3}, {"PT", 3}, {"CY", 3}, {"NO", 2},
}

// landRegions: road and rail only run between countries of one region.
var landRegions = map[string]string{
	"NL": "eu", "DE": "eu", "BE": "eu", "FR": "eu", "IT": "eu", "ES": "eu", "PL": "eu",
	"GB": "eu", "TR": "eu", "AT": "eu", "CH": "eu", "CZ": "eu", "DK": "eu", "LU": "eu",
	"CN": "asia", "VN": "asia", "TH": "asia", "MY": "asia", "SG": "asia", "HK": "asia",
	"US": "na", "CA": "na", "MX": "na",
}

// Document type codes from the EU customs code list (UN/EDIFACT 1001 based).
const (
	docInvoice      = "N380"
	docProforma     = "N325"
	docOrigin       = "N861" // universal certificate of origin
	docBillOfLading = "N705"
	docAirWaybill   = "N740"
	docRoadCMR      = "N730"
	docRailCIM      = "N720"
)

// declarationOffices are office numbers combined with the issuing country.
var declarationOffices = []string{"000396", "000510", "000849", "001230", "002101"}

type indicatorKind struct {
	code, description string
}

var indicatorKinds = []indicatorKind{
	{"R-ROUTE", "Routing inconsistent with the declared origin and destination"},
	{"R-UNDERVAL", "Declared value per kilogram far below the reference price for the HS subheading"},
	{"R-HS-SENSITIVE", "Goods in a sensitive HS chapter (strategic, excise or high-value goods)"},
	{"R-NEW-TRADER", "Exporter or importer with fewer than three prior declarations"},
	{"R-ORIGIN", "Declared origin unusual for these goods"},
	{"R-DOC-MISSING", "No certificate of origin for goods of foreign origin"},
	{"R-MASS", "Gross mass inconsistent with the net mass and package count"},
	{"R-WATCHLIST", "A party matches an entry on the national watch list"},
}
