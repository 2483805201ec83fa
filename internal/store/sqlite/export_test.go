package sqlite

import (
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/borderlink/borderlink/internal/audit"
)

// CheckTree rebuilds the Merkle tree from the stored leaves and compares
// every stored hash and the root with it; it returns the tree size. It is
// exported for the external tests of this package.
func CheckTree(t *testing.T, s *Store) int64 {
	t.Helper()
	ctx := t.Context()
	n := auditSize(t, s)
	leaves, err := s.AuditLeaves(ctx, 0, n)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(leaves)) != n {
		t.Fatalf("%d leaves for tree size %d", len(leaves), n)
	}
	var tree audit.Tree
	for i, l := range leaves {
		if _, err := tree.Add(int64(i), l, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n == 0 {
		return 0
	}
	want, _ := tree.Root(n)
	got, err := tlog.TreeHash(n, audit.HashReader(ctx, s))
	if err != nil || got != want {
		t.Fatalf("stored root = %v, %v; recomputed %v", got, err, want)
	}
	ix := make([]int64, tlog.StoredHashCount(n))
	for i := range ix {
		ix[i] = int64(i)
	}
	stored, err := s.ReadAuditHashes(ctx, ix)
	if err != nil {
		t.Fatal(err)
	}
	mem, _ := tree.ReadHashes(ix)
	for i := range ix {
		if stored[i] != mem[i] {
			t.Fatalf("stored hash %d differs from the recomputed one", i)
		}
	}
	return n
}
