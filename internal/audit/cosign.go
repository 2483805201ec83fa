package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// Cosignatures follow C2SP tlog-cosignature (cosignature/v1): a witness
// signs "cosignature/v1\ntime <unix seconds>\n" followed by the checkpoint
// body with Ed25519; the signature line is
// "— <witness name> <base64(key ID ‖ 8-byte big-endian time ‖ signature)>",
// with key ID = SHA-256(name ‖ "\n" ‖ 0x04 ‖ public key)[:4].
//
// A Borderlink gateway witnesses with the Ed25519 key of its audit log under
// the name WitnessName(trust domain); the key ID (algorithm 0x04) differs
// from the log key's (0x01), and the signed messages cannot collide (a
// checkpoint starts with an origin, a receipt with "borderlink-receipt/v1").

const cosigAlg = 0x04

// WitnessName is the cosigning key name of a gateway,
// "<trust_domain>/borderlink/witness".
func WitnessName(trustDomain string) string { return trustDomain + "/borderlink/witness" }

func cosigMessage(ts uint64, body []byte) []byte {
	var b bytes.Buffer
	b.WriteString("cosignature/v1\ntime ")
	b.WriteString(strconv.FormatUint(ts, 10))
	b.WriteString("\n")
	b.Write(body)
	return b.Bytes()
}

func cosigKeyHash(name string, pub ed25519.PublicKey) uint32 {
	h := sha256.New()
	h.Write([]byte(name + "\n"))
	h.Write([]byte{cosigAlg})
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

type cosigner struct {
	name string
	hash uint32
	sign func([]byte) ([]byte, error)
	now  func() time.Time
}

func (c *cosigner) Name() string    { return c.name }
func (c *cosigner) KeyHash() uint32 { return c.hash }
func (c *cosigner) Sign(msg []byte) ([]byte, error) {
	ts := uint64(c.now().Unix())
	sig, err := c.sign(cosigMessage(ts, msg))
	if err != nil {
		return nil, fmt.Errorf("cosign: %w", err)
	}
	if len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("cosign: signature of %d bytes, want %d", len(sig), ed25519.SignatureSize)
	}
	out := binary.BigEndian.AppendUint64(nil, ts)
	return append(out, sig...), nil
}

// NewCosignerFunc returns a cosignature/v1 signer named name whose Ed25519
// signatures come from sign, for keys that never leave a key manager
// (Vault transit): pub is the key's public half, sign returns a raw Ed25519
// signature of its argument.
func NewCosignerFunc(name string, pub ed25519.PublicKey, sign func([]byte) ([]byte, error), now func() time.Time) note.Signer {
	if now == nil {
		now = time.Now
	}
	return &cosigner{name: name, hash: cosigKeyHash(name, pub), sign: sign, now: now}
}

// NewCosigner returns a cosignature/v1 signer named name from the Ed25519
// seed of a note signer key (the audit key file's content).
func NewCosigner(skey, name string, now func() time.Time) (note.Signer, error) {
	parts := strings.SplitN(strings.TrimSpace(skey), "+", 5)
	if len(parts) != 5 || parts[0] != "PRIVATE" || parts[1] != "KEY" {
		return nil, errors.New("not a note signer key")
	}
	b, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(b) != 1+ed25519.SeedSize || b[0] != 1 {
		return nil, errors.New("not an Ed25519 note signer key")
	}
	priv := ed25519.NewKeyFromSeed(b[1:])
	sign := func(m []byte) ([]byte, error) { return ed25519.Sign(priv, m), nil }
	return NewCosignerFunc(name, priv.Public().(ed25519.PublicKey), sign, now), nil
}

type cosigVerifier struct {
	name string
	hash uint32
	pub  ed25519.PublicKey
}

