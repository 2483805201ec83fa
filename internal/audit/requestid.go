package audit

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"time"
)

// NewRequestID returns a fresh correlation ID for an exchange: 32 lowercase
// hex digits, the first 12 the Unix time in milliseconds at now and the
// other 20 random (80 bits), as UUIDv7 orders its bits. IDs made close in
// time sort close together, so the audit log's request-ID index grows at
// its right edge: a random ID made every append write a page of that
// index of its own, a quarter of the append's cost (docs/audit.md,
// Appending). The time it shows is in the record anyway.
func NewRequestID(now time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	rand.Read(b[6:])
	return hex.EncodeToString(b[:])
}
