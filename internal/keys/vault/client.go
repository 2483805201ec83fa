// Package vault takes a gateway's key material from HashiCorp Vault:
//
//   - the gateway's mTLS certificate from the PKI engine
//     (<pki>/issue/<role>, SPIFFE ID as the URI SAN), short-lived and
//     renewed at two thirds of its lifetime (see keys.RenewingKeyPair);
//     the own-domain trust bundle from the PKI mount's issuers, re-read at
//     each renewal so that a CA rotation is followed (Material);
//   - a note.Signer for audit checkpoints and receipts backed by a transit
//     Ed25519 key, whose private key never leaves Vault;
//   - the pseudonymisation key and other secrets from KV v2.
//
// A Client logs in with AppRole (or, for development, a token from an
// environment variable), keeps its token renewed with the API's
// LifetimeWatcher and logs in again when renewal fails.
//
// Errors say what to do: an unreachable or sealed Vault wraps
// keys.ErrUnavailable and names the address; a refused request is a
// *DeniedError naming the path and the capability the policy lacks. A
// call fails fast: an answer from Vault (503 sealed included) is never
// retried, a transport error once. Failures are counted by operation
// (Client.Stats) for the gateway's metrics.
package vault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/borderlink/borderlink/internal/ctxwait"
	"github.com/borderlink/borderlink/internal/keys"
)

// Options are a Client's optional dependencies.
type Options struct {
	// Logger receives renewal and re-login events; nil discards.
	Logger *slog.Logger
	// Getenv reads the secret ID or token environment variable; nil is
	// os.Getenv.
	Getenv func(string) string
}

// Client is a logged-in connection to Vault. It is safe for concurrent use.
// Close stops its token renewal.
type Client struct {
	api     *vaultapi.Client
	cfg     keys.VaultConfig
	timeout time.Duration
	ttl     time.Duration
	logger  *slog.Logger
	getenv  func(string) string

	stats *stats

	relogin chan struct{} // a call found the token rejected
	stop    context.CancelFunc
	done    chan struct{}
}

// New checks that Vault at cfg.Address is reachable and unsealed, logs in
// and starts renewing the token in the background. It fails, naming the
// address, if Vault cannot be reached, is sealed, or refuses the login: a
// gateway configured for Vault does not start without it.
func New(ctx context.Context, cfg keys.VaultConfig, opts Options) (*Client, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	timeout, _ := cfg.Timeout.Duration()
	ttl, _ := cfg.PKI.TTL.Duration()
	vc := vaultapi.DefaultConfig()
	if vc.Error != nil {
		return nil, fmt.Errorf("vault: %w", vc.Error)
	}
	vc.Address = cfg.Address
	vc.Timeout = timeout
	vc.MaxRetries, vc.CheckRetry, vc.Backoff = maxRetries, retryPolicy, retryBackoff
	if cfg.CACert != "" {
		if err := vc.ConfigureTLS(&vaultapi.TLSConfig{CACert: cfg.CACert}); err != nil {
			return nil, fmt.Errorf("vault.ca_cert %s: %w", cfg.CACert, err)
		}
	}
	c := &Client{cfg: cfg, timeout: timeout, ttl: ttl, logger: opts.Logger, getenv: opts.Getenv, relogin: make(chan struct{}, 1), stats: newStats()}
	// Wrapped after ConfigureTLS, which needs the *http.Transport itself.
	vc.HttpClient.Transport = &countingTransport{next: vc.HttpClient.Transport, stats: c.stats, op: c.operation}
	api, err := vaultapi.NewClient(vc)
	if err != nil {
		return nil, fmt.Errorf("vault %s: %w", cfg.Address, err)
	}
	// NewClient picks up VAULT_TOKEN and friends from the environment;
	// the gateway uses only what its configuration names.
	api.ClearToken()
	api.ClearNamespace()
	c.api = api
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	if c.getenv == nil {
		c.getenv = os.Getenv
	}
	if err := c.checkHealth(ctx); err != nil {
		return nil, err
	}
	secret, err := c.login(ctx)
	if err != nil {
		return nil, err
	}
	rctx, stop := context.WithCancel(context.Background())
	c.stop, c.done = stop, make(chan struct{})
	go func() {
		defer close(c.done)
		c.keepToken(rctx, secret)
	}()
	return c, nil
}

// Close stops token renewal and waits for it. It does not revoke the
// token: a replica restarting quickly can do without a fresh login storm,
// and the token expires on its own.
func (c *Client) Close() error {
	c.stop()
	<-c.done
	return nil
}

// API returns the underlying client, for calls this package does not wrap.
func (c *Client) API() *vaultapi.Client { return c.api }

