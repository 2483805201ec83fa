package audit_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/audit/audittest"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// rfc6962Leaves are the leaf inputs of the RFC 6962 / certificate
// transparency reference test vectors.
var rfc6962Leaves = []string{
	"", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f",
}

// rfc6962Roots are the published tree heads of the first n of those
// leaves, n = 1..8.
var rfc6962Roots = []string{
	"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
	"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
	"aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
	"d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
	"4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
	"76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
	"ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
	"5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}

// memTree builds stored hashes of raw leaves with tlog, as the store does.
func memTree(t *testing.T, leaves [][]byte) []tlog.Hash {
	t.Helper()
	var hs []tlog.Hash
	r := tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(ix))
		for i, x := range ix {
			out[i] = hs[x]
		}
		return out, nil
	})
	for i, l := range leaves {
		h, err := tlog.StoredHashes(int64(i), l, r)
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h...)
	}
	return hs
}

func reader(hs []tlog.Hash) tlog.HashReader {
	return tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(ix))
		for i, x := range ix {
			out[i] = hs[x]
		}
		return out, nil
	})
}

func TestRFC6962KnownAnswers(t *testing.T) {
	var leaves [][]byte
	for _, l := range rfc6962Leaves {
		b, _ := hex.DecodeString(l)
		leaves = append(leaves, b)
	}
	if got, want := tlog.RecordHash(leaves[0]).String(), "bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0="; got != want {
		t.Errorf("leaf hash of the empty leaf = %s, want %s", got, want)
	}
	// Node hash: SHA-256(0x01 || left || right).
	l, r := tlog.RecordHash(leaves[0]), tlog.RecordHash(leaves[1])
	if got := hex.EncodeToString(func() []byte { h := tlog.NodeHash(l, r); return h[:] }()); got != rfc6962Roots[1] {
		t.Errorf("node hash of leaves 0,1 = %s, want %s", got, rfc6962Roots[1])
	}
	hs := memTree(t, leaves)
	for n := 1; n <= len(leaves); n++ {
		h, err := tlog.TreeHash(int64(n), reader(hs))
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(h[:]); got != rfc6962Roots[n-1] {
			t.Errorf("root of %d leaves = %s, want %s", n, got, rfc6962Roots[n-1])
		}
	}
	// Proofs: every inclusion and consistency proof within the 8 leaves
	// verifies, and a proof with one bit flipped does not.
	for n := int64(1); n <= 8; n++ {
		root, _ := tlog.TreeHash(n, reader(hs))
		cp := audit.Checkpoint{Origin: "o", Size: n, Hash: root}
		for i := int64(0); i < n; i++ {
			p, err := tlog.ProveRecord(n, i, reader(hs))
			if err != nil {
				t.Fatal(err)
			}
			if err := audit.CheckInclusion(cp, i, tlog.RecordHash(leaves[i]), p); err != nil {
				t.Errorf("inclusion %d in %d: %v", i, n, err)
			}
			if len(p) > 0 {
				p[0][0] ^= 1
				if err := audit.CheckInclusion(cp, i, tlog.RecordHash(leaves[i]), p); !errors.Is(err, audit.ErrVerify) {
					t.Errorf("tampered inclusion proof %d in %d accepted", i, n)
				}
			}
		}
		for m := int64(1); m <= n; m++ {
			old, _ := tlog.TreeHash(m, reader(hs))
			p, err := tlog.ProveTree(n, m, reader(hs))
			if err != nil {
				t.Fatal(err)
			}
			if err := audit.CheckConsistency(audit.Checkpoint{Size: m, Hash: old}, cp, p); err != nil {
				t.Errorf("consistency %d->%d: %v", m, n, err)
			}
			if len(p) > 0 {
				p[len(p)-1][31] ^= 0x80
				if err := audit.CheckConsistency(audit.Checkpoint{Size: m, Hash: old}, cp, p); !errors.Is(err, audit.ErrVerify) {
					t.Errorf("tampered consistency proof %d->%d accepted", m, n)
				}
			}
		}
	}
}

