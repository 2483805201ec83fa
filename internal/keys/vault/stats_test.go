package vault

import (
	"slices"
	"testing"

	"github.com/borderlink/borderlink/internal/keys"
)

// TestOperation: every path the gateway uses maps to its operation under
// the configured mounts, including nested ones, and nothing else does.
func TestOperation(t *testing.T) {
	c := &Client{cfg: keys.VaultConfig{
		PKI:     keys.VaultPKI{Mount: "pki-nl"},
		Transit: keys.VaultTransit{Mount: "transit/nl"},
		KV:      keys.VaultKV{Mount: "kv"},
	}}
	for _, tc := range []struct{ path, want string }{
		{"sys/health", OpHealth},
		{"auth/approle/login", OpLogin},
		{"auth/approle-nl/login", OpLogin},
		{"auth/token/renew-self", OpTokenRenew},
		{"auth/token/lookup-self", OpTokenLookup},
		{"sys/capabilities-self", OpCapabilities},
		{"pki-nl/issue/borderlink-gateway", OpPKIIssue},
		{"pki-nl/issuers", OpPKIIssuers},
		{"pki-nl/issuer/0b1c/json", OpPKIIssuers},
		{"pki-nl/ca/pem", OpPKIIssuers},
		{"pki-nl/roles/borderlink-gateway", OpOther},
		{"pki/issue/borderlink-gateway", OpOther}, // not our mount
		{"transit/nl/sign/borderlink-audit", OpTransitSign},
		{"transit/nl/keys/borderlink-audit", OpTransitKey},
		{"transit/nl/hmac/borderlink-pseudonym", OpTransitOther},
		{"transit/sign/borderlink-audit", OpOther}, // not our mount
		{"kv/data/borderlink/nl.customs.example/pseudonym", OpKVRead},
		{"kv/metadata/borderlink/nl.customs.example/pseudonym", OpOther},
		{"sys/mounts", OpOther},
	} {
		got := c.operation(tc.path)
		if got != tc.want {
			t.Errorf("operation(%q) = %q; want %q", tc.path, got, tc.want)
		}
		if !slices.Contains(Operations, got) {
			t.Errorf("operation(%q) = %q is not in Operations", tc.path, got)
		}
	}
}
