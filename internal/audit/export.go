package audit

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// The export format is JSON Lines (docs/audit.md): one object per line, its
// "type" member first. Leaves come in index order, checkpoints after them.
//
//	{"type":"leaf","index":0,"leaf_hash":"<base64>","leaf":"<base64>","record":{...}}
//	{"type":"checkpoint","size":5,"time":"2026-11-25T10:00:01Z","note":"<signed note>"}
//
// "leaf" is the leaf data, the only member verification trusts; "record" is
// the same record as protojson for people and spreadsheets, and "leaf_hash"
// the hash the gateway stored. A verifier checks both against "leaf".

// ExportLeaf is one leaf line.
type ExportLeaf struct {
	Type     string          `json:"type"`
	Index    int64           `json:"index"`
	LeafHash string          `json:"leaf_hash"`
	Leaf     string          `json:"leaf"`
	Record   json.RawMessage `json:"record"`
}

// ExportCheckpoint is one checkpoint line.
type ExportCheckpoint struct {
	Type string `json:"type"`
	Size int64  `json:"size"`
	Time string `json:"time"`
	Note string `json:"note"`
}

var recordJSON = protojson.MarshalOptions{UseProtoNames: true}

// Exporter writes an export, leaves first, then checkpoints.
type Exporter struct {
	w *bufio.Writer
}

// NewExporter writes JSONL to w; call Flush at the end.
func NewExporter(w io.Writer) *Exporter { return &Exporter{w: bufio.NewWriterSize(w, 1<<16)} }

// Leaf writes the leaf at index with the hash the gateway stored for it.
func (e *Exporter) Leaf(index int64, leaf []byte, stored tlog.Hash) error {
	rec := new(blv1.AuditRecord)
	if err := proto.Unmarshal(leaf, rec); err != nil {
		return fmt.Errorf("export index %d: %w", index, err)
	}
	rj, err := recordJSON.Marshal(rec)
	if err != nil {
		return fmt.Errorf("export index %d: %w", index, err)
	}
	return e.line(ExportLeaf{Type: "leaf", Index: index, LeafHash: base64.StdEncoding.EncodeToString(stored[:]),
		Leaf: base64.StdEncoding.EncodeToString(leaf), Record: compactJSON(rj)})
}

// compactJSON strips the whitespace protojson may add.
func compactJSON(b []byte) json.RawMessage {
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return b
	}
	return out.Bytes()
}

// Checkpoint writes a signed checkpoint.
func (e *Exporter) Checkpoint(size int64, at time.Time, note []byte) error {
	return e.line(ExportCheckpoint{Type: "checkpoint", Size: size, Time: at.UTC().Format(time.RFC3339Nano), Note: string(note)})
}

func (e *Exporter) line(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	_, err = e.w.Write(b)
	return err
}

// Flush writes buffered lines.
func (e *Exporter) Flush() error { return e.w.Flush() }

// maxExportLine bounds one JSONL line (a leaf with its policy input).
const maxExportLine = 16 << 20

// ExportVisitor receives the lines of an export (ScanExport). A nil
// function skips its lines without decoding them.
type ExportVisitor struct {
	// Leaf gets each leaf line, in index order, after its "record" and
	// index were checked against the leaf data; stored is its "leaf_hash".
	Leaf func(index int64, leaf []byte, stored tlog.Hash) error
	// Checkpoint gets the signed note of each checkpoint line.
	Checkpoint func(msg []byte) error
	// Skip, with Leaf, is how many leading leaves Leaf does not get
	// (those a resumed verifier has already covered, ResumeLogVerifier):
	// their lines are still decoded, their index order, "leaf" (base64,
	// not empty) and "leaf_hash" (a base64 SHA-256) checked, but they are
	// not hashed nor their "record" compared. An export with fewer leaves
	// is an error wrapping ErrVerify.
	Skip int64
	// SkipHash, if not nil, gets the "leaf_hash" of each leaf skipped
	// (Skip), in index order: what a resumed verifier compares the
	// checkpoints below Skip with (LogVerifier.AddLeafHash).
	SkipHash func(index int64, stored tlog.Hash) error
}