func (v *cosigVerifier) Name() string    { return v.name }
func (v *cosigVerifier) KeyHash() uint32 { return v.hash }
func (v *cosigVerifier) Verify(msg, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	ts := binary.BigEndian.Uint64(sig[:8])
	return ed25519.Verify(v.pub, cosigMessage(ts, msg), sig[8:])
}

// NewCosignatureVerifier returns the cosignature/v1 verifier named name for
// the Ed25519 public key in a note verifier key (a partner's audit_key).
func NewCosignatureVerifier(vkey, name string) (note.Verifier, error) {
	parts := strings.SplitN(strings.TrimSpace(vkey), "+", 3)
	if len(parts) != 3 {
		return nil, errors.New("not a note verifier key")
	}
	b, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(b) != 1+ed25519.PublicKeySize || b[0] != 1 {
		return nil, errors.New("not an Ed25519 note verifier key")
	}
	pub := ed25519.PublicKey(b[1:])
	return &cosigVerifier{name: name, hash: cosigKeyHash(name, pub), pub: pub}, nil
}

// Cosign returns the signature line ("— name base64\n") of a cosignature
// by s over the checkpoint body text.
func Cosign(s note.Signer, body string) (string, error) {
	msg, err := note.Sign(&note.Note{Text: body}, s)
	if err != nil {
		return "", fmt.Errorf("audit: cosign: %w", err)
	}
	return string(msg[len(body)+1:]), nil
}

// NewCosignatureKeyRing returns the cosignature/v1 verifier named name
// (WitnessName) for a witness's audit verifier keys across key rotations,
// oldest first, the current one last (as NewKeyRing): a cosignature made
// with a retired key still verifies. As a note.Verifier it is the current
// key.
func NewCosignatureKeyRing(name string, vkeys []string) (*KeyRing, error) {
	if len(vkeys) == 0 {
		return nil, errors.New("no verifier key")
	}
	k := &KeyRing{byHash: map[uint32]note.Verifier{}}
	for _, vkey := range vkeys {
		v, err := NewCosignatureVerifier(vkey, name)
		if err != nil {
			return nil, err
		}
		k.byHash[v.KeyHash()] = v
		k.current = v
	}
	return k, nil
}

// OpenCosigned checks the cosignature of witness w on a signed checkpoint
// (the log's note with the witness's line appended) and returns the
// checkpoint body and the witness's signature line. w may be a KeyRing
// (NewCosignatureKeyRing): a cosignature by any of its keys counts. Errors
// wrap ErrVerify.
func OpenCosigned(msg []byte, w note.Verifier) (body, line string, err error) {
	n, err := note.Open(msg, openers(w))
	if err != nil {
		return "", "", fmt.Errorf("cosignature of %s: %v: %w", w.Name(), err, ErrVerify)
	}
	// n.Sigs holds only the signatures w's keys verified.
	for _, s := range n.Sigs {
		if s.Name == w.Name() {
			return n.Text, "— " + s.Name + " " + s.Base64 + "\n", nil
		}
	}
	return "", "", fmt.Errorf("no cosignature of %s: %w", w.Name(), ErrVerify)
}

// CosignatureKeyHash returns the witness name and key ID of a cosignature
// line ("— name base64\n", as Cosign and OpenCosigned return it). Errors
// wrap ErrVerify.
func CosignatureKeyHash(line string) (name string, keyHash uint32, err error) {
	rest, ok := strings.CutPrefix(line, "— ")
	rest, nl := strings.CutSuffix(rest, "\n")
	i := strings.LastIndexByte(rest, ' ')
	if !ok || !nl || i <= 0 || strings.ContainsAny(rest[:i], " \n") {
		return "", 0, fmt.Errorf("not a signature line: %q: %w", line, ErrVerify)
	}
	b, err := base64.StdEncoding.DecodeString(rest[i+1:])
	if err != nil || len(b) < 4 {
		return "", 0, fmt.Errorf("not a signature line: %q: %w", line, ErrVerify)
	}
	return rest[:i], binary.BigEndian.Uint32(b), nil
}
