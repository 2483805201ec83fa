package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/config"
	"github.com/borderlink/borderlink/internal/gateway"
	"github.com/borderlink/borderlink/internal/identity"
	"github.com/borderlink/borderlink/internal/keys/vault"
	"github.com/borderlink/borderlink/internal/store"
	"github.com/borderlink/borderlink/internal/store/sqlite"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// ExitVerifyFailed is the exit code of `audit verify` when the log does
// not verify (docs/audit.md); reading or connecting failures exit 1.
const ExitVerifyFailed = 5

// verifyFailed carries a verification failure to its exit code.
type verifyFailed struct {
	cmd string
	err error
}

func (v verifyFailed) Error() string { return v.cmd + ": FAILED: " + v.err.Error() }
func (v verifyFailed) Unwrap() error { return v.err }
func (v verifyFailed) ExitCode() int { return ExitVerifyFailed }

const auditUsage = `audit list|export|verify|key|reconcile|split-views ...
  audit list   --config FILE [--request-id ID] [--after-seq N] [--since T] [--until T] [--limit N] [--json]
  audit export --config FILE [--format jsonl|csv] [--since T] [--until T] [--out FILE]
  audit verify --verifier KEY (--export FILE | --gateway ADDR --cert F --key F --bundle F [--tiles]) [--state DIR] [--witness KEY]...
  audit key    --config FILE
  audit reconcile --config FILE --partner DOMAIN
  audit split-views --config FILE [--origin O] [--json]`

func runAudit(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usagef("audit: name a subcommand:\n%s", auditUsage)
	}
	switch args[0] {
	case "list":
		return runAuditList(ctx, e, args[1:])
	case "export":
		return runAuditExport(ctx, e, args[1:])
	case "verify":
		return runAuditVerify(ctx, e, args[1:])
	case "key":
		return runAuditKey(ctx, e, args[1:])
	case "reconcile":
		return runAuditReconcile(ctx, e, args[1:])
	case "split-views":
		return runAuditSplitViews(ctx, e, args[1:])
	}
	return usagef("audit: unknown subcommand %q:\n%s", args[0], auditUsage)
}

func runAuditList(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "audit list", "audit list --config FILE [--request-id ID] [--after-seq N] [--since RFC3339] [--until RFC3339] [--limit N] [--json]\n\nReads the audit trail from the gateway's store (the running gateway may stay up).")
	cfgPath := fs.String("config", "", "gateway configuration file; its store is read")
	reqID := fs.String("request-id", "", "only records of this exchange")
	afterSeq := fs.Uint64("after-seq", 0, "only records after this sequence number")
	since := fs.String("since", "", "only records at or after this RFC 3339 time")
	until := fs.String("until", "", "only records before this RFC 3339 time")
	limit := fs.Int("limit", 100, "maximum records (at most 1000)")
	asJSON := fs.Bool("json", false, "print protojson lines instead of a table")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *cfgPath == "" {
		return usagef("audit list: --config is required")
	}
	if *limit < 1 || *limit > 1000 {
		return usagef("audit list: --limit must be between 1 and 1000")
	}
	q := store.AuditQuery{RequestID: *reqID, AfterSeq: *afterSeq, Limit: *limit}
	if err := timeFlags("audit list", *since, *until, &q.Since, &q.Until); err != nil {
		return err
	}
	st, _, err := openStore(ctx, *cfgPath)
	if err != nil {
		return fmt.Errorf("audit list: %w", err)
	}
	defer st.Close()
	recs, err := st.ListAudit(ctx, q)
	if err != nil {
		return fmt.Errorf("audit list: %w", err)
	}
	if *asJSON {
		return audit.WriteJSONL(e.stdout, recs)
	}
	return audit.WriteTable(e.stdout, recs)
}

func timeFlags(cmd, since, until string, s, u *time.Time) error {
	for _, t := range []struct {
		flag, val string
		dst       *time.Time
	}{{"--since", since, s}, {"--until", until, u}} {
		if t.val == "" {
			continue
		}
		v, err := time.Parse(time.RFC3339, t.val)
		if err != nil {
			return usagef("%s: %s %q is not an RFC 3339 time", cmd, t.flag, t.val)
		}
		*t.dst = v
	}
	return nil
}

