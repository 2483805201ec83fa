package identity_test

import (
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/borderlink/borderlink/internal/devca"
	"github.com/borderlink/borderlink/internal/identity"
)

// TestBundlesSet: Set replaces a domain's bundle (a CA rotation's union,
// then the old CA dropped), leaves other domains alone, and setting
// nothing leaves the bundle as it was.
func TestBundlesSet(t *testing.T) {
	p := newPKI(t)
	nl2, err := devca.NewCA(nlDomain, p.now)
	if err != nil {
		t.Fatal(err)
	}
	fromOld := issue(t, p.nl, nlGateway.String(), devca.LeafOptions{}).Certificate
	fromNew := issue(t, nl2, nlGateway.String(), devca.LeafOptions{}).Certificate
	fromSG := issue(t, p.sg, sgGateway.String(), devca.LeafOptions{}).Certificate
	b := p.bundles // NL: p.nl; SG: p.sg
	for _, step := range []struct {
		name         string
		set          []*x509.Certificate
		oldOK, newOK bool
	}{
		{"before", nil, true, false},
		{"both roots", []*x509.Certificate{p.nl.Cert, nl2.Cert}, true, true},
		{"new root only", []*x509.Certificate{nl2.Cert}, false, true},
		{"nothing", []*x509.Certificate{nil}, false, true},
	} {
		if step.name != "before" {
			b.Set(nlDomain, step.set...)
		}
		for _, c := range []struct {
			what  string
			chain [][]byte
			want  bool
		}{{"old root's", fromOld, step.oldOK}, {"new root's", fromNew, step.newOK}, {"SG's", fromSG, true}} {
			_, err := b.Verify(c.chain, x509.ExtKeyUsageClientAuth, time.Time{})
			if got := err == nil; got != c.want {
				t.Errorf("%s: Verify(%s certificate) error = %v; want ok = %v", step.name, c.what, err, c.want)
			}
			if err != nil && !errors.Is(err, identity.ErrUntrusted) {
				t.Errorf("%s: Verify(%s certificate) error = %v; want ErrUntrusted", step.name, c.what, err)
			}
		}
	}
	b.Set(xxDomain, p.xx.Cert)
	if !b.Has(xxDomain) {
		t.Error("Set on an unknown domain did not add it")
	}
}
