package validate

import "testing"

func TestCodeListSizes(t *testing.T) {
	// ISO 3166-1 has 249 officially assigned codes; ISO 4217 about 180
	// active ones. A big change means the list file was damaged.
	if got, want := len(countries), 249; got != want {
		t.Errorf("countries: got %d codes, want %d", got, want)
	}
	if got := len(currencies); got < 170 || got > 190 {
		t.Errorf("currencies: got %d codes, want about 180", got)
	}
}

func TestCountry(t *testing.T) {
	tests := []struct {
		code string
		want bool
	}{
		{"NL", true}, {"SG", true}, {"CN", true}, {"GB", true}, {"AX", true}, {"SS", true}, {"BQ", true},
		{"nl", false}, {"Nl", false}, {" NL", false}, {"NLD", false}, {"", false},
		{"UK", false}, // exceptionally reserved, not assigned
		{"EU", false}, // exceptionally reserved, not assigned
		{"XK", false}, // user-assigned (Kosovo), not official
		{"AN", false}, // Netherlands Antilles, deleted 2010
		{"XX", false},
	}
	for _, tt := range tests {
		if got := Country(tt.code); got != tt.want {
			t.Errorf("Country(%q) = %v, want %v", tt.code, got, tt.want)
		}
	}
}

func TestCurrency(t *testing.T) {
	tests := []struct {
		code string
		want bool
	}{
		{"EUR", true}, {"USD", true}, {"SGD", true}, {"CNY", true}, {"XCG", true}, {"ZWG", true}, {"CHF", true},
		{"eur", false}, {"EURO", false}, {"", false}, {"RMB", false}, {"CNH", false},
		{"HRK", false}, // Croatia adopted the euro in 2023
		{"NLG", false}, // guilder, replaced by the euro
		{"ANG", false}, // replaced by XCG in 2025
	}
	for _, tt := range tests {
		if got := Currency(tt.code); got != tt.want {
			t.Errorf("Currency(%q) = %v, want %v", tt.code, got, tt.want)
		}
	}
}

func TestCountryReason(t *testing.T) {
	tests := []struct{ code, want string }{
		{"XX", `"XX" is not an ISO 3166-1 alpha-2 country code; use the two-letter code, e.g. "NL" or "SG"`},
		{"nl", `"nl" is not an ISO 3166-1 alpha-2 country code; write it in capitals without spaces: "NL"`},
		{"UK", `"UK" is not an ISO 3166-1 alpha-2 country code; use "GB"`},
		{"EL", `"EL" is not an ISO 3166-1 alpha-2 country code; use "GR"`},
		{"sgp", `"sgp" is not an ISO 3166-1 alpha-2 country code; it is the alpha-3 code, use the two-letter code "SG"`},
	}
	for _, tt := range tests {
		if got := countryReason(tt.code); got != tt.want {
			t.Errorf("countryReason(%q)\n got %s\nwant %s", tt.code, got, tt.want)
		}
	}
}