func openStore(ctx context.Context, cfgPath string) (*sqlite.Store, *config.Config, error) {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, nil, err
	}
	st, err := sqlite.Open(ctx, cfg.Store.SQLite.Path)
	if err != nil {
		return nil, nil, err
	}
	return st, cfg, nil
}

// exportPage is how many leaves export reads at a time.
const exportPage = 1000

func runAuditExport(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "audit export", "audit export --config FILE [--format jsonl|csv] [--since RFC3339] [--until RFC3339] [--out FILE]\n\nWrites the audit log from the gateway's store: JSONL (every leaf, then every signed checkpoint; the input of audit verify --export) or CSV (records only, for spreadsheets). With --since/--until only records in the range are written, and the export can no longer be verified on its own.")
	cfgPath := fs.String("config", "", "gateway configuration file; its store is read")
	format := fs.String("format", "jsonl", "jsonl or csv")
	since := fs.String("since", "", "only records at or after this RFC 3339 time")
	until := fs.String("until", "", "only records before this RFC 3339 time")
	out := fs.String("out", "", "write to this file instead of stdout")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *cfgPath == "" {
		return usagef("audit export: --config is required")
	}
	if *format != "jsonl" && *format != "csv" {
		return usagef("audit export: --format %q: use jsonl or csv", *format)
	}
	var from, to time.Time
	if err := timeFlags("audit export", *since, *until, &from, &to); err != nil {
		return err
	}
	st, _, err := openStore(ctx, *cfgPath)
	if err != nil {
		return fmt.Errorf("audit export: %w", err)
	}
	defer st.Close()
	w := e.stdout
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			return fmt.Errorf("audit export: %w", err)
		}
		defer f.Close()
		w = f
	}
	if err := exportLog(ctx, st, w, *format, from, to); err != nil {
		return fmt.Errorf("audit export: %w", err)
	}
	if f, ok := w.(*os.File); ok && *out != "" {
		if err := f.Close(); err != nil {
			return fmt.Errorf("audit export: %w", err)
		}
	}
	return nil
}

func exportLog(ctx context.Context, st *sqlite.Store, w io.Writer, format string, from, to time.Time) error {
	// The checkpoints are read first: every leaf they cover is then
	// certainly in the store when the leaves are read.
	cps, err := st.AuditCheckpoints(ctx)
	if err != nil {
		return err
	}
	ex := audit.NewExporter(w)
	var cw *audit.CSVWriter
	if format == "csv" {
		if cw, err = audit.NewCSVWriter(w); err != nil {
			return err
		}
	}
	inRange := func(r *blv1.AuditRecord) bool {
		t := r.GetTime().AsTime()
		return (from.IsZero() || !t.Before(from)) && (to.IsZero() || t.Before(to))
	}
	for start := int64(0); ; start += exportPage {
		leaves, err := st.AuditLeaves(ctx, start, exportPage)
		if err != nil {
			return err
		}
		if len(leaves) == 0 {
			break
		}
		ix := make([]int64, len(leaves))
		for i := range leaves {
			ix[i] = tlog.StoredHashIndex(0, start+int64(i))
		}
		hashes, err := st.ReadAuditHashes(ctx, ix)
		if err != nil {
			return err
		}
		for i, leaf := range leaves {
			index := start + int64(i)
			rec, err := audit.ParseLeaf(index, leaf)
			if err != nil {
				// Export what is stored anyway: verify names the problem.
				rec = nil
			}
			if rec != nil && !inRange(rec) {
				continue
			}
			if cw != nil {
				if rec == nil {
					return fmt.Errorf("index %d: %w", index, err)
				}
				if err := cw.Record(rec, hashes[i]); err != nil {
					return err
				}
				continue
			}
			if err := ex.Leaf(index, leaf, hashes[i]); err != nil {
				return err
			}
		}
	}
	if cw != nil {
		return cw.Flush()
	}
	for _, c := range cps {
		note := c.Note
		lines, err := st.Cosignatures(ctx, c.Size)
		if err != nil {
			return err
		}
		for _, l := range lines {
			note = append(note, l...)
		}
		if err := ex.Checkpoint(c.Size, c.Time, note); err != nil {
			return err
		}
	}
	return ex.Flush()
}

