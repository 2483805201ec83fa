package audit

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/tlog"
)

// The log is also served as C2SP tlog-tiles (https://c2sp.org/tlog-tiles):
// Merkle tree tiles "tile/<L>/<N>[.p/<W>]", 256 hashes wide, and entry
// bundles "tile/entries/<N>[.p/<W>]". They are tlog's tiles of height 8
// (tlog.Tile{H: 8}), whose own paths carry the height ("tile/8/<L>/…",
// "tile/8/data/…"); TilePath and ParseTilePath translate. Hashing is
// RFC 6962, as for the rest of the log, so tlog's tile functions
// (ReadTileData, HashFromTile, TileHashReader) apply unchanged.

// TileHeight is the height of C2SP tiles: 2^8 = 256 hashes or entries.
const TileHeight = 8

// maxTileLevel is the highest level C2SP allows (and tlog supports).
const maxTileLevel = 63

var errTilePath = errors.New("not a C2SP tlog-tiles path (tile/<L>/<N>[.p/<W>] or tile/entries/<N>[.p/<W>])")

// ParseTilePath parses a C2SP tile path without prefix. An entry bundle
// is the tile at level -1 (tlog's "data" tiles). Only the one canonical
// spelling of a tile is accepted.
func ParseTilePath(path string) (tlog.Tile, error) {
	rest, ok := strings.CutPrefix(path, "tile/")
	if !ok || strings.HasPrefix(rest, "data/") {
		return tlog.Tile{}, errTilePath
	}
	if e, ok := strings.CutPrefix(rest, "entries/"); ok {
		rest = "data/" + e
	}
	t, err := tlog.ParseTilePath(fmt.Sprintf("tile/%d/%s", TileHeight, rest))
	if err != nil || t.L > maxTileLevel {
		return tlog.Tile{}, errTilePath
	}
	return t, nil
}

// TilePath is the C2SP path of a tile of height TileHeight.
func TilePath(t tlog.Tile) string {
	p := strings.TrimPrefix(t.Path(), fmt.Sprintf("tile/%d/", TileHeight))
	if e, ok := strings.CutPrefix(p, "data/"); ok {
		p = "entries/" + e
	}
	return "tile/" + p
}

// TileInTree tells whether every hash (or entry) of t exists in the tree
// of size leaves: tiles describe a tree, and a tile that reaches past it
// would be a guess.
func TileInTree(t tlog.Tile, size int64) bool {
	if t.H != TileHeight || t.W < 1 || t.W > 1<<TileHeight || t.N < 0 || t.L < -1 || t.L > maxTileLevel {
		return false
	}
	level := max(t.L, 0) * TileHeight
	if level >= 63 {
		return false
	}
	nodes := size >> level // complete subtrees of the tile's level in the tree
	if t.N > nodes>>TileHeight {
		return false // (and N<<TileHeight cannot overflow below)
	}
	return t.N<<TileHeight+int64(t.W) <= nodes
}

// maxBundleEntry is the largest entry an entry bundle can frame.
const maxBundleEntry = 1<<16 - 1

// EntryBundle encodes leaves as a C2SP entry bundle: each leaf as a
// big-endian uint16 length followed by its bytes. A leaf longer than
// 65,535 bytes cannot be framed; it is an error naming its position.
func EntryBundle(leaves [][]byte) ([]byte, error) {
	n := 0
	for i, l := range leaves {
		if len(l) > maxBundleEntry {
			return nil, fmt.Errorf("entry %d of the bundle is %d bytes, more than an entry bundle frames (%d)", i, len(l), maxBundleEntry)
		}
		n += 2 + len(l)
	}
	out := make([]byte, 0, n)
	for _, l := range leaves {
		out = binary.BigEndian.AppendUint16(out, uint16(len(l)))
		out = append(out, l...)
	}
	return out, nil
}

