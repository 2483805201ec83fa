package gateway_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/gateway"
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
	f := startFederation(t)
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