func runAuditVerify(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "audit verify", `audit verify --verifier KEY (--export FILE | --gateway ADDR --cert FILE --key FILE --bundle FILE [--tiles]) [--state DIR] [--witness KEY]...

Recomputes every leaf hash and the Merkle tree of an audit log, checks every
signed checkpoint with the verifier key, and with --state checks that the log
extends the checkpoint seen last time (then saves the newest, with the right
edge of the tree at its size, so that the next run reads only the leaves
after it); each --witness
requires the latest checkpoint to carry that partner's cosignature. Offline from an
export (audit export), or online from a gateway as one of its auditors (with
--tiles from its C2SP tlog-tiles). Leaves stream past: memory does not grow
with the log (a piped export is spooled to a temporary file, read twice).
Exit codes: 0 verified, 1 could not read or connect, 2 usage, 5 the log
does not verify (the message names the first bad index or checkpoint).`)
	vkey := fs.String("verifier", "", "the gateway's audit verifier key (name+hash+key), or @FILE (its audit.key.pub); after a key rotation all its keys, oldest first, comma-separated or one per line in FILE")
	exportPath := fs.String("export", "", "a JSONL export to verify (- for stdin)")
	state := fs.String("state", "", "directory that keeps the last verified checkpoint per log and the right edge of the tree at its size: the next run verifies only the leaves after it")
	co := clientFlags(fs)
	fs.Lookup("cert").Usage = "your auditor certificate, spiffe://<domain>/auditor/<name> (env BORDERLINK_CERT)"
	signNow := fs.Bool("sign-now", false, "online: ask the gateway to sign a checkpoint covering every record first")
	tiles := fs.Bool("tiles", false, "online: read the log as C2SP tlog-tiles (entry bundles and level-0 tiles, up to the latest checkpoint) instead of GetLeaves pages")
	var witnesses []string
	fs.Func("witness", "require the latest checkpoint to be cosigned by this partner (its audit verifier key, or @FILE; after a key rotation all its keys, oldest first, as for --verifier: the cosignature must be by the last, current one); repeatable", func(v string) error {
		witnesses = append(witnesses, v)
		return nil
	})
	if err := parse(fs, args); err != nil {
		return err
	}
	if *vkey == "" {
		return usagef("audit verify: --verifier is required: the verifier key of the log (the audit.key.pub file of the gateway)")
	}
	if rest, ok := strings.CutPrefix(*vkey, "@"); ok {
		b, err := os.ReadFile(rest)
		if err != nil {
			return fmt.Errorf("audit verify: --verifier: %w", err)
		}
		*vkey = strings.TrimSpace(string(b))
	}
	// After a key rotation the log's checkpoints are signed by several
	// keys: give them all, oldest first (one per line in @FILE, or
	// separated by commas), as `audit key` prints them.
	v, err := audit.NewKeyRing("", splitKeys(*vkey))
	if err != nil {
		return usagef("audit verify: --verifier: %v", err)
	}
	// The environment only fills in a gateway when no export is named:
	// a BORDERLINK_GATEWAY left set must not turn an offline check into a
	// usage error.
	online := co.Address != "" || (*exportPath == "" && e.getenv("BORDERLINK_GATEWAY") != "")
	if (*exportPath == "") == !online {
		return usagef("audit verify: give exactly one of --export FILE or --gateway ADDR")
	}
	if *tiles && !online {
		return usagef("audit verify: --tiles reads tiles from a gateway: give --gateway ADDR")
	}
	if *signNow && len(witnesses) > 0 {
		// A checkpoint signed on demand has not been seen by any witness yet.
		return usagef("audit verify: --sign-now and --witness exclude each other: a checkpoint signed now carries no cosignatures; verify with --witness against the latest periodic checkpoint")
	}

	// --state keeps, per log, the last verified checkpoint and the right
	// edge of the tree at its size: the next run reads only the leaves
	// after it (auditState).
	var statePath string
	var st *auditState
	if *state != "" {
		if err := os.MkdirAll(*state, 0o700); err != nil {
			return fmt.Errorf("audit verify: --state: %w", err)
		}
		statePath = filepath.Join(*state, url.PathEscape(v.Name())+".checkpoint")
		b, err := os.ReadFile(statePath)
		switch {
		case err == nil:
			if st, err = parseAuditState(b); err != nil {
				return fmt.Errorf("audit verify: --state: %s: %w", statePath, err)
			}
		case !errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("audit verify: --state: %w", err)
		}
	}
	var lv *audit.LogVerifier
	switch {
	case st == nil:
		lv, err = audit.NewLogVerifier(v, nil)
	case st.Edge == nil:
		// A state from before the edge was kept: verify from index 0
		// against the saved checkpoint, then save the edge too.
		lv, err = audit.NewLogVerifier(v, st.Checkpoint)
	default:
		lv, err = audit.ResumeLogVerifier(v, st.Checkpoint, st.Size, st.Edge)
	}
	if err != nil {
		err = fmt.Errorf("--state %s: %w", statePath, err)
		if errors.Is(err, audit.ErrVerify) {
			return verifyFailed{"audit verify", err}
		}
		return fmt.Errorf("audit verify: %w", err)
	}

	// Both ways stream the leaves through a LogVerifier: memory stays
	// O(log n) however long the log.
	var res audit.LogResult
	var verr error
	if *exportPath != "" {
		r, done, err := seekableInput(*exportPath)
		if err != nil {
			return fmt.Errorf("audit verify: %w", err)
		}
		defer done()
		res, verr = audit.VerifyExportWith(r, lv)
	} else {
		cc, err := dial(ctx, e, co)
		if err != nil {
			return err
		}
		defer cc.Close()
		res, verr = verifyOnline(ctx, blv1.NewAuditClient(cc), lv, *signNow, *tiles)
	}
	if errors.Is(verr, audit.ErrVerify) {
		return verifyFailed{"audit verify", verr}
	}
	if verr != nil {
		return fmt.Errorf("audit verify: %w", verr)
	}
	for _, w := range witnesses {
		if rest, ok := strings.CutPrefix(w, "@"); ok {
			b, err := os.ReadFile(rest)
			if err != nil {
				return fmt.Errorf("audit verify: --witness: %w", err)
			}
			w = string(b)
		}
		// A witness that rotated its key: all its keys, oldest first, as
		// for --verifier. The latest checkpoint must be cosigned with the
		// current (last) one: a key is retired because it may have
		// leaked, and gateways accept new cosignatures only from a
		// witness's current key. The retired ones only tell such a
		// cosignature apart from a stranger's.
		wkeys := splitKeys(w)
		wv, err := audit.NewKeyRing("", wkeys)
		if err != nil {
			return usagef("audit verify: --witness: %v", err)
		}
		domain, ok := strings.CutSuffix(wv.Name(), "/borderlink/audit")
		if !ok {
			return usagef("audit verify: --witness: want a partner's audit verifier key (<domain>/borderlink/audit+hash+key)")
		}
		cv, err := audit.NewCosignatureVerifier(wkeys[len(wkeys)-1], audit.WitnessName(domain))
		if err != nil {
			return usagef("audit verify: --witness: %v", err)
		}
		if _, _, err := audit.OpenCosigned(res.LatestNote, cv); err != nil {
			if ring, rerr := audit.NewCosignatureKeyRing(cv.Name(), wkeys); rerr == nil && len(wkeys) > 1 {
				if _, _, rerr := audit.OpenCosigned(res.LatestNote, ring); rerr == nil {
					err = fmt.Errorf("cosigned by %s only with a retired key, not with its current one: %w", cv.Name(), audit.ErrVerify)
				}
			}
			return verifyFailed{"audit verify", fmt.Errorf("latest checkpoint (size %d): %w", res.Latest.Size, err)}
		}
		fmt.Fprintf(e.stdout, "cosigned by witness %s\n", cv.Name())
	}
	if statePath != "" {
		b, err := formatAuditState(res)
		if err == nil {
			err = writeFileAtomic(statePath, b)
		}
		if err != nil {
			return fmt.Errorf("audit verify: --state: %w", err)
		}
	}
	fmt.Fprintf(e.stdout, "OK %s: %s; %d checkpoints verified; latest checkpoint size %d root %s\n",
		v.Name(), verifiedRecords(res), res.Checkpoints, res.Latest.Size, res.Latest.Hash)
	if res.Uncovered > 0 {
		fmt.Fprintf(e.stdout, "note: %d records after the latest checkpoint are not covered by a signature yet\n", res.Uncovered)
	}
	if st != nil {
		fmt.Fprintf(e.stdout, "consistent with the checkpoint saved in %s\n", statePath)
		if st.Edge == nil {
			fmt.Fprintf(e.stdout, "note: %s had no right edge (older format): verified from index 0, edge saved now\n", statePath)
		}
	}
	return nil
}

