package picker

import (
	"math"
	"math/bits"

	"btfs/bitfield"
)

// Next returns the piece to request next from a peer that has the pieces
// in has, in the order given in the package documentation; ok is false when
// the peer has nothing to give us now. A nil has stands for a peer that has
// every piece (have-all), and costs nothing to scan. A non-nil has must be
// the bitfield registered with AddPeer (kept current with Have): rarest-first
// relies on the peer being counted in the availability of what it has.
//
// Next changes no piece's state: the engine asks the storagewrapper for a
// block of the piece and reports the answer (Started, FullyRequested).
// Asking twice may give different answers among equals (it draws from the
// random source). It does not allocate.
func (p *Picker) Next(has *bitfield.Bitfield) (piece int, ok bool) {
	for _, s := range p.wants.byUrgency {
		if i, ok := p.pickable.NextSetAnd(s.lo, s.hi, has); ok {
			return i, true
		}
	}
	if p.mode == FetchAll {
		if i, ok := p.nextStarted(has); ok {
			return i, true
		}
		if p.verifiedCount < randomFirstPieces {
			if i, ok := p.nextRandom(p.pickable, has); ok {
				return i, true
			}
		}
		if i, ok := p.nextRarest(has); ok {
			return i, true
		}
	}
	if p.Endgame() {
		return p.nextEndgame(has)
	}
	return 0, false
}

// Interesting reports whether the peer has any piece the mode still fetches
// and we do not have verified: whether to tell it we are interested. In
// flight pieces count; a nil has is a have-all peer.
func (p *Picker) Interesting(has *bitfield.Bitfield) bool {
	if p.mode == FetchAll {
		return p.Lacks(has)
	}
	for _, s := range p.wants.byUrgency {
		if _, ok := p.missing.NextSetAnd(s.lo, s.hi, has); ok {
			return true
		}
	}
	return false
}

// Lacks reports whether the peer has any piece we do not have verified,
// whatever the mode fetches (a nil has is a have-all peer): what a peer
// could still give us if a reader asked.
func (p *Picker) Lacks(has *bitfield.Bitfield) bool {
	_, ok := p.missing.NextSetAnd(0, p.n, has)
	return ok
}

// nextStarted returns a started piece the peer has, in the started set's
// order. The set is small (bounded by the requests in flight).
func (p *Picker) nextStarted(has *bitfield.Bitfield) (int, bool) {
	for _, i := range p.startedSet.items {
		if has == nil || has.Has(int(i)) {
			return int(i), true
		}
	}
	return 0, false
}

// nextRandom returns a piece of set that the peer has, scanning word-wise
// from a random start and wrapping around.
func (p *Picker) nextRandom(set, has *bitfield.Bitfield) (int, bool) {
	if p.n == 0 {
		return 0, false
	}
	r := p.rng.IntN(p.n)
	if i, ok := set.NextSetAnd(r, p.n, has); ok {
		return i, true
	}
	return set.NextSetAnd(0, r, has)
}

// nextRarest returns a pickable piece the peer has with the lowest
// availability (normal standing before bumped), ties broken by starting
// each bucket part at a random position.
//
// For a have-all peer the first non-empty bucket answers in O(1). A partial
// peer has each of its pieces in a bucket of at least 1 (it counts itself),
// so bucket 0 is skipped; the walk then checks bucket members against the
// peer's bitfield until one hits. When the peer lacks the rare pieces that
// walk could visit most pieces, so after scanBudget misses it switches to
// scanPeer, which costs about n/64 word operations.
func (p *Picker) nextRarest(has *bitfield.Bitfield) (int, bool) {
	if p.pickable.Count() == 0 {
		return 0, false
	}
	first := 0
	if has != nil {
		first = 1
	}
	budget := p.scanBudget
	for k := first; k < len(p.levels); k++ {
		for part := range 2 {
			items := p.levels[k].parts[part]
			if len(items) == 0 {
				continue
			}
			start := p.rng.IntN(len(items))
			if has == nil {
				return int(items[start]), true
			}
			j := start
			for range items {
				if i := int(items[j]); has.Has(i) {
					return i, true
				}
				if budget--; budget == 0 {
					return p.scanPeer(has, 2*k+part)
				}
				if j++; j == len(items) {
					j = 0
				}
			}
		}
	}
	return 0, false
}

// rank is the rarest-first key of pickable piece i: availability, then
// normal before bumped.
func (p *Picker) rank(i int) int { return 2*int(p.avail[i]) + p.part(i) }

// scanPeer finds the lowest-ranked pickable piece the peer has by walking
// the intersection of its bitfield with the pickable pieces a word at a
// time, from a random start. floor is a rank no candidate can beat (the
// buckets below it were already found empty for this peer): the first
// candidate of that rank ends the scan.
//
// A word whose rank lower bound (wordMin) cannot beat the best candidate so
// far is skipped without looking at its pieces; a word that is looked at
// gets its bound made exact first. So when the peer's pieces are all about
// equally common (a streamer holding the first half of the torrent, while
// the rare pieces are in the second), the scan looks at one word's pieces
// and skips the rest, once earlier scans have made the bounds exact: n/64
// word operations.
func (p *Picker) scanPeer(has *bitfield.Bitfield, floor int) (int, bool) {
	nw := len(p.wordMin)
	best, bestRank := -1, int32(math.MaxInt32)
	r := p.rng.IntN(nw)
	for _, span := range [2][2]int{{r, nw}, {0, r}} {
		for w := span[0]; w < span[1]; w++ {
			cand := p.pickable.Word(w) & has.Word(w)
			if cand == 0 || p.wordMin[w] >= bestRank {
				continue
			}
			if p.tightenWordMin(w); p.wordMin[w] >= bestRank {
				continue
			}
			for ; cand != 0; cand &= cand - 1 {
				i := w*wordPieces + wordPieces - 1 - bits.TrailingZeros64(cand)
				if rk := int32(p.rank(i)); rk < bestRank || (rk == bestRank && i < best) {
					best, bestRank = i, rk
				}
			}
			if int(bestRank) <= floor {
				return best, true
			}
		}
	}
	return best, best >= 0
}

// tightenWordMin makes wordMin[w] the exact lowest rank among the pickable
// pieces of word w (math.MaxInt32 when there are none).
func (p *Picker) tightenWordMin(w int) {
	m := int32(math.MaxInt32)
	for bw := p.pickable.Word(w); bw != 0; bw &= bw - 1 {
		i := w*wordPieces + wordPieces - 1 - bits.TrailingZeros64(bw)
		m = min(m, int32(p.rank(i)))
	}
	p.wordMin[w] = m
}
