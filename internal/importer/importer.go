// Package importer reads JSONL record files (one protojson IngestRecord per
// line), validates every line locally so that a person sees all problems at
// once, and streams the records to a gateway's Ingest service.
package importer

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/borderlink/borderlink/internal/validate"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// MaxLineBytes bounds one JSONL line.
const MaxLineBytes = 4 << 20

// Line is one parsed and validated line.
type Line struct {
	Number uint64
	Record *blv1.IngestRecord
}

// Problem is one invalid line.
type Problem struct {
	Line     uint64
	RecordID string
	Field    string
	Reason   string
}

func (p Problem) String() string {
	id := p.RecordID
	if id == "" {
		id = "-"
	}
	if p.Field == "" {
		return fmt.Sprintf("line %d (%s): %s", p.Line, id, p.Reason)
	}
	return fmt.Sprintf("line %d (%s): %s: %s", p.Line, id, p.Field, p.Reason)
}

// Read parses and validates every line of r. Blank lines are skipped. It
// returns the valid lines and one Problem per defect; an I/O error stops it.
func Read(r io.Reader) ([]Line, []Problem, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), MaxLineBytes)
	var (
		lines    []Line
		problems []Problem
		n        uint64
	)
	for sc.Scan() {
		n++
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		rec := &blv1.IngestRecord{}
		if err := protojson.Unmarshal([]byte(text), rec); err != nil {
			problems = append(problems, Problem{Line: n, Reason: "not a valid record: " + err.Error()})
			continue
		}
		id, errs := validate.Record(rec)
		if len(errs) > 0 {
			for _, e := range errs {
				problems = append(problems, Problem{Line: n, RecordID: id, Field: e.Field, Reason: e.Reason})
			}
			continue
		}
		lines = append(lines, Line{Number: n, Record: rec})
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("line %d: %w", n+1, err)
	}
	return lines, problems, nil
}

// Send streams lines to the gateway as one import. skipInvalid tells the
// gateway to store the valid records even if it finds invalid ones.
func Send(ctx context.Context, c blv1.IngestClient, lines []Line, skipInvalid bool) (*blv1.ImportResponse, error) {
	stream, err := c.Import(ctx)
	if err != nil {
		return nil, err
	}
	for i, l := range lines {
		req := &blv1.ImportRequest{Record: l.Record, Line: l.Number}
		if i == 0 {
			req.SkipInvalid = skipInvalid
		}
		if err := stream.Send(req); err != nil {
			// The server's status is only available from CloseAndRecv.
			break
		}
	}
	return stream.CloseAndRecv()
}
