package engine

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/time/rate"

	"btfs/engine/pex"
	"btfs/engine/wire"
)

// BEP 10 extensions over a live connection: serving our info dictionary
// (BEP 9, ut_metadata) and peer exchange (BEP 11, ut_pex). The codecs are
// engine/wire's; the bookkeeping is engine/metadata's Server and
// engine/pex's Sender and Intake. Everything here runs on the loop.

// Our extension IDs: what peers put in ExtendedID when they send us these
// messages (we chose them in our handshake's "m"). To send to a peer we
// use the IDs of its own handshake instead.
const (
	extMetadataID = 1
	extPexID      = 2
)

// Limits of the extensions.
const (
	// pexFirstDelay is how long after a peer's extension handshake our
	// first PEX message waits: long enough for the connections that open
	// with it to settle, short enough that a new peer learns the swarm at
	// once. Later messages follow pex.Interval (a minute) apart.
	pexFirstDelay = 2 * time.Second
	// metaSlack is how many ut_metadata requests a peer may make beyond
	// one full fetch of the dictionary before its budget runs dry: a
	// fetcher retries a piece or two, nobody needs the whole twice.
	metaSlack = 8
	// metaRefill is how long a peer's budget takes to refill from empty.
	metaRefill = 10 * time.Minute
	// metaMaxRefused is how many requests a peer may have refused
	// (rejected for its budget, or unreadable) before we hang up: each
	// costs us a reject message in its outbox, which must stay bounded
	// for a peer that asks without reading.
	metaMaxRefused = 64
)

// extState is one peer's extension state, owned by the loop.
type extState struct {
	// ids are the peer's "m": the IDs it wants for each extension it
	// speaks. A later handshake changes entries; ID 0 removes one.
	ids map[string]int
	// dialled is set when we connected to it: listen is then the address
	// we dialled, whatever its handshake says.
	dialled bool
	// listen is where it accepts connections: the dialled address, or
	// its IP with the "p" port of its extension handshake; invalid while
	// unknown. It is the address PEX tells others.
	listen netip.AddrPort
	// dht is set when its handshake has the BEP 5 reserved bit.
	dht bool
	// dhtPort is the port of its first BEP 5 port message, 0 before.
	dhtPort uint16
	// pexOut tracks what we told it; nil unless both sides speak ut_pex
	// (and never for a private torrent).
	pexOut *pex.Sender
	// pexDue is when its first PEX message may go.
	pexDue time.Time
	// pexTooOften counts its PEX messages ignored for coming too soon.
	pexTooOften int
	// metaBudget bounds its ut_metadata requests; nil until its first.
	metaBudget *rate.Limiter
	// metaRefused counts its ut_metadata requests we refused.
	metaRefused int
	// metaOffered is set once it announced a metadata_size we may fetch
	// (metaphase.go).
	metaOffered bool
}

// extHandshake is ours: the extensions we speak, under our IDs.
func (s *state) extHandshake(p *peer) wire.ExtHandshake {
	eh := wire.ExtHandshake{
		M:            map[string]int{wire.ExtMetadata: extMetadataID},
		V:            "btfs 0.1",
		Reqq:         maxUploadQueue,
		MetadataSize: s.t.meta.Size(),
	}
	if !s.t.private {
		eh.M[wire.ExtPex] = extPexID
	}
	if ap := s.t.ListenAddr(); ap.IsValid() {
		eh.Port = int(ap.Port())
	}
	if p.addr.Addr().IsValid() {
		eh.YourIP = p.addr.Addr()
	}
	return eh
}

// sendExt sends an extended message to p under the ID p chose for name;
// false when p does not speak that extension.
func (s *state) sendExt(p *peer, name string, payload []byte) bool {
	id := p.exts.ids[name]
	if id <= 0 || id > 255 {
		return false
	}
	p.send(wire.Message{ID: wire.Extended, ExtendedID: uint8(id), Payload: payload})
	return true
}

