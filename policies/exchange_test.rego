package borderlink.exchange_test

import data.borderlink.exchange

# Fixture grants in the indexed shape the Go engine builds from agreements.
grant_sg := {
	"agreement": "nl-sg",
	"id": "nl-to-sg",
	"status": "active",
	"valid_from_ns": 0,
	"valid_until_ns": 4102444800000000000,
	"actions": ["declaration.get", "declaration.search"],
	"purposes": ["risk-assessment"],
	"release": {"declaration": {
		"fields": ["id", "importer.tax_id", "goods_items.hs_code"],
		"mask": [],
		"pseudonymize": ["importer.tax_id"],
	}},
	"conditions": {"destination_countries": ["SG"]},
	"obligations": {"retention_days": 365},
}

grant_sg_narrow := object.union(grant_sg, {
	"agreement": "nl-sg-addendum",
	"id": "narrow",
	"release": {"declaration": {"fields": ["id"], "mask": [], "pseudonymize": []}},
})

grant_health := {
	"agreement": "nl-health",
	"id": "health",
	"status": "active",
	"valid_from_ns": 0,
	"valid_until_ns": 4102444800000000000,
	"actions": ["declaration.get"],
	"purposes": ["sanitary-control"],
	"release": {"declaration": {"fields": ["id", "goods_items"], "mask": [], "pseudonymize": []}},
	"conditions": {"hs_chapters": ["02", "03"]},
}

# Mocked as data.borderlink.grants (mocking all of data.borderlink would
# include this test package itself).
fixture := {"nl.customs.example": {
	"sg.customs.example": [grant_sg],
	"spiffe://nl.customs.example/agency/health": [grant_health],
}}

base_input := {
	"self": "nl.customs.example",
	"caller": {"id": "spiffe://sg.customs.example/gateway", "domain": "sg.customs.example", "kind": "gateway", "name": ""},
	"action": "declaration.get",
	"purpose": "risk-assessment",
	"resource": {
		"type": "declaration", "id": "NL-1", "exists": true,
		"attributes": {"hs_chapters": ["85"], "export_country": "NL", "destination_country": "SG"},
	},
	"time": "2026-11-25T10:00:00Z",
}

health_input := object.union(base_input, {
	"caller": {"id": "spiffe://nl.customs.example/agency/health", "domain": "nl.customs.example", "kind": "agency", "name": "health"},
	"purpose": "sanitary-control",
	"resource": {"type": "declaration", "id": "NL-2", "exists": true, "attributes": {"hs_chapters": ["03"], "export_country": "NL", "destination_country": "SG"}},
})

test_allow_partner if {
	d := exchange.decision with input as base_input with data.borderlink.grants as fixture
	d.allow
	d.agreement == "nl-sg"
	d.pseudonymize == ["importer.tax_id"]
	d.obligations.retention_days == 365
}

test_deny_wrong_purpose if {
	d := exchange.decision with input as object.union(base_input, {"purpose": "marketing"}) with data.borderlink.grants as fixture
	not d.allow
	not d.entitled
	d.reasons == ["purpose \"marketing\" is not granted for declaration.get"]
}

test_deny_unknown_partner if {
	cn := {"id": "spiffe://cn.customs.example/gateway", "domain": "cn.customs.example", "kind": "gateway", "name": ""}
	d := exchange.decision with input as object.union(base_input, {"caller": cn}) with data.borderlink.grants as fixture
	not d.allow
	d.reasons == ["no agreement covers spiffe://cn.customs.example/gateway"]
}

test_domain_grant_does_not_cover_agency if {
	tax := {"id": "spiffe://sg.customs.example/agency/tax", "domain": "sg.customs.example", "kind": "agency", "name": "tax"}
	d := exchange.decision with input as object.union(base_input, {"caller": tax}) with data.borderlink.grants as fixture
	not d.allow
}

test_deny_action_not_granted if {
	d := exchange.decision with input as object.union(base_input, {"action": "risk.get"}) with data.borderlink.grants as fixture
	not d.allow
	d.reasons == ["action risk.get is not granted to spiffe://sg.customs.example/gateway"]
}

test_deny_outside_conditions if {
	inp := json.patch(base_input, [{"op": "replace", "path": "/resource/attributes/destination_country", "value": "US"}])
	d := exchange.decision with input as inp with data.borderlink.grants as fixture
	not d.allow
	d.entitled
	d.reasons == ["record is outside the conditions of every agreement that covers this request"]
}