// fixedRecord is the record of the leaf golden file: every field set.
func fixedRecord() *blv1.AuditRecord {
	return &blv1.AuditRecord{
		Version: 1, Seq: 42,
		Time:           timestamppb.New(time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC)),
		Side:           blv1.AuditSide_AUDIT_SIDE_PROVIDER,
		RequestId:      "0123456789abcdef0123456789abcdef",
		CallerId:       "spiffe://sg.customs.example/gateway",
		PeerId:         "spiffe://sg.customs.example/gateway",
		Action:         "declaration.get",
		Purpose:        "risk-assessment",
		ResourceIds:    []string{"NL-1", "NL-2"},
		Decision:       blv1.AuditDecision_AUDIT_DECISION_ALLOW,
		AgreementId:    "nl-sg-risk-2026",
		PolicyRevision: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		ReleasedFields: []string{"id", "goods_items.hs_code"},
		ReleaseSha256:  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		Reasons:        []string{"ok"},
		Status:         "OK",
		PolicyInput:    `{"action":"declaration.get"}`,
		PartnerReceipt: "r",
	}
}

// TestLeafGolden pins the leaf encoding byte for byte (docs/audit.md): a
// change here breaks every verifier in the field.
func TestLeafGolden(t *testing.T) {
	leaf, err := audit.Leaf(fixedRecord())
	if err != nil {
		t.Fatal(err)
	}
	h := tlog.RecordHash(leaf)
	got := "leaf " + hex.EncodeToString(leaf) + "\nleaf_hash " + hex.EncodeToString(h[:]) + "\n"
	path := filepath.Join("testdata", "leaf_v1.golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update once)", err)
	}
	if got != string(want) {
		t.Errorf("leaf encoding changed:\ngot  %s\nwant %s", got, want)
	}
	rec, err := audit.ParseLeaf(41, leaf)
	if err != nil {
		t.Fatalf("ParseLeaf: %v", err)
	}
	if rec.GetRequestId() != fixedRecord().GetRequestId() {
		t.Errorf("ParseLeaf lost fields: %v", rec)
	}
}

func TestParseLeafRejects(t *testing.T) {
	leaf, _ := audit.Leaf(fixedRecord())
	tests := []struct {
		name  string
		index int64
		leaf  []byte
		want  string
	}{
		{"wrong index", 40, leaf, "index 40: record says seq 42"},
		{"garbage", 41, []byte{0xff, 0xff}, "index 41: leaf does not decode"},
		{"unknown field appended", 41, append(bytes.Clone(leaf), 0xf8, 0x07, 0x01), "not the canonical encoding"},
		{"fields reordered", 41, append(bytes.Clone(leaf[2:]), leaf[:2]...), "not the canonical encoding"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := audit.ParseLeaf(tt.index, tt.leaf)
			if !errors.Is(err, audit.ErrVerify) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseLeaf = %v, want ErrVerify containing %q", err, tt.want)
			}
		})
	}
	v2 := fixedRecord()
	v2.Version = 2
	if _, err := audit.Leaf(v2); err == nil {
		t.Error("Leaf of a version 2 record succeeded")
	}
}

func key(t testing.TB, origin string) (audit.Signer, note.Verifier) {
	t.Helper()
	k := audittest.NewKey(t, origin)
	derived, err := audit.VerifierKey(k.Skey)
	if err != nil || derived != k.Vkey {
		t.Fatalf("VerifierKey = %q, %v; want %q", derived, err, k.Vkey)
	}
	return k.Signer, k.Verifier
}

const origin = "nl.customs.example/borderlink/audit"