// verifiedRecords says which records a run verified, and how: those from
// res.From on were hashed; those below it (resumed with --state) were
// either checked by their stored leaf hash against the saved checkpoint
// (an export) or not read again (online).
func verifiedRecords(res audit.LogResult) string {
	var s string
	if res.Size > res.From {
		s = fmt.Sprintf("records %d..%d verified (%d leaves hashed)", res.From, res.Size-1, res.Verified)
	} else {
		s = fmt.Sprintf("no records from index %d (0 leaves hashed)", res.From)
	}
	switch {
	case res.From == 0:
	case res.HashedBelow == res.From:
		s += fmt.Sprintf("; records below %d checked by leaf hash against the saved state", res.From)
	default:
		s += fmt.Sprintf("; records below %d not read again (covered by the saved state)", res.From)
	}
	return s
}

// splitKeys splits a list of verifier keys: comma-, space- or
// newline-separated.
func splitKeys(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '\n' || r == ' ' })
}

// seekableInput opens an export for VerifyExport, which reads it twice. A
// pipe on stdin is first copied to a temporary file: disk, not memory,
// grows with the log.
func seekableInput(path string) (io.ReadSeeker, func(), error) {
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, nil, err
		}
		return f, func() { f.Close() }, nil
	}
	if _, err := os.Stdin.Seek(0, io.SeekStart); err == nil {
		return os.Stdin, func() {}, nil
	}
	f, err := os.CreateTemp("", "borderlink-export-*.jsonl")
	if err != nil {
		return nil, nil, fmt.Errorf("spool stdin: %w", err)
	}
	done := func() { f.Close(); os.Remove(f.Name()) }
	if _, err := io.Copy(f, os.Stdin); err != nil {
		done()
		return nil, nil, fmt.Errorf("spool stdin: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		done()
		return nil, nil, fmt.Errorf("spool stdin: %w", err)
	}
	return f, done, nil
}

