package keys

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/borderlink/borderlink/internal/ctxwait"
	"github.com/borderlink/borderlink/internal/identity"
)

// CertIssuer issues a new certificate for the gateway (leaf first, with
// its private key and Leaf set).
type CertIssuer interface {
	IssueCertificate(ctx context.Context) (tls.Certificate, error)
}

// CertIssuerFunc adapts a function to CertIssuer.
type CertIssuerFunc func(ctx context.Context) (tls.Certificate, error)

// IssueCertificate calls f.
func (f CertIssuerFunc) IssueCertificate(ctx context.Context) (tls.Certificate, error) {
	return f(ctx)
}

// RenewOptions tune RenewingKeyPair.
type RenewOptions struct {
	// Logger receives renewals (Info), failed renewals while the current
	// certificate is valid (Warn) and after it expired (Error); nil
	// discards.
	Logger *slog.Logger
	// OnRenew, if set, is called after each swap with the new leaf.
	OnRenew func(leaf *x509.Certificate)
	// MaxRetryDelay caps the wait between failed renewals; default 1m.
	MaxRetryDelay time.Duration
}

// RenewAt is when a certificate should be replaced: two thirds into its
// validity period, so that a renewal that fails has a third of the
// lifetime (20 minutes for a 1 h certificate) to succeed while the
// current one still serves.
func RenewAt(leaf *x509.Certificate) time.Time {
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	return leaf.NotBefore.Add(life * 2 / 3)
}

// RenewingKeyPair issues a certificate, returns a KeyPair holding it and
// keeps renewing it in the background at RenewAt until stop is called.
// Each renewal is swapped in with KeyPair.Set: connections already
// established keep the certificate they were made with, new handshakes
// present the new one, so no call fails because of a renewal.
//
// The first issuance happens before it returns and its error is returned:
// a gateway without a certificate must not start. Later failures are
// retried with backoff; the current certificate keeps serving until it
// expires, with a warning on every failed attempt.
func RenewingKeyPair(ctx context.Context, issuer CertIssuer, o RenewOptions) (kp *identity.KeyPair, stop func(), err error) {
	cert, err := issuer.IssueCertificate(ctx)
	if err != nil {
		return nil, nil, err
	}
	if cert.Leaf == nil {
		return nil, nil, errors.New("keys: issued certificate has no parsed leaf")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxRetryDelay <= 0 {
		o.MaxRetryDelay = time.Minute
	}
	kp = identity.NewKeyPair(cert)
	o.Logger.Info("certificate issued", "serial", cert.Leaf.SerialNumber.Text(16), "not_after", cert.Leaf.NotAfter, "renew_at", RenewAt(cert.Leaf))
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		renewLoop(rctx, kp, issuer, o)
	}()
	return kp, func() { cancel(); <-done }, nil
}

func renewLoop(ctx context.Context, kp *identity.KeyPair, issuer CertIssuer, o RenewOptions) {
	for {
		leaf := kp.Certificate().Leaf
		if !ctxwait.Until(ctx, RenewAt(leaf)) {
			return
		}
		for attempt := 1; ; attempt++ {
			cert, err := issuer.IssueCertificate(ctx)
			if err == nil && cert.Leaf == nil {
				err = errors.New("issued certificate has no parsed leaf")
			}
			if err == nil {
				kp.Set(cert)
				o.Logger.Info("certificate renewed", "serial", cert.Leaf.SerialNumber.Text(16), "not_after", cert.Leaf.NotAfter, "renew_at", RenewAt(cert.Leaf))
				if o.OnRenew != nil {
					o.OnRenew(cert.Leaf)
				}
				break
			}
			if ctx.Err() != nil {
				return
			}
			left := time.Until(leaf.NotAfter)
			if left > 0 {
				o.Logger.Warn("certificate renewal failed; serving with the current certificate until it expires",
					"attempt", attempt, "not_after", leaf.NotAfter, "error", err)
			} else {
				o.Logger.Error("certificate renewal failed and the current certificate has expired; peers will refuse this gateway",
					"attempt", attempt, "expired", leaf.NotAfter, "error", err)
			}
			if !ctxwait.Until(ctx, time.Now().Add(retryDelay(left, attempt, o.MaxRetryDelay))) {
				return
			}
		}
	}
}

// retryDelay backs off exponentially from 1 s, never beyond a tenth of the
// remaining lifetime (so there are several tries before expiry) nor max.
// Once the certificate has expired every minute counts: it retries every
// 5 s (or max, if smaller).
func retryDelay(left time.Duration, attempt int, maxDelay time.Duration) time.Duration {
	if left <= 0 {
		return min(5*time.Second, maxDelay)
	}
	d := min(time.Second<<min(attempt-1, 10), left/10, maxDelay)
	return max(d, 100*time.Millisecond)
}

// ErrCertificate is wrapped when an issued certificate is unusable.
var ErrCertificate = errors.New("keys: unusable certificate")

// CheckCertificate checks that cert's leaf names want, so a misconfigured
// issuer fails at start rather than at every peer's handshake.
func CheckCertificate(cert tls.Certificate, want identity.ID) error {
	if cert.Leaf == nil {
		return fmt.Errorf("%w: no parsed leaf", ErrCertificate)
	}
	got, err := identity.FromCertificate(cert.Leaf)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCertificate, err)
	}
	if got != want {
		return fmt.Errorf("%w: names %s, want %s", ErrCertificate, got, want)
	}
	return nil
}
