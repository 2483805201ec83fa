package vault

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Operations a Client counts failures of (Stats.Errors keys, the
// "operation" label of borderlink_vault_errors_total). The set is fixed so
// that a metric label never takes a value from a path.
const (
	OpHealth       = "health"        // sys/health (at start)
	OpLogin        = "login"         // auth/<mount>/login
	OpTokenRenew   = "token_renew"   // auth/token/renew-self (the lifetime watcher)
	OpTokenLookup  = "token_lookup"  // auth/token/lookup-self (token_env)
	OpCapabilities = "capabilities"  // sys/capabilities-self (explaining a denial)
	OpPKIIssue     = "pki_issue"     // <pki>/issue/<role>
	OpPKIIssuers   = "pki_issuers"   // <pki>/issuers, <pki>/issuer/<ref>/..., <pki>/ca...
	OpTransitSign  = "transit_sign"  // <transit>/sign/<key>
	OpTransitKey   = "transit_key"   // <transit>/keys/<key>
	OpTransitOther = "transit_other" // any other transit path (hmac, verify, ...)
	OpKVRead       = "kv_read"       // <kv>/data/<path>
	OpOther        = "other"         // anything else
)

// Operations lists every operation, in a stable order.
var Operations = []string{OpHealth, OpLogin, OpTokenRenew, OpTokenLookup, OpCapabilities,
	OpPKIIssue, OpPKIIssuers, OpTransitSign, OpTransitKey, OpTransitOther, OpKVRead, OpOther}

// Stats is what a Client has seen of Vault since it was made: enough for
// an operator to tell a sealed or unreachable Vault, or a policy that lost
// a path, from a gateway that simply has nothing to ask.
type Stats struct {
	// Errors counts failed requests by operation (every key of
	// Operations is present). A failure is a transport error (refused,
	// reset, timed out) or an HTTP error status (403 denied, 404, 503
	// sealed, ...). Each attempt counts: a request retried after a
	// transport error and then answered counts one error.
	Errors map[string]uint64
	// LastSuccess is when Vault last answered a request successfully;
	// zero if it never has.
	LastSuccess time.Time
	// Logins counts successful logins (1 after New).
	Logins int
}

// stats is a Client's counters, shared by its transport and its methods.
type stats struct {
	mu          sync.Mutex
	errors      map[string]uint64
	lastSuccess time.Time
	logins      int
}

func newStats() *stats {
	s := &stats{errors: make(map[string]uint64, len(Operations))}
	for _, op := range Operations {
		s.errors[op] = 0
	}
	return s
}

func (s *stats) record(op string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ok {
		s.lastSuccess = time.Now()
		return
	}
	s.errors[op]++
}

func (s *stats) login() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.logins++
	return s.logins
}

func (s *stats) snapshot() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := Stats{Errors: make(map[string]uint64, len(s.errors)), LastSuccess: s.lastSuccess, Logins: s.logins}
	for k, v := range s.errors {
		out.Errors[k] = v
	}
	return out
}

// Stats returns the client's counts of failed requests and the time of
// its last successful one. It is cheap and safe for concurrent use (a
// metrics scrape calls it).
func (c *Client) Stats() Stats { return c.stats.snapshot() }

// countingTransport records the outcome of every HTTP request the API
// client makes (calls of this package, the lifetime watcher's renewals,
// logins made with clones) by operation. Counting here rather than in
// each method means no call can forget to, including those of files this
// package does not wrap (transit.go).
type countingTransport struct {
	next  http.RoundTripper
	stats *stats
	op    func(path string) string
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	path := strings.TrimPrefix(req.URL.Path, "/v1/")
	if path == "sys/health" {
		// Answered with 200 or 299 whatever Vault's state (the API asks
		// so); checkHealth records what the answer meant.
		return resp, err
	}
	switch {
	case err != nil:
		// The caller giving up is not Vault failing; a deadline is.
		if !errors.Is(err, context.Canceled) {
			t.stats.record(t.op(path), false)
		}
	case resp.StatusCode >= 400:
		t.stats.record(t.op(path), false)
	case resp.StatusCode < 300:
		t.stats.record(t.op(path), true)
	}
	return resp, err
}

// operation classifies an API path (without /v1/) by the mounts in the
// client's configuration. Mounts may contain slashes ("pki/nl").
func (c *Client) operation(path string) string {
	under := func(mount string) (string, bool) {
		if mount == "" {
			return "", false
		}
		return strings.CutPrefix(path, mount+"/")
	}
	switch {
	case path == "auth/token/renew-self" || path == "auth/token/renew":
		return OpTokenRenew
	case path == "auth/token/lookup-self":
		return OpTokenLookup
	case path == "sys/capabilities-self":
		return OpCapabilities
	case path == "sys/health":
		return OpHealth
	case strings.HasPrefix(path, "auth/") && strings.HasSuffix(path, "/login"):
		return OpLogin
	}
	if rest, ok := under(c.cfg.PKI.Mount); ok {
		switch {
		case strings.HasPrefix(rest, "issue/"):
			return OpPKIIssue
		case rest == "issuers" || strings.HasPrefix(rest, "issuer/") || rest == "ca" || strings.HasPrefix(rest, "ca/") ||
			rest == "ca_chain" || rest == "cert/ca_chain":
			return OpPKIIssuers
		}
	}
	if rest, ok := under(c.cfg.Transit.Mount); ok {
		switch {
		case strings.HasPrefix(rest, "sign/"):
			return OpTransitSign
		case strings.HasPrefix(rest, "keys/"):
			return OpTransitKey
		default:
			return OpTransitOther
		}
	}
	if rest, ok := under(c.cfg.KV.Mount); ok && strings.HasPrefix(rest, "data/") {
		return OpKVRead
	}
	return OpOther
}