// onExtHandshake reads the peer's BEP 10 handshake (the first, or a later
// one that changes its extensions).
func (s *state) onExtHandshake(p *peer, payload []byte) {
	// An absurd metadata_size costs the peer nothing else: its "m"
	// (ut_pex) and the rest still count; in the metadata phase it is not
	// asked (metaOffer).
	eh, err := wire.ParseExtHandshake(payload, s.t.cfg.MaxMetadataSize)
	if err != nil && !errors.Is(err, wire.ErrMetadataTooLarge) {
		s.t.log.Debug("bad extension handshake", "peer", p.key, "err", err)
		return
	}
	if eh.Reqq > 0 {
		p.reqq = eh.Reqq
	}
	if p.exts.ids == nil {
		p.exts.ids = make(map[string]int, len(eh.M))
	}
	for name, id := range eh.M {
		if id == 0 {
			delete(p.exts.ids, name)
		} else if len(p.exts.ids) < 64 || p.exts.ids[name] != 0 {
			p.exts.ids[name] = id
		}
	}
	if eh.Port > 0 && !p.exts.dialled {
		ap := netip4Port(p, eh.Port)
		if old := p.exts.listen; old.IsValid() && old != ap {
			s.unlisten(p) // it moved: the old address is free to dial again
		}
		p.exts.listen = ap
		if k := s.known[ap]; k != nil {
			k.connected = true
		} else if ap != p.addr && len(s.known) < maxKnownPeers {
			s.known[ap] = &known{connected: true}
		}
	}
	if ours := s.t.ListenAddr(); eh.YourIP.IsValid() && ours.IsValid() && s.pexIn != nil {
		s.pexIn.AddSelf(netip.AddrPortFrom(eh.YourIP, ours.Port()))
	}
	switch {
	case s.t.private || p.exts.ids[wire.ExtPex] == 0:
		p.exts.pexOut = nil
	case p.exts.pexOut == nil:
		p.exts.pexOut = pex.NewSender(p.exts.listen)
		p.exts.pexDue = time.Now().Add(pexFirstDelay)
	}
	s.metaOffer(p, eh.MetadataSize, err) // metaphase.go: a source of the metadata
}

// unlisten marks p's listen address as no longer connected (it left, or
// announced another port), unless it is the connection's own address,
// which dropPeer handles. Like a dropped connection's address it waits
// redialBackoff: a peer that just hung up is not called straight back.
func (s *state) unlisten(p *peer) {
	if a := p.exts.listen; a.IsValid() && a != p.addr {
		if k := s.known[a]; k != nil {
			k.connected = false
			k.nextTry = time.Now().Add(redialBackoff)
		}
	}
}

// onExtended dispatches an extended message other than the handshake by
// the ID we chose for it.
func (s *state) onExtended(p *peer, m wire.Message) {
	switch m.ExtendedID {
	case extMetadataID:
		s.onMetadataMsg(p, m.Payload)
	case extPexID:
		if !s.t.private {
			s.onPex(p, m.Payload)
		}
	}
	// Anything else is an ID we never offered: ignored, as BEP 10 allows.
}

