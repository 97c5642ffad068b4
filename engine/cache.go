package engine

import "btfs/storagewrapper"

// syncStore applies what changed in the storagewrapper other than through
// our own downloads: pieces other processes sharing the cache published
// (adopted: had, announced with HAVE, served), pieces that left the cache
// (no longer had: pickable again; upload.go already refuses requests for a
// piece the storagewrapper does not have), pieces another process is
// downloading (set aside as if fully requested), and pieces whose claim
// elsewhere ended (pickable again). The loop calls it on every kick.
func (s *state) syncStore() {
	ch := s.t.sw.TakeChanges()
	if ch.Empty() {
		return
	}
	for _, i := range ch.Verified {
		n := s.pk.NumVerified()
		s.sync(i)
		if s.pk.NumVerified() == n {
			continue // known already (our own download, or resumed), or gone again
		}
		// As for a piece of our own: HAVE to the peers that lack it,
		// interest updated, completion checked.
		s.pieceDone(storagewrapper.Result{Piece: i, Completed: true, Verified: true})
	}
	for _, i := range ch.Unverified {
		s.cancelPiece(i) // dropped in flight (health.go): its blocks would be wasted
		s.sync(i)
	}
	for _, i := range ch.ClaimedElsewhere {
		s.sync(i) // set aside, as if fully requested
	}
}
