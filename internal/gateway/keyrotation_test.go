package gateway_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/gateway"
	"github.com/borderlink/borderlink/internal/store"
	"github.com/borderlink/borderlink/internal/store/sqlite"
	"github.com/borderlink/borderlink/internal/store/storetest"
)

// TestAuditKeyRotationRecorded: a gateway started with a new audit key on
// a log whose latest checkpoint bears the old key records the rotation, so
// that the next checkpoint is signed with the new key even if no exchange
// comes (sizes only grow): partners that retired the old key accept it.
func TestAuditKeyRotationRecorded(t *testing.T) {
	// earlier: a previous start already recorded the rotation and stopped
	// before the new key signed a checkpoint; it is not recorded twice.
	for _, earlier := range []bool{false, true} {
		t.Run(fmt.Sprintf("recorded earlier=%v", earlier), func(t *testing.T) { testAuditKeyRotationRecorded(t, earlier) })
	}
}

func testAuditKeyRotationRecorded(t *testing.T, earlier bool) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, t.TempDir()+"/rotated.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rec := storetest.AuditRecord("before-rotation", 0)
	rec.Seq = 0
	if _, err := st.AppendAudit(ctx, rec); err != nil {
		t.Fatal(err)
	}
	oldKey, _, err := audit.GenerateKey(audit.Origin(nlDomain))
	if err != nil {
		t.Fatal(err)
	}
	oldSigner, err := note.NewSigner(oldKey)
	if err != nil {
		t.Fatal(err)
	}
	oldCP, err := audit.NewCheckpointer(st, oldSigner, audit.Origin(nlDomain), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := oldCP.Sign(ctx); err != nil {
		t.Fatal(err)
	}
	if earlier {
		prev := storetest.AuditRecord("rotation-recorded-before", 0)
		prev.Seq, prev.Action = 0, gateway.ActionAuditKeyRotated
		if _, err := st.AppendAudit(ctx, prev); err != nil {
			t.Fatal(err)
		}
	}
	f := startFederation(t, func(d string, o *gateway.Options) {
		if d == nlDomain {
			o.Store = st // the federation's nl key is the new one
		}
	})
	current := verifierOf(t, f.nodes[nlDomain])
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, msg, err := st.LatestAuditCheckpoint(ctx)
		if err == nil {
			if c, err := audit.OpenCheckpoint(msg, current); err == nil && c.Size == 2 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint of size 2 signed with the new key after 10s (latest: %s, %v)", msg, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	recs, err := st.ListAudit(ctx, store.AuditQuery{Action: gateway.ActionAuditKeyRotated})
	if err != nil || len(recs) != 1 || recs[0].GetSeq() != 2 {
		t.Fatalf("key rotation records = %v, %v; want exactly one, at seq 2", recs, err)
	}
	if !earlier && recs[0].GetCallerId() != "spiffe://"+nlDomain+"/gateway" {
		t.Errorf("key rotation record by %q, want nl's gateway", recs[0].GetCallerId())
	}
}
