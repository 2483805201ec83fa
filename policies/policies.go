// Package policies embeds the exchange policy and the reference agreements
// shipped with Borderlink, so that `borderlink demo` and the tests run from
// the binary alone. A production gateway reads its own policy directory
// (config key policy.dir) instead.
package policies

import "embed"

// FS holds exchange.rego, its tests and agreements/*.yaml.
//
//go:embed *.rego agreements/*.yaml
var FS embed.FS
