package sqlite_test

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	msqlite "modernc.org/sqlite"

	"google.golang.org/protobuf/proto"

	"github.com/borderlink/borderlink/internal/store"
	"github.com/borderlink/borderlink/internal/store/sqlite"
	"github.com/borderlink/borderlink/internal/store/storetest"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend {
		return openTemp(t, filepath.Join(t.TempDir(), "borderlink.db"))
	})
}

func openTemp(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open(%q): %v", path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// rawDB opens the file without the store, as another process or an operator
// with the sqlite3 shell would.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatalf("sql.Open: %v", err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

func TestPersistsAcrossReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "borderlink.db")
	decl := storetest.Declaration("NL-2026-000123", 0, "NL", "SG", "851712")
	risk := storetest.RiskAssessment("RA-1", decl.GetId(), 0.8)
	rec := storetest.AuditRecord("req-1", 0)

	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := s.PutRecords(ctx, []*blv1.Declaration{decl}, []*blv1.RiskAssessment{risk}); err != nil {
		t.Fatalf("PutRecords: %v", err)
	}
	if _, err := s.AppendAudit(ctx, rec); err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = openTemp(t, path)
	got, err := s.GetDeclaration(ctx, decl.GetId())
	if err != nil || !proto.Equal(got, decl) {
		t.Errorf("GetDeclaration after reopen = %v, %v; want %v", got, err, decl)
	}
	gotRisk, err := s.GetRiskAssessment(ctx, risk.GetId())
	if err != nil || !proto.Equal(gotRisk, risk) {
		t.Errorf("GetRiskAssessment after reopen = %v, %v; want %v", gotRisk, err, risk)
	}
	recs, err := s.ListAudit(ctx, store.AuditQuery{})
	if err != nil || len(recs) != 1 || !proto.Equal(recs[0], rec) {
		t.Errorf("ListAudit after reopen = %v, %v; want [%v]", recs, err, rec)
	}
	// The sequence continues where it stopped.
	if seq, err := s.AppendAudit(ctx, storetest.AuditRecord("req-2", 0)); err != nil || seq != 2 {
		t.Errorf("AppendAudit after reopen = %d, %v; want 2, nil", seq, err)
	}
}

func TestMigrationsIdempotent(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "borderlink.db")
	for i := range 3 {
		s, err := sqlite.Open(ctx, path)
		if err != nil {
			t.Fatalf("Open #%d: %v", i, err)
		}
		if err := s.PutRecords(ctx, []*blv1.Declaration{storetest.Declaration(fmt.Sprint(i), 0, "NL", "SG", "85")}, nil); err != nil {
			t.Fatalf("PutRecords #%d: %v", i, err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i, err)
		}
	}
	db := rawDB(t, path)
	rows, err := db.QueryContext(ctx, "SELECT version, name FROM schema_migrations ORDER BY version")
	if err != nil {
		t.Fatalf("read schema_migrations: %v", err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var v int
		var name string
		if err := rows.Scan(&v, &name); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%04d_%s", v, name))
	}
	if want := []string{"0001_init", "0002_audit_merkle", "0003_delivery", "0004_outbox_settled", "0005_split_views", "0006_audit_hashes_checked_at_open", "0007_audit_records_checked_by_sequencer"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("schema_migrations = %q, want %q", got, want)
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM declarations").Scan(&n); err != nil || n != 3 {
		t.Errorf("declarations after 3 opens = %d, %v; want 3", n, err)
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "borderlink.db")
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	s.Close()
	if _, err := rawDB(t, path).ExecContext(ctx,
		"INSERT INTO schema_migrations (version, name, applied_at) VALUES (42, 'from_the_future', 0)"); err != nil {
		t.Fatalf("insert future migration: %v", err)
	}

	s, err = sqlite.Open(ctx, path)
	if err == nil {
		s.Close()
		t.Fatal("Open of a newer schema succeeded, want an error")
	}
	if !errors.Is(err, store.ErrSchemaTooNew) {
		t.Errorf("Open error = %v, want store.ErrSchemaTooNew", err)
	}
	for _, want := range []string{"version 42", "up to 7"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Open error %q does not name %q", err, want)
		}
	}
}

func TestRefusesDivergentMigration(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "borderlink.db")
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	s.Close()
	if _, err := rawDB(t, path).ExecContext(ctx, "UPDATE schema_migrations SET name = 'other' WHERE version = 1"); err != nil {
		t.Fatal(err)
	}
	if s, err := sqlite.Open(ctx, path); err == nil {
		s.Close()
		t.Fatal("Open of a database migrated by a diverging build succeeded")
	}
}