test_not_found_is_entitled if {
	inp := json.patch(base_input, [{"op": "replace", "path": "/resource/exists", "value": false}])
	d := exchange.decision with input as inp with data.borderlink.grants as fixture
	not d.allow
	d.entitled
	d.reasons == ["record not found"]
}

test_expired_agreement if {
	d := exchange.decision with input as object.union(base_input, {"time": "2100-01-02T00:00:00Z"}) with data.borderlink.grants as fixture
	not d.allow
	d.reasons == ["no agreement with spiffe://sg.customs.example/gateway is in force"]
}

test_suspended_agreement if {
	suspended := {"nl.customs.example": {"sg.customs.example": [object.union(grant_sg, {"status": "suspended"})]}}
	d := exchange.decision with input as base_input with data.borderlink.grants as suspended
	not d.allow
}

test_narrower_release_wins if {
	both := {"nl.customs.example": {"sg.customs.example": [grant_sg, grant_sg_narrow]}}
	d := exchange.decision with input as base_input with data.borderlink.grants as both
	d.allow
	d.agreement == "nl-sg-addendum"
	d.fields == ["id"]
}

test_agency_hs_condition if {
	d := exchange.decision with input as health_input with data.borderlink.grants as fixture
	d.allow
	d.agreement == "nl-health"
}

test_agency_outside_hs_chapters if {
	inp := json.patch(health_input, [{"op": "replace", "path": "/resource/attributes/hs_chapters", "value": ["85"]}])
	d := exchange.decision with input as inp with data.borderlink.grants as fixture
	not d.allow
}

test_other_provider_grants_ignored if {
	d := exchange.decision with input as object.union(base_input, {"self": "sg.customs.example"}) with data.borderlink.grants as fixture
	not d.allow
}

test_unknown_action_denied if {
	d := exchange.decision with input as object.union(base_input, {"action": "declaration.delete"}) with data.borderlink.grants as fixture
	not d.allow
}

test_national_deny_removes_allow if {
	d := exchange.decision with input as base_input
		with data.borderlink.grants as fixture
		with data.borderlink.national.deny as {"embargo"}
	not d.allow
	d.code == "NATIONAL_RULE"
	d.reasons == ["embargo"]
}

test_national_withhold_removes_fields if {
	d := exchange.decision with input as base_input
		with data.borderlink.grants as fixture
		with data.borderlink.national.withhold as {"importer"}
	d.allow
	d.withhold == ["importer"]

	# Masking and pseudonymisation stay in force for what is released.
	d.pseudonymize == ["importer.tax_id"]
}

test_heading_origin_date_conditions if {
	# object.union merges recursively: drop the fixture's conditions first.
	g := object.union(object.remove(grant_sg, ["conditions"]), {"conditions": {
		"hs_headings": ["8504"],
		"origin_countries": ["KR"],
		"accepted_from_ns": 1767225600000000000,
		"accepted_until_ns": 1798761600000000000,
	}})
	inp := json.patch(base_input, [{"op": "replace", "path": "/resource/attributes", "value": {
		"hs_chapters": ["85"], "hs_headings": ["8504"], "origin_countries": ["CN", "KR"],
		"accepted_ns": 1780000000000000000,
	}}])
	d := exchange.decision with input as inp with data.borderlink.grants as {"nl.customs.example": {"sg.customs.example": [g]}}
	d.allow

	late := json.patch(inp, [{"op": "replace", "path": "/resource/attributes/accepted_ns", "value": 1800000000000000000}])
	d2 := exchange.decision with input as late with data.borderlink.grants as {"nl.customs.example": {"sg.customs.example": [g]}}
	not d2.allow
	d2.code == "CONDITIONS_NOT_MET"
}

test_min_risk_score if {
	g := object.union(object.remove(grant_sg, ["conditions", "release"]), {
		"actions": ["risk.get"],
		"release": {"risk_assessment": {"fields": ["score"], "mask": [], "pseudonymize": []}},
		"conditions": {"min_risk_score": 0.7},
	})
	grants := {"nl.customs.example": {"sg.customs.example": [g]}}
	high := json.patch(base_input, [
		{"op": "replace", "path": "/action", "value": "risk.get"},
		{"op": "replace", "path": "/resource/attributes", "value": {"risk_score": 0.82}},
	])
	exchange.decision.allow with input as high with data.borderlink.grants as grants
	low := json.patch(high, [{"op": "replace", "path": "/resource/attributes/risk_score", "value": 0.3}])
	not exchange.decision.allow with input as low with data.borderlink.grants as grants
}

