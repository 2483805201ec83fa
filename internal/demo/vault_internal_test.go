package demo

import (
	"testing"
	"time"
)

func TestShortKey(t *testing.T) {
	for in, want := range map[string]string{
		// The base64 key may contain '+'.
		"cn.customs.example/borderlink/audit+34f509d8+AWbf2rm4+AjICYnN52nJLMlL8yIsjQngro7KvY1rNkbg": "cn.customs.example/borderlink/audit+34f509d8",
		"nl.customs.example/borderlink/audit+f5a6024a+AfhzsHdvVy5":                                  "nl.customs.example/borderlink/audit+f5a6024a",
		"no-plus": "no-plus",
	} {
		if got := shortKey(in); got != want {
			t.Errorf("shortKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRoughly(t *testing.T) {
	for in, want := range map[time.Duration]string{
		time.Hour - 2*time.Second:    "1h",
		59*time.Minute + time.Second: "59m",
		65 * time.Minute:             "1h5m",
	} {
		if got := roughly(in); got != want {
			t.Errorf("roughly(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestVaultMountsPerDomain(t *testing.T) {
	seen := map[string]bool{}
	for _, d := range domains {
		o := vaultMounts(d, "/x")
		for _, name := range []string{o.PKIMount, o.TransitMount, o.KVMount, o.Name} {
			if seen[name] {
				t.Errorf("%s: %s is shared with another administration", d, name)
			}
			seen[name] = true
		}
	}
}
