package vault

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/borderlink/borderlink/internal/keys"
)

// DeniedError is Vault refusing a request (HTTP 403): a missing policy, a
// wrong role, a development token that is no longer valid. It wraps
// keys.ErrDenied. (An AppRole token that Vault no longer accepts is not a
// DeniedError: the client logs in again, see wrap.)
type DeniedError struct {
	// Path is the API path refused, e.g. "transit/sign/borderlink-audit".
	Path string
	// Capability is what the request needed on Path: read, update, list
	// or delete.
	Capability string
	// Have is what the token holds on Path according to
	// sys/capabilities-self ("deny" when nothing); nil if Vault would not
	// say (an invalid token cannot ask).
	Have []string
	// Messages are Vault's error strings.
	Messages []string
}

func (e *DeniedError) Error() string {
	have := "unknown"
	if e.Have != nil {
		have = strings.Join(e.Have, ",")
	}
	return fmt.Sprintf("vault: permission denied: %q capability on path %q is missing (token has: %s; vault said: %s); grant it in the gateway's Vault policy",
		e.Capability, e.Path, have, strings.Join(e.Messages, "; "))
}

// Unwrap makes errors.Is(err, keys.ErrDenied) true.
func (e *DeniedError) Unwrap() error { return keys.ErrDenied }

// capabilityFor is the policy capability an HTTP method needs. Vault
// distinguishes create from update by whether the path exists; every write
// Borderlink makes (issue, sign, login) is an update.
func capabilityFor(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead:
		return "read"
	case "LIST":
		return "list"
	case http.MethodDelete:
		return "delete"
	case http.MethodPatch:
		return "patch"
	default:
		return "update"
	}
}

// apiPath is the path of a request URL under /v1/, without query.
func apiPath(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return rawURL
	}
	p := strings.TrimPrefix(u.Path, "/v1/")
	return p
}

// wrap turns an error from the Vault API into one that says what failed,
// where and whether retrying could help: it wraps keys.ErrUnavailable for
// an unreachable or sealed Vault and for an AppRole token Vault no longer
// accepts (a re-login is under way), is a *DeniedError for any other 403,
// and names Vault's address and the path otherwise.
func (c *Client) wrap(op, path string, err error) error {
	if err == nil {
		return nil
	}
	var re *vaultapi.ResponseError
	if errors.As(err, &re) {
		if re.URL != "" {
			path = apiPath(re.URL)
		}
		switch {
		case re.StatusCode == http.StatusForbidden && mentions(re.Errors, "invalid token") && c.cfg.Auth.AppRole != nil:
			// The token itself is no longer accepted: it expired while
			// Vault was sealed or unreachable, or was revoked. No policy
			// is at fault and a new login fixes it: log in again at once
			// rather than at the next backoff step, and say the call may
			// be retried (ErrUnavailable), not that a grant is missing.
			c.requestRelogin()
			return fmt.Errorf("vault %s: %s %s: %w: the token was rejected (expired or revoked); logging in again, retry the call (vault said: %s)",
				c.api.Address(), op, path, keys.ErrUnavailable, strings.Join(cleanMessages(re.Errors), "; "))
		case re.StatusCode == http.StatusForbidden:
			d := &DeniedError{Path: path, Capability: capabilityFor(re.HTTPMethod), Messages: cleanMessages(re.Errors)}
			var rejected bool
			d.Have, rejected = c.capabilitiesSelf(path)
			if rejected {
				// The token itself is no longer accepted (revoked,
				// expired): log in again rather than wait for renewal.
				c.requestRelogin()
			}
			return fmt.Errorf("vault %s: %s: %w", c.api.Address(), op, d)
		case re.StatusCode == http.StatusServiceUnavailable && mentions(re.Errors, "sealed"):
			return fmt.Errorf("vault %s: %s: %w: vault is sealed (unseal it)", c.api.Address(), op, keys.ErrUnavailable)
		case re.StatusCode >= 500 || re.StatusCode == http.StatusTooManyRequests:
			return fmt.Errorf("vault %s: %s %s: %w: %w", c.api.Address(), op, path, keys.ErrUnavailable, &responseError{re})
		}
		return fmt.Errorf("vault %s: %s %s: %w", c.api.Address(), op, path, &responseError{re})
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("vault %s: %s %s: %w", c.api.Address(), op, path, err)
	}
	// Anything else is transport: refused, reset, DNS, TLS, timeout. The
	// URL (with the health check's query) adds nothing to the address.
	if ue, ok := errors.AsType[*url.Error](err); ok {
		err = ue.Err
	}
	return fmt.Errorf("vault %s: %s %s: %w: cannot reach Vault: %w", c.api.Address(), op, path, keys.ErrUnavailable, err)
}

// responseError is a Vault API error on one line: "HTTP 400: invalid
// role or secret ID". The original stays reachable with errors.As.
type responseError struct{ re *vaultapi.ResponseError }

func (e *responseError) Error() string {
	return fmt.Sprintf("HTTP %d: %s", e.re.StatusCode, strings.Join(cleanMessages(e.re.Errors), "; "))
}

func (e *responseError) Unwrap() error { return e.re }

// cleanMessages flattens Vault's multierror text ("1 error occurred:\n\t*
// permission denied\n\n") into its messages.
func cleanMessages(msgs []string) []string {
	var out []string
	for _, m := range msgs {
		for _, line := range strings.Split(m, "\n") {
			line = strings.TrimSpace(line)
			line = strings.TrimSpace(strings.TrimPrefix(line, "* "))
			if line == "" || strings.HasSuffix(line, "error occurred:") || strings.HasSuffix(line, "errors occurred:") {
				continue
			}
			out = append(out, line)
		}
	}
	return out
}

// mentions reports whether one of Vault's error messages contains word
// (lower case).
func mentions(msgs []string, word string) bool {
	for _, m := range msgs {
		if strings.Contains(strings.ToLower(m), word) {
			return true
		}
	}
	return false
}

// capabilitiesSelf asks Vault what the current token may do on path, to
// say in a denial what is missing. Any failure gives nil; rejected reports
// that Vault refused the token itself (a 403 on a path every token may use).
func (c *Client) capabilitiesSelf(path string) (caps []string, rejected bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	caps, err := c.api.Sys().CapabilitiesSelfWithContext(ctx, path)
	if err != nil {
		var re *vaultapi.ResponseError
		return nil, errors.As(err, &re) && re.StatusCode == http.StatusForbidden
	}
	return caps, false
}
