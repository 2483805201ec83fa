package audit

import (
	"bytes"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
	"google.golang.org/protobuf/encoding/protowire"
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

// UnsequencedLeaf is the canonical encoding of a record that has no seq
// yet (version 1, seq 0). SequenceLeaf turns it into the record's leaf once
// the seq is known: a store can encode a record while the caller waits
// and leave only the seq to its single sequencing goroutine.
func UnsequencedLeaf(rec *blv1.AuditRecord) ([]byte, error) {
	if rec.GetVersion() != FormatVersion {
		return nil, fmt.Errorf("audit: leaf: record version %d, want %d", rec.GetVersion(), FormatVersion)
	}
	if rec.GetSeq() != 0 {
		return nil, fmt.Errorf("audit: leaf: record already has seq %d", rec.GetSeq())
	}
	b, err := canonical.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("audit: leaf: %w", err)
	}
	return b, nil
}

// versionField is how the canonical encoding of every version 1 record
// begins: field 1 (version), varint 1.
var versionField = protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), FormatVersion)

// SequenceLeaf returns the leaf of the record whose UnsequencedLeaf is b,
// with seq set: the canonical encoding orders fields by number, so the
// seq (field 2, omitted while zero) goes right after the version (field
// 1). Equal to Leaf of the record with seq set (tested).
func SequenceLeaf(b []byte, seq uint64) ([]byte, error) {
	if seq == 0 {
		return nil, fmt.Errorf("audit: leaf: seq 0")
	}
	if !bytes.HasPrefix(b, versionField) {
		return nil, fmt.Errorf("audit: leaf: not an unsequenced version %d record", FormatVersion)
	}
	if num, _, n := protowire.ConsumeTag(b[len(versionField):]); n > 0 && num <= 2 {
		return nil, fmt.Errorf("audit: leaf: unsequenced record has field %d after its version", num)
	}
	out := make([]byte, 0, len(b)+1+protowire.SizeVarint(seq))
	out = append(out, versionField...)
	out = protowire.AppendTag(out, 2, protowire.VarintType)
	out = protowire.AppendVarint(out, seq)
	return append(out, b[len(versionField):]...), nil
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