// leafLine is how the exporter starts every leaf line; a scan that skips
// leaves recognises them by it without decoding the line.
var leafLine = []byte(`{"type":"leaf",`)

// ScanExport reads an export line by line, holding one line at a time.
// Malformed lines are input errors; a record that disagrees with its leaf,
// or a leaf out of index order, wraps ErrVerify and names the index.
func ScanExport(r io.Reader, vis ExportVisitor) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<16), maxExportLine)
	line := 0
	next := int64(0)
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		if vis.Leaf == nil && bytes.HasPrefix(b, leafLine) {
			continue
		}
		var head struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(b, &head); err != nil {
			return fmt.Errorf("export line %d: %w", line, err)
		}
		switch head.Type {
		case "leaf":
			if vis.Leaf == nil {
				continue
			}
			var l ExportLeaf
			if err := json.Unmarshal(b, &l); err != nil {
				return fmt.Errorf("export line %d: %w", line, err)
			}
			leaf, err := base64.StdEncoding.DecodeString(l.Leaf)
			if err != nil {
				return fmt.Errorf("export line %d (index %d): leaf: %w", line, l.Index, err)
			}
			hb, err := base64.StdEncoding.DecodeString(l.LeafHash)
			if err != nil || len(hb) != tlog.HashSize {
				return fmt.Errorf("export line %d (index %d): leaf_hash is not a base64 SHA-256", line, l.Index)
			}
			if l.Index != next {
				if next < vis.Skip {
					return fmt.Errorf("export line %d: index %d, expected index %d (leaves missing or out of order; the leaves below the saved size %d are needed to check the checkpoints below it, an export made with --since cannot be verified): %w", line, l.Index, next, vis.Skip, ErrVerify)
				}
				return fmt.Errorf("export line %d: index %d, expected index %d (leaves missing or out of order): %w", line, l.Index, next, ErrVerify)
			}
			if l.Index < vis.Skip {
				if len(leaf) == 0 {
					return fmt.Errorf("export line %d (index %d): leaf missing", line, l.Index)
				}
				if vis.SkipHash != nil {
					if err := vis.SkipHash(l.Index, tlog.Hash(hb)); err != nil {
						return err
					}
				}
				next++
				continue
			}
			if err := checkRecordJSON(l.Index, leaf, l.Record); err != nil {
				return err
			}
			if err := vis.Leaf(l.Index, leaf, tlog.Hash(hb)); err != nil {
				return err
			}
			next++
		case "checkpoint":
			if vis.Checkpoint == nil {
				continue
			}
			var c ExportCheckpoint
			if err := json.Unmarshal(b, &c); err != nil {
				return fmt.Errorf("export line %d: %w", line, err)
			}
			if err := vis.Checkpoint([]byte(c.Note)); err != nil {
				return err
			}
		default:
			return fmt.Errorf("export line %d: unknown type %q", line, head.Type)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("export line %d: %w", line+1, err)
	}
	if vis.Leaf != nil && next < vis.Skip {
		return fmt.Errorf("export has %d leaves, fewer than the %d already verified (saved checkpoint at size %d): log truncated: %w", next, vis.Skip, vis.Skip, ErrVerify)
	}
	return nil
}

// ReadExport reads a whole export into a LogInput (Verifier and Saved
// unset). It holds every leaf in memory: VerifyExport does not.
func ReadExport(r io.Reader) (LogInput, error) {
	var in LogInput
	in.LeafHashes = []tlog.Hash{}
	err := ScanExport(r, ExportVisitor{
		Leaf: func(_ int64, leaf []byte, stored tlog.Hash) error {
			in.Leaves = append(in.Leaves, leaf)
			in.LeafHashes = append(in.LeafHashes, stored)
			return nil
		},
		Checkpoint: func(msg []byte) error {
			in.Checkpoints = append(in.Checkpoints, msg)
			return nil
		},
	})
	return in, err
}