// onMetadataMsg answers a ut_metadata request with a piece of our info
// dictionary, or a reject when the piece does not exist or the peer has
// used up its budget. Data and reject messages answer our requests of the
// metadata phase (metaphase.go); after it they are ignored.
func (s *state) onMetadataMsg(p *peer, payload []byte) {
	msg, err := wire.ParseMetadataMsg(payload, s.t.cfg.MaxMetadataSize)
	if errors.Is(err, wire.ErrUnknownMetadataMsg) {
		return // BEP 9: unknown message types are ignored
	}
	if err != nil {
		s.t.log.Debug("bad ut_metadata message", "peer", p.key, "err", err)
		s.refuseMetadata(p)
		return
	}
	switch msg.Type {
	case wire.MetadataData:
		s.onMetaPiece(p, msg.Piece, msg.Data)
		return
	case wire.MetadataReject:
		s.onMetaReject(p, msg.Piece)
		return
	}
	if p.exts.metaBudget == nil {
		burst := wire.MetadataPieces(s.t.meta.Size()) + metaSlack
		p.exts.metaBudget = rate.NewLimiter(rate.Limit(float64(burst)/metaRefill.Seconds()), burst)
	}
	reply := wire.MetadataMsg{Type: wire.MetadataReject, Piece: msg.Piece}
	if p.exts.metaBudget.Allow() {
		reply = s.t.meta.Answer(msg.Piece) // a reject when out of range
	} else if s.refuseMetadata(p) {
		return
	}
	out, err := wire.EncodeMetadataMsg(reply)
	if err != nil {
		s.t.log.Error("encoding ut_metadata reply", "peer", p.key, "err", err)
		return
	}
	s.sendExt(p, wire.ExtMetadata, out)
}

// refuseMetadata counts a refused ut_metadata request and hangs up on a
// peer that keeps asking past its budget; true when it did.
func (s *state) refuseMetadata(p *peer) bool {
	p.exts.metaRefused++
	if p.exts.metaRefused > metaMaxRefused {
		s.dropPeer(p, fmt.Errorf("%w: %d ut_metadata requests refused", errProtocol, p.exts.metaRefused))
		return true
	}
	return false
}

// onPex learns addresses from a peer's ut_pex message, within the
// Intake's caps; a message within pex.MinInterval of the previous one is
// ignored (BEP 11 allows one a minute).
func (s *state) onPex(p *peer, payload []byte) {
	msg, err := wire.ParsePex(payload)
	if err != nil {
		s.t.log.Debug("bad ut_pex message", "peer", p.key, "err", err)
		return
	}
	l := s.pexIn.Accept(p.addr, time.Now(), msg)
	if l.TooFrequent {
		p.exts.pexTooOften++
		s.t.log.Debug("ut_pex message too soon, ignored", "peer", p.key, "times", p.exts.pexTooOften)
		return
	}
	if len(l.Added) == 0 {
		return
	}
	addrs := make([]netip.AddrPort, len(l.Added))
	for i, a := range l.Added {
		addrs[i] = a.Addr
		if a.Flags&wire.PexUTP != 0 { // counted if a dial fails without uTP
			s.t.tr.HintUTP(a.Addr)
		}
	}
	s.addPeers(addrs, "pex")
}

// pexTick sends each peer whose turn it is the change in our peer list
// since its previous message.
func (s *state) pexTick(now time.Time) {
	if s.t.private {
		return
	}
	var connected []wire.PexPeer
	built := false
	for p := range s.peers {
		if p.exts.pexOut == nil || now.Before(p.exts.pexDue) {
			continue
		}
		if !built {
			connected, built = s.pexPeers(), true
		}
		msg, ok := p.exts.pexOut.Next(now, connected)
		if !ok {
			continue
		}
		out, err := wire.EncodePex(msg)
		if err != nil {
			s.t.log.Error("encoding ut_pex message", "peer", p.key, "err", err)
			continue
		}
		s.sendExt(p, wire.ExtPex, out)
	}
}

// pexPeers lists the connected peers whose listen address we know, with
// BEP 11's flags: seed, and reachable when we reached it ourselves.
func (s *state) pexPeers() []wire.PexPeer {
	out := make([]wire.PexPeer, 0, len(s.peers))
	for p := range s.peers {
		if !p.exts.listen.IsValid() {
			continue
		}
		var f wire.PexFlags
		if p.seed || (p.has != nil && p.has.Count() == p.has.Len()) {
			f |= wire.PexSeed
		}
		if p.exts.dialled {
			f |= wire.PexReachable
		}
		if p.network == "utp" {
			f |= wire.PexUTP
		}
		out = append(out, wire.PexPeer{Addr: p.exts.listen, Flags: f})
	}
	return out
}
