// Package audit makes a gateway's audit trail verifiable by an auditor who
// trusts nobody: every audit record is a leaf of an append-only RFC 6962
// Merkle tree (golang.org/x/mod/sumdb/tlog), the gateway signs checkpoints of
// the tree in the C2SP tlog-checkpoint signed-note format
// (golang.org/x/mod/sumdb/note, Ed25519), and each answered exchange carries
// a receipt signed with the same key over the leaf it was logged as.
// docs/audit.md specifies the leaf encoding, the checkpoint and receipt
// texts and the key formats byte for byte.
//
// Guarantees:
//   - Leaf, checkpoint and receipt code is pure: no storage, no clock. It
//     hashes and proves only through tlog.
//   - Leaf parses exactly one byte string per record (the canonical
//     encoding); any other encoding of the same record is rejected, so a
//     leaf hash names one record.
//   - LogVerifier (and VerifyLog, VerifyExport, VerifyTiles over it) checks
//     a whole log from its leaves and signed checkpoints as the leaves
//     stream past, in memory logarithmic in the log's size, and reports
//     the first bad index or the failing checkpoint; every failure wraps
//     ErrVerify.
//   - Tiles are C2SP tlog-tiles: tlog's tiles of height 8 under C2SP paths
//     (TilePath, ParseTilePath), entries in uint16-framed bundles.
package audit
