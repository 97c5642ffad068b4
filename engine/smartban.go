package engine

import (
	"fmt"
	"hash/maphash"
	"net/netip"
	"sync/atomic"

	"btfs/engine/wire"
	"btfs/storagewrapper"
)

// Smart ban (libtorrent's name; the 2006 client did the same by comparing
// data): when a piece that several peers contributed to fails its hash,
// nobody can tell yet who lied. Charging every contributor would ban the
// honest peers along with the liar — a liar that sends one bad block into
// pieces an honest seeder fills would get the seeder banned. Instead the
// loop remembers a digest of every block of the failed piece and who sent
// it; once the piece passes its hash, a peer whose block differs from the
// block that verified is proven to have sent bad data, and is banned. The
// honest contributors are never charged. A peer that sent every block of a
// failed piece is banned at once (storagewrapper.Result.Blamed).
//
// Digests are maphash values under a per-torrent random seed: a peer cannot
// make a bad block collide with the good one on purpose, and computing one
// costs about a microsecond per 16 KiB block in the reader goroutine.
//
// Generations keep late records straight. The reader reads the piece's
// generation before it files a block; the loop bumps it when it learns of a
// hash failure, before any block of the next attempt can be requested. A
// record whose generation is older than the piece's belongs to a failed
// attempt (its event was overtaken by the completing block's), and is filed
// there; a record of a piece already verified is dropped.

const (
	// maxFailedGens bounds the failed attempts remembered per piece.
	maxFailedGens = 4
)

// blockSum is a block's digest for smart ban.
func blockSum(seed maphash.Seed, b []byte) uint64 { return maphash.Bytes(seed, b) }

// pieceGens holds each piece's generation: how many times the loop has seen
// it fail its hash. Readers read it, the loop bumps it.
type pieceGens struct {
	g []atomic.Uint32
}

func newPieceGens(n int) *pieceGens { return &pieceGens{g: make([]atomic.Uint32, n)} }

// get returns piece i's generation; 0 for an index out of range (the block
// will be refused by the storagewrapper anyway).
func (g *pieceGens) get(i int) uint32 {
	if i < 0 || i >= len(g.g) {
		return 0
	}
	return g.g[i].Load()
}

// bump starts piece i's next generation.
func (g *pieceGens) bump(i int) {
	if i >= 0 && i < len(g.g) {
		g.g[i].Add(1)
	}
}

// pieceSums records who sent each block of one attempt at a piece, and the
// digest of what they sent.
type pieceSums struct {
	gen  uint32       // the attempt's generation
	from []netip.Addr // per block: the sender, invalid while not received
	sum  []uint64     // per block: the digest
}

func newPieceSums(gen uint32, plen int64) *pieceSums {
	n := int((plen + wire.BlockSize - 1) / wire.BlockSize)
	return &pieceSums{gen: gen, from: make([]netip.Addr, n), sum: make([]uint64, n)}
}

// set records block idx; an index out of range is ignored.
func (ps *pieceSums) set(idx int, from netip.Addr, sum uint64) {
	if idx >= 0 && idx < len(ps.from) {
		ps.from[idx], ps.sum[idx] = from, sum
	}
}

// smartBan is the loop's record of block senders: the current attempt of
// every piece in flight, and the failed attempts of pieces not yet verified.
type smartBan struct {
	cur    map[int]*pieceSums   // piece → its current attempt
	failed map[int][]*pieceSums // piece → failed attempts, oldest first
}

func newSmartBan() smartBan {
	return smartBan{cur: make(map[int]*pieceSums), failed: make(map[int][]*pieceSums)}
}

// recordBlock notes that from sent block b, filed in generation gen with
// digest sum.
func (s *state) recordBlock(from netip.Addr, b storagewrapper.Block, gen uint32, sum uint64) {
	i := b.Piece
	// "Verified" as the loop knows it, not as the storagewrapper does:
	// the block that completes a piece is verified by the storagewrapper
	// before its event reaches the loop, and dropping its record (and
	// those of the blocks just before it, when the loop lags) left the
	// good attempt with holes where the liar's block was to be compared:
	// the liar was never banned.
	if i < 0 || i >= s.t.info.NumPieces() || s.pk.IsVerified(i) {
		return
	}
	idx := int(b.Begin / wire.BlockSize)
	if gen == s.t.gens.get(i) {
		ps := s.bans.cur[i]
		if ps == nil {
			ps = newPieceSums(gen, s.t.info.PieceLen(i))
			s.bans.cur[i] = ps
		}
		ps.set(idx, from, sum)
		return
	}
	for _, ps := range s.bans.failed[i] {
		// A late record of a failed attempt. The first record of a slot is
		// kept: a block of the next attempt read the generation before the
		// loop bumped it would otherwise overwrite the evidence.
		if ps.gen == gen && idx >= 0 && idx < len(ps.from) && !ps.from[idx].IsValid() {
			ps.set(idx, from, sum)
			return
		}
	}
}

// pieceFailed files the current attempt of piece i as failed and starts the
// next generation.
func (s *state) pieceFailed(i int) {
	if ps := s.bans.cur[i]; ps != nil {
		delete(s.bans.cur, i)
		f := append(s.bans.failed[i], ps)
		if len(f) > maxFailedGens {
			f = f[len(f)-maxFailedGens:]
		}
		s.bans.failed[i] = f
	} else if _, ok := s.bans.failed[i]; !ok {
		// No record (blocks all filed by peers already gone): keep the
		// generation's slot so late records find it.
		s.bans.failed[i] = []*pieceSums{newPieceSums(s.t.gens.get(i), s.t.info.PieceLen(i))}
	}
	s.t.gens.bump(i)
}

// pieceVerified compares the failed attempts of piece i, if any, with the
// attempt that verified, and bans the senders of blocks that differ.
func (s *state) pieceVerified(i int) {
	good := s.bans.cur[i]
	failed := s.bans.failed[i]
	delete(s.bans.cur, i)
	delete(s.bans.failed, i)
	if good == nil {
		return
	}
	for _, f := range failed {
		for idx, from := range f.from {
			if !from.IsValid() || !good.from[idx].IsValid() || f.sum[idx] == good.sum[idx] {
				continue
			}
			s.ban(from, fmt.Sprintf("sent block %d of piece %d, which differs from the block that verified", idx, i))
		}
	}
}

// pieceAbandoned forgets the current attempt of piece i (the store failed;
// the storagewrapper re-queued the piece).
func (s *state) pieceAbandoned(i int) { delete(s.bans.cur, i) }
