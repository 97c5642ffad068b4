package engine

import (
	"slices"
	"time"

	"btfs/engine/choker"
	"btfs/engine/wire"
)

// onRequest queues a peer's request if we may serve it (the seed's
// Upload.got_request): unchoked, a piece we have verified, within bounds.
// With BEP 6 a request we will not serve is rejected explicitly.
func (s *state) onRequest(p *peer, m wire.Message) {
	i := int(m.Index)
	ok := !p.amChoking && i < s.t.info.NumPieces() && s.t.sw.DoIHave(i) &&
		int64(m.Begin)+int64(m.Length) <= s.t.info.PieceLen(i) && m.Length > 0
	if ok && p.out.queueUpload(m, maxUploadQueue) {
		return
	}
	if p.fast {
		p.send(wire.Message{ID: wire.RejectRequest, Index: m.Index, Begin: m.Begin, Length: m.Length})
	}
}

// setChoke chokes or unchokes p. Choking drops its queued requests (BEP 6:
// rejected explicitly).
func (s *state) setChoke(p *peer, choke bool) {
	if p.amChoking == choke {
		return
	}
	p.amChoking = choke
	if !choke {
		p.send(wire.Message{ID: wire.Unchoke})
		return
	}
	p.send(wire.Message{ID: wire.Choke})
	for _, m := range p.out.dropUploads() {
		if p.fast {
			p.send(wire.Message{ID: wire.RejectRequest, Index: m.Index, Begin: m.Begin, Length: m.Length})
		}
	}
}

// rechoke applies the choker (every RechokeInterval, 10 s by default).
// The rates are brought up to date first, and the peers are handed over in
// a fixed order (by address), so that a seeded Config.Rand makes the same
// optimistic picks every run.
func (s *state) rechoke(now time.Time) {
	ps := make([]*peer, 0, len(s.peers))
	for p := range s.peers {
		p.down.Tick(now)
		p.up.Tick(now)
		ps = append(ps, p)
	}
	slices.SortFunc(ps, func(a, b *peer) int { return a.addr.Compare(b.addr) })
	views := make([]choker.Peer[*peer], 0, len(ps))
	for _, p := range ps {
		views = append(views, choker.Peer[*peer]{
			Key:          p,
			Interested:   p.peerInterested,
			DownloadRate: p.down.Rate(),
			UploadRate:   p.up.Rate(),
			Snubbed:      p.snubbed,
			ConnectedAt:  p.started,
		})
	}
	res := s.choker.Rechoke(views, s.isComplete(), now)
	for p := range s.peers {
		// Uninterested peers stay as they are: unchoking them costs nothing
		// until they ask, and choking them would only cost a message.
		if p.peerInterested || res.Unchoke[p] {
			s.setChoke(p, !res.Unchoke[p])
		}
	}
}

// maybeQuickUnchoke unchokes a newly interested peer at once when a slot is
// free, instead of making it wait up to 10 s for the next rechoke.
func (s *state) maybeQuickUnchoke(p *peer) {
	if !p.amChoking {
		return
	}
	unchoked := 0
	for q := range s.peers {
		if !q.amChoking && q.peerInterested {
			unchoked++
		}
	}
	if unchoked < s.choker.Slots+1 {
		s.setChoke(p, false)
	}
}
