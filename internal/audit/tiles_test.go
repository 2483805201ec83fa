package audit_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/borderlink/borderlink/internal/audit"
)

func TestTilePath(t *testing.T) {
	tests := []struct {
		path string
		want tlog.Tile // zero: rejected
	}{
		{"tile/0/000", tlog.Tile{H: 8, L: 0, N: 0, W: 256}},
		{"tile/0/x001/x234/067", tlog.Tile{H: 8, L: 0, N: 1234067, W: 256}},
		{"tile/2/001.p/17", tlog.Tile{H: 8, L: 2, N: 1, W: 17}},
		{"tile/entries/000.p/1", tlog.Tile{H: 8, L: -1, N: 0, W: 1}},
		{"tile/entries/x001/000", tlog.Tile{H: 8, L: -1, N: 1000, W: 256}},
		{"tile/63/000.p/1", tlog.Tile{H: 8, L: 63, N: 0, W: 1}},
		{"tile/8/0/000", tlog.Tile{}},         // tlog's spelling, with the height
		{"tile/data/000", tlog.Tile{}},        // tlog's name for entries
		{"tile/0/1", tlog.Tile{}},             // not 3 digits
		{"tile/0/x000/001", tlog.Tile{}},      // not the one canonical spelling
		{"tile/00/000", tlog.Tile{}},          // leading zero in the level
		{"tile/64/000", tlog.Tile{}},          // level out of range
		{"tile/0/000.p/256", tlog.Tile{}},     // a full tile is not partial
		{"tile/0/000.p/0", tlog.Tile{}},       // empty tiles do not exist
		{"tile/0/000.p/007", tlog.Tile{}},     // leading zero in the width
		{"tiles/0/000", tlog.Tile{}},          // not a tile
		{"tile/entries/000.p/x", tlog.Tile{}}, // width not a number
		{"", tlog.Tile{}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got, err := audit.ParseTilePath(tt.path)
			if tt.want == (tlog.Tile{}) {
				if err == nil {
					t.Errorf("ParseTilePath(%q) = %+v, want an error", tt.path, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseTilePath(%q) = %+v, %v; want %+v", tt.path, got, err, tt.want)
			}
			if p := audit.TilePath(got); p != tt.path {
				t.Errorf("TilePath(%+v) = %q, want %q", got, p, tt.path)
			}
		})
	}
}

// TestTileInTree follows the example of C2SP tlog-tiles: a tree of 70,000
// leaves is 273 full level-0 tiles, a partial one of width 112, a full
// level-1 tile, a partial one of width 17 and a partial level-2 tile of
// width 1. Those (and the entry bundles) exist; one more hash does not.
func TestTileInTree(t *testing.T) {
	const size = 70000
	tiles := tlog.NewTiles(audit.TileHeight, 0, size)
	var widths []string
	for _, tile := range tiles {
		if !audit.TileInTree(tile, size) {
			t.Errorf("%s is not in the tree of %d", audit.TilePath(tile), size)
		}
		if tile.W < 256 {
			widths = append(widths, fmt.Sprintf("%d:%d", tile.L, tile.W))
			wider := tile
			wider.W++
			if audit.TileInTree(wider, size) {
				t.Errorf("%s is in the tree of %d", audit.TilePath(wider), size)
			}
		}
	}
	if len(tiles) != 273+1+1+1+1 || strings.Join(widths, ",") != "0:112,1:17,2:1" {
		t.Errorf("%d tiles, partial %v; want 277 with widths 0:112,1:17,2:1", len(tiles), widths)
	}
	for _, tt := range []struct {
		tile tlog.Tile
		want bool
	}{
		{tlog.Tile{H: 8, L: -1, N: 272, W: 256}, true},
		{tlog.Tile{H: 8, L: -1, N: 273, W: 112}, true},
		{tlog.Tile{H: 8, L: -1, N: 273, W: 113}, false},
		{tlog.Tile{H: 8, L: -1, N: 274, W: 1}, false},
		{tlog.Tile{H: 8, L: 0, N: 1 << 60, W: 1}, false},
		{tlog.Tile{H: 8, L: 3, N: 0, W: 1}, false},
		{tlog.Tile{H: 8, L: 63, N: 0, W: 1}, false},
		{tlog.Tile{H: 3, L: 0, N: 0, W: 1}, false},
	} {
		if got := audit.TileInTree(tt.tile, size); got != tt.want {
			t.Errorf("TileInTree(%+v, %d) = %v, want %v", tt.tile, size, got, tt.want)
		}
	}
}

func TestEntryBundle(t *testing.T) {
	leaves := [][]byte{[]byte("a"), {}, bytes.Repeat([]byte{7}, 300)}
	b, err := audit.EntryBundle(leaves)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte{0, 1, 'a', 0, 0, 1, 44}) || len(b) != 2+1+2+2+300 {
		t.Errorf("bundle starts % x (%d bytes), want big-endian uint16 lengths", b[:7], len(b))
	}
	got, err := audit.ParseEntryBundle(b, 3)
	if err != nil || len(got) != 3 || !bytes.Equal(got[0], leaves[0]) || len(got[1]) != 0 || !bytes.Equal(got[2], leaves[2]) {
		t.Errorf("ParseEntryBundle = %q, %v", got, err)
	}
	for name, tt := range map[string]struct {
		data []byte
		w    int
	}{
		"too few":          {b, 4},
		"too many":         {b, 2},
		"truncated length": {append(append([]byte{}, b...), 0), 4},
		"truncated entry":  {b[:len(b)-1], 3},
	} {
		if _, err := audit.ParseEntryBundle(tt.data, tt.w); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := audit.EntryBundle([][]byte{make([]byte, 1<<16)}); err == nil {
		t.Error("a leaf of 65,536 bytes was framed")
	}
}

// tiledLog serves an in-memory log as C2SP tiles; tamper, if set, may
// change what is served.
type tiledLog struct {
	tree   audit.Tree
	leaves [][]byte
	tamper func(path string, data []byte) []byte
}

func (l *tiledLog) fetch(_ context.Context, path string) ([]byte, error) {
	tile, err := audit.ParseTilePath(path)
	if err != nil {
		return nil, err
	}
	if !audit.TileInTree(tile, l.tree.Size()) {
		return nil, fmt.Errorf("%s: not found", path)
	}
	var data []byte
	if tile.L == -1 {
		start := tile.N << audit.TileHeight
		data, err = audit.EntryBundle(l.leaves[start : start+int64(tile.W)])
	} else {
		data, err = tlog.ReadTileData(tile, &l.tree)
	}
	if err == nil && l.tamper != nil {
		data = l.tamper(path, bytes.Clone(data))
	}
	return data, err
}

// TestVerifyFromTiles: a client that has only a signed checkpoint and the
// tiles rebuilds the root from the hash tiles (tlog.TileHashReader),
// proves an entry's inclusion from them, and verifies every entry from
// the entry bundles; tampered tiles are caught and named.
func TestVerifyFromTiles(t *testing.T) {
	const n = 1000 // 3 full level-0 tiles, a partial one, a partial level-1 tile
	s, v := key(t, origin)
	log := &tiledLog{}
	for i := range int64(n) {
		leaf := seqLeaf(t, i)
		if _, err := log.tree.Add(i, leaf, nil); err != nil {
			t.Fatal(err)
		}
		log.leaves = append(log.leaves, leaf)
	}
	root, _ := log.tree.Root(n)
	cp, err := audit.SignCheckpoint(s, audit.Checkpoint{Origin: origin, Size: n, Hash: root})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	thr := tlog.TileHashReader(tlog.Tree{N: n, Hash: root}, audit.TileReader{Ctx: ctx, Fetch: log.fetch})
	if got, err := tlog.TreeHash(n, thr); err != nil || got != root {
		t.Fatalf("root from hash tiles = %s, %v; want %s", got, err, root)
	}
	proof, err := tlog.ProveRecord(n, 777, thr)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckRecord(proof, n, root, 777, tlog.RecordHash(log.leaves[777])); err != nil {
		t.Errorf("inclusion proof from tiles: %v", err)
	}

	verify := func(tamper func(string, []byte) []byte) error {
		log.tamper = tamper
		defer func() { log.tamper = nil }()
		lv, err := audit.NewLogVerifier(v, nil)
		if err != nil {
			return err
		}
		if err := lv.Checkpoint(cp); err != nil {
			return err
		}
		if err := audit.VerifyTiles(ctx, log.fetch, lv, n); err != nil {
			return err
		}
		res, err := lv.Finish()
		if err == nil && (res.Size != n || res.Latest.Size != n) {
			return fmt.Errorf("verified %+v", res)
		}
		return err
	}
	if err := verify(nil); err != nil {
		t.Fatalf("VerifyTiles: %v", err)
	}

	// Entry 3 of bundle 2 is index 515; its leaf data starts after the
	// lengths and bytes of entries 0..2.
	flipEntry := func(data []byte) []byte {
		off := 0
		for range 3 {
			off += 2 + int(data[off])<<8 + int(data[off+1])
		}
		i := bytes.Index(data[off:], []byte("NL-1"))
		data[off+i+3] = '9'
		return data
	}
	tests := []struct {
		name   string
		tamper func(path string, data []byte) []byte
		want   string
	}{
		{"entry changed", func(p string, d []byte) []byte {
			if p == "tile/entries/002" {
				return flipEntry(d)
			}
			return d
		}, "index 515: record hashes to"},
		{"entry and its leaf hash changed", func(p string, d []byte) []byte {
			switch p {
			case "tile/entries/002":
				return flipEntry(d)
			case "tile/0/002":
				changed, _ := audit.ParseEntryBundle(flipEntry(must(audit.EntryBundle(log.leaves[512:768]))), 256)
				h := tlog.RecordHash(changed[3])
				copy(d[3*tlog.HashSize:], h[:])
			}
			return d
		}, "checkpoint at size 1000 does not match the log: a record between index 0 and 999"},
		{"entries reordered", func(p string, d []byte) []byte {
			if p == "tile/entries/000" {
				l, _ := audit.ParseEntryBundle(d, 256)
				l[4], l[5] = l[5], l[4]
				return must(audit.EntryBundle(l))
			}
			return d
		}, "index 4: record says seq 6"},
		{"short hash tile", func(p string, d []byte) []byte {
			if p == "tile/0/003.p/232" {
				return d[:len(d)-1]
			}
			return d
		}, "tile/0/003.p/232: 7423 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := verify(tt.tamper)
			if !errors.Is(err, audit.ErrVerify) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("verify = %v, want ErrVerify containing %q", err, tt.want)
			}
		})
	}

	// A hash tile altered anywhere is caught by tlog's authentication of
	// tiles against the checkpoint.
	log.tamper = func(p string, d []byte) []byte {
		if p == "tile/0/001" {
			d[0] ^= 1
		}
		return d
	}
	thr = tlog.TileHashReader(tlog.Tree{N: n, Hash: root}, audit.TileReader{Ctx: ctx, Fetch: log.fetch})
	if _, err := tlog.ProveRecord(n, 300, thr); err == nil {
		t.Error("proof from an altered hash tile")
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
