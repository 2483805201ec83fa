// Package keys is where a gateway's key material comes from: the
// certificate it presents, the key that signs audit checkpoints and
// receipts, the pseudonymisation key and other secrets (a database
// password). Local files are the default; with a `vault:` section in the
// configuration the same material comes from HashiCorp Vault (package
// keys/vault), and no long-lived private key is ever written to disk.
//
// This package holds only what both sources share and what the rest of the
// gateway may depend on without importing the Vault client: the small
// interfaces below, the file-based implementations and the Vault
// configuration block (VaultConfig), so that internal/config can embed it.
package keys

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// MinPseudonymKeySize is the shortest pseudonymisation key accepted; it is
// release.MinKeySize, repeated here so that a key from any source is
// checked where it is loaded, with an error naming where it came from.
const MinPseudonymKeySize = 32

// ErrUnavailable is wrapped by errors that mean the key source could not
// be reached or is sealed, or no longer accepted the gateway's credentials
// while it was (a token that expired meanwhile; a new login is under way),
// as opposed to refusing the request. Callers keep the material they have
// (a certificate until it expires) and retry; a signature that must be
// produced is queued, never skipped.
var ErrUnavailable = errors.New("keys: key source unavailable")

// ErrDenied is wrapped by errors that mean the key source refused the
// request (wrong role, missing policy). Retrying does not help; the error
// text names the path and the capability that is missing.
var ErrDenied = errors.New("keys: permission denied")

// SecretReader returns the value of a named secret: a file path for
// FileSecrets, a KV v2 "path#field" for Vault.
type SecretReader interface {
	ReadSecret(ctx context.Context, name string) ([]byte, error)
}

// SecretReaderFunc adapts a function to SecretReader.
type SecretReaderFunc func(ctx context.Context, name string) ([]byte, error)

// ReadSecret calls f.
func (f SecretReaderFunc) ReadSecret(ctx context.Context, name string) ([]byte, error) {
	return f(ctx, name)
}

// FileSecrets reads secrets from files; the name is the file's path.
type FileSecrets struct{}

// ReadSecret returns the contents of the file name.
func (FileSecrets) ReadSecret(_ context.Context, name string) ([]byte, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("keys: read secret: %w", err)
	}
	return b, nil
}

// PseudonymKey reads the pseudonymisation key name from r and checks its
// length, so a short key is refused at start with the name of where it
// came from.
func PseudonymKey(ctx context.Context, r SecretReader, name string) ([]byte, error) {
	b, err := r.ReadSecret(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("keys: pseudonymisation key %s: %w", name, err)
	}
	if len(b) < MinPseudonymKeySize {
		return nil, fmt.Errorf("keys: pseudonymisation key %s: %d bytes, need at least %d", name, len(b), MinPseudonymKeySize)
	}
	return b, nil
}

// Signer signs checkpoints and receipts (it is audit.Signer). Name is the
// log origin; KeyHash is the note key ID derived from the public key, so a
// rotated key has a new ID and old signatures stay verifiable with the old
// verifier key.
type Signer = note.Signer

// VerifierPublisher lists the note verifier keys that verify the
// signatures a signer has made and will make: one per key version still
// available, oldest first, the current one last. Publish all of them.
type VerifierPublisher interface {
	VerifierKeys(ctx context.Context) ([]string, error)
}

// VerifierList parses verifier keys (as VerifierPublisher returns them)
// into a note.Verifiers that accepts a signature by any of them.
func VerifierList(vkeys []string) (note.Verifiers, error) {
	vs := make([]note.Verifier, 0, len(vkeys))
	for _, k := range vkeys {
		v, err := note.NewVerifier(strings.TrimSpace(k))
		if err != nil {
			return nil, fmt.Errorf("keys: verifier key %q: %w", k, err)
		}
		vs = append(vs, v)
	}
	return note.VerifierList(vs...), nil
}
