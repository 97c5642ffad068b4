package storagewrapper

import "sort"

// Changes are the pieces whose state changed other than through the
// engine's own downloads (PieceCameIn's Result tells it of those), each
// filed under the state it is in when TakeChanges is called: a piece that
// changed twice is reported once, as it stands.
type Changes struct {
	// Verified are verified now: adopted from the Store, where another
	// process (sharing it) published them. The engine marks them had and
	// sends HAVE.
	Verified []int
	// Unverified are not verified and may be requested: their published
	// data left the Store (Unverify), or another process claimed them and
	// the claim ended without a publish (ClaimEnded). The engine makes them
	// pickable again and stops serving them.
	Unverified []int
	// ClaimedElsewhere are being downloaded by another process sharing the
	// Store (NewRequest answered RequestClaimedElsewhere): the engine sets
	// them aside, as if fully requested, until they come back as Verified
	// or Unverified.
	ClaimedElsewhere []int
}

// Empty reports whether there is no change at all.
func (c Changes) Empty() bool {
	return len(c.Verified) == 0 && len(c.Unverified) == 0 && len(c.ClaimedElsewhere) == 0
}

// TakeChanges returns the changes since the last call, in increasing piece
// order within each list, and forgets them. The Kick channel is signalled
// whenever there are new ones; the engine's loop drains them there.
func (w *Wrapper) TakeChanges() Changes {
	w.mu.Lock()
	var c Changes
	for p := range w.changed {
		_, refused := w.refused[p]
		switch {
		case w.verified.Has(p):
			c.Verified = append(c.Verified, p)
		case refused:
			c.ClaimedElsewhere = append(c.ClaimedElsewhere, p)
		default:
			c.Unverified = append(c.Unverified, p)
		}
	}
	clear(w.changed)
	w.mu.Unlock()
	sort.Ints(c.Verified)
	sort.Ints(c.Unverified)
	sort.Ints(c.ClaimedElsewhere)
	return c
}

// Unverify takes piece out of the verified set: its published data is gone
// from the Store (a shared cache evicted it, or someone removed or damaged
// its file). Readers wait for it again, and their wants make the engine
// fetch it again; the engine hears of it through TakeChanges and stops
// serving it. It reports whether the piece was verified.
func (w *Wrapper) Unverify(piece int) bool {
	if piece < 0 || piece >= w.info.NumPieces() {
		return false
	}
	w.mu.Lock()
	if w.closed || !w.verified.Clear(piece) {
		w.mu.Unlock()
		return false
	}
	w.verifiedBytes -= w.info.PieceLen(piece)
	w.changed[piece] = struct{}{}
	w.mu.Unlock()
	w.signal()
	return true
}

// ClaimEnded tells the wrapper that another process's claim on piece ended
// without a publish this process could adopt (its owner died, gave it up,
// or its claim went stale): if NewRequest had set the piece aside for that
// claim, the engine hears through TakeChanges that it may request it again.
func (w *Wrapper) ClaimEnded(piece int) {
	w.mu.Lock()
	w.claimEnds++
	_, refused := w.refused[piece]
	if !refused || w.closed {
		w.mu.Unlock()
		return
	}
	delete(w.refused, piece)
	w.changed[piece] = struct{}{}
	w.mu.Unlock()
	w.signal()
}
