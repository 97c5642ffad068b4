package metadata

import (
	"time"

	"btfs/engine/wire"
)

// tally is one size's votes.
type tally struct {
	// votes counts live supporters: announced it, not refused, not
	// stalled.
	votes int
	// rank is the earliest supporter's rank.
	rank int
}

// elect chooses the size to fetch. The rules, in order:
//   - Only live supporters vote: stalled peers (timed out or rejected,
//     nothing delivered since) vote only when no supporter is live, and
//     when nobody votes the size stays (a supporter may come back).
//   - The elected size keeps its place while it has a live supporter and
//     pieces of the current attempt are in: switching would throw them
//     away.
//   - Otherwise the size with the most live supporters wins, ties going
//     to the elected size, then to the earliest announced.
//
// Switching sizes starts a fresh attempt: pieces, requests, single mode
// and the smart-ban record of the old size are dropped.
func (f *Fetcher) elect() {
	if f.result != nil {
		return
	}
	votes := f.count(false)
	if len(votes) == 0 {
		// Everyone is stalled: slow supporters are better than none.
		votes = f.count(true)
	}
	if len(votes) == 0 {
		return
	}
	cur := votes[f.size]
	if cur != nil && f.received > 0 {
		return
	}
	var best int64
	var bt *tally
	for size, t := range votes {
		if bt == nil || t.votes > bt.votes || (t.votes == bt.votes && t.rank < bt.rank) {
			best, bt = size, t
		}
	}
	if cur != nil && cur.votes >= bt.votes {
		return
	}
	f.switchSize(best)
}

// count tallies the sizes of the peers that may vote: not refused, and
// not stalled unless withStalled.
func (f *Fetcher) count(withStalled bool) map[int64]*tally {
	votes := make(map[int64]*tally)
	for _, p := range f.peers {
		if p.refused || p.size == 0 || (p.stalled && !withStalled) {
			continue
		}
		t := votes[p.size]
		if t == nil {
			t = &tally{rank: p.rank}
			votes[p.size] = t
		}
		t.votes++
		t.rank = min(t.rank, p.rank)
	}
	return votes
}

// switchSize starts fetching a new size from scratch.
func (f *Fetcher) switchSize(size int64) {
	f.size = size
	f.single = false
	f.suspect = nil
	f.restart()
}

// restart begins a new attempt at the elected size: no pieces, no
// requests (answers to old ones become ErrUnrequested), no owner.
func (f *Fetcher) restart() {
	f.pieces = make([]piece, wire.MetadataPieces(f.size))
	f.received = 0
	f.owner = ""
}

// refreshStalled marks the peers that hold a request older than
// RequestTimeout as stalled.
func (f *Fetcher) refreshStalled(now time.Time) {
	for i := range f.pieces {
		for _, r := range f.pieces[i].reqs {
			if timedOut(r, now) {
				if p := f.peers[r.peer]; p != nil {
					p.stalled = true
				}
			}
		}
	}
}

// timedOut reports whether a request has waited RequestTimeout or more.
func timedOut(r request, now time.Time) bool { return now.Sub(r.at) >= RequestTimeout }
