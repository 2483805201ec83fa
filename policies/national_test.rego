package borderlink.national_test

import data.borderlink.national

test_embargo_denies if {
	r := national.deny with input as {"resource": {"attributes": {"export_country": "NL", "destination_country": "KP", "hs_chapters": ["85"]}}}
	r == {"consignments involving KP are under a national embargo"}
}

test_no_embargo if {
	r := national.deny with input as {"resource": {"attributes": {"export_country": "NL", "destination_country": "SG", "hs_chapters": ["85"]}}}
	count(r) == 0
}

test_arms_withhold_parties if {
	w := national.withhold with input as {"resource": {"attributes": {"hs_chapters": ["93", "85"]}}}
	w == {"declarant", "importer", "exporter"}
}