// ParseEntryBundle decodes an entry bundle of exactly w entries.
func ParseEntryBundle(data []byte, w int) ([][]byte, error) {
	leaves := make([][]byte, 0, w)
	for len(data) > 0 {
		if len(data) < 2 {
			return nil, fmt.Errorf("entry bundle: entry %d: truncated length", len(leaves))
		}
		n := int(binary.BigEndian.Uint16(data))
		if len(data) < 2+n {
			return nil, fmt.Errorf("entry bundle: entry %d: %d bytes announced, %d left", len(leaves), n, len(data)-2)
		}
		leaves = append(leaves, data[2:2+n:2+n])
		data = data[2+n:]
	}
	if len(leaves) != w {
		return nil, fmt.Errorf("entry bundle holds %d entries, want %d", len(leaves), w)
	}
	return leaves, nil
}

// TileFetcher fetches one C2SP tile by path (GetTile of the Audit service,
// or an HTTP GET under a log's prefix).
type TileFetcher func(ctx context.Context, path string) ([]byte, error)

// TileReader adapts a TileFetcher to tlog.TileReader, so that
// tlog.TileHashReader can authenticate served tiles against a checkpoint
// and compute roots and proofs from them. It keeps nothing: every tile is
// fetched when asked for.
type TileReader struct {
	Ctx   context.Context
	Fetch TileFetcher
}

// Height implements tlog.TileReader.
func (r TileReader) Height() int { return TileHeight }

// ReadTiles implements tlog.TileReader.
func (r TileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		b, err := r.Fetch(r.Ctx, TilePath(t))
		if err != nil {
			return nil, fmt.Errorf("tile %s: %w", TilePath(t), err)
		}
		if len(b) != t.W*tlog.HashSize {
			return nil, fmt.Errorf("tile %s: %d bytes, want %d", TilePath(t), len(b), t.W*tlog.HashSize)
		}
		out[i] = b
	}
	return out, nil
}

// SaveTiles implements tlog.TileReader; nothing is cached.
func (r TileReader) SaveTiles([]tlog.Tile, [][]byte) {}

// VerifyTiles feeds a LogVerifier the log of size leaves from its entry
// bundles, one bundle at a time, checking each entry against the leaf
// hash its level-0 tile claims (so an altered record is named by its
// index). The caller gives lv the checkpoint of that size first, and
// calls Finish after.
func VerifyTiles(ctx context.Context, fetch TileFetcher, lv *LogVerifier, size int64) error {
	for start := lv.Size(); start < size; {
		n := start >> TileHeight
		w := int(min(size-n<<TileHeight, 1<<TileHeight))
		tile := tlog.Tile{H: TileHeight, L: 0, N: n, W: w}
		hashes, err := fetch(ctx, TilePath(tile))
		if err != nil {
			return fmt.Errorf("tile %s: %w", TilePath(tile), err)
		}
		if len(hashes) != w*tlog.HashSize {
			return fmt.Errorf("tile %s: %d bytes, want %d: %w", TilePath(tile), len(hashes), w*tlog.HashSize, ErrVerify)
		}
		tile.L = -1
		data, err := fetch(ctx, TilePath(tile))
		if err != nil {
			return fmt.Errorf("tile %s: %w", TilePath(tile), err)
		}
		leaves, err := ParseEntryBundle(data, w)
		if err != nil {
			return fmt.Errorf("tile %s: %v: %w", TilePath(tile), err, ErrVerify)
		}
		tile.L = 0
		for i := start - n<<TileHeight; i < int64(w); i++ {
			index := n<<TileHeight + i
			want, err := tlog.HashFromTile(tile, hashes, tlog.StoredHashIndex(0, index))
			if err != nil {
				return fmt.Errorf("tile %s: %v: %w", TilePath(tile), err, ErrVerify)
			}
			if err := lv.Add(index, leaves[i], &want); err != nil {
				return err
			}
		}
		start = n<<TileHeight + int64(w)
	}
	return nil
}
