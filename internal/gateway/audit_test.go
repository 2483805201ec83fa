package gateway_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/gateway"
	"github.com/borderlink/borderlink/internal/store/sqlite/sqlitetest"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

func verifierOf(t *testing.T, n *node) note.Verifier {
	t.Helper()
	v, err := audit.NewVerifier(n.auditKey, audit.Origin(n.domain))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestReceipts(t *testing.T) {
	f := startFederation(t)
	ctx := context.Background()
	nl, sg := f.nodes[nlDomain], f.nodes[sgDomain]

	check := func(t *testing.T, reqID string) {
		t.Helper()
		prov, cons := auditOf(t, nl, reqID), auditOf(t, sg, reqID)
		if len(prov) != 1 || len(cons) != 1 {
			t.Fatalf("records: provider %d, consumer %d", len(prov), len(cons))
		}
		r, err := audit.OpenReceipt(cons[0].GetPartnerReceipt(), verifierOf(t, nl))
		if err != nil {
			t.Fatalf("stored receipt does not verify with nl's key: %v", err)
		}
		lh, _ := audit.LeafHash(prov[0])
		if r.Index != int64(prov[0].GetSeq())-1 || r.LeafHash != lh || r.Release != prov[0].GetReleaseSha256() ||
			r.RequestID != reqID || r.Caller != "spiffe://sg.customs.example/gateway" || !r.Time.Equal(prov[0].GetTime().AsTime()) {
			t.Errorf("receipt %+v does not describe the provider's leaf %v", r, prov[0])
		}
	}
	t.Run("get", func(t *testing.T) {
		resp, err := f.local(t, sgDomain).GetPartnerDeclaration(ctx, &blv1.GetPartnerDeclarationRequest{Partner: nlDomain, Id: "NL-1", Purpose: "risk-assessment"})
		if err != nil {
			t.Fatal(err)
		}
		check(t, resp.GetRequestId())
	})
	t.Run("search", func(t *testing.T) {
		st, err := f.local(t, sgDomain).SearchPartnerDeclarations(ctx, &blv1.SearchPartnerDeclarationsRequest{Partner: nlDomain, Purpose: "risk-assessment"})
		if err != nil {
			t.Fatal(err)
		}
		var reqID string
		for {
			it, err := st.Recv()
			if err != nil {
				break
			}
			reqID = it.GetRequestId()
		}
		if reqID == "" {
			t.Fatal("search returned nothing")
		}
		check(t, reqID)
	})
	t.Run("refusals have receipts too", func(t *testing.T) {
		// Denied by policy (purpose), and denied as not found: the
		// consumer's DENY record keeps a receipt over the provider's.
		for _, req := range []*blv1.GetPartnerDeclarationRequest{
			{Partner: nlDomain, Id: "NL-1", Purpose: "marketing"},
			{Partner: nlDomain, Id: "NL-NOPE", Purpose: "risk-assessment"},
		} {
			_, err := f.local(t, sgDomain).GetPartnerDeclaration(ctx, req)
			if err == nil {
				t.Fatalf("%v: allowed", req)
			}
			var reqID string
			for _, r := range allAudit(t, sg) {
				if r.GetResourceIds()[0] == req.GetId() && r.GetPurpose() == req.GetPurpose() {
					reqID = r.GetRequestId()
				}
			}
			if reqID == "" {
				t.Fatalf("%v: no consumer record", req)
			}
			prov := auditOf(t, nl, reqID)
			if len(prov) != 1 || prov[0].GetDecision() != blv1.AuditDecision_AUDIT_DECISION_DENY {
				t.Fatalf("provider records %v", prov)
			}
			check(t, reqID)
		}
	})
}

func TestForgedReceiptRejected(t *testing.T) {
	// sg believes nl's audit key is another key with nl's name: nl's real
	// receipts then look forged to sg.
	_, wrong, err := audit.GenerateKey(audit.Origin(nlDomain))
	if err != nil {
		t.Fatal(err)
	}
	f := startFederation(t, func(d string, o *gateway.Options) {
		if d == sgDomain {
			o.Audit.PeerKeys[nlDomain] = wrong
		}
		if d == cnDomain {
			delete(o.Audit.PeerKeys, nlDomain)
		}
	})
	ctx := context.Background()
	nl, sg := f.nodes[nlDomain], f.nodes[sgDomain]
	before := len(allAudit(t, nl))

	_, err = f.local(t, sgDomain).GetPartnerDeclaration(ctx, &blv1.GetPartnerDeclarationRequest{Partner: nlDomain, Id: "NL-1", Purpose: "risk-assessment"})
	if status.Code(err) != codes.DataLoss || !strings.Contains(err.Error(), "receipt") {
		t.Fatalf("err = %v, want DATA_LOSS about the receipt", err)
	}
	recs := allAudit(t, sg)
	last := recs[len(recs)-1]
	if last.GetDecision() != blv1.AuditDecision_AUDIT_DECISION_ERROR || last.GetStatus() != "DATA_LOSS" || last.GetPartnerReceipt() == "" {
		t.Errorf("consumer record = %v, want an ERROR/DATA_LOSS record keeping the rejected receipt", last)
	}
	// The receipt was nl's genuine one: nl's key opens it.
	if _, err := audit.OpenReceipt(last.GetPartnerReceipt(), verifierOf(t, nl)); err != nil {
		t.Errorf("kept receipt is not nl's: %v", err)
	}
	if got := len(allAudit(t, nl)); got != before+1 {
		t.Errorf("provider records grew by %d, want 1", got-before)
	}

	// Without a key for the partner the call is refused before it is made.
	_, err = f.local(t, cnDomain).GetPartnerRiskAssessment(ctx, &blv1.GetPartnerRiskAssessmentRequest{Partner: nlDomain, Id: "NL-RA-1", Purpose: "transit-security"})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "audit_key") {
		t.Errorf("err = %v, want FAILED_PRECONDITION naming audit_key", err)
	}
	if got := len(allAudit(t, nl)); got != before+1 {
		t.Errorf("nl answered a caller that cannot verify its receipts")
	}
}

