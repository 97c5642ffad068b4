package engine

import (
	"errors"

	"btfs/picker"
	"btfs/storagewrapper"
)

// storeView is what the loop last saw of the storagewrapper's Health: the
// state has one owner, the storagewrapper (storagewrapper/health.go); the
// loop follows it, so that the swarm never sends a block we cannot keep.
type storeView struct {
	// failed is set while the store takes no data: nothing is requested,
	// and what was asked is cancelled.
	failed bool
	// full is set once the disk ran out of space.
	full bool
}

// checkStore follows the store's health; the loop calls it on every kick
// and whenever a block could not be stored. On failure every outstanding
// request is cancelled (the blocks go back to the storagewrapper); we stay
// interested, so that peers keep us unchoked and downloading resumes at
// once when the store recovers (a not-interested would cost a choke round
// of the peer's, 10 s at aria2c). Once the disk was full, only what readers
// want is fetched, as under a size cap (the torrent does not fit).
func (s *state) checkStore() {
	h := s.t.sw.Health()
	if h.Full && !s.store.full {
		s.store.full = true
		if s.pk.Mode() == picker.FetchAll {
			s.t.log.Warn("the cache disk is full: fetching only what readers want from now on")
			s.pk.SetMode(picker.FetchReads)
			for p := range s.peers {
				s.updateInterest(p)
			}
		}
	}
	failed := h.Fault != storagewrapper.FaultNone
	if failed == s.store.failed {
		return
	}
	s.store.failed = failed
	if !failed {
		s.fillAll()
		return
	}
	cancelled := 0
	for p := range s.peers {
		for b := range p.outstanding {
			s.releaseRequest(p, b, true)
			cancelled++
		}
	}
	s.t.log.Debug("store failed: requests cancelled", "requests", cancelled, "fault", h.Fault.String())
}

// storeFailedBlock handles a block that the store could not take (the
// storagewrapper put it back): the storagewrapper has said why, once;
// repeats are counted, not logged.
func (s *state) storeFailedBlock(b storagewrapper.Block, err error) {
	if !errors.Is(err, storagewrapper.ErrStore) {
		s.t.lim.Error("cannot store block", "piece", b.Piece, "err", err)
	}
	s.sync(b.Piece)
	s.checkStore()
}

// cancelPiece withdraws the requests for piece i at every peer: the
// storagewrapper dropped the piece in flight (a full disk, see
// storagewrapper/health.go), and blocks still coming for it would be
// thrown away.
func (s *state) cancelPiece(i int) {
	for p := range s.peers {
		for b := range p.outstanding {
			if b.Piece == i {
				s.releaseRequest(p, b, true)
			}
		}
	}
}
