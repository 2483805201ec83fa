package vault

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/borderlink/borderlink/internal/keys"
)

// Signer is a note.Signer (audit.Signer) backed by a transit Ed25519 key:
// the private key never leaves Vault, each Sign is a call to
// <transit.mount>/sign/<transit.key>. A gateway signing concurrent
// receipts wraps it in a BatchSigner, which shares one call among them.
//
// A Signer is pinned to one key version, the latest when it was made. Its
// KeyHash is the note key ID of that version's public key
// (SHA-256(name + "\n" + 0x01 + public key)[:4], per the signed-note
// spec), so the key ID changes with every rotation and a verifier always
// knows which version made a signature. Rotation, without ever making an
// old signature unverifiable:
//
//  1. `vault write -f transit/keys/KEY/rotate` creates version N+1;
//  2. publish VerifierKeys (one verifier key per version; partners add the
//     new one to peers.<domain>.audit_key alongside the old);
//  3. restart (or make a new Signer): it signs with N+1 from then on;
//  4. old signatures still name version N's key ID and verify with its
//     verifier key, which stays published for as long as the log is kept.
//     Never raise the key's min_decryption_version past a version whose
//     signatures must still be verifiable from Vault itself (verification
//     by partners needs only the published public key).
//
// Sign checks every signature against the public key before returning
// it, so a misbehaving key never yields a checkpoint nobody can verify.
// When Vault is unreachable Sign returns an error wrapping
// keys.ErrUnavailable: the caller must queue what needs signing and retry,
// never release it unsigned.
type Signer struct {
	c       *Client
	path    string // <mount>/sign/<key>
	name    string
	version int
	pub     ed25519.PublicKey
	hash    uint32
	vkey    string
}

var _ note.Signer = (*Signer)(nil)

// transitKey is what <mount>/keys/<key> says about an Ed25519 key.
type transitKey struct {
	latest   int
	versions map[int]ed25519.PublicKey
	min      int
}

func (c *Client) readTransitKey(ctx context.Context) (transitKey, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	path := c.cfg.Transit.Mount + "/keys/" + c.cfg.Transit.Key
	s, err := c.api.Logical().ReadWithContext(ctx, path)
	if err != nil {
		return transitKey{}, c.wrap("read signing key", path, err)
	}
	if s == nil || s.Data == nil {
		return transitKey{}, fmt.Errorf("vault %s: signing key %s does not exist (create it: vault write %s type=ed25519)", c.Address(), path, path)
	}
	if t, _ := s.Data["type"].(string); t != "ed25519" {
		return transitKey{}, fmt.Errorf("vault %s: signing key %s is of type %q, want ed25519", c.Address(), path, t)
	}
	k := transitKey{versions: map[int]ed25519.PublicKey{}}
	k.latest = toInt(s.Data["latest_version"])
	k.min = max(toInt(s.Data["min_available_version"]), 1)
	versions, _ := s.Data["keys"].(map[string]any)
	for v, info := range versions {
		n, err := strconv.Atoi(v)
		if err != nil {
			continue
		}
		m, _ := info.(map[string]any)
		pk, _ := m["public_key"].(string)
		pub, err := base64.StdEncoding.DecodeString(pk)
		if err != nil || len(pub) != ed25519.PublicKeySize {
			return transitKey{}, fmt.Errorf("vault %s: signing key %s version %d: bad public key", c.Address(), path, n)
		}
		k.versions[n] = pub
	}
	if _, ok := k.versions[k.latest]; !ok {
		return transitKey{}, fmt.Errorf("vault %s: signing key %s: no public key for latest version %d", c.Address(), path, k.latest)
	}
	return k, nil
}

func toInt(v any) int {
	switch n := v.(type) {
	case json.Number:
		i, _ := n.Int64()
		return int(i)
	case float64:
		return int(n)
	case int:
		return n
	}
	return 0
}

