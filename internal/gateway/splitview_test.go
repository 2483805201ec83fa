package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/cli"
	"github.com/borderlink/borderlink/internal/devca"
	"github.com/borderlink/borderlink/internal/gateway"
	"github.com/borderlink/borderlink/internal/identity"
	"github.com/borderlink/borderlink/internal/store/sqlite"
	"github.com/borderlink/borderlink/internal/store/storetest"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// forkingLog is a partner gateway's Audit service that shows whichever
// history the test picks, signed with the partner's real audit key.
type forkingLog struct {
	blv1.UnimplementedAuditServer
	signer note.Signer
	mu     sync.Mutex
	tree   *audit.Tree
	size   int64
	refuse bool // GetConsistencyProof fails
	// stall: GetConsistencyProof answers only after the caller gave up
	// (its context is done) and a small latency more, so that the
	// caller's own deadline fires before any answer arrives.
	stall bool
	// cosigned are the sizes of the checkpoints cosignatures were
	// handed over for; cosigKeys the key IDs of the cosignature lines
	// handed over, in the same order.
	cosigned  []int64
	cosigKeys []uint32

	// fetched are the times its checkpoint was fetched.
	fetched []time.Time
}

func (f *forkingLog) show(tree *audit.Tree, size int64) {
	f.mu.Lock()
	f.tree, f.size = tree, size
	f.mu.Unlock()
}

func (f *forkingLog) GetCheckpoint(context.Context, *blv1.GetCheckpointRequest) (*blv1.GetCheckpointResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fetched = append(f.fetched, time.Now())
	root, _ := f.tree.Root(f.size)
	msg, err := audit.SignCheckpoint(f.signer, audit.Checkpoint{Origin: audit.Origin(nlDomain), Size: f.size, Hash: root})
	return &blv1.GetCheckpointResponse{Checkpoint: string(msg)}, err
}

func (f *forkingLog) refuseProofs(refuse bool) {
	f.mu.Lock()
	f.refuse = refuse
	f.mu.Unlock()
}

// stallProofs makes GetConsistencyProof wait until the caller gives up
// instead of answering.
func (f *forkingLog) stallProofs(stall bool) {
	f.mu.Lock()
	f.stall = stall
	f.mu.Unlock()
}

func (f *forkingLog) GetConsistencyProof(ctx context.Context, req *blv1.GetConsistencyProofRequest) (*blv1.GetConsistencyProofResponse, error) {
	f.mu.Lock()
	if f.stall {
		f.mu.Unlock()
		<-ctx.Done()
		time.Sleep(50 * time.Millisecond)
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	defer f.mu.Unlock()
	if f.refuse {
		return nil, status.Error(codes.Unavailable, "not now")
	}
	p, err := tlog.ProveTree(int64(req.GetNewSize()), int64(req.GetOldSize()), f.tree)
	if err != nil {
		return nil, err
	}
	out := &blv1.GetConsistencyProofResponse{OldSize: req.GetOldSize(), NewSize: req.GetNewSize()}
	for _, h := range p {
		out.Hashes = append(out.Hashes, h[:])
	}
	return out, nil
}

func (f *forkingLog) AddCosignature(_ context.Context, req *blv1.AddCosignatureRequest) (*blv1.AddCosignatureResponse, error) {
	if body, err := audit.CheckpointText([]byte(req.GetCheckpoint())); err == nil {
		if c, err := audit.ParseCheckpoint(body); err == nil {
			// The witness's line comes last.
			lines := strings.SplitAfter(strings.TrimSuffix(req.GetCheckpoint(), "\n"), "\n")
			_, kh, _ := audit.CosignatureKeyHash(lines[len(lines)-1] + "\n")
			f.mu.Lock()
			f.cosigned = append(f.cosigned, c.Size)
			f.cosigKeys = append(f.cosigKeys, kh)
			f.mu.Unlock()
		}
	}
	return &blv1.AddCosignatureResponse{}, nil
}

// cosignatures counts the cosignatures of the checkpoint of size n made
// with the key keyHash that were handed over.
func (f *forkingLog) cosignatures(n int64, keyHash uint32) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	count := 0
	for i, s := range f.cosigned {
		if s == n && f.cosigKeys[i] == keyHash {
			count++
		}
	}
	return count
}

// cosignedSize tells whether a cosignature of the checkpoint of size n
// was handed over.
func (f *forkingLog) cosignedSize(n int64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Contains(f.cosigned, n)
}

