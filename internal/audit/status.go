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
	for i, r := range c.String() {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}
