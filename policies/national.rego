# National rules of the gateway's own administration. They apply on top of
# every agreement and can only take away (see exchange.rego):
#   deny     - a reason here refuses the request (code NATIONAL_RULE)
#   withhold - a field path here is removed from every release
# Fictitious examples for the demo and tests; replace with your own.
package borderlink.national

# Consignments to or from embargoed destinations are never shared.
embargoed := {"KP"}

deny contains sprintf("consignments involving %s are under a national embargo", [country]) if {
	some country in [input.resource.attributes.export_country, input.resource.attributes.destination_country]
	country in embargoed
}

# Arms and ammunition (HS chapter 93): share the goods, never the traders.
withhold contains party if {
	"93" in input.resource.attributes.hs_chapters
	some party in ["declarant", "importer", "exporter"]
}
