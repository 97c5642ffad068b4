package fs

import (
	"strings"

	"btfs/bitfield"
	"btfs/metainfo"
)

// maxPieceMap caps the length of a user.btfs.pieces value. Up to this many
// pieces the map has one character per piece; beyond, each character stands
// for a run of ceil(pieces/maxPieceMap) pieces. It keeps the value far below
// the kernel's 64 KiB xattr limit and readable in a terminal.
const maxPieceMap = 4096

// Characters of a piece map.
const (
	// pieceHave: verified (every piece of the run, when runs are shown).
	pieceHave = '#'
	// pieceMissing: not verified (no piece of the run).
	pieceMissing = '.'
	// pieceSome: some pieces of the run are verified, not all.
	pieceSome = ':'
)

// verifiedBytes returns how many bytes of the torrent range [start, end)
// lie in pieces that bf says are verified. A piece shared with a
// neighbouring file counts only for its bytes inside the range. It never
// panics: the range and the pieces are clipped to the torrent.
func verifiedBytes(bf *bitfield.Bitfield, info *metainfo.Info, start, end int64) int64 {
	first, last := info.PiecesFor(start, end-start)
	last = min(last, info.NumPieces())
	start, end = max(start, 0), min(end, info.TotalLength)
	var n int64
	for p, ok := bf.NextSetAnd(first, last, nil); ok; p, ok = bf.NextSetAnd(p+1, last, nil) {
		ps := info.PieceOffset(p)
		pe := min(ps+info.PieceLength, info.TotalLength)
		n += min(pe, end) - max(ps, start)
	}
	return n
}

// pieceMap returns the map of pieces [first, last) of bf: one character per
// piece ('#' verified, '.' missing), or per run of pieces when there are
// more than maxPieceMap ('#' all verified, ':' some, '.' none).
func pieceMap(bf *bitfield.Bitfield, first, last int) string {
	n := last - first
	if n <= 0 {
		return ""
	}
	run := (n + maxPieceMap - 1) / maxPieceMap
	var b strings.Builder
	b.Grow((n + run - 1) / run)
	for lo := first; lo < last; lo += run {
		hi := min(lo+run, last)
		have := 0
		for p := lo; p < hi; p++ {
			if bf.Has(p) {
				have++
			}
		}
		switch have {
		case hi - lo:
			b.WriteByte(pieceHave)
		case 0:
			b.WriteByte(pieceMissing)
		default:
			b.WriteByte(pieceSome)
		}
	}
	return b.String()
}