func TestCheckpointRoundTrip(t *testing.T) {
	s, v := key(t, origin)
	c := audit.Checkpoint{Origin: origin, Size: 7, Hash: tlog.RecordHash([]byte("x"))}
	msg, err := audit.SignCheckpoint(s, c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(msg), origin+"\n7\n") {
		t.Errorf("checkpoint text = %q", msg)
	}
	got, err := audit.OpenCheckpoint(msg, v)
	if err != nil || got != c {
		t.Fatalf("OpenCheckpoint = %v, %v; want %v", got, err, c)
	}
	_, other := key(t, origin)
	if _, err := audit.OpenCheckpoint(msg, other); !errors.Is(err, audit.ErrVerify) {
		t.Errorf("checkpoint opened with another key: %v", err)
	}
	tampered := bytes.Replace(msg, []byte("\n7\n"), []byte("\n8\n"), 1)
	if _, err := audit.OpenCheckpoint(tampered, v); !errors.Is(err, audit.ErrVerify) {
		t.Errorf("tampered checkpoint opened: %v", err)
	}
	sg, _ := key(t, "sg.customs.example/borderlink/audit")
	if _, err := audit.SignCheckpoint(sg, c); err == nil {
		t.Error("signed a checkpoint of another origin")
	}
}

func TestParseCheckpoint(t *testing.T) {
	root := "MHsHPt37i9e/Csfdh68CuJILhf1NK0NXBThk7OKYEAM="
	for _, tt := range []struct {
		text string
		ok   bool
	}{
		{"o\n5\n" + root + "\n", true},
		{"o\n5\n" + root + "\next\n", true},
		{"o\n5\n" + root, false},
		{"o\n05\n" + root + "\n", false},
		{"o\n-1\n" + root + "\n", false},
		{"o\n5\nAAAA\n", false},
		{"\n5\n" + root + "\n", false},
		{"o\n5\n" + root + "\n\n", false},
	} {
		_, err := audit.ParseCheckpoint(tt.text)
		if (err == nil) != tt.ok {
			t.Errorf("ParseCheckpoint(%q) = %v, want ok=%v", tt.text, err, tt.ok)
		}
	}
}

