package keys

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/borderlink/borderlink/internal/audit"
)

// Defaults for the vault: section.
const (
	DefaultVaultPKIMount     = "pki"
	DefaultVaultPKIRole      = "borderlink-gateway"
	DefaultVaultCertTTL      = time.Hour
	DefaultVaultTransitMount = "transit"
	DefaultVaultTransitKey   = "borderlink-audit"
	DefaultVaultKVMount      = "kv"
	// DefaultVaultRequestTimeout bounds one call to Vault (a signature, an
	// issued certificate).
	DefaultVaultRequestTimeout = 10 * time.Second
	// DefaultReceiptKeyTTL is the lifetime of a receipt key, as of the
	// gateway certificate: renewed after 40 minutes, so Vault can be away
	// for 20 before exchanges fail.
	DefaultReceiptKeyTTL = time.Hour
	// MinReceiptKeyTTL keeps a key's life well above a Vault round trip,
	// so that no key is born expired (tests use a few seconds).
	MinReceiptKeyTTL = 5 * time.Second
)

// VaultConfig is the `vault:` section of a gateway's configuration
// (docs/vault.md). Without it, key material comes from files.
//
// The AppRole secret ID is never part of the configuration: it is read from
// a file (delivered by the orchestrator) or an environment variable.
type VaultConfig struct {
	// Address is Vault's URL, e.g. https://vault.nl.customs.example:8200.
	Address string `yaml:"address,omitempty"`
	// CACert is a PEM file to verify Vault's TLS certificate; empty means
	// the system roots.
	CACert  string           `yaml:"ca_cert,omitempty"`
	Auth    VaultAuth        `yaml:"auth,omitempty"`
	PKI     VaultPKI         `yaml:"pki,omitempty"`
	Transit VaultTransit     `yaml:"transit,omitempty"`
	KV      VaultKV          `yaml:"kv,omitempty"`
	Timeout VaultDurationStr `yaml:"request_timeout,omitempty"`
}

// VaultAuth chooses how the gateway logs in: AppRole in production, a token
// from an environment variable in development. Exactly one is set.
type VaultAuth struct {
	AppRole *VaultAppRole `yaml:"approle,omitempty"`
	// TokenEnv names an environment variable holding a Vault token
	// (development only: the token is renewed if it is renewable, but
	// cannot be replaced when it expires).
	TokenEnv string `yaml:"token_env,omitempty"`
	// Mount is where the auth method is mounted; default "approle".
	Mount string `yaml:"mount,omitempty"`
}

// VaultAppRole is AppRole login: role ID from the config, secret ID from
// SecretIDFile or SecretIDEnv (exactly one).
type VaultAppRole struct {
	RoleID       string `yaml:"role_id,omitempty"`
	SecretIDFile string `yaml:"secret_id_file,omitempty"`
	SecretIDEnv  string `yaml:"secret_id_env,omitempty"`
}

// VaultPKI issues the gateway's certificate from <mount>/issue/<role>.
type VaultPKI struct {
	Mount string           `yaml:"mount,omitempty"`
	Role  string           `yaml:"role,omitempty"`
	TTL   VaultDurationStr `yaml:"ttl,omitempty"`
}

// VaultTransit signs audit checkpoints and receipts with the Ed25519 key
// <mount>/keys/<key>.
type VaultTransit struct {
	Mount string `yaml:"mount,omitempty"`
	Key   string `yaml:"key,omitempty"`
	// ReceiptKeyTTL is the lifetime of the in-memory receipt key the
	// transit key certifies (ReceiptKeys, ADR 0011); "0" signs every
	// receipt in transit (batched) instead.
	ReceiptKeyTTL VaultDurationStr `yaml:"receipt_key_ttl,omitempty"`
}

// VaultKV reads secrets from a KV v2 mount. PseudonymKeyPath is the path
// (under the mount) of a secret whose field "key" holds the base64 of the
// pseudonymisation key.
type VaultKV struct {
	Mount            string `yaml:"mount,omitempty"`
	PseudonymKeyPath string `yaml:"pseudonym_key_path,omitempty"`
}

// VaultDurationStr is a duration written as "1h" or "30s". (internal/config
// has its own Duration; this one keeps this package free of it.)
type VaultDurationStr string

