// Package config loads a gateway's YAML configuration. Decoding is strict
// (unknown keys are errors), relative paths are resolved against the
// config file's directory, defaults are filled in, and Validate returns
// every problem at once, each naming the file, the key and the fix.
// docs/configuration.md documents every key.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"gopkg.in/yaml.v3"

	"github.com/borderlink/borderlink/internal/keys"
)

// Defaults for optional keys.
const (
	DefaultSearchLimit    = 100
	DefaultSearchMaxLimit = 1000
	DefaultPeerTimeout    = 10 * time.Second
	DefaultShutdownGrace  = 10 * time.Second
	// DefaultCheckpointInterval is how often the audit log is checkpointed
	// when it has grown.
	DefaultCheckpointInterval = time.Second
	// DefaultWitnessInterval is how often partners' audit checkpoints are
	// witnessed.
	DefaultWitnessInterval = 10 * time.Second
	// DefaultAuditKeyName is the audit signing key file created next to
	// the database when audit.key_file is not set.
	DefaultAuditKeyName = "audit.key"
	// DefaultDeliveryLanes is how many alerts may be on their way to one
	// partner at once.
	DefaultDeliveryLanes = 8
	// DefaultRetentionInterval is how often received alerts whose
	// retention ended are deleted.
	DefaultRetentionInterval = time.Minute
	// DefaultKeepSettled is how long delivered, refused and cancelled
	// outbox entries stay listed before they are pruned.
	DefaultKeepSettled = 7 * 24 * time.Hour
	// DefaultGCPercent is the garbage collector's target the gateway runs
	// with (GOGC): a collection starts when the heap has grown this many
	// percent over what the last one left live. Go's own default, 100,
	// collects four times as often as 400, and at 500 req/s on two cores
	// it added 1-2.5 ms to the audit wait's p99
	// (docs/decisions/0015-gateway-gc-target.md); the heap is small, so
	// memory buys latency cheaply here.
	DefaultGCPercent = 400
)

// Bounds of runtime.gc_percent: below the lower one the collector runs
// nearly all the time; above the upper one the heap may grow a hundredfold
// between collections.
const (
	MinGCPercent = 25
	MaxGCPercent = 10000
)

// Config is one gateway's configuration.
type Config struct {
	// TrustDomain is this administration, e.g. nl.customs.example.
	TrustDomain string `yaml:"trust_domain"`
	// Listen is the host:port the gRPC server binds.
	Listen string `yaml:"listen"`
	TLS    TLS    `yaml:"tls"`
	// TrustBundles maps each trust domain we accept callers from (our own
	// included) to a PEM file of the CA certificates of that domain.
	TrustBundles map[string]string `yaml:"trust_bundles"`
	// Peers are the partner gateways we call on behalf of our own systems.
	Peers            map[string]Peer  `yaml:"peers"`
	Store            Store            `yaml:"store"`
	Policy           Policy           `yaml:"policy"`
	Pseudonymization Pseudonymization `yaml:"pseudonymization"`
	Limits           Limits           `yaml:"limits"`
	Audit            Audit            `yaml:"audit"`
	Delivery         Delivery         `yaml:"delivery"`
	Metrics          Metrics          `yaml:"metrics"`
	Runtime          Runtime          `yaml:"runtime"`
	// Vault, when set, is where the gateway certificate, the own trust
	// bundle, the audit signing key and the pseudonymisation key come
	// from (docs/vault.md); tls.* and pseudonymization.key_file are then
	// not used.
	Vault *keys.VaultConfig `yaml:"vault"`

	// File is where the config was read from.
	File string `yaml:"-"`
}

// TLS names the gateway's own certificate (SPIFFE ID
// spiffe://<trust_domain>/gateway) and key.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Peer is a partner gateway.
type Peer struct {
	Address string `yaml:"address"`
	// AuditKey is the partner's audit verifier key (a note verifier key
	// "<domain>/borderlink/audit+<hash>+<key>"); receipts from the partner
	// are checked with it. Without it, calls to the partner are refused.
	AuditKey string `yaml:"audit_key"`
	// RetiredAuditKeys are the partner's earlier audit verifier keys,
	// from before it rotated its key: what it signed with them still
	// verifies.
	RetiredAuditKeys []string `yaml:"retired_audit_keys"`
}

