// Package audittest makes audit log keys for tests, so that each test
// package does not carry its own copy of the same three calls.
package audittest

import (
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/borderlink/borderlink/internal/audit"
)

// Key is a fresh Ed25519 audit log key: its encodings (as key files and
// configuration hold them) and the signer and verifier made from them.
type Key struct {
	Skey, Vkey string
	Signer     note.Signer
	Verifier   note.Verifier
}

// NewKey makes a key for origin, failing the test if it cannot.
func NewKey(t testing.TB, origin string) Key {
	t.Helper()
	skey, vkey, err := audit.GenerateKey(origin)
	if err != nil {
		t.Fatalf("generate audit key for %s: %v", origin, err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatalf("signer for %s: %v", origin, err)
	}
	v, err := audit.NewVerifier(vkey, origin)
	if err != nil {
		t.Fatalf("verifier for %s: %v", origin, err)
	}
	return Key{Skey: skey, Vkey: vkey, Signer: s, Verifier: v}
}