// leavesPage is how many leaves online verification asks for at a time
// (the Audit service's cap).
const leavesPage = 10000

// verifyOnline verifies a gateway's log against its latest checkpoint,
// streaming its leaves page by page, or bundle by bundle from its tiles.
// lv is fresh; resumed (audit.ResumeLogVerifier), it reads only the leaves
// from lv.Start() on.
func verifyOnline(ctx context.Context, c blv1.AuditClient, lv *audit.LogVerifier, signNow, tiles bool) (audit.LogResult, error) {
	cp, err := c.GetCheckpoint(ctx, &blv1.GetCheckpointRequest{SignNow: signNow})
	if status.Code(err) == codes.DataLoss {
		// The gateway refused to sign: its stored log failed the check it
		// makes first (ADR 0017): the log does not verify. Its message
		// already ends with ErrVerify's text.
		msg := strings.TrimSuffix(status.Convert(err).Message(), ": "+audit.ErrVerify.Error())
		return audit.LogResult{}, fmt.Errorf("the gateway refused to sign a checkpoint: %s: %w", msg, audit.ErrVerify)
	}
	if err != nil {
		return audit.LogResult{}, err
	}
	if err := lv.Checkpoint([]byte(cp.GetCheckpoint())); err != nil {
		return audit.LogResult{}, err
	}
	if tiles {
		// Tiles describe the tree of the checkpoint: nothing after it.
		fetch := func(ctx context.Context, path string) ([]byte, error) {
			resp, err := c.GetTile(ctx, &blv1.GetTileRequest{Path: path})
			return resp.GetData(), err
		}
		if err := audit.VerifyTiles(ctx, fetch, lv, lv.Latest().Size); err != nil {
			return audit.LogResult{}, err
		}
		return lv.Finish()
	}
	for {
		resp, err := c.GetLeaves(ctx, &blv1.GetLeavesRequest{Start: uint64(lv.Size()), Count: leavesPage})
		if err != nil {
			return audit.LogResult{}, err
		}
		if len(resp.GetLeaves()) == 0 {
			return lv.Finish()
		}
		for _, leaf := range resp.GetLeaves() {
			if err := lv.Add(lv.Size(), leaf, nil); err != nil {
				return audit.LogResult{}, err
			}
		}
	}
}