// Audit configures the verifiable audit log (docs/audit.md).
type Audit struct {
	// KeyFile holds the Ed25519 note signer key that signs checkpoints and
	// receipts. Default: audit.key next to the database, generated at first
	// start (its verifier key is written to KeyFile + ".pub").
	KeyFile string `yaml:"key_file"`
	// CheckpointInterval is how often a checkpoint is signed when the log
	// has grown; default 1s.
	CheckpointInterval Duration `yaml:"checkpoint_interval"`
	// WitnessInterval is how often partners' checkpoints are fetched and
	// checked for consistency; default 10s.
	WitnessInterval Duration `yaml:"witness_interval"`
}

// Metrics configures the Prometheus endpoint (docs/operations.md).
type Metrics struct {
	// Listen is the host:port of a plain-HTTP server answering GET
	// /metrics; empty (the default) serves no metrics. It carries no
	// record data, but it is not authenticated: bind it to loopback or an
	// operations network.
	Listen string `yaml:"listen"`
}

// Runtime tunes the Go runtime the gateway runs on (docs/operations.md).
type Runtime struct {
	// GCPercent is the garbage collector's target (as GOGC): default
	// DefaultGCPercent. The GOGC environment variable, when set, wins.
	GCPercent int `yaml:"gc_percent"`
}

// Delivery tunes push delivery of alerts (docs/delivery.md).
type Delivery struct {
	// Lanes is how many alerts may be on their way to one partner at once
	// (alerts about one record always share a lane, so they stay in
	// order); default 8.
	Lanes int `yaml:"lanes"`
	// RetentionInterval is how often received alerts whose retention (the
	// sender's obligations) ended are deleted; default 1m.
	RetentionInterval Duration `yaml:"retention_interval"`
	// KeepSettled is how long a delivered, refused or cancelled outbox
	// entry stays (for `delivery status` and retries of refusals) before
	// the retention job deletes it; its evidence stays in the audit log.
	// Default 168h.
	KeepSettled Duration `yaml:"keep_settled"`
}

// Store selects the storage backend.
type Store struct {
	SQLite SQLite `yaml:"sqlite"`
}

// SQLite is the embedded default store.
type SQLite struct {
	Path string `yaml:"path"`
}

// Policy locates the policy directory: *.rego at its top level and
// agreements/*.yaml.
type Policy struct {
	Dir string `yaml:"dir"`
}

// Pseudonymization holds the key pseudonyms are derived from.
type Pseudonymization struct {
	// KeyFile holds at least 32 random bytes. Changing it changes every
	// pseudonym partners have seen.
	KeyFile string `yaml:"key_file"`
}

// Limits bound what one call can cost.
type Limits struct {
	SearchDefault int      `yaml:"search_default"`
	SearchMax     int      `yaml:"search_max"`
	PeerTimeout   Duration `yaml:"peer_timeout"`
	ShutdownGrace Duration `yaml:"shutdown_grace"`
}

// Duration is a time.Duration written as "10s", "1m30s".
type Duration struct{ time.Duration }

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration like 10s or 1m30s", n.Line, s)
	}
	d.Duration = v
	return nil
}

// MarshalYAML writes the duration back as a string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// Load reads, defaults and validates the config file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Parse decodes config data that was read from path (used to resolve
// relative paths and to name the file in errors).
func Parse(path string, data []byte) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%s: %s (see docs/configuration.md)", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	c.File = path
	c.setDefaults()
	c.resolvePaths(filepath.Dir(path))
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Config) setDefaults() {
	if c.Limits.SearchDefault == 0 {
		c.Limits.SearchDefault = DefaultSearchLimit
	}
	if c.Limits.SearchMax == 0 {
		c.Limits.SearchMax = DefaultSearchMaxLimit
	}
	if c.Limits.PeerTimeout.Duration == 0 {
		c.Limits.PeerTimeout.Duration = DefaultPeerTimeout
	}
	if c.Limits.ShutdownGrace.Duration == 0 {
		c.Limits.ShutdownGrace.Duration = DefaultShutdownGrace
	}
	if c.Audit.CheckpointInterval.Duration == 0 {
		c.Audit.CheckpointInterval.Duration = DefaultCheckpointInterval
	}
	if c.Vault != nil {
		c.Vault.SetDefaults()
	}
	if c.Audit.WitnessInterval.Duration == 0 {
		c.Audit.WitnessInterval.Duration = DefaultWitnessInterval
	}
	if c.Delivery.Lanes == 0 {
		c.Delivery.Lanes = DefaultDeliveryLanes
	}
	if c.Delivery.RetentionInterval.Duration == 0 {
		c.Delivery.RetentionInterval.Duration = DefaultRetentionInterval
	}
	if c.Delivery.KeepSettled.Duration == 0 {
		c.Delivery.KeepSettled.Duration = DefaultKeepSettled
	}
	if c.Runtime.GCPercent == 0 {
		c.Runtime.GCPercent = DefaultGCPercent
	}
}

