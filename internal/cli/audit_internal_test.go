package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/audit/audittest"
	"github.com/borderlink/borderlink/internal/store/sqlite"
	"github.com/borderlink/borderlink/internal/store/sqlite/sqlitetest"
	"github.com/borderlink/borderlink/internal/store/storetest"
)

const tamperOrigin = "nl.customs.example/borderlink/audit"

// auditLog is a real store with n records and checkpoints at the sizes.
type auditLog struct {
	path   string
	skey   string
	vkey   string
	signer note.Signer
	idBase int // added to request ids, so that re-appended records differ
}

func newAuditLog(t *testing.T, n int, sizes ...int) *auditLog {
	t.Helper()
	k := audittest.NewKey(t, tamperOrigin)
	l := &auditLog{path: filepath.Join(t.TempDir(), "gateway.db"), skey: k.Skey, vkey: k.Vkey, signer: k.Signer}
	l.append(t, 0, n, sizes...)
	return l
}

// append adds records seq from+1..to (by request id) and signs
// checkpoints when the log reaches each of sizes.
func (l *auditLog) append(t *testing.T, from, to int, sizes ...int) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, l.path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cp, err := audit.NewCheckpointer(st, l.signer, tamperOrigin, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := from; i < to; i++ {
		rec := storetest.AuditRecord(fmt.Sprintf("%032x", l.idBase+i+1), time.Duration(i)*time.Second)
		if _, err := st.AppendAudit(ctx, rec); err != nil {
			t.Fatal(err)
		}
		for _, s := range sizes {
			if s == i+1 {
				if _, err := cp.Sign(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// sql runs statements on the file as an attacker with the sqlite3 shell
// would: the append-only triggers dropped first.
func (l *auditLog) sql(t *testing.T, stmts ...string) {
	t.Helper()
	var drops []string
	for _, tr := range []string{"audit_records_no_update", "audit_records_no_delete", "audit_records_gapless",
		"audit_hashes_no_delete", "audit_hashes_no_update", "audit_checkpoints_no_delete"} {
		drops = append(drops, "DROP TRIGGER IF EXISTS "+tr)
	}
	sqlitetest.Exec(t, l.path, append(drops, stmts...)...)
}

func (l *auditLog) export(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, l.path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var b bytes.Buffer
	if err := exportLog(ctx, st, &b, "jsonl", time.Time{}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "export.jsonl")
	if err := os.WriteFile(p, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func verifyCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), append([]string{"audit", "verify"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func TestAuditVerifyTampering(t *testing.T) {
	good := newAuditLog(t, 20, 10, 20)
	code, out, stderr := verifyCLI(t, "--verifier", good.vkey, "--export", good.export(t))
	if code != ExitOK || !strings.Contains(out, "OK "+tamperOrigin+": records 0..19 verified (20 leaves hashed); 2 checkpoints verified") {
		t.Fatalf("untampered log: exit %d, %q %q", code, out, stderr)
	}

	tests := []struct {
		name   string
		tamper func(t *testing.T, l *auditLog)
		want   string
	}{
		{"byte of a record changed", func(t *testing.T, l *auditLog) {
			// request ids are hex; 'f' -> 'e' keeps the record decodable.
			l.sql(t, "UPDATE audit_records SET record = CAST(replace(CAST(record AS TEXT), '0000000000000007', '000000000000000e') AS BLOB) WHERE seq = 7")
		}, "index 6: record hashes to"},
		{"record deleted", func(t *testing.T, l *auditLog) {
			l.sql(t, "DELETE FROM audit_records WHERE seq = 12")
		}, "index 11: record says seq 13"},
		{"two records reordered", func(t *testing.T, l *auditLog) {
			l.sql(t, "UPDATE audit_records SET seq = 1000 WHERE seq = 4", "UPDATE audit_records SET seq = 4 WHERE seq = 5", "UPDATE audit_records SET seq = 5 WHERE seq = 1000")
		}, "index 3: record says seq 5"},
		{"signing key replaced", func(t *testing.T, l *auditLog) {
			sk, _, _ := audit.GenerateKey(tamperOrigin)
			l.signer, _ = note.NewSigner(sk)
			l.sql(t, "DELETE FROM audit_checkpoints")
			l.append(t, 20, 21, 21)
		}, "checkpoint #1: checkpoint signature"},
		{"truncated", func(t *testing.T, l *auditLog) {
			l.sql(t, "DELETE FROM audit_records WHERE seq > 15", "DELETE FROM audit_hashes WHERE id >= 26") // tlog.StoredHashCount(15) = 26
		}, "checkpoint at size 20 but the log has only 15 records"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newAuditLog(t, 20, 10, 20)
			tt.tamper(t, l)
			code, out, stderr := verifyCLI(t, "--verifier", l.vkey, "--export", l.export(t))
			if code != ExitVerifyFailed || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d naming %q", code, out, stderr, ExitVerifyFailed, tt.want)
			}
		})
	}

	t.Run("truncated and re-appended, caught by --state", func(t *testing.T) {
		l := newAuditLog(t, 20, 10, 20)
		state := t.TempDir()
		if code, out, stderr := verifyCLI(t, "--verifier", l.vkey, "--export", l.export(t), "--state", state); code != ExitOK {
			t.Fatalf("first verify: exit %d %q %q", code, out, stderr)
		}
		// The operator cuts the log back to 12 records, drops the
		// checkpoints that covered more, and appends other records: the
		// rewritten log is self-consistent and freshly signed.
		l.sql(t, "DELETE FROM audit_records WHERE seq > 12", "DELETE FROM audit_hashes WHERE id >= 22", "DELETE FROM audit_checkpoints WHERE size > 12") // tlog.StoredHashCount(12) = 22
		l.idBase = 1000
		l.append(t, 12, 22, 22)
		exp := l.export(t)
		if code, _, stderr := verifyCLI(t, "--verifier", l.vkey, "--export", exp); code != ExitOK {
			t.Fatalf("rewritten log without state: exit %d %q (want it to look fine alone)", code, stderr)
		}
		// The state holds the right edge at 20: leaves 20 and 21 are
		// hashed, those below 20 checked by their leaf_hash, and those
		// do not give the saved checkpoint's root.
		code, _, stderr := verifyCLI(t, "--verifier", l.vkey, "--export", exp, "--state", state)
		if code != ExitVerifyFailed || !strings.Contains(stderr, "saved checkpoint at size 20 (--state): the log's stored leaf hashes below index 20 give root") {
			t.Errorf("exit %d, stderr %q; want the saved checkpoint named", code, stderr)
		}
	})

	t.Run("piped export", func(t *testing.T) {
		// A pipe cannot be read twice: it is spooled to a temporary file.
		data, err := os.ReadFile(good.export(t))
		if err != nil {
			t.Fatal(err)
		}
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			w.Write(data)
			w.Close()
		}()
		stdin := os.Stdin
		os.Stdin = r
		defer func() { os.Stdin = stdin; r.Close() }()
		code, out, stderr := verifyCLI(t, "--verifier", good.vkey, "--export", "-")
		if code != ExitOK || !strings.Contains(out, "OK "+tamperOrigin+": records 0..19 verified (20 leaves hashed); 2 checkpoints verified") {
			t.Errorf("piped export: exit %d, %q %q", code, out, stderr)
		}
	})

	t.Run("usage", func(t *testing.T) {
		if code, _, _ := verifyCLI(t, "--export", "x"); code != ExitUsage {
			t.Errorf("no --verifier: exit %d, want %d", code, ExitUsage)
		}
		if code, _, _ := verifyCLI(t, "--verifier", good.vkey); code != ExitUsage {
			t.Errorf("neither --export nor --gateway: exit %d, want %d", code, ExitUsage)
		}
		if code, _, _ := verifyCLI(t, "--verifier", good.vkey, "--export", "x", "--tiles"); code != ExitUsage {
			t.Errorf("--tiles offline: exit %d, want %d", code, ExitUsage)
		}
		if code, _, _ := verifyCLI(t, "--verifier", good.vkey, "--export", filepath.Join(t.TempDir(), "missing")); code != ExitError {
			t.Errorf("missing export: exit %d, want %d", code, ExitError)
		}
	})
}

// TestAuditVerifyWitnessRetiredKey: sg, a witness of the log, rotated
// its audit key. `--witness OLD,NEW` requires the latest checkpoint to be
// cosigned with NEW: gateways take no new cosignatures from a retired key
// (it may have leaked), so one by OLD alone vouches for nothing.
func TestAuditVerifyWitnessRetiredKey(t *testing.T) {
	const witnessOrigin = "sg.customs.example/borderlink/audit"
	oldSK, oldVK, err := audit.GenerateKey(witnessOrigin)
	if err != nil {
		t.Fatal(err)
	}
	newSK, newVK, err := audit.GenerateKey(witnessOrigin)
	if err != nil {
		t.Fatal(err)
	}
	cosign := func(l *auditLog, skey string, size int64) {
		t.Helper()
		ctx := context.Background()
		st, err := sqlite.Open(ctx, l.path)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		msg, err := st.AuditCheckpoint(ctx, size)
		if err != nil {
			t.Fatal(err)
		}
		body, err := audit.CheckpointText(msg)
		if err != nil {
			t.Fatal(err)
		}
		cs, err := audit.NewCosigner(skey, audit.WitnessName("sg.customs.example"), nil)
		if err != nil {
			t.Fatal(err)
		}
		line, err := audit.Cosign(cs, body)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.PutCosignature(ctx, size, cs.Name(), line, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	// Before the rotation sg cosigned size 5 with the old key; after it,
	// a holder of the old key cosigns the latest checkpoint with it.
	l := newAuditLog(t, 10, 5, 10)
	cosign(l, oldSK, 5)
	cosign(l, oldSK, 10)
	ring := oldVK + "," + newVK
	code, out, stderr := verifyCLI(t, "--verifier", l.vkey, "--export", l.export(t), "--witness", ring)
	if code != ExitVerifyFailed || !strings.Contains(stderr, "latest checkpoint (size 10)") || !strings.Contains(stderr, "only with a retired key") {
		t.Errorf("latest checkpoint cosigned with the retired key only: exit %d, %q %q; want %d naming the retired key", code, out, stderr, ExitVerifyFailed)
	}
	// The current key's cosignature on the latest checkpoint counts;
	// the older checkpoint's cosignature by the retired key is evidence
	// kept, not required. (A gateway keeps one cosignature per witness
	// and checkpoint: another log.)
	l = newAuditLog(t, 10, 5, 10)
	cosign(l, oldSK, 5)
	cosign(l, newSK, 10)
	code, out, stderr = verifyCLI(t, "--verifier", l.vkey, "--export", l.export(t), "--witness", ring)
	if code != ExitOK || !strings.Contains(out, "cosigned by witness sg.customs.example/borderlink/witness") {
		t.Errorf("latest checkpoint cosigned with the current key: exit %d, %q %q", code, out, stderr)
	}
	// The current key alone is enough to check it.
	if code, out, stderr := verifyCLI(t, "--verifier", l.vkey, "--export", l.export(t), "--witness", newVK); code != ExitOK {
		t.Errorf("--witness NEW: exit %d, %q %q", code, out, stderr)
	}
}

// TestAuditVerifyStateIncremental: --state keeps the right edge at the
// saved checkpoint's size, and the next run reads only the newer leaves.
func TestAuditVerifyStateIncremental(t *testing.T) {
	statePath := func(dir string) string { return filepath.Join(dir, url.PathEscape(tamperOrigin)+".checkpoint") }
	readState := func(t *testing.T, dir string) auditStateJSON {
		t.Helper()
		b, err := os.ReadFile(statePath(dir))
		if err != nil {
			t.Fatal(err)
		}
		var j auditStateJSON
		if err := json.Unmarshal(b, &j); err != nil {
			t.Fatalf("state %s: %v", b, err)
		}
		return j
	}

	t.Run("second run reads only the new leaves", func(t *testing.T) {
		l := newAuditLog(t, 20, 10, 20)
		state := t.TempDir()
		code, out, stderr := verifyCLI(t, "--verifier", l.vkey, "--export", l.export(t), "--state", state)
		if code != ExitOK || !strings.Contains(out, "records 0..19 verified (20 leaves hashed); 2 checkpoints verified") {
			t.Fatalf("first run: exit %d %q %q", code, out, stderr)
		}
		if j := readState(t, state); j.Size != 20 || len(j.Edge) != 2 || !strings.HasPrefix(j.Checkpoint, tamperOrigin+"\n20\n") { // 20 = 16 + 4
			t.Fatalf("state after the first run: %+v", j)
		}
		l.append(t, 20, 27, 25)
		exp := l.export(t)
		code, out, stderr = verifyCLI(t, "--verifier", l.vkey, "--export", exp, "--state", state)
		if code != ExitOK || !strings.Contains(out, "OK "+tamperOrigin+": records 20..26 verified (7 leaves hashed); records below 20 checked by leaf hash against the saved state; 3 checkpoints verified; latest checkpoint size 25") || !strings.Contains(out, "consistent with the checkpoint saved in") {
			t.Fatalf("second run: exit %d %q %q", code, out, stderr)
		}
		// Saved at the latest checkpoint (25 = 16 + 8 + 1), not at the
		// uncovered end of the log.
		if j := readState(t, state); j.Size != 25 || len(j.Edge) != 3 {
			t.Fatalf("state after the second run: %+v", j)
		}
		code, out, stderr = verifyCLI(t, "--verifier", l.vkey, "--export", exp, "--state", state)
		if code != ExitOK || !strings.Contains(out, "records 25..26 verified (2 leaves hashed); records below 25 checked by leaf hash against the saved state") {
			t.Fatalf("third run: exit %d %q %q", code, out, stderr)
		}
		// Leaves below the saved size are not hashed again, but a line
		// that is not a leaf line is still refused.
		b, err := os.ReadFile(exp)
		if err != nil {
			t.Fatal(err)
		}
		garbled := filepath.Join(t.TempDir(), "garbled.jsonl")
		os.WriteFile(garbled, bytes.Replace(b, []byte(`"index":3,"leaf_hash":"`), []byte(`"index":3,"leaf_hash":"?`), 1), 0o600)
		if code, _, stderr := verifyCLI(t, "--verifier", l.vkey, "--export", garbled, "--state", state); code == ExitOK || !strings.Contains(stderr, "(index 3): leaf_hash") {
			t.Errorf("garbled line below the saved size: exit %d %q", code, stderr)
		}
	})

	// Resumed at 20, an export's checkpoints below 20 are compared with
	// the tree of its leaf_hash values, which must reach the saved root:
	// a validly signed checkpoint at size 10 with another root (a fork)
	// fails, naming it; so does an altered leaf_hash below 20.
	t.Run("checkpoint below the saved size", func(t *testing.T) {
		l := newAuditLog(t, 20, 20)
		state := t.TempDir()
		if code, out, stderr := verifyCLI(t, "--verifier", l.vkey, "--export", l.export(t), "--state", state); code != ExitOK {
			t.Fatalf("first run: exit %d %q %q", code, out, stderr)
		}
		l.append(t, 20, 40, 40)
		exp := l.export(t)
		b, err := os.ReadFile(exp)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := audit.SignCheckpoint(l.signer, audit.Checkpoint{Origin: tamperOrigin, Size: 10, Hash: tlog.RecordHash([]byte("another history"))})
		if err != nil {
			t.Fatal(err)
		}
		line, _ := json.Marshal(audit.ExportCheckpoint{Type: "checkpoint", Size: 10, Time: "2026-11-25T10:00:00Z", Note: string(msg)})
		forked := filepath.Join(t.TempDir(), "forked.jsonl")
		os.WriteFile(forked, append(append(bytes.Clone(b), line...), '\n'), 0o600)
		code, out, stderr := verifyCLI(t, "--verifier", l.vkey, "--export", forked, "--state", state)
		if code != ExitVerifyFailed || !strings.Contains(stderr, "checkpoint at size 10 does not match the log") {
			t.Errorf("forked checkpoint below the saved size: exit %d %q %q; want %d naming the checkpoint at size 10", code, out, stderr, ExitVerifyFailed)
		}
		// An altered leaf_hash below 20 (index 3): the leaf hashes do
		// not reach the saved root.
		var j struct {
			LeafHash string `json:"leaf_hash"`
		}
		lines := bytes.Split(b, []byte("\n"))
		if err := json.Unmarshal(lines[3], &j); err != nil {
			t.Fatal(err)
		}
		h, _ := base64.StdEncoding.DecodeString(j.LeafHash)
		h[0] ^= 1
		altered := filepath.Join(t.TempDir(), "altered.jsonl")
		os.WriteFile(altered, bytes.Replace(b, []byte(j.LeafHash), []byte(base64.StdEncoding.EncodeToString(h)), 1), 0o600)
		code, out, stderr = verifyCLI(t, "--verifier", l.vkey, "--export", altered, "--state", state)
		if code != ExitVerifyFailed || !strings.Contains(stderr, "saved checkpoint at size 20 (--state)") {
			t.Errorf("leaf_hash altered below the saved size: exit %d %q %q", code, out, stderr)
		}
		// The untouched export still verifies.
		code, out, stderr = verifyCLI(t, "--verifier", l.vkey, "--export", exp, "--state", state)
		if code != ExitOK || !strings.Contains(out, "records 20..39 verified (20 leaves hashed); records below 20 checked by leaf hash against the saved state; 2 checkpoints verified") {
			t.Errorf("normal resume: exit %d %q %q", code, out, stderr)
		}
	})

	t.Run("tampered edge", func(t *testing.T) {
		l := newAuditLog(t, 20, 10, 20)
		state := t.TempDir()
		if code, out, stderr := verifyCLI(t, "--verifier", l.vkey, "--export", l.export(t), "--state", state); code != ExitOK {
			t.Fatalf("first run: exit %d %q %q", code, out, stderr)
		}
		j := readState(t, state)
		h, _ := base64.StdEncoding.DecodeString(j.Edge[0])
		h[0] ^= 1
		j.Edge[0] = base64.StdEncoding.EncodeToString(h)
		b, _ := json.Marshal(j)
		if err := os.WriteFile(statePath(state), b, 0o600); err != nil {
			t.Fatal(err)
		}
		code, out, stderr := verifyCLI(t, "--verifier", l.vkey, "--export", l.export(t), "--state", state)
		if code != ExitVerifyFailed || !strings.Contains(stderr, "--state "+statePath(state)+": saved right edge at size 20 hashes to") {
			t.Errorf("tampered edge: exit %d %q %q", code, out, stderr)
		}
		// Not overwritten by the failed run.
		if got := readState(t, state); got.Edge[0] != j.Edge[0] {
			t.Errorf("state rewritten after a failed run")
		}
		os.WriteFile(statePath(state), []byte(`{"checkpoint":"x","size":1,"edge":["AA=="]}`), 0o600)
		if code, _, stderr := verifyCLI(t, "--verifier", l.vkey, "--export", l.export(t), "--state", state); code != ExitError || !strings.Contains(stderr, statePath(state)+": malformed state") {
			t.Errorf("malformed state: exit %d %q", code, stderr)
		}
	})

	t.Run("old format", func(t *testing.T) {
		l := newAuditLog(t, 20, 10, 20)
		state := t.TempDir()
		if code, out, stderr := verifyCLI(t, "--verifier", l.vkey, "--export", l.export(t), "--state", state); code != ExitOK {
			t.Fatalf("first run: exit %d %q %q", code, out, stderr)
		}
		// What an earlier version saved: the signed note alone.
		if err := os.WriteFile(statePath(state), []byte(readState(t, state).Checkpoint), 0o600); err != nil {
			t.Fatal(err)
		}
		l.append(t, 20, 25, 25)
		code, out, stderr := verifyCLI(t, "--verifier", l.vkey, "--export", l.export(t), "--state", state)
		if code != ExitOK || !strings.Contains(out, "records 0..24 verified (25 leaves hashed); 3 checkpoints verified") || !strings.Contains(out, "consistent with the checkpoint saved in") ||
			!strings.Contains(out, "had no right edge (older format)") {
			t.Fatalf("old-format state: exit %d %q %q", code, out, stderr)
		}
		if j := readState(t, state); j.Size != 25 || len(j.Edge) != 3 {
			t.Fatalf("state after the old-format run: %+v", j)
		}
		l.append(t, 25, 30, 30)
		if code, out, stderr := verifyCLI(t, "--verifier", l.vkey, "--export", l.export(t), "--state", state); code != ExitOK || !strings.Contains(out, "records 25..29 verified (5 leaves hashed); records below 25 checked by leaf hash") {
			t.Fatalf("run after the old-format one: exit %d %q %q", code, out, stderr)
		}
		// An old-format state still catches a rewritten log.
		if err := os.WriteFile(statePath(state), []byte(readState(t, state).Checkpoint), 0o600); err != nil {
			t.Fatal(err)
		}
		l.sql(t, "DELETE FROM audit_records WHERE seq > 12", "DELETE FROM audit_hashes WHERE id >= 22", "DELETE FROM audit_checkpoints WHERE size > 12")
		l.idBase = 1000
		l.append(t, 12, 32, 32)
		if code, _, stderr := verifyCLI(t, "--verifier", l.vkey, "--export", l.export(t), "--state", state); code != ExitVerifyFailed || !strings.Contains(stderr, "not consistent with the saved checkpoint at size 30") {
			t.Errorf("rewritten, old-format state: exit %d %q", code, stderr)
		}
	})
}