func forkTree(t *testing.T, n, fork int) *audit.Tree {
	t.Helper()
	var tree audit.Tree
	for i := range n {
		rec := storetest.AuditRecord(fmt.Sprintf("%032x", i), 0)
		if i >= fork {
			rec.RequestId = fmt.Sprintf("f%031x", i)
		}
		rec.Version, rec.Seq = 1, uint64(i+1)
		leaf, err := audit.Leaf(rec)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tree.Add(int64(i), leaf, nil); err != nil {
			t.Fatal(err)
		}
	}
	return &tree
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestSplitViewDetected: nl's gateway (here a fake serving nl's Audit
// service with nl's real keys) shows sg one history, then a forked one that
// does not extend it. sg's witness reports the split view, keeps the
// checkpoint it accepted, and keeps both signed checkpoints as evidence,
// once however often it sees the fork again.
func TestSplitViewDetected(t *testing.T) {
	tests := []struct {
		name       string
		forkedSize int64
	}{
		{"fork after the accepted size", 10},
		{"other root at the accepted size", 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			logs := &syncBuffer{}
			f := startFederation(t, func(d string, o *gateway.Options) {
				if d == sgDomain {
					o.Peers[nlDomain] = lis.Addr().String()
					o.Logger = slog.New(slog.NewTextHandler(logs, nil))
				}
			})
			nl, sg := f.nodes[nlDomain], f.nodes[sgDomain]
			signer, err := note.NewSigner(nl.auditKeySigner)
			if err != nil {
				t.Fatal(err)
			}
			fake := &forkingLog{signer: signer}
			honest, forked := forkTree(t, 12, 12), forkTree(t, 12, 3)
			fake.show(honest, 5)

			cert, err := nl.ca.IssueTLS(identity.GatewayID(nlDomain).String(), devca.LeafOptions{IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
			if err != nil {
				t.Fatal(err)
			}
			srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(identity.ServerTLSConfig(identity.NewKeyPair(cert), f.bundles, nil, nil))))
			blv1.RegisterAuditServer(srv, fake)
			go srv.Serve(lis)
			t.Cleanup(srv.Stop)

			ctx := context.Background()
			waitWitnessed := func(size int64) {
				t.Helper()
				deadline := time.Now().Add(10 * time.Second)
				for {
					msg, err := sg.store.LastWitnessed(ctx, audit.Origin(nlDomain))
					if err == nil {
						if c, err := audit.OpenCheckpoint(msg, verifierOf(t, nl)); err == nil && c.Size == size {
							return
						}
					}
					if time.Now().After(deadline) {
						t.Fatalf("sg did not accept nl's checkpoint of size %d: %v\n%s", size, err, logs)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			waitWitnessed(5)
			fake.show(honest, 8)
			waitWitnessed(8)

			fake.show(forked, tt.forkedSize) // rewrites index 3 onwards
			deadline := time.Now().Add(10 * time.Second)
			// sg's own witnessing, not gossip from a witness that saw another nl.
			for !strings.Contains(logs.String(), "SPLIT VIEW: partner audit log is not consistent with what it showed before") {
				if time.Now().After(deadline) {
					t.Fatalf("no split view reported after 10s:\n%s", logs)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if !strings.Contains(logs.String(), "accepted size 8") {
				t.Errorf("split view report lacks the evidence:\n%s", logs)
			}
			checkSplitViewKept(t, f, sgDomain, logs, audit.SplitView{
				Detection: audit.DetectedDirect, Accepted: audit.Checkpoint{Size: 8}, Conflicting: audit.Checkpoint{Size: tt.forkedSize},
			}, forked)
			waitWitnessed(8) // the forked checkpoint was not accepted
		})
	}
}

// checkSplitViewKept waits until the gateway of domain at has kept the
// evidence of nl's split view and detected it again, then checks that it
// is one row (re-detection bumps the count), that both notes are
// checkpoints nl signed that cannot both be true — the same size with
// different roots, or sizes the larger tree (bigTree, the history the
// larger checkpoint was signed from) does not prove consistent — that the
// metric counts it, and that `audit split-views` prints both notes and
// exits 5.
func checkSplitViewKept(t *testing.T, f *federation, at string, logs fmt.Stringer, want audit.SplitView, bigTree *audit.Tree) {
	t.Helper()
	ctx := context.Background()
	n, nl := f.nodes[at], f.nodes[nlDomain]
	origin := audit.Origin(nlDomain)
	var views []audit.KeptSplitView
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		views, err = n.store.SplitViews(ctx, origin, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(views) > 0 && views[0].Count >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s kept no evidence of nl's split view detected three times after 10s: %+v\n%s", at, views, logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(views) != 1 {
		t.Fatalf("%s kept %d rows of evidence, want 1 (re-detection bumps the count): %+v", at, len(views), views)
	}
	got := views[0]
	if got.Detection != want.Detection || got.Witness != want.Witness || got.Accepted.Size != want.Accepted.Size || got.Conflicting.Size != want.Conflicting.Size {
		t.Errorf("%s's evidence: detection %q witness %q sizes %d, %d; want %q %q %d, %d", at,
			got.Detection, got.Witness, got.Accepted.Size, got.Conflicting.Size, want.Detection, want.Witness, want.Accepted.Size, want.Conflicting.Size)
	}
	if !got.LastSeen.After(got.FirstSeen) {
		t.Errorf("%s's evidence seen %d times, first %v, last %v", at, got.Count, got.FirstSeen, got.LastSeen)
	}
	v := verifierOf(t, nl)
	a, errA := audit.OpenCheckpoint(got.AcceptedNote, v)
	c, errC := audit.OpenCheckpoint(got.ConflictingNote, v)
	if errA != nil || errC != nil || a != got.Accepted || c != got.Conflicting {
		t.Fatalf("%s's evidence notes do not verify with nl's key as the stored checkpoints: %v, %v\n%s\n%s", at, errA, errC, got.AcceptedNote, got.ConflictingNote)
	}
	if a.Size == c.Size {
		if a.Hash == c.Hash {
			t.Errorf("%s's evidence: one tree twice, size %d root %s", at, a.Size, a.Hash)
		}
	} else {
		older, newer := a, c
		if c.Size < a.Size {
			older, newer = c, a
		}
		proof, err := tlog.ProveTree(newer.Size, older.Size, bigTree)
		if err != nil {
			t.Fatal(err)
		}
		if err := audit.CheckConsistency(older, newer, proof); err == nil {
			t.Errorf("%s's evidence: size %d is a prefix of size %d: not a split view", at, older.Size, newer.Size)
		}
	}

	rec := httptest.NewRecorder()
	n.gw.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	other := cnDomain
	if at == cnDomain {
		other = sgDomain
	}
	for _, m := range []string{
		`borderlink_audit_split_views{origin="` + origin + `"} 1`,
		`borderlink_audit_split_views{origin="` + audit.Origin(other) + `"} 0`,
	} {
		if !strings.Contains(rec.Body.String(), m+"\n") {
			t.Errorf("%s's metrics lack %q:\n%s", at, m, rec.Body.String())
		}
	}

	// Auditors of the administration read the same evidence through the
	// Audit service; partners may not.
	auditor := blv1.NewAuditClient(f.conn(t, at, "spiffe://"+at+"/auditor/dpa", nil))
	for _, tc := range []struct {
		req  *blv1.ListSplitViewsRequest
		want int
	}{
		{&blv1.ListSplitViewsRequest{}, 1},
		{&blv1.ListSplitViewsRequest{Origin: origin}, 1},
		{&blv1.ListSplitViewsRequest{Origin: audit.Origin(other)}, 0},
		{&blv1.ListSplitViewsRequest{AfterId: uint64(got.ID)}, 0},
	} {
		resp, err := auditor.ListSplitViews(ctx, tc.req)
		if err != nil || len(resp.GetSplitViews()) != tc.want {
			t.Errorf("%s: ListSplitViews(%v) = %v, %v; want %d split views", at, tc.req, resp, err, tc.want)
			continue
		}
		if tc.want == 0 {
			continue
		}
		sv := resp.GetSplitViews()[0]
		if sv.GetOrigin() != origin || sv.GetAcceptedCheckpoint() != string(got.AcceptedNote) || sv.GetConflictingCheckpoint() != string(got.ConflictingNote) ||
			sv.GetDetection() != got.Detection || sv.GetWitness() != got.Witness || sv.GetCount() < 3 || sv.GetId() != uint64(got.ID) {
			t.Errorf("%s: ListSplitViews = %v, want the stored evidence %+v", at, sv, got)
		}
	}
	partner := blv1.NewAuditClient(f.conn(t, at, identity.GatewayID(other).String(), nil))
	if _, err := partner.ListSplitViews(ctx, &blv1.ListSplitViewsRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("%s: a partner gateway listing split views: %v, want PERMISSION_DENIED", at, err)
	}

	code, out := splitViewsCLI(t, views)
	if code != cli.ExitSplitView || !strings.Contains(out, string(got.AcceptedNote)) || !strings.Contains(out, string(got.ConflictingNote)) {
		t.Errorf("audit split-views on %s's evidence: exit %d, want %d with both notes:\n%s", at, code, cli.ExitSplitView, out)
	}
}

// splitViewsCLI runs `audit split-views` on a store holding views (copied
// from a gateway's store, whose file the test federation does not name).
func splitViewsCLI(t *testing.T, views []audit.KeptSplitView) (int, string) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "gateway.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range views {
		if _, err := st.PutSplitView(ctx, v.SplitView, v.FirstSeen); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	// Only the store is read; the other files must exist.
	for name, data := range map[string][]byte{"gateway.pem": nil, "gateway-key.pem": nil, "bundle.pem": nil, "pseudonym.key": bytes.Repeat([]byte{7}, 32)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(cfg, []byte(`trust_domain: sg.customs.example
listen: 127.0.0.1:0
tls: {cert_file: gateway.pem, key_file: gateway-key.pem}
trust_bundles: {sg.customs.example: bundle.pem}
store: {sqlite: {path: gateway.db}}
policy: {dir: .}
pseudonymization: {key_file: pseudonym.key}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := cli.Main(ctx, []string{"audit", "split-views", "--config", cfg}, &out, &errb)
	return code, out.String() + errb.String()
}