// NewSigner returns a Signer named name (the log origin, audit.Origin) for
// the latest version of the configured transit key.
func (c *Client) NewSigner(ctx context.Context, name string) (*Signer, error) {
	k, err := c.readTransitKey(ctx)
	if err != nil {
		return nil, err
	}
	pub := k.versions[k.latest]
	vkey, err := note.NewEd25519VerifierKey(name, pub)
	if err != nil {
		return nil, fmt.Errorf("vault: signer %q: %w", name, err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("vault: signer %q: %w", name, err)
	}
	return &Signer{
		c:       c,
		path:    c.cfg.Transit.Mount + "/sign/" + c.cfg.Transit.Key,
		name:    name,
		version: k.latest,
		pub:     pub,
		hash:    v.KeyHash(),
		vkey:    vkey,
	}, nil
}

// Name is the key name (the log origin).
func (s *Signer) Name() string { return s.name }

// KeyHash is the note key ID of the pinned key version.
func (s *Signer) KeyHash() uint32 { return s.hash }

// Version is the transit key version the Signer signs with.
func (s *Signer) Version() int { return s.version }

// PublicKey is the pinned version's Ed25519 public key. With Sign (pure
// Ed25519 over the message) it is enough to build other signature formats
// on the same key, e.g. a C2SP cosignature/v1 witness signer.
func (s *Signer) PublicKey() ed25519.PublicKey { return s.pub }

// VerifierKey is the note verifier key of the pinned version:
// "<name>+<hash>+<base64(0x01 || public key)>".
func (s *Signer) VerifierKey() string { return s.vkey }

// Sign signs msg with transit (pure Ed25519 over msg) and returns the
// 64-byte signature. It is bounded by vault.request_timeout.
func (s *Signer) Sign(msg []byte) ([]byte, error) {
	ctx, cancel := s.c.ctx(context.Background())
	defer cancel()
	r, err := s.c.api.Logical().WriteWithContext(ctx, s.path, map[string]any{
		"input":       base64.StdEncoding.EncodeToString(msg),
		"key_version": s.version,
	})
	if err != nil {
		return nil, s.c.wrap("sign", s.path, err)
	}
	var raw string
	if r != nil && r.Data != nil {
		raw, _ = r.Data["signature"].(string)
	}
	return s.check(msg, raw)
}

// check decodes transit's signature of msg and verifies it with the
// pinned public key: a signature that does not verify is never returned.
func (s *Signer) check(msg []byte, raw string) ([]byte, error) {
	// "vault:v<version>:<base64 signature>"
	parts := strings.SplitN(raw, ":", 3)
	if len(parts) != 3 || parts[0] != "vault" || parts[1] != "v"+strconv.Itoa(s.version) {
		return nil, fmt.Errorf("vault %s: %s: unexpected signature %q for key version %d", s.c.Address(), s.path, raw, s.version)
	}
	sig, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(sig) != ed25519.SignatureSize || !ed25519.Verify(s.pub, msg, sig) {
		return nil, fmt.Errorf("vault %s: %s: signature does not verify with key version %d", s.c.Address(), s.path, s.version)
	}
	return sig, nil
}

// VerifierKeys returns one note verifier key named s.Name() per available
// version of the transit key, oldest first: publish them all so that
// signatures made before a rotation stay verifiable.
func (s *Signer) VerifierKeys(ctx context.Context) ([]string, error) {
	k, err := s.c.readTransitKey(ctx)
	if err != nil {
		return nil, err
	}
	vs := make([]int, 0, len(k.versions))
	for v := range k.versions {
		vs = append(vs, v)
	}
	sort.Ints(vs)
	out := make([]string, 0, len(vs))
	for _, v := range vs {
		vkey, err := note.NewEd25519VerifierKey(s.name, k.versions[v])
		if err != nil {
			return nil, err
		}
		out = append(out, vkey)
	}
	return out, nil
}

var _ keys.VerifierPublisher = (*Signer)(nil)