func TestReceipt(t *testing.T) {
	s, v := key(t, origin)
	r := audit.Receipt{Origin: origin, Index: 3, LeafHash: tlog.RecordHash([]byte("leaf")), Time: time.Date(2026, 11, 25, 10, 0, 0, 5, time.UTC),
		Release: strings.Repeat("ab", 32), RequestID: "req", Caller: "spiffe://sg.customs.example/gateway"}
	msg, err := audit.SignReceipt(s, r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := audit.OpenReceipt(msg, v)
	if err != nil || got != r {
		t.Fatalf("OpenReceipt = %+v, %v; want %+v", got, err, r)
	}
	want := audit.Expect{RequestID: "req", Caller: "spiffe://sg.customs.example/gateway", Release: r.Release}
	if err := got.Check(want); err != nil {
		t.Errorf("Check: %v", err)
	}
	for name, e := range map[string]audit.Expect{
		"other request": {RequestID: "x", Caller: want.Caller, Release: want.Release},
		"other caller":  {RequestID: "req", Caller: "spiffe://cn.customs.example/gateway", Release: want.Release},
		"other release": {RequestID: "req", Caller: want.Caller, Release: strings.Repeat("cd", 32)},
	} {
		if err := got.Check(e); !errors.Is(err, audit.ErrVerify) {
			t.Errorf("%s: Check = %v, want ErrVerify", name, err)
		}
	}
	_, other := key(t, origin)
	if _, err := audit.OpenReceipt(msg, other); !errors.Is(err, audit.ErrVerify) {
		t.Errorf("receipt opened with a forged key: %v", err)
	}
	// A checkpoint is never a receipt, even under the same key.
	cp, _ := audit.SignCheckpoint(s, audit.Checkpoint{Origin: origin, Size: 1})
	if _, err := audit.OpenReceipt(string(cp), v); !errors.Is(err, audit.ErrVerify) {
		t.Errorf("checkpoint accepted as receipt: %v", err)
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.key")
	if _, _, err := audit.LoadOrCreateKey(path, origin, false); err == nil {
		t.Fatal("missing key file accepted without create")
	}
	s1, v1, err := audit.LoadOrCreateKey(path, origin, true)
	if err != nil {
		t.Fatal(err)
	}
	s2, v2, err := audit.LoadOrCreateKey(path, origin, true)
	if err != nil || v1 != v2 || s1.KeyHash() != s2.KeyHash() {
		t.Fatalf("second load: %v, %q vs %q", err, v1, v2)
	}
	pub, _ := os.ReadFile(path + ".pub")
	if strings.TrimSpace(string(pub)) != v1 {
		t.Errorf(".pub = %q, want %q", pub, v1)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", st.Mode().Perm())
	}
	if _, _, err := audit.LoadOrCreateKey(path, "sg.customs.example/borderlink/audit", true); err == nil {
		t.Error("key of another origin accepted")
	}
}

// makeLog returns n sequenced leaves and signed checkpoints at the sizes.
func makeLog(t *testing.T, s audit.Signer, n int, sizes ...int) audit.LogInput {
	t.Helper()
	var in audit.LogInput
	var tree audit.Tree
	for i := range n {
		rec := fixedRecord()
		rec.Seq = uint64(i + 1)
		leaf, err := audit.Leaf(rec)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tree.Add(int64(i), leaf, nil); err != nil {
			t.Fatal(err)
		}
		in.Leaves = append(in.Leaves, leaf)
		in.LeafHashes = append(in.LeafHashes, tlog.RecordHash(leaf))
	}
	for _, size := range sizes {
		root, err := tree.Root(int64(size))
		if err != nil {
			t.Fatal(err)
		}
		msg, err := audit.SignCheckpoint(s, audit.Checkpoint{Origin: origin, Size: int64(size), Hash: root})
		if err != nil {
			t.Fatal(err)
		}
		in.Checkpoints = append(in.Checkpoints, msg)
	}
	return in
}

func TestVerifyLog(t *testing.T) {
	s, v := key(t, origin)
	good := makeLog(t, s, 10, 4, 10)
	good.Verifier = v
	res, err := audit.VerifyLog(good)
	if err != nil || res.Size != 10 || res.Checkpoints != 2 || res.Latest.Size != 10 {
		t.Fatalf("VerifyLog = %+v, %v", res, err)
	}
	saved := res.LatestNote

	tests := []struct {
		name   string
		tamper func(in *audit.LogInput)
		want   string
	}{
		{"byte changed", func(in *audit.LogInput) {
			in.Leaves[6] = bytes.Replace(in.Leaves[6], []byte("NL-1"), []byte("NL-9"), 1)
		}, "index 6: record hashes to"},
		{"byte and stored hash changed", func(in *audit.LogInput) {
			in.Leaves[6] = bytes.Replace(in.Leaves[6], []byte("NL-1"), []byte("NL-9"), 1)
			in.LeafHashes[6] = tlog.RecordHash(in.Leaves[6])
		}, "checkpoint at size 10 does not match the log: a record between index 4 and 9"},
		{"deleted", func(in *audit.LogInput) {
			in.Leaves = append(in.Leaves[:3], in.Leaves[4:]...)
			in.LeafHashes = append(in.LeafHashes[:3], in.LeafHashes[4:]...)
		}, "index 3: record says seq 5"},
		{"reordered", func(in *audit.LogInput) {
			in.Leaves[2], in.Leaves[3] = in.Leaves[3], in.Leaves[2]
			in.LeafHashes[2], in.LeafHashes[3] = in.LeafHashes[3], in.LeafHashes[2]
		}, "index 2: record says seq 4"},
		{"truncated", func(in *audit.LogInput) { in.Leaves, in.LeafHashes = in.Leaves[:8], in.LeafHashes[:8] }, "checkpoint at size 10 but the log has only 8 records"},
		{"key replaced", func(in *audit.LogInput) {
			other, _ := key(t, origin)
			*in = makeLog(t, other, 10, 10)
		}, "checkpoint #1: checkpoint signature"},
		{"no checkpoint", func(in *audit.LogInput) { in.Checkpoints = nil }, "no signed checkpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := makeLog(t, s, 10, 4, 10)
			tt.tamper(&in)
			in.Verifier = v
			_, err := audit.VerifyLog(in)
			if !errors.Is(err, audit.ErrVerify) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("VerifyLog = %v, want ErrVerify containing %q", err, tt.want)
			}
		})
	}

	t.Run("truncated and re-appended, against saved state", func(t *testing.T) {
		// The first 6 records are kept, the rest replaced by 6 others; the
		// rewritten log is self-consistent and freshly signed. Only the
		// checkpoint an auditor saved earlier exposes it.
		var tree audit.Tree
		var in audit.LogInput
		for i := range 12 {
			rec := fixedRecord()
			rec.Seq = uint64(i + 1)
			if i >= 6 {
				rec.RequestId = "ffffffffffffffffffffffffffffffff"
			}
			leaf, _ := audit.Leaf(rec)
			if _, err := tree.Add(int64(i), leaf, nil); err != nil {
				t.Fatal(err)
			}
			in.Leaves = append(in.Leaves, leaf)
		}
		root, _ := tree.Root(12)
		msg, _ := audit.SignCheckpoint(s, audit.Checkpoint{Origin: origin, Size: 12, Hash: root})
		in.Checkpoints, in.Verifier = [][]byte{msg}, v
		if _, err := audit.VerifyLog(in); err != nil {
			t.Fatalf("rewritten log alone: %v", err)
		}
		in.Saved = saved // the size-10 checkpoint of the original log
		_, err := audit.VerifyLog(in)
		if !errors.Is(err, audit.ErrVerify) || !strings.Contains(err.Error(), "not consistent with the saved checkpoint at size 10") {
			t.Errorf("VerifyLog = %v, want inconsistency with the saved checkpoint", err)
		}
	})
}

