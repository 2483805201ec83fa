# Exchange policy: decides whether a caller may receive one record, and how
# much of it, from the grants of the agreements this gateway is a provider in.
#
# Contract (docs/policies.md): data.borderlink.exchange.decision is always
# exactly one object
#   {allow, entitled, agreement, grant, fields, mask, pseudonymize,
#    reasons, obligations}
# The Go engine denies on anything else (undefined, error, several results).
#
# Agreements reach OPA as data.borderlink.grants[provider][recipient], where
# recipient is a trust domain (its gateway) or a full SPIFFE ID (an agency or
# another individual identity), so a decision only ever looks at the grants
# made to this caller and never scans every agreement.
package borderlink.exchange

datasets := {
	"declaration.get": "declaration",
	"declaration.search": "declaration",
	"risk.get": "risk_assessment",
}

dataset := datasets[input.action]

# A trust domain as recipient means that administration's gateway only; an
# agency of the same domain needs a grant naming its own SPIFFE ID.
recipient_keys contains input.caller.id

recipient_keys contains input.caller.domain if input.caller.kind == "gateway"

offered contains g if {
	some key in recipient_keys
	some g in data.borderlink.grants[input.self][key]
}

now_ns := time.parse_rfc3339_ns(input.time)

in_force(g) if {
	g.status == "active"
	now_ns >= g.valid_from_ns
	now_ns < g.valid_until_ns
}

covers_action(g) if {
	in_force(g)
	input.action in g.actions
	g.release[dataset]
}

covers(g) if {
	covers_action(g)
	input.purpose in g.purposes
}

# entitled: grants that cover caller, action, purpose and dataset, whatever
# the record. The gateway uses it to tell "not found" from "not allowed"
# without revealing whether a record exists to callers with no grant.
entitled contains g if {
	some g in offered
	covers(g)
}

allowed contains g if {
	some g in entitled
	input.resource.exists
	record_matches(g)
}

record_matches(g) if {
	hs_ok(g)
	export_ok(g)
	destination_ok(g)
}

hs_ok(g) if not g.conditions.hs_chapters

hs_ok(g) if {
	some chapter in input.resource.attributes.hs_chapters
	chapter in g.conditions.hs_chapters
}

export_ok(g) if not g.conditions.export_countries

export_ok(g) if input.resource.attributes.export_country in g.conditions.export_countries

destination_ok(g) if not g.conditions.destination_countries

destination_ok(g) if input.resource.attributes.destination_country in g.conditions.destination_countries

# When several grants allow the same request, the narrowest release wins:
# fewest allowed field paths, then agreement ID, then grant ID, so the
# outcome never depends on evaluation order.
rank(g) := [count(g.release[dataset].fields), g.agreement, g.id]

ranking := sort([rank(g) | some g in allowed])

chosen := g if {
	some g in allowed
	rank(g) == ranking[0]
}

decision := {
	"allow": true,
	"entitled": true,
	"agreement": chosen.agreement,
	"grant": chosen.id,
	"fields": object.get(chosen.release[dataset], "fields", []),
	"mask": object.get(chosen.release[dataset], "mask", []),
	"pseudonymize": object.get(chosen.release[dataset], "pseudonymize", []),
	"reasons": [],
	"obligations": object.get(chosen, "obligations", {}),
} if {
	count(allowed) > 0
}

decision := {
	"allow": false,
	"entitled": count(entitled) > 0,
	"agreement": "",
	"grant": "",
	"fields": [],
	"mask": [],
	"pseudonymize": [],
	"reasons": [deny_reason],
	"obligations": {},
} if {
	count(allowed) == 0
}

# The first failing step is the reason disclosed to the caller.
deny_reason := sprintf("no agreement covers %s", [input.caller.id]) if {
	count(offered) == 0
} else := sprintf("no agreement with %s is in force", [input.caller.id]) if {
	count({g | some g in offered; in_force(g)}) == 0
} else := sprintf("action %s is not granted to %s", [input.action, input.caller.id]) if {
	count({g | some g in offered; covers_action(g)}) == 0
} else := sprintf("purpose %q is not granted for %s", [input.purpose, input.action]) if {
	count(entitled) == 0
} else := "record not found" if {
	not input.resource.exists
} else := "record is outside the conditions of every agreement that covers this request"
