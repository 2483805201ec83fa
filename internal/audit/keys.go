package audit

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// A key file holds one note signer key on one line, as note.GenerateKey
// writes it: "PRIVATE+KEY+<name>+<hash>+<base64(0x01 || ed25519 seed)>".
// The matching verifier key ("<name>+<hash>+<base64(0x01 || public key)>")
// is what partners put in peers.<domain>.audit_key and auditors pass to
// `borderlink audit verify --key`.

// GenerateKey returns a new signer key and its verifier key for origin.
func GenerateKey(origin string) (skey, vkey string, err error) {
	return note.GenerateKey(rand.Reader, origin)
}

// VerifierKey derives the verifier key from a signer key.
func VerifierKey(skey string) (string, error) {
	parts := strings.SplitN(strings.TrimSpace(skey), "+", 5)
	if len(parts) != 5 || parts[0] != "PRIVATE" || parts[1] != "KEY" {
		return "", errors.New("not a note signer key (PRIVATE+KEY+name+hash+key)")
	}
	b, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(b) != 1+ed25519.SeedSize || b[0] != 1 {
		return "", errors.New("not an Ed25519 note signer key")
	}
	pub := ed25519.NewKeyFromSeed(b[1:]).Public().(ed25519.PublicKey)
	return note.NewEd25519VerifierKey(parts[2], pub)
}

// LoadOrCreateKey reads the signer key in path. If the file does not exist
// and create is set, it generates a key for origin, writes it (mode 0600,
// never overwriting) and writes the verifier key to path+".pub". The key
// must be named origin. It returns the signer and its verifier key.
func LoadOrCreateKey(path, origin string, create bool) (Signer, string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && create {
		skey, vkey, gerr := GenerateKey(origin)
		if gerr != nil {
			return nil, "", fmt.Errorf("audit key %s: generate: %w", path, gerr)
		}
		f, oerr := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if oerr != nil {
			return nil, "", fmt.Errorf("audit key %s: %w", path, oerr)
		}
		_, werr := f.WriteString(skey + "\n")
		if serr := f.Sync(); werr == nil {
			werr = serr
		}
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return nil, "", fmt.Errorf("audit key %s: write: %w", path, werr)
		}
		if err := os.WriteFile(path+".pub", []byte(vkey+"\n"), 0o644); err != nil {
			return nil, "", fmt.Errorf("audit key %s.pub: %w", path, err)
		}
		b, err = []byte(skey), nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("audit key %s: %w", path, err)
	}
	skey := strings.TrimSpace(string(b))
	s, err := note.NewSigner(skey)
	if err != nil {
		return nil, "", fmt.Errorf("audit key %s: not a note signer key: %w", path, err)
	}
	if s.Name() != origin {
		return nil, "", fmt.Errorf("audit key %s: key is named %q, want %q", path, s.Name(), origin)
	}
	vkey, err := VerifierKey(skey)
	if err != nil {
		return nil, "", fmt.Errorf("audit key %s: %w", path, err)
	}
	return s, vkey, nil
}

// NewVerifier parses a verifier key and checks that it is named origin
// (origin "" accepts any name).
func NewVerifier(vkey, origin string) (note.Verifier, error) {
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return nil, fmt.Errorf("not a note verifier key (name+hash+key): %w", err)
	}
	if origin != "" && v.Name() != origin {
		return nil, fmt.Errorf("verifier key is named %q, want %q", v.Name(), origin)
	}
	return v, nil
}

// KeyRing is a log's verifier keys across key rotations: the key it signs
// with now and the ones it signed with before, all named for the log's
// origin. As a note.Verifier it is the current key; for opening signed
// notes (OpenReceipt, OpenCheckpoint) it is also a note.Verifiers that
// picks the key each signature names by its hash, so that receipts and
// checkpoints signed before a rotation still verify. What is new — a
// checkpoint a witness is shown or gossiped (Witness, CheckGossip) — is
// opened with Current alone: a key is retired because it may have leaked,
// and must not vouch for anything from then on.
type KeyRing struct {
	current note.Verifier
	byHash  map[uint32]note.Verifier
	// delegations are receipt key delegations this ring verified lately:
	// a partner's receipts carry the same delegation for most of its
	// validity, and verifying it again per receipt doubled their cost.
	delegations delegationCache
}

// NewKeyRing parses verifier keys, oldest first, the current one last
// (the order VerifierKeys of a Vault transit signer prints them in). All
// must be named origin (origin "" requires only that they share a name).
func NewKeyRing(origin string, vkeys []string) (*KeyRing, error) {
	if len(vkeys) == 0 {
		return nil, fmt.Errorf("no verifier key")
	}
	k := &KeyRing{byHash: map[uint32]note.Verifier{}}
	for _, vkey := range vkeys {
		v, err := NewVerifier(vkey, origin)
		if err != nil {
			return nil, err
		}
		origin = v.Name()
		k.byHash[v.KeyHash()] = v
		k.current = v
	}
	return k, nil
}

func (k *KeyRing) Name() string                { return k.current.Name() }
func (k *KeyRing) KeyHash() uint32             { return k.current.KeyHash() }
func (k *KeyRing) Verify(msg, sig []byte) bool { return k.current.Verify(msg, sig) }
func (k *KeyRing) Len() int                    { return len(k.byHash) }

// Current is the key the log signs with now (the last one given).
func (k *KeyRing) Current() note.Verifier { return k.current }

// currentKey is the key new signatures must be made with: a KeyRing's
// current key, or v itself.
func currentKey(v note.Verifier) note.Verifier {
	if k, ok := v.(*KeyRing); ok {
		return k.current
	}
	return v
}

// Verifier implements note.Verifiers.
func (k *KeyRing) Verifier(name string, hash uint32) (note.Verifier, error) {
	if v, ok := k.byHash[hash]; ok && name == k.Name() {
		return v, nil
	}
	return nil, &note.UnknownVerifierError{Name: name, KeyHash: hash}
}

// openers is the note.Verifiers that opens notes signed for v: all of a
// KeyRing's keys, or v alone.
func openers(v note.Verifier) note.Verifiers {
	if vs, ok := v.(note.Verifiers); ok {
		return vs
	}
	return note.VerifierList(v)
}

// LoadCosigner reads the signer key in path (see LoadOrCreateKey) as a
// cosignature/v1 signer named name (WitnessName).
func LoadCosigner(path, name string) (note.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("audit key %s: %w", path, err)
	}
	s, err := NewCosigner(string(b), name, nil)
	if err != nil {
		return nil, fmt.Errorf("audit key %s: %w", path, err)
	}
	return s, nil
}