func FuzzParseCheckpoint(f *testing.F) {
	f.Add("nl.customs.example/borderlink/audit\n5\nMHsHPt37i9e/Csfdh68CuJILhf1NK0NXBThk7OKYEAM=\n")
	f.Add("o\n0\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nx\n")
	f.Fuzz(func(t *testing.T, text string) {
		c, err := audit.ParseCheckpoint(text)
		if err != nil {
			return
		}
		// A parsed checkpoint prints back to a text that parses the same.
		again, err := audit.ParseCheckpoint(c.Text())
		if err != nil || again != c {
			t.Fatalf("round trip of %q: %v, %v", text, again, err)
		}
	})
}

func FuzzParseReceipt(f *testing.F) {
	f.Add("borderlink-receipt/v1\no\n3\nMHsHPt37i9e/Csfdh68CuJILhf1NK0NXBThk7OKYEAM=\n2026-11-25T10:00:00.000000005Z\n-\nreq\nspiffe://x/gateway\n")
	f.Fuzz(func(t *testing.T, text string) {
		r, err := audit.ParseReceipt(text)
		if err != nil {
			return
		}
		again, err := audit.ParseReceipt(r.Text())
		if err != nil || !again.Time.Equal(r.Time) || again.Index != r.Index || again.LeafHash != r.LeafHash {
			t.Fatalf("round trip of %q: %+v, %v", text, again, err)
		}
	})
}