func TestOpenRejects(t *testing.T) {
	tests := []struct {
		name    string
		path    string
		wantErr error // nil: any error
	}{
		{"empty path", "", store.ErrInvalid},
		{"in-memory", ":memory:", store.ErrInvalid},
		{"URI", "file:borderlink.db?mode=memory", store.ErrInvalid},
		{"missing directory", filepath.Join(t.TempDir(), "no", "such", "dir", "b.db"), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := sqlite.Open(t.Context(), tc.path)
			if err == nil {
				s.Close()
				t.Fatalf("Open(%q) succeeded, want an error", tc.path)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("Open(%q) = %v, want %v", tc.path, err, tc.wantErr)
			}
		})
	}
}

func TestOpenPathWithURICharacters(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a?b#c%20d e&_txlock=x")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "borderlink.db")
	s := openTemp(t, path)
	if err := s.PutRecords(t.Context(), []*blv1.Declaration{storetest.Declaration("D1", 0, "NL", "SG", "85")}, nil); err != nil {
		t.Fatalf("PutRecords: %v", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("database not created at the exact path: %v", err)
	}
}

// foreignRecordSQL inserts an audit record with seq %d as another writer of
// the file would.
const foreignRecordSQL = "INSERT INTO audit_records (seq, time, request_id, side, decision, caller_id, action, agreement_id, record) VALUES (%d, 0, '', 0, 0, '', '', '', x'')"

// storeWithThreeRecords opens a store in a new file and appends three
// records.
func storeWithThreeRecords(t *testing.T) (string, *sqlite.Store) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "borderlink.db")
	s := openTemp(t, path)
	for i := range 3 {
		if _, err := s.AppendAudit(t.Context(), storetest.AuditRecord(fmt.Sprint(i), 0)); err != nil {
			t.Fatalf("AppendAudit: %v", err)
		}
	}
	return path, s
}

// TestAuditTableAppendOnly checks the triggers that protect the trail from
// writers other than this package. Inserts are checked by the sequencer and
// at Open instead (TestAuditRecordsCheckedBySequencer).
func TestAuditTableAppendOnly(t *testing.T) {
	ctx := t.Context()
	path, s := storeWithThreeRecords(t)
	db := rawDB(t, path)
	insert := foreignRecordSQL
	for _, tc := range []struct{ name, sql string }{
		{"update", "UPDATE audit_records SET request_id = 'forged' WHERE seq = 2"},
		{"delete one", "DELETE FROM audit_records WHERE seq = 3"},
		{"delete all", "DELETE FROM audit_records"},
		{"insert duplicate", fmt.Sprintf(insert, 2)},
		{"insert zero", fmt.Sprintf(insert, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := db.ExecContext(ctx, tc.sql); err == nil {
				t.Errorf("%s succeeded, want it refused", tc.sql)
			}
		})
	}
	recs, err := s.ListAudit(ctx, store.AuditQuery{})
	if err != nil || len(recs) != 3 || recs[1].GetRequestId() != "1" {
		t.Errorf("ListAudit after tampering attempts = %v, %v; want the 3 original records", recs, err)
	}
}

// TestAuditRecordsCheckedBySequencer: audit_records has no per-row gapless
// trigger (migration 0007). A record another writer adds, after a gap or
// right at the end, makes every later append fail while the store is open
// and stops Open afterwards (it has no tree hashes), each error saying the
// file was modified outside Borderlink.
func TestAuditRecordsCheckedBySequencer(t *testing.T) {
	for _, tc := range []struct {
		name   string
		seq    int
		atOpen string
	}{
		{"after a gap", 6, "tree hashes for 6 records"},
		{"at the end", 4, "tree hashes for 4 records"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			path, s := storeWithThreeRecords(t)
			if _, err := rawDB(t, path).ExecContext(ctx, fmt.Sprintf(foreignRecordSQL, tc.seq)); err != nil {
				t.Fatal(err)
			}
			for range 2 {
				seq, err := s.AppendAudit(ctx, storetest.AuditRecord("after", 0))
				if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("ends at seq %d, but this gateway last appended seq 3", tc.seq)) ||
					!strings.Contains(err.Error(), "modified outside Borderlink") {
					t.Fatalf("AppendAudit after a foreign record = %d, %v; want it refused, naming both seqs", seq, err)
				}
			}
			s.Close()
			s2, err := sqlite.Open(ctx, path)
			if err == nil {
				s2.Close()
				t.Fatal("Open after a foreign record succeeded")
			}
			if !strings.Contains(err.Error(), tc.atOpen) || !strings.Contains(err.Error(), "modified outside Borderlink") {
				t.Errorf("Open: %v; want it to say %q and that the file was modified outside Borderlink", err, tc.atOpen)
			}
		})
	}
}