func TestAuditService(t *testing.T) {
	// nl signs checkpoints only when asked: the test knows their sizes.
	f := startFederation(t, func(d string, o *gateway.Options) {
		if d == nlDomain {
			o.Audit.CheckpointInterval = time.Hour
		}
	})
	ctx := context.Background()
	nl := f.nodes[nlDomain]
	for _, c := range []struct{ from, id, purpose string }{
		{sgDomain, "NL-1", "risk-assessment"}, {sgDomain, "NL-1", "marketing"}, {cnDomain, "NL-1", "risk-assessment"},
	} {
		f.local(t, c.from).GetPartnerDeclaration(ctx, &blv1.GetPartnerDeclarationRequest{Partner: nlDomain, Id: c.id, Purpose: c.purpose})
	}
	auditor := blv1.NewAuditClient(f.conn(t, nlDomain, "spiffe://nl.customs.example/auditor/dpa", nil))

	cpResp, err := auditor.GetCheckpoint(ctx, &blv1.GetCheckpointRequest{SignNow: true})
	if err != nil {
		t.Fatal(err)
	}
	v := verifierOf(t, nl)
	cp, err := audit.OpenCheckpoint([]byte(cpResp.GetCheckpoint()), v)
	if err != nil || cp.Size != 3 {
		t.Fatalf("checkpoint %+v, %v; want size 3", cp, err)
	}

	t.Run("online verification from leaves", func(t *testing.T) {
		leaves, err := auditor.GetLeaves(ctx, &blv1.GetLeavesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		res, err := audit.VerifyLog(audit.LogInput{Leaves: leaves.GetLeaves(), Checkpoints: [][]byte{[]byte(cpResp.GetCheckpoint())}, Verifier: v})
		if err != nil || res.Size != 3 {
			t.Fatalf("VerifyLog = %+v, %v", res, err)
		}
	})
	t.Run("inclusion and consistency proofs", func(t *testing.T) {
		var tree audit.Tree
		for i := int64(0); i < cp.Size; i++ {
			rec, err := auditor.GetRecord(ctx, &blv1.GetRecordRequest{Seq: uint64(i + 1)})
			if err != nil {
				t.Fatal(err)
			}
			tree.Add(i, rec.GetLeaf(), nil)
			p, err := auditor.GetInclusionProof(ctx, &blv1.GetInclusionProofRequest{Index: uint64(i)})
			if err != nil {
				t.Fatal(err)
			}
			if tlog.Hash(p.GetLeafHash()) != tlog.RecordHash(rec.GetLeaf()) {
				t.Errorf("index %d: proof's leaf hash is not the record's", i)
			}
			if err := audit.CheckInclusion(cp, i, tlog.RecordHash(rec.GetLeaf()), toHashes(p.GetHashes())); err != nil {
				t.Errorf("inclusion %d: %v", i, err)
			}
		}
		for old := int64(1); old <= cp.Size; old++ {
			p, err := auditor.GetConsistencyProof(ctx, &blv1.GetConsistencyProofRequest{OldSize: uint64(old)})
			if err != nil {
				t.Fatal(err)
			}
			root, _ := tree.Root(old)
			if err := audit.CheckConsistency(audit.Checkpoint{Size: old, Hash: root}, cp, toHashes(p.GetHashes())); err != nil {
				t.Errorf("consistency %d->%d: %v", old, cp.Size, err)
			}
		}
	})
	t.Run("tiles", func(t *testing.T) {
		fetch := func(c blv1.AuditClient) audit.TileFetcher {
			return func(ctx context.Context, path string) ([]byte, error) {
				resp, err := c.GetTile(ctx, &blv1.GetTileRequest{Path: path})
				return resp.GetData(), err
			}
		}
		// The auditor verifies every entry from the entry bundles.
		lv, err := audit.NewLogVerifier(v, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := lv.Checkpoint([]byte(cpResp.GetCheckpoint())); err != nil {
			t.Fatal(err)
		}
		if err := audit.VerifyTiles(ctx, fetch(auditor), lv, cp.Size); err != nil {
			t.Fatalf("VerifyTiles: %v", err)
		}
		if res, err := lv.Finish(); err != nil || res.Size != 3 {
			t.Fatalf("Finish = %+v, %v", res, err)
		}
		// The auditor rebuilds the root from hash tiles alone.
		thr := tlog.TileHashReader(tlog.Tree{N: cp.Size, Hash: cp.Hash}, audit.TileReader{Ctx: ctx, Fetch: fetch(auditor)})
		if root, err := tlog.TreeHash(cp.Size, thr); err != nil || root != cp.Hash {
			t.Fatalf("root from tiles = %s, %v; want %s", root, err, cp.Hash)
		}
		// Partners get no tiles: level 0 is every record's leaf hash, which
		// a partner could brute-force for the fields it does not know of
		// our records of our calls to it (which of our systems asked).
		partner := blv1.NewAuditClient(f.conn(t, nlDomain, "spiffe://sg.customs.example/gateway", nil))
		agency := blv1.NewAuditClient(f.conn(t, nlDomain, "spiffe://sg.customs.example/agency/health", nil))
		for _, tt := range []struct {
			c    blv1.AuditClient
			path string
			want codes.Code
		}{
			{auditor, "tile/0/000.p/3", codes.OK},
			{auditor, "tile/entries/000.p/3", codes.OK},
			{partner, "tile/0/000.p/2", codes.PermissionDenied},
			{partner, "tile/0/000.p/3", codes.PermissionDenied},
			{partner, "tile/1/000.p/1", codes.PermissionDenied},
			{partner, "tile/entries/000.p/3", codes.PermissionDenied},
			{agency, "tile/0/000.p/1", codes.PermissionDenied},
			{auditor, "tile/0/000.p/4", codes.NotFound}, // past the checkpoint
			{auditor, "tile/0/000", codes.NotFound},
			{auditor, "tile/1/000.p/1", codes.NotFound},
			{auditor, "tile/8/0/000.p/3", codes.InvalidArgument}, // tlog's spelling
			{auditor, "checkpoint", codes.InvalidArgument},
		} {
			resp, err := tt.c.GetTile(ctx, &blv1.GetTileRequest{Path: tt.path})
			if status.Code(err) != tt.want {
				t.Errorf("GetTile(%q) = %v, want %v", tt.path, err, tt.want)
			}
			if err == nil && tt.path == "tile/0/000.p/3" && len(resp.GetData()) != 3*tlog.HashSize {
				t.Errorf("GetTile(%q): %d bytes, want %d", tt.path, len(resp.GetData()), 3*tlog.HashSize)
			}
		}
	})
	t.Run("partner proofs only between signed checkpoints", func(t *testing.T) {
		// A proof holds leaf hashes at the edges of its trees (a
		// consistency proof n -> n+1 holds leaf n's): a partner must not
		// collect them by picking sizes. Only size 3 was signed.
		partner := blv1.NewAuditClient(f.conn(t, nlDomain, "spiffe://sg.customs.example/gateway", nil))
		own, err := partner.ListRecords(ctx, &blv1.ListRecordsRequest{})
		if err != nil || len(own.GetRecords()) == 0 {
			t.Fatalf("partner's records: %v", err)
		}
		index := int64(own.GetRecords()[0].GetSeq()) - 1
		ip, err := partner.GetInclusionProof(ctx, &blv1.GetInclusionProofRequest{Index: uint64(index)})
		if err != nil {
			t.Fatal(err)
		}
		if err := audit.CheckInclusion(cp, index, tlog.Hash(ip.GetLeafHash()), toHashes(ip.GetHashes())); err != nil {
			t.Errorf("partner's inclusion proof of its own record: %v", err)
		}
		if _, err := partner.GetInclusionProof(ctx, &blv1.GetInclusionProofRequest{Index: 0, TreeSize: 3}); err != nil {
			t.Errorf("partner's inclusion proof at the signed size 3: %v", err)
		}
		if _, err := partner.GetInclusionProof(ctx, &blv1.GetInclusionProofRequest{Index: 0, TreeSize: 2}); status.Code(err) != codes.FailedPrecondition {
			t.Errorf("partner's inclusion proof at the unsigned size 2: %v, want FAILED_PRECONDITION", err)
		}
		if _, err := partner.GetConsistencyProof(ctx, &blv1.GetConsistencyProofRequest{OldSize: 3}); err != nil {
			t.Errorf("partner's consistency proof 3 -> latest: %v", err)
		}
		for _, old := range []uint64{1, 2} {
			if _, err := partner.GetConsistencyProof(ctx, &blv1.GetConsistencyProofRequest{OldSize: old, NewSize: 3}); status.Code(err) != codes.FailedPrecondition {
				t.Errorf("partner's consistency proof %d -> 3: %v, want FAILED_PRECONDITION", old, err)
			}
			if _, err := auditor.GetConsistencyProof(ctx, &blv1.GetConsistencyProofRequest{OldSize: old, NewSize: 3}); err != nil {
				t.Errorf("auditor's consistency proof %d -> 3: %v", old, err)
			}
		}
	})
	t.Run("filters", func(t *testing.T) {
		resp, err := auditor.ListRecords(ctx, &blv1.ListRecordsRequest{Filter: &blv1.AuditFilter{Partner: sgDomain, Decision: blv1.AuditDecision_AUDIT_DECISION_DENY}})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetRecords()) != 1 || resp.GetRecords()[0].GetPurpose() != "marketing" {
			t.Errorf("deny records of sg = %v", resp.GetRecords())
		}
	})
	t.Run("partner sees only its own records", func(t *testing.T) {
		partner := blv1.NewAuditClient(f.conn(t, nlDomain, "spiffe://sg.customs.example/gateway", nil))
		resp, err := partner.ListRecords(ctx, &blv1.ListRecordsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetRecords()) != 2 {
			t.Errorf("sg sees %d records, want its 2", len(resp.GetRecords()))
		}
		for _, r := range resp.GetRecords() {
			if r.GetCallerId() != "spiffe://sg.customs.example/gateway" {
				t.Errorf("sg sees a record of %s", r.GetCallerId())
			}
		}
		if _, err := partner.GetRecord(ctx, &blv1.GetRecordRequest{Seq: 3}); status.Code(err) != codes.NotFound {
			t.Errorf("sg reading cn's record: %v, want NOT_FOUND", err)
		}
		if _, err := partner.GetInclusionProof(ctx, &blv1.GetInclusionProofRequest{Index: 0}); err != nil {
			t.Errorf("sg's inclusion proof of its own record: %v", err)
		}
		if _, err := partner.GetLeaves(ctx, &blv1.GetLeavesRequest{}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("sg reading raw leaves: %v, want PERMISSION_DENIED", err)
		}
		if _, err := partner.GetCheckpoint(ctx, &blv1.GetCheckpointRequest{}); err != nil {
			t.Errorf("sg reading the checkpoint: %v", err)
		}
		if _, err := partner.GetCheckpoint(ctx, &blv1.GetCheckpointRequest{SignNow: true}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("sg asking for a signature: %v, want PERMISSION_DENIED", err)
		}
	})
	t.Run("others are refused", func(t *testing.T) {
		for _, id := range []string{"spiffe://sg.customs.example/auditor/dpa", "spiffe://nl.customs.example/system/cli"} {
			c := blv1.NewAuditClient(f.conn(t, nlDomain, id, nil))
			if _, err := c.ListRecords(ctx, &blv1.ListRecordsRequest{}); status.Code(err) != codes.PermissionDenied {
				t.Errorf("%s: %v, want PERMISSION_DENIED", id, err)
			}
		}
	})
}

func toHashes(b [][]byte) []tlog.Hash {
	out := make([]tlog.Hash, len(b))
	for i := range b {
		copy(out[i][:], b[i])
	}
	return out
}

// TestWitnessing: each gateway fetches its partners' checkpoints and keeps
// those consistent with what it accepted before.
func TestWitnessing(t *testing.T) {
	f := startFederation(t)
	ctx := context.Background()
	nl, sg := f.nodes[nlDomain], f.nodes[sgDomain]
	for range 3 {
		if _, err := f.local(t, sgDomain).GetPartnerDeclaration(ctx, &blv1.GetPartnerDeclarationRequest{Partner: nlDomain, Id: "NL-1", Purpose: "risk-assessment"}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		msg, err := sg.store.LastWitnessed(ctx, audit.Origin(nlDomain))
		if err == nil {
			c, err := audit.OpenCheckpoint(msg, verifierOf(t, nl))
			if err != nil {
				t.Fatalf("witnessed checkpoint does not verify: %v", err)
			}
			if c.Size == 3 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("sg has not witnessed nl's checkpoint of size 3 after 10s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCosigning: partners cosign what they witnessed, and nl serves its
// checkpoint with their cosignatures, each verifiable with the partner's
// published key.
func TestCosigning(t *testing.T) {
	f := startFederation(t)
	ctx := context.Background()
	nl := f.nodes[nlDomain]
	if _, err := f.local(t, sgDomain).GetPartnerDeclaration(ctx, &blv1.GetPartnerDeclarationRequest{Partner: nlDomain, Id: "NL-1", Purpose: "risk-assessment"}); err != nil {
		t.Fatal(err)
	}
	auditor := blv1.NewAuditClient(f.conn(t, nlDomain, "spiffe://nl.customs.example/auditor/dpa", nil))
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := auditor.GetCheckpoint(ctx, &blv1.GetCheckpointRequest{})
		if err == nil {
			msg := []byte(resp.GetCheckpoint())
			if _, err := audit.OpenCheckpoint(msg, verifierOf(t, nl)); err != nil {
				t.Fatalf("cosigned checkpoint no longer verifies with nl's key: %v", err)
			}
			ok := 0
			for _, d := range []string{sgDomain, cnDomain} {
				cv, _ := audit.NewCosignatureVerifier(f.nodes[d].auditKey, audit.WitnessName(d))
				if _, _, err := audit.OpenCosigned(msg, cv); err == nil {
					ok++
				}
			}
			if ok == 2 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("nl's checkpoint not cosigned by sg and cn after 10s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Only a partner gateway may add a cosignature, only its own, and only
	// on a checkpoint nl signed.
	resp, _ := auditor.GetCheckpoint(ctx, &blv1.GetCheckpointRequest{})
	body, _ := audit.CheckpointText([]byte(resp.GetCheckpoint()))
	// nl's own note: the body and nl's signature line, without cosignatures.
	plain := body + "\n" + strings.SplitAfter(resp.GetCheckpoint()[len(body)+1:], "\n")[0]
	sk, _, _ := audit.GenerateKey(audit.Origin(sgDomain))
	forger, _ := audit.NewCosigner(sk, audit.WitnessName(sgDomain), nil)
	line, _ := audit.Cosign(forger, body)
	sgc := blv1.NewAuditClient(f.conn(t, nlDomain, "spiffe://sg.customs.example/gateway", nil))
	if _, err := sgc.AddCosignature(ctx, &blv1.AddCosignatureRequest{Checkpoint: plain + line}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("cosignature with another key: %v, want INVALID_ARGUMENT", err)
	}
	realSG, _ := audit.NewCosigner(f.nodes[sgDomain].auditKeySigner, audit.WitnessName(sgDomain), nil)
	other := strings.Replace(body, "\n", "\n1", 1) // another size, never signed by nl
	otherLine, _ := audit.Cosign(realSG, other)
	if _, err := sgc.AddCosignature(ctx, &blv1.AddCosignatureRequest{Checkpoint: other + "\n" + strings.SplitAfter(plain[len(body)+1:], "\n")[0] + otherLine}); status.Code(err) == codes.OK {
		t.Error("cosignature of a checkpoint nl never signed was accepted")
	}
	if _, err := auditor.AddCosignature(ctx, &blv1.AddCosignatureRequest{Checkpoint: resp.GetCheckpoint()}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("auditor adding a cosignature: %v, want PERMISSION_DENIED", err)
	}
}

// TestCosignatureWithRetiredKey: nl knows sg's retired audit key
// (peers.sg.retired_audit_keys); a cosignature sg made with it before its
// rotation is still accepted and served, one by a key nl never knew is
// not.
func TestCosignatureWithRetiredKey(t *testing.T) {
	retiredSK, retiredVK, err := audit.GenerateKey(audit.Origin(sgDomain))
	if err != nil {
		t.Fatal(err)
	}
	strangerSK, _, err := audit.GenerateKey(audit.Origin(sgDomain))
	if err != nil {
		t.Fatal(err)
	}
	f := startFederation(t, func(d string, o *gateway.Options) {
		switch d {
		case nlDomain:
			o.Audit.PeerRetiredKeys = map[string][]string{sgDomain: {retiredVK}}
		case sgDomain:
			// nl keeps one cosignature per witness and checkpoint: sg's
			// own rounds (with its current key) must not get there first.
			o.Audit.WitnessInterval = -1
		}
	})
	ctx := context.Background()
	nl := f.nodes[nlDomain]
	if _, err := f.local(t, sgDomain).GetPartnerDeclaration(ctx, &blv1.GetPartnerDeclarationRequest{Partner: nlDomain, Id: "NL-1", Purpose: "risk-assessment"}); err != nil {
		t.Fatal(err)
	}
	auditor := blv1.NewAuditClient(f.conn(t, nlDomain, "spiffe://nl.customs.example/auditor/dpa", nil))
	resp, err := auditor.GetCheckpoint(ctx, &blv1.GetCheckpointRequest{SignNow: true})
	if err != nil {
		t.Fatal(err)
	}
	plain := resp.GetCheckpoint() // as signed, without cosignatures
	body, err := audit.CheckpointText([]byte(plain))
	if err != nil {
		t.Fatal(err)
	}
	sgc := blv1.NewAuditClient(f.conn(t, nlDomain, "spiffe://sg.customs.example/gateway", nil))
	for _, tt := range []struct {
		name string
		skey string
		want codes.Code
	}{
		// A retired key no longer vouches for anything new.
		{"retired key", retiredSK, codes.InvalidArgument},
		{"unknown key", strangerSK, codes.InvalidArgument},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cs, err := audit.NewCosigner(tt.skey, audit.WitnessName(sgDomain), nil)
			if err != nil {
				t.Fatal(err)
			}
			line, err := audit.Cosign(cs, body)
			if err != nil {
				t.Fatal(err)
			}
			_, err = sgc.AddCosignature(ctx, &blv1.AddCosignatureRequest{Checkpoint: plain + line})
			if status.Code(err) != tt.want {
				t.Fatalf("AddCosignature = %v, want %v", err, tt.want)
			}
		})
	}
	// A cosignature sg made with that key before it retired it, stored
	// then, is still served; it verifies with a ring of sg's keys, not
	// with sg's current key alone.
	old, err := audit.NewCosigner(retiredSK, audit.WitnessName(sgDomain), nil)
	if err != nil {
		t.Fatal(err)
	}
	line, err := audit.Cosign(old, body)
	if err != nil {
		t.Fatal(err)
	}
	c, err := audit.ParseCheckpoint(body)
	if err != nil {
		t.Fatal(err)
	}
	if err := nl.store.PutCosignature(ctx, c.Size, audit.WitnessName(sgDomain), line, time.Now()); err != nil {
		t.Fatal(err)
	}
	served, err := auditor.GetCheckpoint(ctx, &blv1.GetCheckpointRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.OpenCheckpoint([]byte(served.GetCheckpoint()), verifierOf(t, nl)); err != nil {
		t.Fatalf("served checkpoint: %v", err)
	}
	ring, err := audit.NewCosignatureKeyRing(audit.WitnessName(sgDomain), []string{retiredVK})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := audit.OpenCosigned([]byte(served.GetCheckpoint()), ring); err != nil {
		t.Errorf("retired key's cosignature not served: %v\n%s", err, served.GetCheckpoint())
	}
}

// rotatingCosigner is a gateway's cosigner whose key the test rotates,
// as a restart with a rotated audit key would.
type rotatingCosigner struct {
	mu sync.Mutex
	s  note.Signer
}

func (r *rotatingCosigner) set(s note.Signer) {
	r.mu.Lock()
	r.s = s
	r.mu.Unlock()
}

func (r *rotatingCosigner) get() note.Signer {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.s
}

func (r *rotatingCosigner) Name() string                    { return r.get().Name() }
func (r *rotatingCosigner) KeyHash() uint32                 { return r.get().KeyHash() }
func (r *rotatingCosigner) Sign(msg []byte) ([]byte, error) { return r.get().Sign(msg) }

// TestCosignAgainAfterKeyRotation: sg cosigned nl's checkpoint (nl is a
// fake that keeps what it is handed), then rotates its key while nl's
// log does not grow. sg hands nl a cosignature of the same checkpoint
// made with its new key, once, not every round.
func TestCosignAgainAfterKeyRotation(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	newSK, _, err := audit.GenerateKey(audit.Origin(sgDomain))
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := audit.NewCosigner(newSK, audit.WitnessName(sgDomain), nil)
	if err != nil {
		t.Fatal(err)
	}
	rc := &rotatingCosigner{}
	f := startFederation(t, func(d string, o *gateway.Options) {
		if d == sgDomain {
			o.Peers[nlDomain] = lis.Addr().String()
			rc.s = o.Audit.Cosigner
			o.Audit.Cosigner = rc
		}
	})
	signer, err := note.NewSigner(f.nodes[nlDomain].auditKeySigner)
	if err != nil {
		t.Fatal(err)
	}
	fake := &forkingLog{signer: signer}
	fake.show(forkTree(t, 12, 12), 5)
	serveFake(t, f, lis, nlDomain, fake)
	wait := func(keyHash uint32) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for fake.cosignatures(5, keyHash) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("sg handed nl no cosignature of its checkpoint of size 5 with the key %08x after 10s", keyHash)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	old := rc.get().KeyHash()
	wait(old)
	rc.set(rotated)
	wait(rotated.KeyHash())
	time.Sleep(300 * time.Millisecond) // a few more rounds
	if n, m := fake.cosignatures(5, old), fake.cosignatures(5, rotated.KeyHash()); n != 1 || m != 1 {
		t.Errorf("sg handed nl %d cosignatures with its old key and %d with its new one, want one each", n, m)
	}
}

// TestCosignatureAfterWitnessKeyRotation: nl's latest checkpoint
// carries only the cosignature sg made with its retired key, and nl's
// log does not grow. Once sg cosigns with its new key (nl's
// peers.sg.audit_key), nl keeps that cosignature instead and serves its
// latest checkpoint with it, as `audit verify --witness OLD,NEW`
// requires.
func TestCosignatureAfterWitnessKeyRotation(t *testing.T) {
	newSK, newVK, err := audit.GenerateKey(audit.Origin(sgDomain))
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := audit.NewCosigner(newSK, audit.WitnessName(sgDomain), nil)
	if err != nil {
		t.Fatal(err)
	}
	rc := &rotatingCosigner{}
	f := startFederation(t, func(d string, o *gateway.Options) {
		switch d {
		case sgDomain:
			// Still the old key: nl refuses its cosignatures.
			rc.s = o.Audit.Cosigner
			o.Audit.Cosigner = rc
		case nlDomain:
			o.Audit.PeerRetiredKeys = map[string][]string{sgDomain: {o.Audit.PeerKeys[sgDomain]}}
			o.Audit.PeerKeys[sgDomain] = newVK
			o.Audit.CheckpointInterval = time.Hour // only the checkpoint signed below
		}
	})
	ctx := context.Background()
	nl, sg := f.nodes[nlDomain], f.nodes[sgDomain]
	if _, err := f.local(t, sgDomain).GetPartnerDeclaration(ctx, &blv1.GetPartnerDeclarationRequest{Partner: nlDomain, Id: "NL-1", Purpose: "risk-assessment"}); err != nil {
		t.Fatal(err)
	}
	auditor := blv1.NewAuditClient(f.conn(t, nlDomain, "spiffe://nl.customs.example/auditor/dpa", nil))
	resp, err := auditor.GetCheckpoint(ctx, &blv1.GetCheckpointRequest{SignNow: true})
	if err != nil {
		t.Fatal(err)
	}
	body, err := audit.CheckpointText([]byte(resp.GetCheckpoint()))
	if err != nil {
		t.Fatal(err)
	}
	c, err := audit.ParseCheckpoint(body)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if msg, err := sg.store.LastWitnessed(ctx, audit.Origin(nlDomain)); err == nil {
			if w, err := audit.OpenCheckpoint(msg, verifierOf(t, nl)); err == nil && w.Size == c.Size {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("sg did not witness nl's checkpoint of size %d", c.Size)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The cosignature sg made before its rotation.
	line, err := audit.Cosign(rc.get(), body)
	if err != nil {
		t.Fatal(err)
	}
	if err := nl.store.PutCosignature(ctx, c.Size, audit.WitnessName(sgDomain), line, time.Now()); err != nil {
		t.Fatal(err)
	}
	// What audit verify --witness OLD,NEW checks: a cosignature by the
	// current (last) key on the latest checkpoint.
	current, err := audit.NewCosignatureVerifier(newVK, audit.WitnessName(sgDomain))
	if err != nil {
		t.Fatal(err)
	}
	ring, err := audit.NewCosignatureKeyRing(audit.WitnessName(sgDomain), []string{sg.auditKey, newVK})
	if err != nil {
		t.Fatal(err)
	}
	latest := func() []byte {
		t.Helper()
		resp, err := auditor.GetCheckpoint(ctx, &blv1.GetCheckpointRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return []byte(resp.GetCheckpoint())
	}
	if msg := latest(); !func() bool { _, _, err := audit.OpenCosigned(msg, ring); return err == nil }() {
		t.Fatalf("nl does not serve sg's cosignature with its retired key:\n%s", msg)
	}

	rc.set(rotated)
	deadline = time.Now().Add(10 * time.Second)
	for {
		msg := latest()
		if _, _, err := audit.OpenCosigned(msg, current); err == nil {
			w, err := audit.OpenCheckpoint(msg, verifierOf(t, nl))
			if err != nil || w.Size != c.Size {
				t.Errorf("served checkpoint: size %d, %v; want size %d, verifying with nl's key", w.Size, err, c.Size)
			}
			if n := strings.Count(string(msg), "\n— "+audit.WitnessName(sgDomain)+" "); n != 1 {
				t.Errorf("nl serves %d cosignatures of sg, want the current key's only:\n%s", n, msg)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nl's latest checkpoint not cosigned with sg's current key after 10s:\n%s", msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSignNowRefusesATamperedLog: an auditor's sign_now on a log whose
// stored checkpoint was altered outside Borderlink gets DATA_LOSS naming the
// problem (ADR 0017), not a new checkpoint and not an opaque INTERNAL.
func TestSignNowRefusesATamperedLog(t *testing.T) {
	f := startFederation(t, func(d string, o *gateway.Options) {
		if d == nlDomain {
			o.Audit.CheckpointInterval = time.Hour
		}
	})
	ctx := context.Background()
	nl := f.nodes[nlDomain]
	exchange := func() {
		t.Helper()
		if _, err := f.local(t, sgDomain).GetPartnerDeclaration(ctx, &blv1.GetPartnerDeclarationRequest{Partner: nlDomain, Id: "NL-1", Purpose: "risk-assessment"}); err != nil {
			t.Fatal(err)
		}
	}
	auditor := blv1.NewAuditClient(f.conn(t, nlDomain, "spiffe://nl.customs.example/auditor/dpa", nil))
	exchange()
	if _, err := auditor.GetCheckpoint(ctx, &blv1.GetCheckpointRequest{SignNow: true}); err != nil {
		t.Fatal(err)
	}
	// NL keeps writing (witness records, cosignatures): Exec waits for its
	// locks.
	sqlitetest.Exec(t, nl.dbPath, "DROP TRIGGER audit_checkpoints_no_update", "UPDATE audit_checkpoints SET note = CAST('garbage' AS BLOB)")
	exchange()
	_, err := auditor.GetCheckpoint(ctx, &blv1.GetCheckpointRequest{SignNow: true})
	if status.Code(err) != codes.DataLoss || !strings.Contains(err.Error(), "malformed") || !strings.Contains(err.Error(), "modified outside Borderlink") {
		t.Fatalf("sign_now over a tampered log: %v; want DATA_LOSS saying the stored checkpoint is malformed", err)
	}
}