// FuzzProofs feeds arbitrary proof bytes to the inclusion and consistency
// checks: they must never accept a proof for a leaf that is not in the
// tree, and never panic.
func FuzzProofs(f *testing.F) {
	f.Add([]byte{}, int64(3), int64(8))
	f.Add(bytes.Repeat([]byte{1}, 96), int64(0), int64(5))
	var leaves [][]byte
	for i := range 8 {
		leaves = append(leaves, []byte{byte(i)})
	}
	f.Fuzz(func(t *testing.T, raw []byte, index, size int64) {
		hs := memTree(t, leaves)
		if size < 1 || size > 8 || index < 0 || index >= size {
			return
		}
		var proof []tlog.Hash
		for len(raw) >= tlog.HashSize {
			proof = append(proof, tlog.Hash(raw[:tlog.HashSize]))
			raw = raw[tlog.HashSize:]
		}
		root, _ := tlog.TreeHash(size, reader(hs))
		cp := audit.Checkpoint{Size: size, Hash: root}
		bogus := tlog.RecordHash([]byte("not a leaf"))
		if audit.CheckInclusion(cp, index, bogus, proof) == nil {
			t.Fatalf("inclusion proof accepted for a leaf not in the tree")
		}
		if index > 0 {
			wrong := audit.Checkpoint{Size: index, Hash: bogus}
			if audit.CheckConsistency(wrong, cp, proof) == nil {
				t.Fatalf("consistency proof accepted for a tree that is not a prefix")
			}
		}
	})
}

func TestReconcile(t *testing.T) {
	rec := func(id string, seq uint64, d blv1.AuditDecision, status, digest string) *blv1.AuditRecord {
		return &blv1.AuditRecord{RequestId: id, Seq: seq, Decision: d, Status: status, ReleaseSha256: digest}
	}
	allow, deny, errd := blv1.AuditDecision_AUDIT_DECISION_ALLOW, blv1.AuditDecision_AUDIT_DECISION_DENY, blv1.AuditDecision_AUDIT_DECISION_ERROR
	ours := []*blv1.AuditRecord{
		rec("a", 1, allow, "OK", "d1"),             // matched
		rec("b", 2, deny, "PERMISSION_DENIED", ""), // matched
		rec("c", 3, allow, "OK", "d3"),             // only ours
		rec("d", 4, allow, "OK", "d4"),             // digest differs
		rec("e", 5, errd, "UNAVAILABLE", ""),       // not compared
		rec("f", 6, errd, "DATA_LOSS", ""),         // we rejected their answer
		rec("g", 7, deny, "PERMISSION_DENIED", ""), // decision differs
	}
	theirs := []*blv1.AuditRecord{
		rec("a", 10, allow, "OK", "d1"),
		rec("b", 11, deny, "PERMISSION_DENIED", ""),
		rec("d", 12, allow, "OK", "other"),
		rec("f", 13, allow, "OK", "d6"),
		rec("g", 14, allow, "OK", "d7"),
		rec("h", 15, allow, "OK", "d8"), // only theirs
	}
	// An alert the partner refused before sending it to us: not compared.
	unsent := rec("i", 16, deny, "PERMISSION_DENIED", "")
	unsent.Action, unsent.Side = "alert.deliver", blv1.AuditSide_AUDIT_SIDE_PROVIDER
	// One it did deliver (with our receipt) that we have no record of.
	sent := rec("j", 17, allow, "OK", "d9")
	sent.Action, sent.Side, sent.PartnerReceipt = "alert.deliver", blv1.AuditSide_AUDIT_SIDE_PROVIDER, "r"
	theirs = append(theirs, unsent, sent)
	r := audit.Reconcile(ours, theirs)
	if r.Matched != 2 || r.NotCompared != 2 {
		t.Errorf("matched %d, not compared %d; want 2, 2", r.Matched, r.NotCompared)
	}
	var got []string
	for _, d := range r.Discrepancies {
		got = append(got, d.RequestID)
	}
	if strings.Join(got, ",") != "c,d,f,g,h,j" {
		t.Errorf("discrepancies %v, want c,d,f,g,h,j: %+v", got, r.Discrepancies)
	}
}

