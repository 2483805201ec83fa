package audit_test

import (
	"errors"
	"testing"

	"github.com/borderlink/borderlink/internal/audit"
)

// TestCosignatureKeyHash: the key ID of a cosignature line is the one of
// the cosigner that made it, and lines that are not signature lines are
// refused.
func TestCosignatureKeyHash(t *testing.T) {
	sk, _, err := audit.GenerateKey(audit.Origin("sg.customs.example"))
	if err != nil {
		t.Fatal(err)
	}
	name := audit.WitnessName("sg.customs.example")
	c, err := audit.NewCosigner(sk, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	line, err := audit.Cosign(c, "nl.customs.example/borderlink/audit\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
	if err != nil {
		t.Fatal(err)
	}
	got, hash, err := audit.CosignatureKeyHash(line)
	if err != nil || got != name || hash != c.KeyHash() {
		t.Errorf("CosignatureKeyHash(%q) = %q, %08x, %v; want %q, %08x", line, got, hash, err, name, c.KeyHash())
	}
	for _, bad := range []string{"", "\n", "— name\n", "— name AAAA\n", "- name AAAAAAAA\n", "— name AAAAAAAA", "— name !!!!!!!!\n", "— a b AAAAAAAA\n"} {
		if _, _, err := audit.CosignatureKeyHash(bad); !errors.Is(err, audit.ErrVerify) {
			t.Errorf("CosignatureKeyHash(%q) = %v, want ErrVerify", bad, err)
		}
	}
}
