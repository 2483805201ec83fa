package release

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
)

// MinKeySize is the shortest pseudonymisation key NewPseudonymizer accepts.
// Pseudonymised values (tax IDs, names) are guessable; only the key stands
// between a recipient and a dictionary attack, so it gets SHA-256's full
// 256 bits.
const MinKeySize = 32

const (
	// pseudonymDomain separates this use of the key from any other.
	pseudonymDomain = "borderlink/pseudonym/v1\x00"
	pseudonymPrefix = "ps_"
	// pseudonymBytes of the HMAC are kept: 160 bits, 32 base32 characters,
	// so the encoding never needs padding.
	pseudonymBytes = 20
	lowerBase32    = "abcdefghijklmnopqrstuvwxyz234567"
)

// Pseudonymizer turns a value into a stable pseudonym for one recipient: the
// same key, recipient and value always give the same pseudonym, and different
// recipients get unrelated pseudonyms, so two partners cannot join their
// releases on a pseudonym.
//
// Construction (partners store pseudonyms and link on them, so this is a
// contract; changing it needs a new domain string):
//
//	per-recipient subkey = HMAC-SHA256(key, "borderlink/pseudonym/v1\x00" + recipient)
//	pseudonym = "ps_" + lowercase unpadded base32 of the first 20 bytes of HMAC-SHA256(subkey, value)
//
// where \x00 is one zero byte, strings are their UTF-8 bytes, and base32 is
// the RFC 4648 standard alphabet in lower case (20 bytes give exactly 32
// characters, so there is never padding to strip).
//
// The field path is deliberately not an input: the same tax ID released as
// importer and as exporter must give the same pseudonym, so the recipient can
// link the two without learning the ID.
//
// A Pseudonymizer is immutable and safe for concurrent use.
type Pseudonymizer struct {
	key []byte
	enc *base32.Encoding
}

// NewPseudonymizer returns a Pseudonymizer for key, which must be at least
// MinKeySize bytes of secret randomness. The key is copied.
func NewPseudonymizer(key []byte) (*Pseudonymizer, error) {
	if len(key) < MinKeySize {
		return nil, fmt.Errorf("release: pseudonymizer key is %d bytes, need at least %d", len(key), MinKeySize)
	}
	return &Pseudonymizer{
		key: append([]byte(nil), key...),
		enc: base32.NewEncoding(lowerBase32).WithPadding(base32.NoPadding),
	}, nil
}

// Pseudonym returns the pseudonym of value for recipient (a SPIFFE ID).
func (p *Pseudonymizer) Pseudonym(recipient, value string) string {
	return p.forRecipient(recipient)(value)
}

// forRecipient derives the recipient's subkey once, so that a release with
// many pseudonymised values pays for it once. The returned function reuses
// one HMAC state and must not be shared between goroutines.
func (p *Pseudonymizer) forRecipient(recipient string) func(value string) string {
	mac := hmac.New(sha256.New, p.key)
	mac.Write([]byte(pseudonymDomain))
	mac.Write([]byte(recipient))
	h := hmac.New(sha256.New, mac.Sum(nil))
	var sum [sha256.Size]byte
	return func(value string) string {
		h.Reset()
		h.Write([]byte(value))
		return pseudonymPrefix + p.enc.EncodeToString(h.Sum(sum[:0])[:pseudonymBytes])
	}
}