// Address is Vault's address.
func (c *Client) Address() string { return c.api.Address() }

// Logins returns how many times the client has logged in (1 after New).
func (c *Client) Logins() int { return c.stats.snapshot().Logins }

// Retries. A sealed Vault answers 503 "Vault is sealed" at once, and so
// does a standby or an overloaded one: retrying an HTTP answer only makes
// the caller wait (the API's default, two retries with 1-1.5 s backoff,
// made a call to a sealed Vault take about 4 s, and every exchange whose
// receipt could not be signed waited that long). Every caller already
// retries at its own pace (certificate renewal, re-login, the
// checkpointer), so an answer is final. A transport error is retried
// once, shortly: a write (sign, issue) on a keep-alive connection the
// server or a load balancer has just closed fails without ever reaching
// Vault, and net/http does not replay writes itself.
const (
	maxRetries = 1
	retryWait  = 100 * time.Millisecond
)

// retryPolicy is the API's CheckRetry: no retry once Vault has answered or
// the caller's context is done; for a transport error, the API's own
// judgement (it does not retry certificate or scheme errors).
func retryPolicy(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err == nil {
		return false, nil
	}
	return vaultapi.DefaultRetryPolicy(ctx, resp, err)
}

func retryBackoff(_, _ time.Duration, _ int, _ *http.Response) time.Duration { return retryWait }

func (c *Client) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeout)
}

func (c *Client) checkHealth(ctx context.Context) error {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	h, err := c.api.Sys().HealthWithContext(ctx)
	c.stats.record(OpHealth, err == nil && h.Initialized && !h.Sealed)
	if err != nil {
		return c.wrap("health check", "sys/health", err)
	}
	switch {
	case !h.Initialized:
		return fmt.Errorf("vault %s: %w: not initialised (run `vault operator init`)", c.Address(), keys.ErrUnavailable)
	case h.Sealed:
		return fmt.Errorf("vault %s: %w: vault is sealed (unseal it, then start the gateway)", c.Address(), keys.ErrUnavailable)
	}
	return nil
}

// login logs in with the configured method, sets the client's token and
// returns the login secret (for the lifetime watcher; nil if the token
// needs no renewal).
func (c *Client) login(ctx context.Context) (*vaultapi.Secret, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	var secret *vaultapi.Secret
	if a := c.cfg.Auth.AppRole; a != nil {
		secretID, err := c.secretID(a)
		if err != nil {
			return nil, err
		}
		path := "auth/" + c.cfg.Auth.Mount + "/login"
		// Login must not send a stale token; a clone without one does it.
		lc, err := c.api.Clone()
		if err != nil {
			return nil, fmt.Errorf("vault %s: %w", c.Address(), err)
		}
		lc.ClearToken()
		s, err := lc.Logical().WriteWithContext(ctx, path, map[string]any{"role_id": a.RoleID, "secret_id": secretID})
		if err != nil {
			return nil, c.wrap("approle login (check vault.auth.approle.role_id and the secret ID)", path, err)
		}
		if s == nil || s.Auth == nil || s.Auth.ClientToken == "" {
			return nil, fmt.Errorf("vault %s: approle login at %s returned no token", c.Address(), path)
		}
		c.api.SetToken(s.Auth.ClientToken)
		secret = s
	} else {
		tok := strings.TrimSpace(c.getenv(c.cfg.Auth.TokenEnv))
		if tok == "" {
			return nil, fmt.Errorf("vault.auth.token_env: environment variable %s is empty (export a Vault token in it)", c.cfg.Auth.TokenEnv)
		}
		c.api.SetToken(tok)
		s, err := c.api.Auth().Token().LookupSelfWithContext(ctx)
		if err != nil {
			return nil, c.wrap("look up token from "+c.cfg.Auth.TokenEnv, "auth/token/lookup-self", err)
		}
		renewable, _ := s.TokenIsRenewable()
		ttl, _ := s.TokenTTL()
		if renewable && ttl > 0 {
			secret = &vaultapi.Secret{Auth: &vaultapi.SecretAuth{ClientToken: tok, Renewable: true, LeaseDuration: int(ttl.Seconds())}}
		}
	}
	n := c.stats.login()
	c.logger.Info("vault login", "address", c.Address(), "method", c.method(), "logins", n)
	return secret, nil
}

func (c *Client) method() string {
	if c.cfg.Auth.AppRole != nil {
		return "approle"
	}
	return "token"
}

