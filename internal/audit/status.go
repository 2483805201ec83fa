package audit

import (
	"strings"

	"google.golang.org/grpc/codes"
)

// StatusName is the canonical upper-case name of a gRPC code as the gRPC
// specification writes it ("PERMISSION_DENIED"); audit records and the CLI
// use it so that both read the same.
func StatusName(c codes.Code) string {
	var b strings.Builder
	prevLower := false
	for _, r := range c.String() {
		upper := r >= 'A' && r <= 'Z'
		if upper && prevLower {
			b.WriteByte('_')
		}
		prevLower = r >= 'a' && r <= 'z'
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}