// VerifyExport verifies an export in two passes over r, holding one line
// and the right edge of the tree at a time (LogVerifier): the first pass
// reads the checkpoints (they follow the leaves in an export), the second
// streams the leaves past them. saved is as for NewLogVerifier.
func VerifyExport(r io.ReadSeeker, v note.Verifier, saved []byte) (LogResult, error) {
	lv, err := NewLogVerifier(v, saved)
	if err != nil {
		return LogResult{}, err
	}
	return VerifyExportWith(r, lv)
}

// VerifyExportWith is VerifyExport with a verifier of the caller's, fresh
// from NewLogVerifier or ResumeLogVerifier: the leaves below lv.Start()
// are parsed (ExportVisitor.Skip) but not hashed again; their "leaf_hash"
// values rebuild the tree below lv.Start() (LogVerifier.AddLeafHash), to
// compare every checkpoint below lv.Start() and, at lv.Start(), the saved
// checkpoint's root.
func VerifyExportWith(r io.ReadSeeker, lv *LogVerifier) (LogResult, error) {
	if err := ScanExport(r, ExportVisitor{Checkpoint: lv.Checkpoint}); err != nil {
		return LogResult{}, err
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return LogResult{}, fmt.Errorf("export: rewind for the second pass: %w", err)
	}
	err := ScanExport(r, ExportVisitor{Skip: lv.Start(), SkipHash: lv.AddLeafHash, Leaf: func(index int64, leaf []byte, stored tlog.Hash) error {
		return lv.Add(index, leaf, &stored)
	}})
	if err != nil {
		return LogResult{}, err
	}
	return lv.Finish()
}

// checkRecordJSON checks that the human-readable record says what the leaf
// says, so that nobody reads an edited "record" as verified.
func checkRecordJSON(index int64, leaf []byte, rj json.RawMessage) error {
	if len(rj) == 0 {
		return nil
	}
	fromLeaf := new(blv1.AuditRecord)
	if err := proto.Unmarshal(leaf, fromLeaf); err != nil {
		return fmt.Errorf("index %d: leaf does not decode: %v: %w", index, err, ErrVerify)
	}
	fromJSON := new(blv1.AuditRecord)
	if err := protojson.Unmarshal(rj, fromJSON); err != nil || !proto.Equal(fromLeaf, fromJSON) {
		return fmt.Errorf("index %d: the record shown differs from its leaf: %w", index, ErrVerify)
	}
	return nil
}

// CSVHeader is the header row of WriteCSV.
var CSVHeader = []string{"seq", "time", "side", "request_id", "caller_id", "peer_id", "action", "purpose", "decision", "status",
	"agreement_id", "policy_revision", "resource_ids", "released_fields", "release_sha256", "leaf_hash", "partner_receipt"}

// CSVWriter writes records for spreadsheets; lists are joined with ";".
type CSVWriter struct{ w *csv.Writer }

// NewCSVWriter writes the header row.
func NewCSVWriter(w io.Writer) (*CSVWriter, error) {
	c := &CSVWriter{w: csv.NewWriter(w)}
	return c, c.w.Write(CSVHeader)
}

// Record writes one record and its leaf hash.
func (c *CSVWriter) Record(r *blv1.AuditRecord, leafHash tlog.Hash) error {
	return c.w.Write([]string{
		strconv.FormatUint(r.GetSeq(), 10), r.GetTime().AsTime().UTC().Format(time.RFC3339Nano), side(r.GetSide()),
		r.GetRequestId(), r.GetCallerId(), r.GetPeerId(), r.GetAction(), r.GetPurpose(), decision(r.GetDecision()),
		r.GetStatus(), r.GetAgreementId(), r.GetPolicyRevision(), strings.Join(r.GetResourceIds(), ";"),
		strings.Join(r.GetReleasedFields(), ";"), r.GetReleaseSha256(), base64.StdEncoding.EncodeToString(leafHash[:]),
		r.GetPartnerReceipt(),
	})
}

// Flush writes buffered rows.
func (c *CSVWriter) Flush() error { c.w.Flush(); return c.w.Error() }