// TestReconcilePushes: alerts we pushed are matched against the partner's
// consumer-side records; a refusal without the partner's receipt that the
// partner never logged is not compared, one with a receipt must be there.
func TestReconcilePushes(t *testing.T) {
	rec := func(id string, seq uint64, d blv1.AuditDecision, receipt, digest string) *blv1.AuditRecord {
		return &blv1.AuditRecord{RequestId: id, Seq: seq, Decision: d, PartnerReceipt: receipt, ReleaseSha256: digest}
	}
	allow, deny := blv1.AuditDecision_AUDIT_DECISION_ALLOW, blv1.AuditDecision_AUDIT_DECISION_DENY
	ours := []*blv1.AuditRecord{
		rec("a", 1, allow, "r", "d1"), // matched
		rec("b", 2, deny, "", ""),     // refused before sending: not compared
		rec("c", 3, deny, "r", ""),    // refused by the partner, with a receipt: matched
		rec("d", 4, deny, "r", ""),    // a receipted refusal the partner did not log
		rec("e", 5, allow, "r", "d5"), // delivered, not in the partner's log
		rec("f", 6, allow, "r", "d6"), // digest differs
		rec("g", 7, deny, "", ""),     // we refused locally, the partner has it anyway
	}
	theirs := []*blv1.AuditRecord{
		rec("a", 10, allow, "", "d1"),
		rec("c", 11, deny, "", ""),
		rec("f", 12, allow, "", "other"),
		rec("g", 13, allow, "", "d7"),
		rec("h", 14, allow, "", "d8"), // never pushed by us
	}
	r := audit.ReconcilePushes(ours, theirs)
	if r.Matched != 2 || r.NotCompared != 1 {
		t.Errorf("matched %d, not compared %d; want 2, 1", r.Matched, r.NotCompared)
	}
	var got []string
	for _, d := range r.Discrepancies {
		got = append(got, d.RequestID)
	}
	if strings.Join(got, ",") != "d,e,f,g,h" {
		t.Errorf("discrepancies %v, want d,e,f,g,h: %+v", got, r.Discrepancies)
	}
}

// BenchmarkVerifyLog measures full verification (parse, canonical check,
// leaf hash, tree) per record; the goal is ≥ 1,000,000 records a minute.
func BenchmarkVerifyLog(b *testing.B) {
	const n = 10000
	s, v := key(b, origin)
	var tree audit.Tree
	var in audit.LogInput
	for i := range n {
		rec := fixedRecord()
		rec.Seq = uint64(i + 1)
		leaf, _ := audit.Leaf(rec)
		tree.Add(int64(i), leaf, nil)
		in.Leaves = append(in.Leaves, leaf)
	}
	root, _ := tree.Root(n)
	msg, _ := audit.SignCheckpoint(s, audit.Checkpoint{Origin: origin, Size: n, Hash: root})
	in.Checkpoints, in.Verifier = [][]byte{msg}, v
	b.ResetTimer()
	for b.Loop() {
		if _, err := audit.VerifyLog(in); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Minutes(), "records/min")
}

