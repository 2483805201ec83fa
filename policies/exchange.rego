# Exchange policy: decides whether a caller may receive one record, and how
# much of it, from the grants of the agreements this gateway is a provider in.
#
# Contract (docs/policies.md): data.borderlink.exchange.decision is always
# exactly one object
#   {allow, entitled, agreement, grant, fields, mask, pseudonymize,
#    withhold, code, reasons, obligations, max_results, rate_limit,
#    goods_items}
# The Go engine denies on anything else (undefined, error, several results).
#
# National rules (package borderlink.national, any other *.rego file) can
# only take away: a reason in data.borderlink.national.deny refuses the
# request, a field path in data.borderlink.national.withhold removes that
# subtree from the release (the release applies withhold after the grant's
# field list, so withholding "importer.tax_id" under a released "importer"
# removes just that field and never switches masking off). They cannot add a grant or a field; the engine
# refuses modules that declare any other package.
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
	"alert.deliver": "risk_assessment",
}

dataset := datasets[input.action]

default dataset_name := "unknown"

dataset_name := dataset

# A subscription streams one record type, named by the resource.
dataset := input.resource.type if {
	input.action == "subscribe"
	input.resource.type in {"declaration", "risk_assessment"}
}

# A trust domain as recipient means that administration's gateway only; an
# agency of the same domain needs a grant naming its own SPIFFE ID.
recipient_keys contains input.caller.id

recipient_keys contains input.caller.domain if input.caller.kind == "gateway"

# Grants are collected in arrays, not sets: a set would hash every grant
# object on each decision, which cost more than the decision itself.
offered := [g |
	some key in recipient_keys
	some g in data.borderlink.grants[input.self][key]
]

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

# The checks run as a chain of filters, each over the previous one's
# grants (in_force, then covers_action, then covers), with the helpers
# above written out: a function call per grant and check cost more than
# the check. The deny reasons below count the same lists.
in_force_grants := [g |
	some g in offered
	g.status == "active"
	now_ns >= g.valid_from_ns
	now_ns < g.valid_until_ns
]

action_grants := [g |
	some g in in_force_grants
	input.action in g.actions
	g.release[dataset]
]

# entitled: grants that cover caller, action, purpose and dataset, whatever
# the record. The gateway uses it to tell "not found" from "not allowed"
# without revealing whether a record exists to callers with no grant.
entitled := [g |
	some g in action_grants
	input.purpose in g.purposes
]

# allowed filters offered itself, with the checks of entitled, so that an
# allow does not build the intermediate lists (only a deny needs them).
allowed := [g |
	input.resource.exists
	some g in offered
	g.status == "active"
	now_ns >= g.valid_from_ns
	now_ns < g.valid_until_ns
	input.action in g.actions
	g.release[dataset]
	input.purpose in g.purposes
	record_matches(g)
]

# record_matches holds when the record meets every condition of the grant,
# exactly when condition_failure(g) == "". Only the conditions a grant has
# are checked (most have one or two), each by the rule for its key.
record_matches(g) if count(g.conditions) == 0

record_matches(g) if {
	count(g.conditions) > 0
	every key, want in g.conditions {
		condition_ok(key, want, g.conditions)
	}
}

# A condition set to false is no condition (as `not g.conditions.x`).
condition_ok(_, false, _)

# Keys that are not conditions are ignored.
condition_ok(key, _, _) if not key in condition_keys

condition_keys := {
	"hs_chapters", "hs_headings", "export_countries", "destination_countries",
	"origin_countries", "accepted_from_ns", "accepted_until_ns", "min_risk_score",
	"invoice_amount",
}

condition_ok("hs_chapters", want, _) if {
	some chapter in attrs.hs_chapters
	chapter in want
}

condition_ok("hs_headings", want, _) if {
	some heading in attrs.hs_headings
	heading in want
}

condition_ok("export_countries", want, _) if attrs.export_country in want

condition_ok("destination_countries", want, _) if attrs.destination_country in want

condition_ok("origin_countries", want, _) if {
	some country in attrs.origin_countries
	country in want
}

condition_ok("accepted_from_ns", _, c) if accepted_in_range(c)

condition_ok("accepted_until_ns", _, c) if accepted_in_range(c)

condition_ok("min_risk_score", want, _) if attrs.risk_score >= want

# Amounts compare only within one currency: no conversion (docs/policies.md).
condition_ok("invoice_amount", want, _) if {
	attrs.invoice_amount.currency == want.currency
	object.get(want, "min", 0) <= attrs.invoice_amount.value
	not amount_at_or_above_max(want)
}