// TestOpenAfterTriggersDropped: a file whose audit triggers were dropped
// (to examine it, or by someone tampering) still opens and migrates, so
// that its log can be exported and verified.
func TestOpenAfterTriggersDropped(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "borderlink.db")
	s := openTemp(t, path)
	if _, err := s.AppendAudit(ctx, storetest.AuditRecord("r", 0)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	db := rawDB(t, path)
	for _, q := range []string{
		// Back to the schema before migrations 0006 and 0007, the
		// triggers they drop already gone.
		"DELETE FROM schema_migrations WHERE version IN (6, 7)",
		"DROP TRIGGER IF EXISTS audit_records_gapless",
		"DROP TRIGGER audit_records_no_update",
		"DROP TRIGGER audit_records_no_delete",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	s2, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatalf("Open after the triggers were dropped: %v", err)
	}
	s2.Close()
}

// TestBackfillRefusesGap: records from before the Merkle tree (migration
// 0002) get their tree hashes by position at Open, so a gap in their seqs
// stops Open instead of giving a record the wrong leaf index for good.
func TestBackfillRefusesGap(t *testing.T) {
	ctx := t.Context()
	insert := strings.Replace(foreignRecordSQL, "x''", "x'0a'", 1)
	for _, tc := range []struct {
		name string
		seqs []int
		want string
	}{
		{"gapless", []int{1, 2, 3}, ""},
		{"gap", []int{1, 2, 4}, "record 3 has seq 4, want 3"},
		{"no first", []int{2}, "record 1 has seq 2, want 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "borderlink.db")
			openTemp(t, path).Close()
			db := rawDB(t, path)
			for _, seq := range tc.seqs {
				if _, err := db.ExecContext(ctx, fmt.Sprintf(insert, seq)); err != nil {
					t.Fatal(err)
				}
			}
			s, err := sqlite.Open(ctx, path)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Open of gapless records without tree hashes: %v", err)
				}
				if n, err := s.AuditTreeSize(ctx); err != nil || n != int64(len(tc.seqs)) {
					t.Errorf("tree size after backfill = %d, %v; want %d", n, err, len(tc.seqs))
				}
				s.Close()
				return
			}
			if err == nil {
				s.Close()
				t.Fatalf("Open of records %v succeeded", tc.seqs)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "modified outside Borderlink") {
				t.Errorf("Open: %v; want it to say %q and that the file was modified outside Borderlink", err, tc.want)
			}
		})
	}
}

const crashChildEnv = "BORDERLINK_STORE_CRASH_CHILD_DB"

// TestAppendSurvivesKill runs a child process that appends audit records and
// prints each seq as AppendAudit returns it, kills it with SIGKILL, and checks
// that every acknowledged record is in the file: nothing is acknowledged
// from a buffer that dies with the process.
func TestAppendSurvivesKill(t *testing.T) {
	if path := os.Getenv(crashChildEnv); path != "" {
		crashChild(path)
		return
	}
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	path := filepath.Join(t.TempDir(), "borderlink.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestAppendSurvivesKill$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked uint64
	sc := bufio.NewScanner(out)
	for acked < 40 && sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "acked "); ok {
			acked, _ = strconv.ParseUint(v, 10, 64)
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatalf("kill child: %v", err)
	}
	cmd.Wait()
	if acked < 40 {
		t.Fatalf("child acknowledged only %d appends before exiting", acked)
	}

	s := openTemp(t, path)
	recs, err := s.ListAudit(t.Context(), store.AuditQuery{})
	if err != nil {
		t.Fatalf("ListAudit after kill: %v", err)
	}
	if uint64(len(recs)) < acked {
		t.Fatalf("after kill, %d records stored, but the child acknowledged %d", len(recs), acked)
	}
	for i, r := range recs {
		if r.GetSeq() != uint64(i+1) {
			t.Fatalf("record %d has seq %d: trail not gapless after kill", i, r.GetSeq())
		}
	}
}

func crashChild(path string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // in case the parent dies
	defer cancel()
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for ctx.Err() == nil {
		seq, err := s.AppendAudit(ctx, storetest.AuditRecord("crash", 0))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Printf("acked %d\n", seq)
	}
	os.Exit(0)
}

// TestOpenSyncsWithFdatasync: on Linux the store commits with fdatasync,
// as SQLite's own builds do, not modernc's default fsync.
func TestOpenSyncsWithFdatasync(t *testing.T) {
	openTemp(t, filepath.Join(t.TempDir(), "borderlink.db"))
	if want := runtime.GOOS == "linux"; msqlite.FdatasyncEnabled() != want {
		t.Errorf("FdatasyncEnabled() = %v after Open on %s, want %v", msqlite.FdatasyncEnabled(), runtime.GOOS, want)
	}
}
