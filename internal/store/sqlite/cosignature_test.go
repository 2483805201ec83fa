package sqlite_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/store"
	"github.com/borderlink/borderlink/internal/store/sqlite"
	"github.com/borderlink/borderlink/internal/store/storetest"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

func storetestRecord(i int) *blv1.AuditRecord {
	rec := storetest.AuditRecord(fmt.Sprintf("cosig-%d", i), 0)
	rec.Seq = 0
	return rec
}

// TestCosignatureKeyRotation: one cosignature is kept per witness and
// checkpoint size. A second one made with the same key is ignored; one
// made with another key (the witness rotated its key) replaces it, so
// that the checkpoint is served with the current key's cosignature.
func TestCosignatureKeyRotation(t *testing.T) {
	ctx := t.Context()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "gateway.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	name := audit.WitnessName("sg.customs.example")
	cosign := func(skey string, ts int64, body string) string {
		t.Helper()
		c, err := audit.NewCosigner(skey, name, func() time.Time { return time.Unix(ts, 0) })
		if err != nil {
			t.Fatal(err)
		}
		line, err := audit.Cosign(c, body)
		if err != nil {
			t.Fatal(err)
		}
		return line
	}
	oldSK, _, _ := audit.GenerateKey(audit.Origin("sg.customs.example"))
	newSK, _, _ := audit.GenerateKey(audit.Origin("sg.customs.example"))
	otherSK, _, _ := audit.GenerateKey(audit.Origin("cn.customs.example"))
	body := "nl.customs.example/borderlink/audit\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
	oldLine, oldAgain := cosign(oldSK, 1000, body), cosign(oldSK, 2000, body)
	newLine, newAgain := cosign(newSK, 3000, body), cosign(newSK, 4000, body)
	cn, _ := audit.NewCosigner(otherSK, audit.WitnessName("cn.customs.example"), nil)
	cnLine, _ := audit.Cosign(cn, body)

	want := func(step string, lines ...string) {
		t.Helper()
		got, err := s.Cosignatures(ctx, 5)
		if err != nil || !slices.Equal(got, lines) {
			t.Errorf("%s: cosignatures %q, %v; want %q", step, got, err, lines)
		}
	}
	put := func(witness, line string) {
		t.Helper()
		if err := s.PutCosignature(ctx, 5, witness, line, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	put(name, oldLine)
	put(audit.WitnessName("cn.customs.example"), cnLine)
	put(name, oldAgain)
	want("same key again", cnLine, oldLine)
	put(name, newLine)
	want("after the witness's key rotation", cnLine, newLine)
	put(name, newAgain)
	want("new key again", cnLine, newLine)
	if got, err := s.Cosignatures(ctx, 6); err != nil || len(got) != 0 {
		t.Errorf("another size: %q, %v", got, err)
	}
	if err := s.PutCosignature(ctx, 5, name, "not a line\n", time.Now()); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("PutCosignature(garbage) = %v, want store.ErrInvalid", err)
	}
	want("after garbage", cnLine, newLine)

	// Once a later checkpoint exists, size 5 is history: its lines keep
	// their time, and another key's line does not replace them.
	for i := range 7 {
		rec := storetestRecord(i)
		if _, err := s.AppendAudit(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutAuditCheckpoint(ctx, 7, []byte("checkpoint 7\n"), time.Now()); err != nil {
		t.Fatal(err)
	}
	put(name, cosign(oldSK, 5000, body))
	want("older checkpoint, another key", cnLine, newLine)
}