// secretID reads the AppRole secret ID afresh at each login, so that an
// orchestrator may replace the file.
func (c *Client) secretID(a *keys.VaultAppRole) (string, error) {
	if a.SecretIDFile != "" {
		b, err := os.ReadFile(a.SecretIDFile)
		if err != nil {
			return "", fmt.Errorf("vault.auth.approle.secret_id_file: %w", err)
		}
		s := strings.TrimSpace(string(b))
		if s == "" {
			return "", fmt.Errorf("vault.auth.approle.secret_id_file: %s is empty", a.SecretIDFile)
		}
		return s, nil
	}
	s := strings.TrimSpace(c.getenv(a.SecretIDEnv))
	if s == "" {
		return "", fmt.Errorf("vault.auth.approle.secret_id_env: environment variable %s is empty", a.SecretIDEnv)
	}
	return s, nil
}

// keepToken renews the token with a LifetimeWatcher until ctx ends. When
// renewal stops (an error, or the token reached its max TTL) it logs in
// again, retrying with backoff while Vault is unreachable. A development
// token cannot be replaced: when it runs out, calls start failing with a
// DeniedError and this logs why.
func (c *Client) keepToken(ctx context.Context, secret *vaultapi.Secret) {
	for {
		var err error
		switch {
		case secret == nil || secret.Auth == nil:
			return // a development token that does not expire
		case !secret.Auth.Renewable:
			// Log in again at two thirds of the token's life.
			life := time.Duration(secret.Auth.LeaseDuration) * time.Second * 2 / 3
			select {
			case <-ctx.Done():
				return
			case <-c.relogin:
				err = errors.New("vault rejected the token")
			case <-time.After(max(life, time.Second)):
				err = errors.New("token is not renewable")
			}
		default:
			err = c.watch(ctx, secret)
		}
		if ctx.Err() != nil {
			return
		}
		if c.cfg.Auth.AppRole == nil {
			c.logger.Error("vault token can no longer be renewed; restart the gateway with a new token", "env", c.cfg.Auth.TokenEnv, "error", err)
			return
		}
		c.logger.Warn("vault token renewal stopped; logging in again", "error", err)
		if secret = c.relogInLoop(ctx); secret == nil {
			return
		}
	}
}

// Re-login pacing while Vault is unreachable or sealed: backoff from
// reloginMinDelay doubling to reloginMaxDelay, but a call that finds the
// token rejected (typically the first call after Vault was unsealed, the
// token having expired meanwhile) cuts the wait short, no sooner than
// reloginMinDelay after the previous attempt.
const (
	reloginMinDelay = time.Second
	reloginMaxDelay = 30 * time.Second
)

// relogInLoop logs in until it succeeds (returning the login secret) or
// ctx ends (returning nil).
func (c *Client) relogInLoop(ctx context.Context) *vaultapi.Secret {
	for delay := reloginMinDelay; ; delay = min(2*delay, reloginMaxDelay) {
		attempt := time.Now()
		s, err := c.login(ctx)
		if err == nil {
			// A request made before this login is stale: the calls that
			// found the old token rejected will use the new one.
			select {
			case <-c.relogin:
			default:
			}
			return s
		}
		if ctx.Err() != nil {
			return nil
		}
		c.logger.Warn("vault login failed; retrying", "retry_in", delay, "error", err)
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		case <-c.relogin:
			timer.Stop()
			if !ctxwait.Sleep(ctx, time.Until(attempt.Add(reloginMinDelay))) {
				return nil
			}
		}
	}
}

// requestRelogin asks keepToken to log in again; it never blocks. Only
// AppRole clients can.
func (c *Client) requestRelogin() {
	if c.relogin == nil || c.cfg.Auth.AppRole == nil {
		return
	}
	select {
	case c.relogin <- struct{}{}:
	default:
	}
}

// watch runs one LifetimeWatcher until it stops (returning its error, nil
// when the token reached its max TTL) or ctx ends.
func (c *Client) watch(ctx context.Context, secret *vaultapi.Secret) error {
	// ErrorOnErrors: a failed renewal ends the watcher at once and the
	// caller logs in again, instead of retrying renewal until the token
	// expires. (A revoked token is reported by Vault as "permission
	// denied", which the watcher treats as not renewable: it is replaced
	// shortly before it would have expired.)
	w, err := c.api.NewLifetimeWatcher(&vaultapi.LifetimeWatcherInput{Secret: secret, RenewBehavior: vaultapi.RenewBehaviorErrorOnErrors})
	if err != nil {
		return err
	}
	go w.Start()
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-w.DoneCh():
			if err == nil {
				err = errors.New("token reached its max TTL")
			}
			return err
		case <-c.relogin:
			return errors.New("vault rejected the token")
		case r := <-w.RenewCh():
			if r != nil && r.Secret != nil && r.Secret.Auth != nil {
				c.logger.Debug("vault token renewed", "ttl_seconds", r.Secret.Auth.LeaseDuration)
			}
		}
	}
}
