package audit

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// receiptHeader is the first line of every receipt body; it keeps a
// receipt from ever being read as a checkpoint (whose first line is an
// origin) and versions the format.
const receiptHeader = "borderlink-receipt/v1"

// Receipt is what the answering gateway signs for each exchange it
// answered: where the exchange sits in its log and what was released.
type Receipt struct {
	Origin    string    // the answering gateway's log origin
	Index     int64     // leaf index (seq-1) of its audit record
	LeafHash  tlog.Hash // RFC 6962 leaf hash of that record
	Time      time.Time // the record's time
	Release   string    // hex SHA-256 of the released bytes ("" when nothing was released)
	RequestID string    // correlation ID of the exchange
	Caller    string    // SPIFFE ID the answer was given to
}

// Text is the signed body, one field per line in this order:
//
//	borderlink-receipt/v1
//	<origin>
//	<index>
//	<base64 leaf hash>
//	<time, RFC 3339 with nanoseconds, UTC>
//	<release sha256 hex, or "-">
//	<request id>
//	<caller SPIFFE ID>
func (r Receipt) Text() string {
	rel := r.Release
	if rel == "" {
		rel = "-"
	}
	return strings.Join([]string{
		receiptHeader, r.Origin, strconv.FormatInt(r.Index, 10),
		base64.StdEncoding.EncodeToString(r.LeafHash[:]),
		r.Time.UTC().Format(time.RFC3339Nano), rel, r.RequestID, r.Caller,
	}, "\n") + "\n"
}

// ParseReceipt parses a receipt body (the note text).
func ParseReceipt(text string) (Receipt, error) {
	bad := func(what string) (Receipt, error) { return Receipt{}, fmt.Errorf("malformed receipt: %s", what) }
	if len(text) > maxCheckpointSize || !strings.HasSuffix(text, "\n") {
		return bad("size or final newline")
	}
	l := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(l) != 8 || l[0] != receiptHeader {
		return bad("header or line count")
	}
	var r Receipt
	r.Origin = l[1]
	if r.Origin == "" {
		return bad("origin")
	}
	n, err := strconv.ParseInt(l[2], 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != l[2] {
		return bad("index")
	}
	r.Index = n
	h, err := base64.StdEncoding.Strict().DecodeString(l[3])
	if err != nil || len(h) != tlog.HashSize {
		return bad("leaf hash")
	}
	copy(r.LeafHash[:], h)
	if r.Time, err = time.Parse(time.RFC3339Nano, l[4]); err != nil {
		return bad("time")
	}
	if l[5] != "-" {
		if d, err := hex.DecodeString(l[5]); err != nil || len(d) != 32 || hex.EncodeToString(d) != l[5] {
			return bad("release digest")
		}
		r.Release = l[5]
	}
	r.RequestID, r.Caller = l[6], l[7]
	if r.RequestID == "" || r.Caller == "" {
		return bad("request id or caller")
	}
	return r, nil
}

// SignReceipt returns the signed note of r; the signer must be named
// r.Origin.
func SignReceipt(s Signer, r Receipt) (string, error) {
	if s.Name() != r.Origin {
		return "", fmt.Errorf("audit: sign receipt: key %q does not sign for origin %q", s.Name(), r.Origin)
	}
	msg, err := note.Sign(&note.Note{Text: r.Text()}, s)
	if err != nil {
		return "", fmt.Errorf("audit: sign receipt: %w", err)
	}
	return string(msg), nil
}

// OpenReceipt verifies a signed receipt with the partner's verifier and
// parses it. The origin must be the verifier's name. Errors wrap ErrVerify.
func OpenReceipt(msg string, v note.Verifier) (Receipt, error) {
	n, err := note.Open([]byte(msg), openers(v))
	if err != nil {
		return Receipt{}, fmt.Errorf("receipt signature: %v: %w", err, ErrVerify)
	}
	r, err := ParseReceipt(n.Text)
	if err != nil {
		return Receipt{}, fmt.Errorf("receipt: %v: %w", err, ErrVerify)
	}
	if r.Origin != v.Name() {
		return Receipt{}, fmt.Errorf("receipt origin %q, want %q: %w", r.Origin, v.Name(), ErrVerify)
	}
	return r, nil
}

// Expect is what a caller knows about an exchange it made.
type Expect struct {
	RequestID string
	Caller    string // the caller's own gateway SPIFFE ID
	Release   string // hex SHA-256 of what it received
}

// Check compares a verified receipt with what the caller knows. Errors
// wrap ErrVerify.
func (r Receipt) Check(want Expect) error {
	switch {
	case r.RequestID != want.RequestID:
		return fmt.Errorf("receipt is for request %q, want %q: %w", r.RequestID, want.RequestID, ErrVerify)
	case r.Caller != want.Caller:
		return fmt.Errorf("receipt was issued to %q, want %q: %w", r.Caller, want.Caller, ErrVerify)
	case r.Release != want.Release:
		return fmt.Errorf("receipt covers release %q, received %q: %w", r.Release, want.Release, ErrVerify)
	}
	return nil
}