amount_at_or_above_max(want) if attrs.invoice_amount.value >= want.max

accepted_in_range(c) if {
	object.get(c, "accepted_from_ns", 0) <= attrs.accepted_ns
	attrs.accepted_ns < object.get(c, "accepted_until_ns", 9223372036854775807)
}

attrs := object.get(input.resource, "attributes", {})

hs_ok(g) if not g.conditions.hs_chapters

hs_ok(g) if {
	some chapter in attrs.hs_chapters
	chapter in g.conditions.hs_chapters
}

export_ok(g) if not g.conditions.export_countries

export_ok(g) if attrs.export_country in g.conditions.export_countries

destination_ok(g) if not g.conditions.destination_countries

destination_ok(g) if attrs.destination_country in g.conditions.destination_countries

heading_ok(g) if not g.conditions.hs_headings

heading_ok(g) if {
	some heading in attrs.hs_headings
	heading in g.conditions.hs_headings
}

origin_ok(g) if not g.conditions.origin_countries

origin_ok(g) if {
	some country in attrs.origin_countries
	country in g.conditions.origin_countries
}

accepted_ok(g) if {
	not g.conditions.accepted_from_ns
	not g.conditions.accepted_until_ns
}

accepted_ok(g) if {
	object.get(g.conditions, "accepted_from_ns", 0) <= attrs.accepted_ns
	attrs.accepted_ns < object.get(g.conditions, "accepted_until_ns", 9223372036854775807)
}

risk_ok(g) if not g.conditions.min_risk_score

risk_ok(g) if attrs.risk_score >= g.conditions.min_risk_score

invoice_ok(g) if not g.conditions.invoice_amount

invoice_ok(g) if condition_ok("invoice_amount", g.conditions.invoice_amount, g.conditions)

# first_failure names the first check a grant fails for this request, or
# "" when it allows it; `policy explain` prints it.
first_failure(g) := sprintf("agreement %s is %s", [g.agreement, g.status]) if {
	g.status != "active"
} else := sprintf("agreement %s is not in force at %s", [g.agreement, input.time]) if {
	not in_force(g)
} else := sprintf("action %s is not granted", [input.action]) if {
	not input.action in g.actions
} else := sprintf("no release is defined for %s records", [dataset_name]) if {
	not g.release[dataset]
} else := sprintf("purpose %q is not granted", [input.purpose]) if {
	not input.purpose in g.purposes
} else := "record not found" if {
	not input.resource.exists
} else := failure if {
	failure := condition_failure(g)
}

# condition_failure names the first condition on the record a grant fails,
# or "" when the record meets them all: one list for the decision
# (record_matches) and for `policy explain` (first_failure).
condition_failure(g) := sprintf("HS chapters %v are outside %v", [object.get(attrs, "hs_chapters", []), g.conditions.hs_chapters]) if {
	not hs_ok(g)
} else := sprintf("HS headings %v are outside %v", [object.get(attrs, "hs_headings", []), g.conditions.hs_headings]) if {
	not heading_ok(g)
} else := sprintf("export country %q is outside %v", [object.get(attrs, "export_country", ""), g.conditions.export_countries]) if {
	not export_ok(g)
} else := sprintf("destination country %q is outside %v", [object.get(attrs, "destination_country", ""), g.conditions.destination_countries]) if {
	not destination_ok(g)
} else := sprintf("origin countries %v are outside %v", [object.get(attrs, "origin_countries", []), g.conditions.origin_countries]) if {
	not origin_ok(g)
} else := "acceptance date is outside the agreed date range" if {
	not accepted_ok(g)
} else := sprintf("risk score is below %v", [g.conditions.min_risk_score]) if {
	not risk_ok(g)
} else := sprintf("invoice amount %v is outside the agreed range %v", [object.get(attrs, "invoice_amount", "unknown"), g.conditions.invoice_amount]) if {
	not invoice_ok(g)
} else := ""

# explanation lists every grant offered to the caller with the first check
# it fails ("" = it matches). `borderlink policy explain` prints it.
explanation := [e |
	some g in offered
	e := {"agreement": g.agreement, "grant": g.id, "failed": first_failure(g)}
]

national_denies := {r | some r in data.borderlink.national.deny}

national_withheld := {p | some p in data.borderlink.national.withhold}

# The largest search result any entitled grant allows (0: no grant limit).
max_results := max([object.get(g, "max_results", 0) | some g in entitled]) if {
	count(entitled) > 0
} else := 0