// auditState is what audit verify --state keeps per log, in
// <origin>.checkpoint: the last verified checkpoint and the right edge of
// the tree at its size (at most 64 hashes, the compact range [0, size)),
// as JSON:
//
//	{"checkpoint":"<signed note>","size":20,"edge":["<base64>",...]}
//
// An older state is the signed note alone: no edge (Edge nil).
type auditState struct {
	Checkpoint []byte
	Size       int64
	Edge       []tlog.Hash
}

type auditStateJSON struct {
	Checkpoint string   `json:"checkpoint"`
	Size       int64    `json:"size"`
	Edge       []string `json:"edge"`
}

// parseAuditState reads a state file; the edge is checked against the
// checkpoint later (audit.ResumeLogVerifier), not here.
func parseAuditState(b []byte) (*auditState, error) {
	if !bytes.HasPrefix(bytes.TrimSpace(b), []byte("{")) {
		// A signed note starts with its origin line, never with "{".
		return &auditState{Checkpoint: b}, nil
	}
	var j auditStateJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return nil, fmt.Errorf("malformed state: %w", err)
	}
	if j.Checkpoint == "" || j.Edge == nil {
		return nil, fmt.Errorf("malformed state: checkpoint or edge missing")
	}
	st := &auditState{Checkpoint: []byte(j.Checkpoint), Size: j.Size, Edge: []tlog.Hash{}}
	for i, e := range j.Edge {
		h, err := base64.StdEncoding.DecodeString(e)
		if err != nil || len(h) != tlog.HashSize {
			return nil, fmt.Errorf("malformed state: edge hash %d is not a base64 SHA-256", i)
		}
		st.Edge = append(st.Edge, tlog.Hash(h))
	}
	return st, nil
}

