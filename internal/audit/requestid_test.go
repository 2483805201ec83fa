package audit_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/borderlink/borderlink/internal/audit"
)

func TestNewRequestID(t *testing.T) {
	at := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	a, b := audit.NewRequestID(at), audit.NewRequestID(at)
	later := audit.NewRequestID(at.Add(time.Millisecond))
	if len(a) != 32 || strings.Trim(a, "0123456789abcdef") != "" {
		t.Fatalf("NewRequestID = %q, want 32 lowercase hex digits", a)
	}
	if a == b {
		t.Errorf("two IDs in the same millisecond are equal: %s", a)
	}
	if a[:12] != b[:12] || a[:12] != fmt.Sprintf("%012x", at.UnixMilli()) {
		t.Errorf("IDs %s, %s do not start with the time in ms (%012x)", a, b, at.UnixMilli())
	}
	if !(a < later && b < later) {
		t.Errorf("an ID a millisecond later (%s) does not sort after %s and %s", later, a, b)
	}
}
