package audit_test

import (
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/borderlink/borderlink/internal/audit"
)

func TestStatusName(t *testing.T) {
	for code, want := range map[codes.Code]string{
		codes.OK:                "OK",
		codes.PermissionDenied:  "PERMISSION_DENIED",
		codes.NotFound:          "NOT_FOUND",
		codes.DataLoss:          "DATA_LOSS",
		codes.Unavailable:       "UNAVAILABLE",
		codes.DeadlineExceeded:  "DEADLINE_EXCEEDED",
		codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
	} {
		if got := audit.StatusName(code); got != want {
			t.Errorf("StatusName(%v) = %q, want %q", code, got, want)
		}
	}
}
