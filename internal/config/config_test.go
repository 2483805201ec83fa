package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/borderlink/borderlink/internal/config"
)

// fixture writes the files a valid config points at and returns the
// config text.
func fixture(t *testing.T) (dir, text string) {
	t.Helper()
	dir = t.TempDir()
	for _, f := range []string{"gw.pem", "gw-key.pem", "nl.pem", "sg.pem"} {
		os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600)
	}
	os.WriteFile(filepath.Join(dir, "pseudonym.key"), make([]byte, 32), 0o600)
	os.Mkdir(filepath.Join(dir, "policies"), 0o755)
	text = `trust_domain: nl.customs.example
listen: 127.0.0.1:7443
tls:
  cert_file: gw.pem
  key_file: gw-key.pem
trust_bundles:
  nl.customs.example: nl.pem
  sg.customs.example: sg.pem
peers:
  sg.customs.example:
    address: 127.0.0.1:7444
store:
  sqlite:
    path: data/gateway.db
policy:
  dir: policies
pseudonymization:
  key_file: pseudonym.key
`
	return dir, text
}

func TestParseValid(t *testing.T) {
	dir, text := fixture(t)
	path := filepath.Join(dir, "gateway.yaml")
	c, err := config.Parse(path, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.TLS.CertFile, filepath.Join(dir, "gw.pem"); got != want {
		t.Errorf("relative path resolved to %s, want %s", got, want)
	}
	if c.Limits.SearchDefault != config.DefaultSearchLimit || c.Limits.PeerTimeout.Duration != config.DefaultPeerTimeout {
		t.Errorf("defaults not applied: %+v", c.Limits)
	}
	if got, want := c.Audit.KeyFile, filepath.Join(dir, "data", config.DefaultAuditKeyName); got != want {
		t.Errorf("audit.key_file defaults to %s, want %s (next to the database)", got, want)
	}
	if c.Audit.CheckpointInterval.Duration != config.DefaultCheckpointInterval {
		t.Errorf("audit.checkpoint_interval defaults to %v", c.Audit.CheckpointInterval)
	}
	if c.Runtime.GCPercent != config.DefaultGCPercent {
		t.Errorf("runtime.gc_percent defaults to %d", c.Runtime.GCPercent)
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name     string
		from, to string
		want     []string
	}{
		{"unknown key", "listen: 127.0.0.1:7443", "listen: 127.0.0.1:7443\nlisten_addr: x", []string{"gateway.yaml", "listen_addr", "not found"}},
		{"bad domain", "trust_domain: nl.customs.example", "trust_domain: NL", []string{"gateway.yaml: trust_domain", `"NL"`, "e.g. nl.customs.example"}},
		{"bad listen", "listen: 127.0.0.1:7443", "listen: 7443", []string{"listen", "host:port"}},
		{"missing cert", "cert_file: gw.pem", "cert_file: missing.pem", []string{"tls.cert_file", "missing.pem", "certs dev"}},
		{"no own bundle", "  nl.customs.example: nl.pem\n", "", []string{"trust_bundles", "own trust domain"}},
		{"peer without bundle", "  sg.customs.example: sg.pem\n", "", []string{"peers.sg.customs.example", "add trust_bundles.sg.customs.example"}},
		{"peer bad address", "address: 127.0.0.1:7444", "address: sg", []string{"peers.sg.customs.example.address"}},
		{"short key", "key_file: pseudonym.key", "key_file: gw.pem", []string{"pseudonymization.key_file", "1 bytes", "head -c 32"}},
		{"bad duration", "  key_file: pseudonym.key\n", "  key_file: pseudonym.key\nlimits:\n  peer_timeout: soon\n", []string{`"soon"`, "duration"}},
		{"peer audit key malformed", "address: 127.0.0.1:7444", "address: 127.0.0.1:7444\n    audit_key: nonsense", []string{"peers.sg.customs.example.audit_key", "not a note verifier key"}},
		{"peer audit key of another log", "address: 127.0.0.1:7444", "address: 127.0.0.1:7444\n    audit_key: " + cnAuditKey, []string{"peers.sg.customs.example.audit_key", "cn.customs.example/borderlink/audit", "sg.customs.example/borderlink/audit"}},
		{"negative checkpoint interval", "  key_file: pseudonym.key\n", "  key_file: pseudonym.key\naudit:\n  checkpoint_interval: -1s\n", []string{"audit.checkpoint_interval", "negative"}},
		{"search limits", "  key_file: pseudonym.key\n", "  key_file: pseudonym.key\nlimits:\n  search_default: 5000\n", []string{"limits.search_default", "5000"}},
		{"retired audit key of another log", "address: 127.0.0.1:7444", "address: 127.0.0.1:7444\n    retired_audit_keys: [\"" + cnAuditKey + "\"]", []string{"peers.sg.customs.example.retired_audit_keys[0]", "cn.customs.example/borderlink/audit"}},
		{"metrics address", "  key_file: pseudonym.key\n", "  key_file: pseudonym.key\nmetrics:\n  listen: nine\n", []string{"metrics.listen", `"nine"`, "127.0.0.1:9464"}},
		{"delivery lanes", "  key_file: pseudonym.key\n", "  key_file: pseudonym.key\ndelivery:\n  lanes: 1000\n", []string{"delivery.lanes", "1000", "between 1 and 256"}},
		{"retention interval", "  key_file: pseudonym.key\n", "  key_file: pseudonym.key\ndelivery:\n  retention_interval: -1m\n", []string{"delivery.retention_interval", "negative"}},
		{"keep settled", "  key_file: pseudonym.key\n", "  key_file: pseudonym.key\ndelivery:\n  keep_settled: -1h\n", []string{"delivery.keep_settled", "negative"}},
		{"gc percent too low", "  key_file: pseudonym.key\n", "  key_file: pseudonym.key\nruntime:\n  gc_percent: 10\n", []string{"runtime.gc_percent", "is 10", "between 25 and 10000", "GOGC=off"}},
		{"gc percent negative", "  key_file: pseudonym.key\n", "  key_file: pseudonym.key\nruntime:\n  gc_percent: -1\n", []string{"runtime.gc_percent", "is -1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, text := fixture(t)
			mutated := strings.Replace(text, c.from, c.to, 1)
			if mutated == text {
				t.Fatalf("mutation %q did not apply", c.from)
			}
			_, err := config.Parse(filepath.Join(dir, "gateway.yaml"), []byte(mutated))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// cnAuditKey is a verifier key of cn.customs.example's audit log.
const cnAuditKey = "cn.customs.example/borderlink/audit+5bd1eed8+AY6p1b/jdlmyJD1iXRBNOhR7vDh9e/9ARRJzXwE8sVVL"

func TestDurationRoundTrip(t *testing.T) {
	d := config.Duration{Duration: 90 * time.Second}
	v, _ := d.MarshalYAML()
	if v != "1m30s" {
		t.Errorf("MarshalYAML = %v", v)
	}
}
