package audit

import (
	"bytes"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
	"google.golang.org/protobuf/proto"

	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// FormatVersion is the AuditRecord version this package writes and reads.
const FormatVersion = 1

// ErrVerify is wrapped by every verification failure (a bad leaf, a
// checkpoint that does not match, a bad signature, a failed proof), as
// opposed to errors reading the input.
var ErrVerify = errors.New("audit verification failed")

var (
	canonical = proto.MarshalOptions{Deterministic: true}
	strict    = proto.UnmarshalOptions{DiscardUnknown: true}
)

// Leaf returns the leaf data of a sequenced record: its canonical encoding,
// the deterministic protobuf encoding of the AuditRecord with version 1 and
// seq set (docs/audit.md lists the rules byte for byte). The record is the
// leaf at index seq-1.
func Leaf(rec *blv1.AuditRecord) ([]byte, error) {
	if rec.GetVersion() != FormatVersion {
		return nil, fmt.Errorf("audit: leaf: record version %d, want %d", rec.GetVersion(), FormatVersion)
	}
	if rec.GetSeq() == 0 {
		return nil, fmt.Errorf("audit: leaf: record has no seq")
	}
	b, err := canonical.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("audit: leaf seq %d: %w", rec.GetSeq(), err)
	}
	return b, nil
}

// LeafHash is the RFC 6962 leaf hash of a sequenced record:
// SHA-256(0x00 || Leaf(rec)).
func LeafHash(rec *blv1.AuditRecord) (tlog.Hash, error) {
	b, err := Leaf(rec)
	if err != nil {
		return tlog.Hash{}, err
	}
	return tlog.RecordHash(b), nil
}

// ParseLeaf decodes the leaf at index and checks that it is the canonical
// encoding of a version 1 record whose seq is index+1. Errors wrap
// ErrVerify.
func ParseLeaf(index int64, b []byte) (*blv1.AuditRecord, error) {
	rec := new(blv1.AuditRecord)
	if err := strict.Unmarshal(b, rec); err != nil {
		return nil, fmt.Errorf("index %d: leaf does not decode: %v: %w", index, err, ErrVerify)
	}
	if rec.GetVersion() != FormatVersion {
		return nil, fmt.Errorf("index %d: record version %d, this verifier knows %d: %w", index, rec.GetVersion(), FormatVersion, ErrVerify)
	}
	if rec.GetSeq() != uint64(index)+1 {
		return nil, fmt.Errorf("index %d: record says seq %d, want %d (records missing, reordered or duplicated): %w", index, rec.GetSeq(), index+1, ErrVerify)
	}
	again, err := canonical.Marshal(rec)
	if err != nil || !bytes.Equal(again, b) {
		return nil, fmt.Errorf("index %d: leaf is not the canonical encoding of its record: %w", index, ErrVerify)
	}
	return rec, nil
}
