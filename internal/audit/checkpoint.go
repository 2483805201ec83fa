package audit

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Signer signs checkpoints and receipts. A note.Signer is one: the local key
// file (NewFileSigner) today, a Vault transit key later. Name must be the
// log's origin.
type Signer = note.Signer

// Origin is the checkpoint origin line (and signing key name) of a
// gateway's audit log, e.g. "nl.customs.example/borderlink/audit".
func Origin(trustDomain string) string { return trustDomain + "/borderlink/audit" }

// Checkpoint is the body of a C2SP tlog-checkpoint: origin, tree size and
// root hash. Borderlink writes no extension lines and ignores those it
// reads.
type Checkpoint struct {
	Origin string
	Size   int64
	Hash   tlog.Hash
}

// Text is the checkpoint body as signed:
// "<origin>\n<size>\n<base64 root>\n".
func (c Checkpoint) Text() string {
	return fmt.Sprintf("%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Hash[:]))
}

// maxCheckpointSize bounds the text a parser accepts.
const maxCheckpointSize = 1 << 16

var errCheckpoint = errors.New("malformed checkpoint")

// ParseCheckpoint parses a checkpoint body (the note text, without
// signatures).
func ParseCheckpoint(text string) (Checkpoint, error) {
	if len(text) > maxCheckpointSize || !strings.HasSuffix(text, "\n") {
		return Checkpoint{}, errCheckpoint
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 {
		return Checkpoint{}, errCheckpoint
	}
	origin, size, root := lines[0], lines[1], lines[2]
	if origin == "" || strings.TrimSpace(origin) != origin {
		return Checkpoint{}, errCheckpoint
	}
	n, err := strconv.ParseInt(size, 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != size {
		return Checkpoint{}, errCheckpoint
	}
	h, err := base64.StdEncoding.Strict().DecodeString(root)
	if err != nil || len(h) != tlog.HashSize {
		return Checkpoint{}, errCheckpoint
	}
	for _, ext := range lines[3:] {
		if ext == "" {
			return Checkpoint{}, errCheckpoint
		}
	}
	c := Checkpoint{Origin: origin, Size: n}
	copy(c.Hash[:], h)
	return c, nil
}

// SignCheckpoint returns the signed note of c. The signer's name must be
// c.Origin.
func SignCheckpoint(s Signer, c Checkpoint) ([]byte, error) {
	if s.Name() != c.Origin {
		return nil, fmt.Errorf("audit: sign checkpoint: key %q does not sign for origin %q", s.Name(), c.Origin)
	}
	msg, err := note.Sign(&note.Note{Text: c.Text()}, s)
	if err != nil {
		return nil, fmt.Errorf("audit: sign checkpoint: %w", err)
	}
	return msg, nil
}

// OpenCheckpoint verifies a signed checkpoint with v and parses it. The
// origin must be v's name. Errors wrap ErrVerify.
func OpenCheckpoint(msg []byte, v note.Verifier) (Checkpoint, error) {
	n, err := note.Open(msg, openers(v))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint signature: %v: %w", err, ErrVerify)
	}
	c, err := ParseCheckpoint(n.Text)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint: %v: %w", err, ErrVerify)
	}
	if c.Origin != v.Name() {
		return Checkpoint{}, fmt.Errorf("checkpoint origin %q, want %q: %w", c.Origin, v.Name(), ErrVerify)
	}
	return c, nil
}

// CheckpointText returns the text of a signed note without verifying it,
// for display and for parsers that verify separately.
func CheckpointText(msg []byte) (string, error) {
	i := bytes.LastIndex(msg, []byte("\n\n"))
	if i < 0 {
		return "", errCheckpoint
	}
	return string(msg[:i+1]), nil
}