# When several grants allow the same request, the narrowest release wins:
# fewest leaf fields released (release size, computed from the record
# schema when agreements are loaded), then agreement ID, then grant ID, so
# the outcome never depends on evaluation order.
rank(g) := [object.get(g.release[dataset], "size", count(g.release[dataset].fields)), g.agreement, g.id]

ranking := sort([rank(g) | some g in allowed])

chosen := allowed[0] if count(allowed) == 1

chosen := g if {
	count(allowed) > 1
	some g in allowed
	rank(g) == ranking[0]
}

# The engine always writes fields, mask and pseudonymize for every release.
chosen_release := chosen.release[dataset]

# One of four outcomes; the conditions exclude each other, and each is
# tested only when the ones before it did not decide. The first is the
# general deny below for a caller with no grant at all, taken first
# because it needs none of the lists.
decision := {
	"allow": false,
	"entitled": false,
	"agreement": "",
	"grant": "",
	"fields": [],
	"mask": [],
	"pseudonymize": [],
	"withhold": [],
	"code": "NO_AGREEMENT",
	"reasons": [sprintf("no agreement covers %s", [input.caller.id])],
	"obligations": {},
	"max_results": 0,
	"rate_limit": {},
	"goods_items": no_item_filter,
} if {
	count(offered) == 0
} else := {
	"allow": true,
	"entitled": true,
	"agreement": g.agreement,
	"grant": g.id,
	"fields": release.fields,
	"mask": release.mask,
	"pseudonymize": release.pseudonymize,
	"withhold": sort(national_withheld),
	"code": "",
	"reasons": [],
	"obligations": object.get(g, "obligations", {}),
	"max_results": object.get(g, "max_results", 0),
	"rate_limit": object.get(g, "rate_limit", {}),
	"goods_items": item_filter(g),
} if {
	count(allowed) > 0
	count(national_denies) == 0

	# chosen and chosen_release, each looked up once.
	g := chosen
	release := g.release[dataset]
} else := {
	"allow": false,
	"entitled": true,
	"agreement": "",
	"grant": "",
	"fields": [],
	"mask": [],
	"pseudonymize": [],
	"withhold": [],
	"code": "NATIONAL_RULE",
	"reasons": sort(national_denies),
	"obligations": {},
	"max_results": 0,
	"rate_limit": {},
	"goods_items": no_item_filter,
} if {
	count(allowed) > 0
	count(national_denies) > 0
} else := {
	"allow": false,
	"entitled": count(entitled) > 0,
	"agreement": "",
	"grant": "",
	"fields": [],
	"mask": [],
	"pseudonymize": [],
	"withhold": [],
	"code": deny_code,
	"reasons": [deny_reason],
	"obligations": {},
	"max_results": max_results,
	"rate_limit": {},
	"goods_items": no_item_filter,
} if {
	count(allowed) == 0
}

# A grant limited to HS chapters or headings releases only the goods items
# within them: a food grant must not hand over the electronics lines of a
# mixed consignment. An item is kept when its HS code is in every list the
# grant sets (release.Rules.GoodsItems applies it).
item_filter(g) := {
	"hs_chapters": condition_list(g.conditions, "hs_chapters"),
	"hs_headings": condition_list(g.conditions, "hs_headings"),
}

no_item_filter := {"hs_chapters": [], "hs_headings": []}

# A condition set to false (or to anything but a list) is no condition.
condition_list(c, key) := c[key] if is_array(c[key])

else := []

# Stable reason codes, for programs; the reasons are for people.
deny_code := "NO_AGREEMENT" if {
	count(offered) == 0
} else := "NOT_IN_FORCE" if {
	count(in_force_grants) == 0
} else := "ACTION_NOT_GRANTED" if {
	count(action_grants) == 0
} else := "PURPOSE_NOT_GRANTED" if {
	count(entitled) == 0
} else := "NOT_FOUND" if {
	not input.resource.exists
} else := "CONDITIONS_NOT_MET"

# The first failing step is the reason disclosed to the caller.
deny_reason := sprintf("no agreement covers %s", [input.caller.id]) if {
	count(offered) == 0
} else := sprintf("no agreement with %s is in force", [input.caller.id]) if {
	count(in_force_grants) == 0
} else := sprintf("action %s is not granted to %s", [input.action, input.caller.id]) if {
	count(action_grants) == 0
} else := sprintf("purpose %q is not granted for %s", [input.purpose, input.action]) if {
	count(entitled) == 0
} else := "record not found" if {
	not input.resource.exists
} else := "record is outside the conditions of every agreement that covers this request"