// formatAuditState is the state to save after res verified.
func formatAuditState(res audit.LogResult) ([]byte, error) {
	j := auditStateJSON{Checkpoint: string(res.LatestNote), Size: res.Latest.Size, Edge: []string{}}
	for _, h := range res.Edge {
		j.Edge = append(j.Edge, base64.StdEncoding.EncodeToString(h[:]))
	}
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func runAuditKey(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "audit key", "audit key --config FILE\n\nPrints the gateway's audit verifier key (for partners' peers.<domain>.audit_key and for auditors' audit verify --verifier), creating the signing key file if it does not exist yet.")
	cfgPath := fs.String("config", "", "gateway configuration file")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *cfgPath == "" {
		return usagef("audit key: --config is required")
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	if cfg.Vault != nil {
		// The key lives in Vault transit: print every version's verifier
		// key, and never create a key file that nothing signs with.
		c, err := vault.New(ctx, *cfg.Vault, vault.Options{})
		if err != nil {
			return fmt.Errorf("audit key: vault: %w", err)
		}
		defer c.Close()
		s, err := c.NewSigner(ctx, audit.Origin(cfg.TrustDomain))
		if err != nil {
			return fmt.Errorf("audit key: vault: %w", err)
		}
		vkeys, err := s.VerifierKeys(ctx)
		if err != nil {
			return fmt.Errorf("audit key: vault: %w", err)
		}
		for _, k := range vkeys {
			fmt.Fprintln(e.stdout, k)
		}
		return nil
	}
	_, vkey, err := audit.LoadOrCreateKey(cfg.Audit.KeyFile, audit.Origin(cfg.TrustDomain), true)
	if err != nil {
		return fmt.Errorf("audit key: %w", err)
	}
	fmt.Fprintln(e.stdout, vkey)
	return nil
}

func runAuditReconcile(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "audit reconcile", `audit reconcile --config FILE --partner DOMAIN

Matches this gateway's records of exchanges with the partner against the
partner's records of the same exchanges (read from the partner's Audit
service with this gateway's own identity), and checks every receipt the
partner gave us against the partner's signed checkpoint with an inclusion
proof. Exit codes: 0 both logs agree, 1 could not read or connect, 2 usage,
5 discrepancies (each listed).`)
	cfgPath := fs.String("config", "", "this gateway's configuration file (its store, certificate and peers are used)")
	partner := fs.String("partner", "", "the partner's trust domain")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *cfgPath == "" || *partner == "" {
		return usagef("audit reconcile: --config and --partner are required")
	}
	st, cfg, err := openStore(ctx, *cfgPath)
	if err != nil {
		return fmt.Errorf("audit reconcile: %w", err)
	}
	defer st.Close()
	peer, ok := cfg.Peers[*partner]
	if !ok || peer.AuditKey == "" {
		return fmt.Errorf("audit reconcile: %s: peers.%s with address and audit_key is required", cfg.File, *partner)
	}
	// Receipts kept before the partner rotated its key verify with its
	// retired keys.
	v, err := audit.NewKeyRing(audit.Origin(*partner), append(slices.Clone(peer.RetiredAuditKeys), peer.AuditKey))
	if err != nil {
		return fmt.Errorf("audit reconcile: peers.%s audit keys: %w", *partner, err)
	}
	// Our pulls from the partner (consumer side) and the alerts we pushed
	// to it (provider side, alert.deliver).
	ours, err := listOwnAudit(ctx, st, store.AuditQuery{Partner: *partner, Side: int32(blv1.AuditSide_AUDIT_SIDE_CONSUMER)})
	if err != nil {
		return fmt.Errorf("audit reconcile: %w", err)
	}
	oursPushed, err := listOwnAudit(ctx, st, store.AuditQuery{Partner: *partner, Side: int32(blv1.AuditSide_AUDIT_SIDE_PROVIDER), Action: gateway.ActionAlertDeliver})
	if err != nil {
		return fmt.Errorf("audit reconcile: %w", err)
	}

	cc, closeKeys, err := dialPartner(ctx, cfg, *partner, peer.Address)
	if err != nil {
		return fmt.Errorf("audit reconcile: %w", err)
	}
	defer closeKeys()
	defer cc.Close()
	ac := blv1.NewAuditClient(cc)
	cpResp, err := ac.GetCheckpoint(ctx, &blv1.GetCheckpointRequest{})
	if err != nil {
		return fmt.Errorf("audit reconcile: partner checkpoint: %w", err)
	}
	// The latest checkpoint is a new statement: the partner's current key
	// only (ADR 0010). Receipts we kept may be older and open with the ring.
	current, err := audit.NewVerifier(peer.AuditKey, audit.Origin(*partner))
	if err != nil {
		return fmt.Errorf("audit reconcile: peers.%s.audit_key: %w", *partner, err)
	}
	cp, err := audit.OpenCheckpoint([]byte(cpResp.GetCheckpoint()), current)
	if err != nil {
		return verifyFailed{"audit reconcile", fmt.Errorf("partner checkpoint (with its current audit_key): %w", err)}
	}
	var theirs []*blv1.AuditRecord
	for after := uint64(0); ; {
		resp, err := ac.ListRecords(ctx, &blv1.ListRecordsRequest{AfterSeq: after, Limit: 1000})
		if err != nil {
			return fmt.Errorf("audit reconcile: partner records: %w", err)
		}
		if len(resp.GetRecords()) == 0 {
			break
		}
		theirs = append(theirs, resp.GetRecords()...)
		after = resp.GetRecords()[len(resp.GetRecords())-1].GetSeq()
	}

	// The partner shows us its records of the calls we made: provider
	// side for our pulls, consumer side for our pushes.
	var theirsPulled, theirsPushed []*blv1.AuditRecord
	bySeq := map[uint64]*blv1.AuditRecord{}
	for _, t := range theirs {
		bySeq[t.GetSeq()] = t
		if t.GetSide() == blv1.AuditSide_AUDIT_SIDE_CONSUMER {
			theirsPushed = append(theirsPushed, t)
		} else {
			theirsPulled = append(theirsPulled, t)
		}
	}
	rep := audit.Reconcile(ours, theirsPulled)
	push := audit.ReconcilePushes(oursPushed, theirsPushed)
	if len(theirsPushed) == 0 && slices.ContainsFunc(oursPushed, func(r *blv1.AuditRecord) bool { return r.GetPartnerReceipt() != "" }) {
		// Fail closed (the pushes count as missing), but say the likely
		// reason: gateways before this version show partners only the
		// provider side of their log.
		fmt.Fprintf(e.stderr, "note: %s showed none of its records of the alerts we pushed to it; a gateway of an older Borderlink version does not show them to partners, so they are listed as missing below until it is upgraded\n", *partner)
	}
	rep.Matched += push.Matched
	rep.NotCompared += push.NotCompared
	rep.Discrepancies = append(rep.Discrepancies, push.Discrepancies...)
	proved, pending := 0, 0
	for _, o := range append(ours, oursPushed...) {
		if o.GetPartnerReceipt() == "" || o.GetStatus() == "DATA_LOSS" {
			continue
		}
		bad := func(format string, args ...any) {
			rep.Discrepancies = append(rep.Discrepancies, audit.Discrepancy{RequestID: o.GetRequestId(), Problem: fmt.Sprintf(format, args...)})
		}
		r, err := audit.OpenReceipt(o.GetPartnerReceipt(), v)
		if err != nil {
			bad("our seq %d keeps a receipt that does not verify: %v", o.GetSeq(), err)
			continue
		}
		if t, ok := bySeq[uint64(r.Index)+1]; ok {
			// Records reach partners without their policy input (redacted),
			// so the leaf cannot be recomputed here: the record must carry
			// the receipt's request and release digest, and the inclusion
			// proof below proves the leaf the receipt names.
			if t.GetRequestId() != o.GetRequestId() || t.GetReleaseSha256() != r.Release {
				bad("the partner's record at index %d is not the one its receipt names", r.Index)
				continue
			}
		}
		if r.Index >= cp.Size {
			pending++
			continue
		}
		p, err := ac.GetInclusionProof(ctx, &blv1.GetInclusionProofRequest{Index: uint64(r.Index), TreeSize: uint64(cp.Size)})
		if err != nil {
			bad("no inclusion proof for the receipt's index %d: %v", r.Index, err)
			continue
		}
		if err := audit.CheckInclusion(cp, r.Index, r.LeafHash, toHashes(p.GetHashes())); err != nil {
			bad("receipt's leaf is not in the partner's log: %v", err)
			continue
		}
		proved++
	}
	fmt.Fprintf(e.stdout, "%s: %d exchanges matched (%d of them alerts we pushed), %d receipts proved in the partner's checkpoint of size %d, %d receipts newer than it, %d failed calls or unsent alerts not compared\n",
		*partner, rep.Matched, push.Matched, proved, cp.Size, pending, rep.NotCompared)
	for _, d := range rep.Discrepancies {
		fmt.Fprintf(e.stdout, "DISCREPANCY request %s: %s\n", d.RequestID, d.Problem)
	}
	if len(rep.Discrepancies) > 0 {
		return verifyFailed{"audit reconcile", fmt.Errorf("%d discrepancies with %s", len(rep.Discrepancies), *partner)}
	}
	return nil
}

// listOwnAudit reads every record of this gateway's log matching q.
func listOwnAudit(ctx context.Context, st *sqlite.Store, q store.AuditQuery) ([]*blv1.AuditRecord, error) {
	var out []*blv1.AuditRecord
	for {
		page, err := st.ListAudit(ctx, q)
		if err != nil {
			return nil, err
		}
		if len(page) == 0 {
			return out, nil
		}
		out = append(out, page...)
		q.AfterSeq = page[len(page)-1].GetSeq()
	}
}

// dialPartner connects to a partner gateway with this gateway's identity.
func dialPartner(ctx context.Context, cfg *config.Config, partner, addr string) (*grpc.ClientConn, func(), error) {
	own, err := gateway.LoadIdentity(ctx, cfg, nil)
	if err != nil {
		return nil, nil, err
	}
	creds := credentials.NewTLS(identity.ClientTLSConfig(own.KeyPair, own.Bundles, identity.GatewayID(partner)))
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		own.Close()
		return nil, nil, err
	}
	return cc, own.Close, nil
}

func toHashes(b [][]byte) []tlog.Hash {
	out := make([]tlog.Hash, len(b))
	for i := range b {
		copy(out[i][:], b[i])
	}
	return out
}
