package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/devca"
	"github.com/borderlink/borderlink/internal/gateway"
	"github.com/borderlink/borderlink/internal/identity"
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
}

func (f *forkingLog) show(tree *audit.Tree, size int64) {
	f.mu.Lock()
	f.tree, f.size = tree, size
	f.mu.Unlock()
}

func (f *forkingLog) GetCheckpoint(context.Context, *blv1.GetCheckpointRequest) (*blv1.GetCheckpointResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	root, _ := f.tree.Root(f.size)
	msg, err := audit.SignCheckpoint(f.signer, audit.Checkpoint{Origin: audit.Origin(nlDomain), Size: f.size, Hash: root})
	return &blv1.GetCheckpointResponse{Checkpoint: string(msg)}, err
}

func (f *forkingLog) GetConsistencyProof(_ context.Context, req *blv1.GetConsistencyProofRequest) (*blv1.GetConsistencyProofResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
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

func (f *forkingLog) AddCosignature(context.Context, *blv1.AddCosignatureRequest) (*blv1.AddCosignatureResponse, error) {
	return &blv1.AddCosignatureResponse{}, nil
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
// does not extend it. sg's witness reports the split view and keeps the
// checkpoint it accepted.
func TestSplitViewDetected(t *testing.T) {
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

	fake.show(forked, 10) // rewrites index 3 onwards
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
	waitWitnessed(8) // the forked checkpoint was not accepted
}
