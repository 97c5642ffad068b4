package picker

// The piece states come from the storagewrapper, which owns them: the
// engine passes its PieceState to Sync after each change. The transitions
// below are what Sync is made of. Each is a no-op when it does not apply
// (an index out of range, a piece already in that state, a verified piece
// told it was started).

// Sync sets piece i to the state its owner reports. The engine calls it
// after each change it makes or hears of, so the picker holds no state of
// its own about a piece beyond its wants, availability and bump.
func (p *Picker) Sync(i int, s PieceState) {
	if s == PieceVerified {
		p.Verified(i)
		return
	}
	p.Unverified(i) // no-op unless it was verified
	switch s {
	case PieceIdle:
		p.Unrequested(i)
	case PieceStarted:
		p.Started(i)
	case PieceFull:
		p.FullyRequested(i)
	}
}

// Started records that some, but not all, blocks of piece i are handed out:
// the storagewrapper gave out a block, or a fully requested piece lost some
// of its requests. The piece is pickable and Next prefers it (step 3).
func (p *Picker) Started(i int) {
	if p.valid(i) && p.state[i] != verified {
		p.setState(i, started)
	}
}

// FullyRequested records that every block of piece i is handed out: the
// storagewrapper has nothing more to give for it, so Next skips it except
// in endgame.
func (p *Picker) FullyRequested(i int) {
	if p.valid(i) && p.state[i] != verified {
		p.setState(i, full)
	}
}

// Unrequested records that every block handed out for piece i was lost
// (peers choked or left): the piece is back to not started.
func (p *Picker) Unrequested(i int) {
	if p.valid(i) && p.state[i] != verified {
		p.setState(i, idle)
	}
}

// Verified records that piece i passed its hash check (or was found in the
// shared cache). It is never picked again unless Unverified.
func (p *Picker) Verified(i int) {
	if !p.valid(i) {
		return
	}
	p.setState(i, verified)
	p.bumped.Clear(i)
}

// Unverified records that a verified piece is gone again (the shared cache
// evicted it): it is idle and pickable once more.
func (p *Picker) Unverified(i int) {
	if p.valid(i) && p.state[i] == verified {
		p.setState(i, idle)
	}
}

// Failed records that piece i failed its hash check: the storagewrapper
// dropped its blocks, so it is idle again, and it is bumped behind the
// pieces of equal availability so that rarest-first tries others first
// (the seed's PiecePicker.bump). Wanted pieces are not delayed: a reader is
// waiting on them. A verified piece cannot fail; that call is ignored.
func (p *Picker) Failed(i int) {
	if !p.valid(i) || p.state[i] == verified {
		return
	}
	if !p.bumped.Has(i) {
		inBuckets := p.state[i].pickable()
		if inBuckets {
			p.bucketRemove(i)
		}
		p.bumped.Set(i)
		if inBuckets {
			p.bucketInsert(i)
		}
	}
	p.setState(i, idle)
}

// setState moves piece i to state s and keeps invariants 2 and 4.
func (p *Picker) setState(i int, s pieceState) {
	old := p.state[i]
	if old == s {
		return
	}
	p.egDirty = true
	switch {
	case old.pickable() && !s.pickable():
		p.bucketRemove(i)
		p.pickable.Clear(i)
	case !old.pickable() && s.pickable():
		p.pickable.Set(i)
		p.bucketInsert(i)
	}
	switch old {
	case started:
		p.startedSet.remove(i, p.flightPos)
	case full:
		p.fullSet.remove(i, p.flightPos)
		p.full.Clear(i)
	case verified:
		p.verifiedCount--
		p.missing.Set(i)
	}
	switch s {
	case started:
		p.startedSet.add(i, p.flightPos)
	case full:
		p.fullSet.add(i, p.flightPos)
		p.full.Set(i)
	case verified:
		p.verifiedCount++
		p.missing.Clear(i)
	}
	p.state[i] = s
}

// indexSet is a set of piece indices with O(1) add and remove (swap with the
// last) and O(1) access by position, for random picks. Positions live in a
// slice owned by the picker, so that two sets whose members never overlap
// can share one.
type indexSet struct {
	// items are the members, in no particular order.
	items []int32
}

// add inserts i, which must not be a member, recording its position in pos.
func (s *indexSet) add(i int, pos []int32) {
	pos[i] = int32(len(s.items))
	s.items = append(s.items, int32(i))
}

// remove deletes i, which must be a member, moving the last item into its place.
func (s *indexSet) remove(i int, pos []int32) {
	j := pos[i]
	last := s.items[len(s.items)-1]
	s.items[j] = last
	pos[last] = j
	s.items = s.items[:len(s.items)-1]
	pos[i] = -1
}
