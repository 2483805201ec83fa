package validate

import (
	_ "embed"
	"fmt"
	"strings"
)

// The code lists are data, not code, so that updating them after an ISO
// amendment is a one-line change a reviewer can check against the standard.
var (
	//go:embed iso3166.txt
	iso3166File string
	//go:embed iso4217.txt
	iso4217File string
)

// Read-only after package initialisation.
var (
	countries  = parseCodes(iso3166File, 2)
	currencies = parseCodes(iso4217File, 3)
	// alpha3To2 lets a reason suggest "NL" when a clerk typed "NLD".
	alpha3To2 = parseAlpha3(iso3166File)
)

// misusedCountries are codes that look like countries to people but are not
// ISO 3166-1 alpha-2: EU and UPU conventions that leak into trade data.
var misusedCountries = map[string]string{
	"UK": "GB", // United Kingdom is GB in ISO 3166-1
	"EL": "GR", // EU's code for Greece
	"EU": "",   // the EU is not a country
}

// Country reports whether code is an officially assigned ISO 3166-1 alpha-2
// country code. Codes are upper case; "nl" is not a code.
func Country(code string) bool {
	_, ok := countries[code]
	return ok
}

// Currency reports whether code is an active ISO 4217 alphabetic currency or
// funds code. Codes are upper case; "eur" is not a code.
func Currency(code string) bool {
	_, ok := currencies[code]
	return ok
}

// parseCodes reads a tab-separated code list whose first column is the code.
// A malformed embedded list is a build defect, so it panics at init and every
// test of the package fails loudly.
func parseCodes(file string, width int) map[string]struct{} {
	set := make(map[string]struct{})
	for n, line := range strings.Split(file, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		code, _, _ := strings.Cut(line, "\t")
		if len(code) != width || strings.ToUpper(code) != code {
			panic(fmt.Sprintf("validate: code list line %d: malformed code %q", n+1, code))
		}
		if _, dup := set[code]; dup {
			panic(fmt.Sprintf("validate: code list line %d: duplicate code %q", n+1, code))
		}
		set[code] = struct{}{}
	}
	return set
}

func parseAlpha3(file string) map[string]string {
	m := make(map[string]string)
	for _, line := range strings.Split(file, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		cols := strings.Split(line, "\t")
		if len(cols) >= 2 {
			m[cols[1]] = cols[0]
		}
	}
	return m
}

// countryReason explains why code is not a country code and, where the
// intended country is obvious, what to write instead.
func countryReason(code string) string {
	base := fmt.Sprintf("%s is not an ISO 3166-1 alpha-2 country code", quote(code))
	upper := strings.ToUpper(strings.TrimSpace(code))
	switch alt, misused := misusedCountries[upper]; {
	case misused && alt != "":
		return fmt.Sprintf("%s; use %q", base, alt)
	case misused:
		return base + "; give the member state's two-letter code, e.g. \"NL\""
	case upper != code && Country(upper):
		return fmt.Sprintf("%s; write it in capitals without spaces: %q", base, upper)
	}
	if a2, ok := alpha3To2[upper]; ok {
		return fmt.Sprintf("%s; it is the alpha-3 code, use the two-letter code %q", base, a2)
	}
	return base + "; use the two-letter code, e.g. \"NL\" or \"SG\""
}

func currencyReason(code string) string {
	base := fmt.Sprintf("%s is not an active ISO 4217 currency code", quote(code))
	if upper := strings.ToUpper(strings.TrimSpace(code)); upper != code && Currency(upper) {
		return fmt.Sprintf("%s; write it in capitals without spaces: %q", base, upper)
	}
	return base + "; use the three-letter code, e.g. \"EUR\" or \"USD\""
}