func (c *Config) resolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&c.TLS.CertFile)
	abs(&c.TLS.KeyFile)
	abs(&c.Store.SQLite.Path)
	abs(&c.Policy.Dir)
	abs(&c.Pseudonymization.KeyFile)
	if c.Vault != nil {
		abs(&c.Vault.CACert)
		if a := c.Vault.Auth.AppRole; a != nil {
			abs(&a.SecretIDFile)
		}
	}
	if c.Audit.KeyFile == "" && c.Store.SQLite.Path != "" {
		c.Audit.KeyFile = filepath.Join(filepath.Dir(c.Store.SQLite.Path), DefaultAuditKeyName)
	}
	abs(&c.Audit.KeyFile)
	for d, p := range c.TrustBundles {
		abs(&p)
		c.TrustBundles[d] = p
	}
}

var domainPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$`)

// Validate checks every key and returns all problems, each as
// "FILE: KEY: problem (fix)".
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, problem, fix string) {
		errs = append(errs, fmt.Errorf("%s: %s: %s (%s)", c.File, key, problem, fix))
	}
	if !domainPattern.MatchString(c.TrustDomain) {
		bad("trust_domain", fmt.Sprintf("%q is not a trust domain", c.TrustDomain), "set it to this administration's lower-case DNS-style name, e.g. nl.customs.example")
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", fmt.Sprintf("%q is not host:port", c.Listen), "e.g. 127.0.0.1:7443 or :7443")
	}
	fileKey := func(key, path, fix string) {
		if path == "" {
			bad(key, "is required", fix)
			return
		}
		if _, err := os.Stat(path); err != nil {
			bad(key, fmt.Sprintf("cannot read %s: %v", path, errors.Unwrap(err)), fix)
		}
	}
	if c.Vault == nil {
		fileKey("tls.cert_file", c.TLS.CertFile, "the gateway certificate; `borderlink certs dev` makes one for development")
		fileKey("tls.key_file", c.TLS.KeyFile, "the gateway private key; `borderlink certs dev` makes one for development")
	} else {
		if c.TLS.CertFile != "" || c.TLS.KeyFile != "" {
			bad("tls", "is set together with vault", "remove tls: the certificate comes from vault.pki")
		}
		if err := c.Vault.Validate(); err != nil {
			for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
				errs = append(errs, fmt.Errorf("%s: %w", c.File, e))
			}
		}
	}
	if len(c.TrustBundles) == 0 && c.Vault == nil {
		bad("trust_bundles", "is empty", "map each trust domain you accept, including your own, to its CA bundle PEM file")
	} else if _, ok := c.TrustBundles[c.TrustDomain]; !ok && c.TrustDomain != "" && c.Vault == nil {
		bad("trust_bundles", fmt.Sprintf("has no bundle for the own trust domain %s", c.TrustDomain), "add it: own systems and agencies are verified against it")
	}
	for _, d := range sortedKeys(c.TrustBundles) {
		if !domainPattern.MatchString(d) {
			bad("trust_bundles."+d, "key is not a trust domain", "use the partner's lower-case trust domain, e.g. sg.customs.example")
		}
		fileKey("trust_bundles."+d, c.TrustBundles[d], "a PEM file with the CA certificates of that trust domain")
	}
	for _, d := range sortedKeys(c.Peers) {
		key := "peers." + d
		if d == c.TrustDomain {
			bad(key, "is the own trust domain", "peers are partner gateways; remove this entry")
		}
		if !domainPattern.MatchString(d) {
			bad(key, "key is not a trust domain", "use the partner's trust domain, e.g. sg.customs.example")
		}
		if _, ok := c.TrustBundles[d]; !ok {
			bad(key, "has no trust bundle", fmt.Sprintf("add trust_bundles.%s so the partner's certificate can be verified", d))
		}
		if _, _, err := net.SplitHostPort(c.Peers[d].Address); err != nil {
			bad(key+".address", fmt.Sprintf("%q is not host:port", c.Peers[d].Address), "the partner gateway's address, e.g. gw.sg.customs.example:7443")
		}
		checkKey := func(at, k string) {
			if v, err := note.NewVerifier(k); err != nil {
				bad(at, "is not a note verifier key", "paste the partner's audit verifier key (the .pub file next to its audit key)")
			} else if want := d + "/borderlink/audit"; v.Name() != want {
				bad(at, fmt.Sprintf("is the key of %q", v.Name()), fmt.Sprintf("use the key named %s", want))
			}
		}
		if k := c.Peers[d].AuditKey; k != "" {
			checkKey(key+".audit_key", k)
		}
		if len(c.Peers[d].RetiredAuditKeys) > 0 && c.Peers[d].AuditKey == "" {
			bad(key+".retired_audit_keys", "is set without audit_key", "put the partner's current key in audit_key; retired keys only verify what was signed before")
		}
		for i, k := range c.Peers[d].RetiredAuditKeys {
			checkKey(fmt.Sprintf("%s.retired_audit_keys[%d]", key, i), k)
		}
	}
	if c.Store.SQLite.Path == "" {
		bad("store.sqlite.path", "is required", "a file path for the embedded database, e.g. data/gateway.db")
	}
	if c.Policy.Dir == "" {
		bad("policy.dir", "is required", "the directory with exchange.rego and agreements/*.yaml")
	} else if st, err := os.Stat(c.Policy.Dir); err != nil || !st.IsDir() {
		bad("policy.dir", fmt.Sprintf("%s is not a readable directory", c.Policy.Dir), "point it at the directory with exchange.rego and agreements/")
	}
	if c.Vault != nil && c.Vault.KV.PseudonymKeyPath != "" {
		if c.Pseudonymization.KeyFile != "" {
			bad("pseudonymization.key_file", "is set together with vault.kv.pseudonym_key_path", "use one of them")
		}
	} else if c.Pseudonymization.KeyFile == "" {
		bad("pseudonymization.key_file", "is required", "create one with: head -c 32 /dev/urandom > pseudonym.key")
	} else if st, err := os.Stat(c.Pseudonymization.KeyFile); err != nil {
		bad("pseudonymization.key_file", fmt.Sprintf("cannot read %s", c.Pseudonymization.KeyFile), "create one with: head -c 32 /dev/urandom > pseudonym.key")
	} else if st.Size() < 32 {
		bad("pseudonymization.key_file", fmt.Sprintf("%s holds %d bytes, need at least 32", c.Pseudonymization.KeyFile, st.Size()), "create one with: head -c 32 /dev/urandom > pseudonym.key")
	}
	if c.Limits.SearchDefault < 1 || c.Limits.SearchDefault > c.Limits.SearchMax {
		bad("limits.search_default", fmt.Sprintf("%d is outside 1..limits.search_max (%d)", c.Limits.SearchDefault, c.Limits.SearchMax), "e.g. 100")
	}
	if c.Limits.SearchMax < 1 || c.Limits.SearchMax > 10000 {
		bad("limits.search_max", fmt.Sprintf("%d is outside 1..10000", c.Limits.SearchMax), "e.g. 1000")
	}
	if c.Limits.PeerTimeout.Duration < 0 {
		bad("limits.peer_timeout", "is negative", "e.g. 10s")
	}
	if c.Limits.ShutdownGrace.Duration < 0 {
		bad("limits.shutdown_grace", "is negative", "e.g. 10s")
	}
	if c.Audit.CheckpointInterval.Duration < 0 {
		bad("audit.checkpoint_interval", "is negative", "e.g. 1s")
	}
	if c.Audit.WitnessInterval.Duration < 0 {
		bad("audit.witness_interval", "is negative", "e.g. 10s")
	}
	if c.Metrics.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Metrics.Listen); err != nil {
			bad("metrics.listen", fmt.Sprintf("%q is not host:port", c.Metrics.Listen), "e.g. 127.0.0.1:9464")
		} else if c.Metrics.Listen == c.Listen {
			bad("metrics.listen", "is the gRPC listen address", "use another port, e.g. 127.0.0.1:9464")
		}
	}
	if c.Delivery.Lanes < 0 || c.Delivery.Lanes > 256 {
		bad("delivery.lanes", fmt.Sprintf("is %d", c.Delivery.Lanes), "between 1 and 256, e.g. 8")
	}
	if c.Delivery.RetentionInterval.Duration < 0 {
		bad("delivery.retention_interval", "is negative", "e.g. 1m")
	}
	if c.Delivery.KeepSettled.Duration < 0 {
		bad("delivery.keep_settled", "is negative", "e.g. 168h")
	}
	if p := c.Runtime.GCPercent; p < MinGCPercent || p > MaxGCPercent {
		bad("runtime.gc_percent", fmt.Sprintf("is %d", p), fmt.Sprintf("between %d and %d, e.g. %d; to turn the collector off, run with GOGC=off and GOMEMLIMIT set", MinGCPercent, MaxGCPercent, DefaultGCPercent))
	}
	return errors.Join(errs...)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