// Duration parses d; "" is 0.
func (d VaultDurationStr) Duration() (time.Duration, error) {
	if d == "" {
		return 0, nil
	}
	return time.ParseDuration(string(d))
}

// SetDefaults fills empty optional keys.
func (c *VaultConfig) SetDefaults() {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&c.PKI.Mount, DefaultVaultPKIMount)
	def(&c.PKI.Role, DefaultVaultPKIRole)
	def((*string)(&c.PKI.TTL), DefaultVaultCertTTL.String())
	def(&c.Transit.Mount, DefaultVaultTransitMount)
	def(&c.Transit.Key, DefaultVaultTransitKey)
	def((*string)(&c.Transit.ReceiptKeyTTL), DefaultReceiptKeyTTL.String())
	def(&c.KV.Mount, DefaultVaultKVMount)
	def((*string)(&c.Timeout), DefaultVaultRequestTimeout.String())
	if c.Auth.AppRole != nil {
		def(&c.Auth.Mount, "approle")
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Validate returns every problem, each as "vault.KEY: problem (fix)". The
// caller prefixes the file name.
func (c *VaultConfig) Validate() error {
	var errs []error
	bad := func(key, problem, fix string) {
		errs = append(errs, fmt.Errorf("vault.%s: %s (%s)", key, problem, fix))
	}
	if u, err := url.Parse(c.Address); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		bad("address", fmt.Sprintf("%q is not an http(s) URL", c.Address), "e.g. https://vault.example:8200")
	} else if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		// The own trust bundle, the secret ID and private keys travel on
		// this connection: in clear, anyone on the path could plant a CA
		// and mint identities of our own domain.
		bad("address", fmt.Sprintf("%q is plain http to a non-loopback host", c.Address), "use https (plain http is accepted only for a dev server on 127.0.0.1, ::1 or localhost)")
	}
	switch {
	case c.Auth.AppRole != nil && c.Auth.TokenEnv != "":
		bad("auth", "sets both approle and token_env", "use approle in production, token_env only in development")
	case c.Auth.AppRole == nil && c.Auth.TokenEnv == "":
		bad("auth", "sets neither approle nor token_env", "add auth.approle.role_id and auth.approle.secret_id_file")
	case c.Auth.AppRole != nil:
		a := c.Auth.AppRole
		if a.RoleID == "" {
			bad("auth.approle.role_id", "is required", "`vault read auth/approle/role/NAME/role-id` prints it")
		}
		if (a.SecretIDFile == "") == (a.SecretIDEnv == "") {
			bad("auth.approle", "needs exactly one of secret_id_file and secret_id_env", "the secret ID never goes into the config itself")
		}
	}
	if d, err := c.PKI.TTL.Duration(); err != nil || d < 0 {
		bad("pki.ttl", fmt.Sprintf("%q is not a duration", c.PKI.TTL), "e.g. 1h")
	}
	if d, err := c.Transit.ReceiptKeyTTL.Duration(); err != nil || d < 0 || (d > 0 && d < MinReceiptKeyTTL) || d > audit.MaxDelegation-audit.ReceiptKeyBackdate {
		bad("transit.receipt_key_ttl", fmt.Sprintf("%q is not a duration from %s to %s", c.Transit.ReceiptKeyTTL, MinReceiptKeyTTL, audit.MaxDelegation-audit.ReceiptKeyBackdate),
			"e.g. 1h; 0 signs every receipt in transit")
	}
	if d, err := c.Timeout.Duration(); err != nil || d < 0 {
		bad("request_timeout", fmt.Sprintf("%q is not a duration", c.Timeout), "e.g. 10s")
	}
	for _, kv := range [][2]string{{"pki.mount", c.PKI.Mount}, {"pki.role", c.PKI.Role}, {"transit.mount", c.Transit.Mount}, {"transit.key", c.Transit.Key}, {"kv.mount", c.KV.Mount}, {"kv.pseudonym_key_path", c.KV.PseudonymKeyPath}} {
		key, v := kv[0], kv[1]
		if strings.HasPrefix(v, "/") || strings.HasSuffix(v, "/") || strings.Contains(v, "..") {
			bad(key, fmt.Sprintf("%q is not a relative Vault path", v), "no leading or trailing slash")
		}
	}
	return errors.Join(errs...)
}
