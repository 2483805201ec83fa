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
// origin) and versions the format: v1 is signed by the log key, v2 by a
// receipt key whose delegation it carries (delegation.go).
const (
	receiptHeader   = "borderlink-receipt/v1"
	receiptHeaderV2 = "borderlink-receipt/v2"
)

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

	// Key is set by OpenReceipt on a v2 receipt: the verified delegation
	// of the receipt key that signed it.
	Key *Delegation

	delegation string // v2: base64 of the signed delegation note
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
//
// A v2 receipt starts with borderlink-receipt/v2 and has a ninth line: the
// base64 of the signed delegation of the receipt key that signs it.
func (r Receipt) Text() string {
	rel := r.Release
	if rel == "" {
		rel = "-"
	}
	l := []string{
		receiptHeader, r.Origin, strconv.FormatInt(r.Index, 10),
		base64.StdEncoding.EncodeToString(r.LeafHash[:]),
		r.Time.UTC().Format(time.RFC3339Nano), rel, r.RequestID, r.Caller,
	}
	if r.delegation != "" {
		l[0] = receiptHeaderV2
		l = append(l, r.delegation)
	}
	return strings.Join(l, "\n") + "\n"
}

// ParseReceipt parses a receipt body (the note text).
func ParseReceipt(text string) (Receipt, error) {
	bad := func(what string) (Receipt, error) { return Receipt{}, fmt.Errorf("malformed receipt: %s", what) }
	if len(text) > maxCheckpointSize || !strings.HasSuffix(text, "\n") {
		return bad("size or final newline")
	}
	l := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	var r Receipt
	switch {
	case len(l) == 8 && l[0] == receiptHeader:
	case len(l) == 9 && l[0] == receiptHeaderV2 && l[8] != "":
		r.delegation = l[8]
	default:
		return bad("header or line count")
	}
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
// parses it. The origin must be the verifier's name. A v2 receipt must be
// signed by the receipt key its delegation names, the delegation by the
// partner's key, and its time must lie in the delegation's validity; Key
// is then set. Errors wrap ErrVerify.
func OpenReceipt(msg string, v note.Verifier) (Receipt, error) {
	verifiers := openers(v)
	var key *Delegation
	if text, _, ok := strings.Cut(msg, "\n\n"); ok && strings.HasPrefix(text, receiptHeaderV2+"\n") {
		unverified, err := ParseReceipt(text + "\n")
		if err != nil {
			return Receipt{}, fmt.Errorf("receipt: %v: %w", err, ErrVerify)
		}
		d, dv, err := openDelegation(unverified.delegation, v)
		if err != nil {
			return Receipt{}, err
		}
		verifiers, key = note.VerifierList(dv), &d
	}
	n, err := note.Open([]byte(msg), verifiers)
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
	if (key != nil) != (r.delegation != "") {
		// Only if the text changed between the two parses; cannot pass.
		return Receipt{}, fmt.Errorf("receipt format changed under verification: %w", ErrVerify)
	}
	if key != nil {
		if r.Time.Before(key.NotBefore) || r.Time.After(key.NotAfter) {
			return Receipt{}, fmt.Errorf("receipt time %s is outside its key's validity %s to %s: %w", r.Time.UTC().Format(time.RFC3339Nano),
				key.NotBefore.Format(time.RFC3339Nano), key.NotAfter.Format(time.RFC3339Nano), ErrVerify)
		}
		r.Key = key
	}
	return r, nil
}

// KeyValidAt tells whether a receipt could have been signed at t: always
// for a v1 receipt (the log key has no validity), and for a v2 receipt
// opened by OpenReceipt when t lies in its key's validity widened by skew
// (never for one only parsed). A caller checking a
// receipt it has just been handed asks with the time now, so that a
// receipt key that leaked after it expired cannot sign live receipts.
func (r Receipt) KeyValidAt(t time.Time, skew time.Duration) bool {
	if r.Key == nil {
		// A v2 receipt only parsed, not opened, has no verified key.
		return r.delegation == ""
	}
	return !t.Before(r.Key.NotBefore.Add(-skew)) && !t.After(r.Key.NotAfter.Add(skew))
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