test_explanation_names_first_failure if {
	inp := json.patch(base_input, [{"op": "replace", "path": "/resource/attributes/destination_country", "value": "US"}])
	e := exchange.explanation with input as inp with data.borderlink.grants as fixture
	e == [{"agreement": "nl-sg", "grant": "nl-to-sg", "failed": "destination country \"US\" is outside [\"SG\"]"}]
}

test_search_max_results if {
	g := object.union(grant_sg, {"max_results": 25})
	inp := json.patch(base_input, [
		{"op": "replace", "path": "/action", "value": "declaration.search"},
		{"op": "replace", "path": "/resource/exists", "value": false},
	])
	d := exchange.decision with input as inp with data.borderlink.grants as {"nl.customs.example": {"sg.customs.example": [g]}}
	d.entitled
	d.max_results == 25
}

test_conditions_false_or_unknown_do_not_restrict if {
	g := object.union(object.remove(grant_sg, ["conditions"]), {"conditions": {
		"destination_countries": false,
		"not_a_condition": ["XX"],
	}})
	inp := json.patch(base_input, [{"op": "replace", "path": "/resource/attributes/destination_country", "value": "US"}])
	d := exchange.decision with input as inp with data.borderlink.grants as {"nl.customs.example": {"sg.customs.example": [g]}}
	d.allow
	e := exchange.explanation with input as inp with data.borderlink.grants as {"nl.customs.example": {"sg.customs.example": [g]}}
	e[0].failed == ""
}

test_accepted_until_alone if {
	g := object.union(object.remove(grant_sg, ["conditions"]), {"conditions": {"accepted_until_ns": 1798761600000000000}})
	grants := {"nl.customs.example": {"sg.customs.example": [g]}}
	early := json.patch(base_input, [{"op": "add", "path": "/resource/attributes/accepted_ns", "value": 1780000000000000000}])
	exchange.decision.allow with input as early with data.borderlink.grants as grants

	# No acceptance time: the record does not match a date condition.
	d := exchange.decision with input as base_input with data.borderlink.grants as grants
	not d.allow
	d.code == "CONDITIONS_NOT_MET"
	e := exchange.explanation with input as base_input with data.borderlink.grants as grants
	e[0].failed == "acceptance date is outside the agreed date range"
}

amount(currency, value) := json.patch(base_input, [{"op": "add", "path": "/resource/attributes/invoice_amount", "value": {"currency": currency, "value": value}}])

test_invoice_amount_range if {
	g := object.union(object.remove(grant_sg, ["conditions"]), {"conditions": {"invoice_amount": {"currency": "EUR", "min": 10000, "max": 50000}}})
	grants := {"nl.customs.example": {"sg.customs.example": [g]}}
	exchange.decision.allow with input as amount("EUR", 10000) with data.borderlink.grants as grants
	exchange.decision.allow with input as amount("EUR", 49999.99) with data.borderlink.grants as grants
	not exchange.decision.allow with input as amount("EUR", 50000) with data.borderlink.grants as grants
	not exchange.decision.allow with input as amount("EUR", 9999.5) with data.borderlink.grants as grants

	# No conversion: the same figure in another currency does not match.
	not exchange.decision.allow with input as amount("USD", 20000) with data.borderlink.grants as grants

	# No invoice amount at all does not match either.
	not exchange.decision.allow with input as base_input with data.borderlink.grants as grants
	e := exchange.explanation with input as amount("USD", 20000) with data.borderlink.grants as grants
	startswith(e[0].failed, "invoice amount")
}

test_invoice_amount_min_only if {
	g := object.union(object.remove(grant_sg, ["conditions"]), {"conditions": {"invoice_amount": {"currency": "EUR", "min": 10000}}})
	grants := {"nl.customs.example": {"sg.customs.example": [g]}}
	exchange.decision.allow with input as amount("EUR", 1e9) with data.borderlink.grants as grants
	not exchange.decision.allow with input as amount("EUR", 0) with data.borderlink.grants as grants
}

test_hs_conditions_narrow_goods_items if {
	d := exchange.decision with input as health_input with data.borderlink.grants as fixture
	d.allow
	d.goods_items == {"hs_chapters": ["02", "03"], "hs_headings": []}

	# A grant without HS conditions releases every item.
	sg := exchange.decision with input as base_input with data.borderlink.grants as fixture
	sg.goods_items == {"hs_chapters": [], "hs_headings": []}

	# A condition set to false is no condition, and no filter either.
	g := object.union(object.remove(grant_sg, ["conditions"]), {"conditions": {"hs_chapters": false}})
	f := exchange.decision with input as base_input with data.borderlink.grants as {"nl.customs.example": {"sg.customs.example": [g]}}
	f.goods_items == {"hs_chapters": [], "hs_headings": []}
}