// TestKeyRing: after a key rotation, receipts and checkpoints signed with
// the retired key still open with the ring, new ones open with its current
// key, and neither opens with a ring that lacks its key.
func TestKeyRing(t *testing.T) {
	gen := func() (audit.Signer, string) {
		t.Helper()
		sk, vk, err := audit.GenerateKey(origin)
		if err != nil {
			t.Fatal(err)
		}
		s, err := note.NewSigner(sk)
		if err != nil {
			t.Fatal(err)
		}
		return s, vk
	}
	oldS, oldV := gen()
	newS, newV := gen()
	r := audit.Receipt{Origin: origin, Index: 1, LeafHash: tlog.RecordHash([]byte("l")), Time: time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC),
		RequestID: "req", Caller: "spiffe://sg.customs.example/gateway"}
	oldMsg, err := audit.SignReceipt(oldS, r)
	if err != nil {
		t.Fatal(err)
	}
	newMsg, err := audit.SignReceipt(newS, r)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := audit.NewKeyRing(origin, []string{oldV, newV})
	if err != nil {
		t.Fatal(err)
	}
	if ring.Len() != 2 || ring.Name() != origin {
		t.Fatalf("ring: %d keys named %q", ring.Len(), ring.Name())
	}
	for name, msg := range map[string]string{"retired key": oldMsg, "current key": newMsg} {
		if _, err := audit.OpenReceipt(msg, ring); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	onlyNew, err := audit.NewKeyRing(origin, []string{newV})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.OpenReceipt(oldMsg, onlyNew); !errors.Is(err, audit.ErrVerify) {
		t.Errorf("receipt by a key not in the ring: %v, want ErrVerify", err)
	}
	cp, err := audit.SignCheckpoint(oldS, audit.Checkpoint{Origin: origin, Size: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.OpenCheckpoint(cp, ring); err != nil {
		t.Errorf("checkpoint by the retired key: %v", err)
	}
	// The ring signs nothing; as a single verifier it is the current key.
	if ring.KeyHash() != mustVerifier(t, newV).KeyHash() {
		t.Error("ring's own key is not the last (current) one")
	}
	_, otherV, _ := audit.GenerateKey("cn.customs.example/borderlink/audit")
	if _, err := audit.NewKeyRing(origin, []string{oldV, otherV}); err == nil {
		t.Error("ring accepted a key of another log")
	}
	if _, err := audit.NewKeyRing("", []string{oldV, otherV}); err == nil {
		t.Error("ring without origin accepted keys of two logs")
	}
	if _, err := audit.NewKeyRing(origin, nil); err == nil {
		t.Error("empty ring accepted")
	}
}

func mustVerifier(t *testing.T, vk string) note.Verifier {
	t.Helper()
	v, err := audit.NewVerifier(vk, "")
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestSequenceLeaf: encoding a record without its seq and adding the seq
// afterwards gives exactly Leaf, for records from full to nearly empty and
// seqs of every varint length.
func TestSequenceLeaf(t *testing.T) {
	minimal := &blv1.AuditRecord{Version: 1, Time: timestamppb.New(time.Unix(0, 1))}
	withoutTime := &blv1.AuditRecord{Version: 1, RequestId: "r"}
	for _, base := range []*blv1.AuditRecord{fixedRecord(), minimal, withoutTime} {
		for _, seq := range []uint64{1, 127, 128, 16383, 16384, 1 << 40, math.MaxUint64} {
			rec := proto.CloneOf(base)
			rec.Seq = 0
			body, err := audit.UnsequencedLeaf(rec)
			if err != nil {
				t.Fatal(err)
			}
			got, err := audit.SequenceLeaf(body, seq)
			if err != nil {
				t.Fatal(err)
			}
			rec.Seq = seq
			want, err := audit.Leaf(rec)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("seq %d: SequenceLeaf = %x, Leaf = %x", seq, got, want)
			}
		}
	}
	sequenced, _ := audit.Leaf(fixedRecord())
	for name, b := range map[string][]byte{
		"already sequenced": sequenced,
		"empty":             nil,
		"version 2":         {0x08, 0x02, 0x1a, 0x00},
	} {
		if _, err := audit.SequenceLeaf(b, 7); err == nil {
			t.Errorf("SequenceLeaf(%s) succeeded, want an error", name)
		}
	}
	if _, err := audit.SequenceLeaf(body(t), 0); err == nil {
		t.Error("SequenceLeaf with seq 0 succeeded")
	}
}

func body(t *testing.T) []byte {
	t.Helper()
	rec := fixedRecord()
	rec.Seq = 0
	b, err := audit.UnsequencedLeaf(rec)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
