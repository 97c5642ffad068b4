package picker

import "btfs/bitfield"

// Endgame reports whether every missing piece the mode fetches is fully
// requested, with at least one missing: the time to send duplicate requests
// for the last blocks, so that one slow peer does not hold up the end. In
// FetchAll that is "no pickable piece left"; in FetchReads it is judged over
// the wanted pieces only, so a reader's last wanted piece gets duplicates
// even though the rest of the torrent is untouched. A piece no connected
// peer has counts as missing, so it delays endgame.
//
// Endgame ends by itself when a piece becomes pickable again (requests
// lost, a hash failure, an eviction, new wants) or when nothing is missing.
func (p *Picker) Endgame() bool {
	if p.mode == FetchAll {
		return p.verifiedCount < p.n && p.pickable.Count() == 0
	}
	if p.egDirty {
		p.egCached = p.wantedEndgame()
		p.egDirty = false
	}
	return p.egCached
}

// wantedEndgame computes Endgame for FetchReads: no wanted piece pickable,
// and some wanted piece fully requested. It walks the wanted runs a word at
// a time; Endgame caches the answer until something changes.
func (p *Picker) wantedEndgame() bool {
	inFlight := false
	for _, s := range p.wants.byIndex {
		if _, ok := p.pickable.NextSetAnd(s.lo, s.hi, nil); ok {
			return false
		}
		if !inFlight {
			_, inFlight = p.full.NextSetAnd(s.lo, s.hi, nil)
		}
	}
	return inFlight
}

// EndgameCandidate reports whether piece i may get duplicate requests now:
// endgame is on, the piece is fully requested and the mode fetches it. The
// engine cancels the duplicates of a block when the first copy arrives;
// which blocks are still missing is the storagewrapper's to say.
func (p *Picker) EndgameCandidate(i int) bool {
	return p.valid(i) && p.state[i] == full && p.wanted(i) && p.Endgame()
}

// AppendEndgame appends to dst the endgame candidates the peer has (nil has:
// a have-all peer) and returns the extended slice; it appends nothing
// outside endgame. Wanted pieces come first, by urgency. The engine uses it
// to fill a peer's pipeline with the missing blocks of several pieces.
func (p *Picker) AppendEndgame(dst []int, has *bitfield.Bitfield) []int {
	if !p.Endgame() {
		return dst
	}
	for _, s := range p.wants.byUrgency {
		for i, ok := p.full.NextSetAnd(s.lo, s.hi, has); ok; i, ok = p.full.NextSetAnd(i+1, s.hi, has) {
			dst = append(dst, i)
		}
	}
	if p.mode != FetchAll {
		return dst
	}
	for _, i := range p.fullSet.items {
		if (has == nil || has.Has(int(i))) && !p.hasSegment(int(i)) {
			dst = append(dst, int(i))
		}
	}
	return dst
}

// hasSegment reports whether any want covers piece i.
func (p *Picker) hasSegment(i int) bool {
	_, ok := p.segmentOf(i)
	return ok
}

// nextEndgame returns a fully requested piece the peer has, for a duplicate
// request: the most urgent wanted one, else (FetchAll) a random one.
func (p *Picker) nextEndgame(has *bitfield.Bitfield) (int, bool) {
	for _, s := range p.wants.byUrgency {
		if i, ok := p.full.NextSetAnd(s.lo, s.hi, has); ok {
			return i, true
		}
	}
	if p.mode != FetchAll {
		return 0, false
	}
	items := p.fullSet.items
	if len(items) == 0 {
		return 0, false
	}
	j := p.rng.IntN(len(items))
	for range items {
		if i := int(items[j]); has == nil || has.Has(i) {
			return i, true
		}
		if j++; j == len(items) {
			j = 0
		}
	}
	return 0, false
}
