package engine

import (
	"fmt"
	"time"

	"btfs/bitfield"
	"btfs/engine/wire"
	"btfs/storagewrapper"
)

// onMessage applies one message from a peer (the seed's
// Connection._got_message). A protocol violation drops the peer.
func (s *state) onMessage(p *peer, m wire.Message) {
	if m.ID.IsFast() && !p.fast {
		s.dropPeer(p, fmt.Errorf("%w: %s without the fast extension", errProtocol, m.ID))
		return
	}
	if s.pk == nil {
		s.earlyMessage(p, m) // the metadata phase (metaphase.go)
		return
	}
	switch m.ID {
	case wire.Choke:
		p.peerChoking = true
		if !p.fast {
			// Without BEP 6 a choke discards every pending request.
			for b := range p.outstanding {
				s.releaseRequest(p, b, false)
			}
			s.fillAll()
		}
	case wire.Unchoke:
		p.peerChoking = false
		s.fill(p)
	case wire.Interested:
		p.peerInterested = true
		s.maybeQuickUnchoke(p)
	case wire.NotInterested:
		p.peerInterested = false
	case wire.Have:
		s.onHave(p, int(m.Index))
	case wire.Bitfield:
		// BEP 3 wants the bitfield (or BEP 6's have-all/have-none) first;
		// real clients are looser: aria2c sends have-none and, after a few
		// requests, a bitfield. A later declaration replaces the earlier.
		bf, err := bitfield.FromBytes(m.Bitfield, s.t.info.NumPieces())
		if err != nil {
			s.dropPeer(p, fmt.Errorf("%w: %v", errProtocol, err))
			return
		}
		s.setPieces(p, bf)
	case wire.HaveAll:
		s.forgetPieces(p)
		p.seed = true
		s.pk.AddSeed()
		s.updateInterest(p)
	case wire.HaveNone:
		s.setPieces(p, bitfield.New(s.t.info.NumPieces()))
	case wire.Request:
		s.onRequest(p, m)
	case wire.Cancel:
		p.out.cancelUpload(m.Index, m.Begin, m.Length)
	case wire.RejectRequest:
		b := storagewrapper.Block{Piece: int(m.Index), Begin: int64(m.Begin), Length: int(m.Length)}
		if _, ok := p.outstanding[b]; ok {
			s.releaseRequest(p, b, false)
			s.fillAll()
		}
	case wire.AllowedFast:
		if int(m.Index) < s.t.info.NumPieces() {
			p.allowedFast[int(m.Index)] = true
			s.fill(p)
		}
	case wire.Extended:
		if m.ExtendedID == 0 {
			s.onExtHandshake(p, m.Payload)
		} else {
			s.onExtended(p, m) // extensions.go
		}
	case wire.Port:
		s.onPort(p, m.Port) // finder.go
	case wire.Suggest:
		// Suggestions are ignored (BEP 6 allows it).
	}
}

// setPieces registers a peer's bitfield, replacing what it declared before.
func (s *state) setPieces(p *peer, bf *bitfield.Bitfield) {
	s.forgetPieces(p)
	p.has = bf
	if err := s.pk.AddPeer(bf); err != nil {
		s.dropPeer(p, err)
		return
	}
	s.updateInterest(p)
}

// forgetPieces takes a peer's declared pieces out of the availability counts.
func (s *state) forgetPieces(p *peer) {
	switch {
	case p.seed:
		s.pk.RemoveSeed()
		p.seed = false
	case p.has != nil:
		if err := s.pk.RemovePeer(p.has); err != nil {
			s.t.log.Error("picker out of step", "peer", p.key, "err", err)
		}
		p.has = nil
	}
}

// onHave records one new piece of a peer.
func (s *state) onHave(p *peer, i int) {
	if i < 0 || i >= s.t.info.NumPieces() {
		s.dropPeer(p, fmt.Errorf("%w: have %d of %d pieces", errProtocol, i, s.t.info.NumPieces()))
		return
	}
	if p.seed {
		return
	}
	if p.has == nil {
		s.setPieces(p, bitfield.New(s.t.info.NumPieces()))
		if p.closed {
			return
		}
	}
	if p.has.Has(i) {
		return
	}
	p.has.Set(i)
	s.pk.Have(i)
	if !p.amInterested {
		s.updateInterest(p)
	} else {
		s.fill(p)
	}
}

// updateInterest keeps our interested flag up to date: interested when p
// has a piece the picker would fetch (in FetchReads mode: one a reader
// wants). Interest lingers: once interested, we stay so for interestLinger
// after the last want while p has pieces we lack. A reader that reads,
// pauses and reads again (a player, a random reader, a re-read of an
// evicted piece) would otherwise send not-interested between its reads,
// and many peers (aria2c) choke a peer that is not interested and unchoke
// it again only at their next choke round, every 10 s: the next read would
// wait on the peer's timer with the data one round trip away.
func (s *state) updateInterest(p *peer) {
	if p.closed {
		return
	}
	declared := p.seed || p.has != nil
	want := declared && s.pk.Interesting(p.pieces())
	if !want && p.amInterested && declared && s.lingering(time.Now()) && s.pk.Lacks(p.pieces()) {
		want = true
	}
	if want != p.amInterested {
		p.amInterested = want
		if want {
			p.send(wire.Message{ID: wire.Interested})
		} else {
			p.uninterested++
			p.send(wire.Message{ID: wire.NotInterested})
			s.t.log.Debug("not interested in the peer any more", "peer", p.key)
		}
	}
	if want {
		s.fill(p)
	}
}

// lingering reports whether a reader wanted something within the last
// interestLinger (see updateInterest).
func (s *state) lingering(now time.Time) bool {
	return len(s.wants) > 0 || (!s.wantedAt.IsZero() && now.Sub(s.wantedAt) < interestLinger)
}
