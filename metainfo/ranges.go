package metainfo

import (
	"fmt"
	"math"
)

// FileRange returns the pieces that hold bytes of file f: [firstPiece,
// endPiece). A zero-length file holds no bytes, so its range is empty
// (firstPiece == endPiece: the piece where it would start, which is
// NumPieces() for an empty file at the very end). Pieces at
// either end may be shared with neighbouring files. f out of range is a
// programming error and panics, like PieceLen.
func (i *Info) FileRange(f int) (firstPiece, endPiece int) {
	if f < 0 || f >= len(i.Files) {
		panic(fmt.Sprintf("metainfo: file %d out of range [0,%d)", f, len(i.Files)))
	}
	return i.PiecesFor(i.Files[f].Offset, i.Files[f].Length)
}

// PiecesFor returns the pieces [first, end) that hold the torrent bytes
// [off, off+n), clipped to the torrent: a read past the end, or with
// n <= 0, gives an empty range (first == end). It never panics, so it can
// take offsets straight from a reader.
func (i *Info) PiecesFor(off, n int64) (first, end int) {
	hi := off + n
	if off > 0 && n > math.MaxInt64-off { // off+n overflowed
		hi = math.MaxInt64
	}
	lo := min(max(off, 0), i.TotalLength)
	hi = min(max(hi, 0), i.TotalLength)
	first = int(lo / i.PieceLength)
	if n <= 0 || hi <= lo {
		return first, first
	}
	return first, int((hi-1)/i.PieceLength) + 1
}

// Trackers returns the announce tiers to use, by BEP 12: AnnounceList
// when it has any URL, else Announce alone, else none.
func (m *MetaInfo) Trackers() [][]string {
	if len(m.AnnounceList) > 0 {
		return m.AnnounceList
	}
	if m.Announce != "" {
		return [][]string{{m.Announce}}
	}
	return nil
}

// Magnet returns a magnet link for the torrent: its info-hash, name and
// trackers (tiers flattened, duplicates dropped).
func (m *MetaInfo) Magnet() *Magnet {
	mg := &Magnet{InfoHash: m.InfoHash, DisplayName: m.Info.Name}
	seen := map[string]bool{}
	for _, tier := range m.Trackers() {
		for _, u := range tier {
			if !seen[u] {
				seen[u] = true
				mg.Trackers = append(mg.Trackers, u)
			}
		}
	}
	return mg
}
