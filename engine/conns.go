package engine

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"btfs/engine/wire"
	"btfs/metainfo"
	"btfs/picker"
)

// acceptLoop accepts incoming connections and handshakes them (the
// transport: MSE or plain, as the policy allows), each in its own
// goroutine so a slow peer cannot hold the listener.
func (t *Torrent) acceptLoop(ln net.Listener) {
	defer t.wg.Done()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if t.ctx.Err() == nil {
				t.log.Warn("listener stopped", "err", err)
			}
			return
		}
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			c, err := t.tr.Accept(t.ctx, conn, func(h metainfo.Hash) (wire.Handshake, bool) {
				return t.ours, h == t.ours.InfoHash
			}, slices.Values([][20]byte{t.ours.InfoHash}))
			if err != nil {
				t.log.Debug("incoming handshake failed", "addr", conn.RemoteAddr(), "err", err)
				conn.Close()
				return
			}
			if !t.post(t.ctx, connEvent{conn: c.Conn, addr: addrOf(conn.RemoteAddr()), hs: c.Peer, enc: c.Encryption, network: c.Network}) {
				conn.Close()
			}
		}()
	}
}

// dial connects to addr and handshakes (the transport: encrypted first
// or not, as the policy says), reporting to the loop.
func (t *Torrent) dial(addr netip.AddrPort) {
	defer t.wg.Done()
	c, err := t.tr.Dial(t.ctx, addr, t.ours)
	if err != nil {
		t.post(t.ctx, dialFailedEvent{addr: addr, err: err})
		return
	}
	if !t.post(t.ctx, connEvent{conn: c.Conn, addr: addr, hs: c.Peer, outgoing: true, enc: c.Encryption, network: c.Network}) {
		c.Close()
	}
}

// addrOf is a connection's remote address, an IPv4 one unmapped: a
// dual-stack listener ("-listen :6881" binds [::]) reports IPv4 peers as
// ::ffff:a.b.c.d, and one peer must have one address for bans, per-IP
// caps and the known-peer table whichever socket it came through.
func addrOf(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	if tcp, ok := a.(*net.TCPAddr); ok {
		ap = tcp.AddrPort()
	} else {
		ap, _ = netip.ParseAddrPort(a.String())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// addPeers remembers addresses and dials what the slots allow.
func (s *state) addPeers(addrs []netip.AddrPort, source string) {
	added := 0
	for _, a := range addrs {
		a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
		if !a.IsValid() || a.Port() == 0 || s.banned[a.Addr()] {
			continue
		}
		if _, ok := s.known[a]; ok || len(s.known) >= maxKnownPeers {
			continue
		}
		s.known[a] = &known{}
		added++
	}
	if added > 0 {
		s.learned[source] += added
		s.t.log.Debug("new peer addresses", "source", source, "added", added, "known", len(s.known))
	}
	s.maybeDial(time.Now())
}

// maybeDial starts dials while connection slots are free. Half the slots
// are reserved for... nobody: a torrent client for streaming wants every
// fast peer it can get, so it dials up to MaxPeers.
//
// While a reader waits and no peer is connected, an address is tried again
// every urgentRedial whatever its backoff says: the only seeder that went
// away and came back must be found again before the reader gives up.
func (s *state) maybeDial(now time.Time) {
	urgent := len(s.peers) == 0 && s.readerWaits()
	for a, k := range s.known {
		if len(s.peers)+s.dialing >= s.t.cfg.MaxPeers {
			return
		}
		if k.connected || k.dialing || k.self || s.banned[a.Addr()] || (k.noMeta && s.fetch != nil) {
			continue
		}
		if now.Before(k.nextTry) && !(urgent && now.Sub(k.lastTry) >= urgentRedial) {
			continue
		}
		if !s.t.cfg.Budget.take() {
			return // the process's connections are all in use
		}
		k.dialing, k.lastTry = true, now
		s.dialing++
		s.t.wg.Add(1)
		go s.t.dial(a)
	}
}

// dialBackoff is the wait before the next dial of an address that failed
// n times in a row: 1 s, 2 s, 4 s, … up to maxDialBackoff. The first
// retries come soon: a -peer that is not listening yet (started a moment
// after us) is found within a second or two of it starting, not at a
// fixed 15 s.
func dialBackoff(n int) time.Duration {
	return min(minDialBackoff<<min(max(n-1, 0), 20), maxDialBackoff)
}

// readerWaits reports whether a read is blocked on a missing piece (its
// want has picker.Now priority; Wants sorts the most urgent first).
func (s *state) readerWaits() bool {
	return len(s.wants) > 0 && s.wants[0].Priority == picker.Now
}

func (s *state) onDialFailed(addr netip.AddrPort, err error) {
	s.dialing--
	s.t.cfg.Budget.give()
	k := s.known[addr]
	if k == nil {
		return
	}
	k.dialing = false
	k.failures++
	k.nextTry = time.Now().Add(dialBackoff(k.failures))
	s.t.log.Debug("dial failed", "addr", addr, "failures", k.failures, "err", err)
}

// onConn admits a handshaken connection as a peer, or closes it.
func (s *state) onConn(ev connEvent) {
	if ev.outgoing {
		s.dialing--
		if k := s.known[ev.addr]; k != nil {
			k.dialing = false
		}
	}
	// A dial holds its slot of the budget already; an incoming
	// connection needs one.
	held := ev.outgoing || s.t.cfg.Budget.take()
	reject := func(why string) {
		s.t.log.Debug("connection refused", "addr", ev.addr, "why", why)
		ev.conn.Close()
		if held {
			s.t.cfg.Budget.give()
		}
	}
	switch {
	case !held:
		reject("connection budget")
		return
	case ev.hs.PeerID == s.t.cfg.PeerID:
		if k := s.known[ev.addr]; k != nil {
			k.self = true
		}
		reject("connection to ourselves")
		return
	case s.banned[ev.addr.Addr()]:
		reject("banned")
		return
	case s.byID[ev.hs.PeerID] != nil:
		reject("duplicate peer id")
		return
	case len(s.peers) >= s.t.cfg.MaxPeers:
		reject("connection cap")
		return
	}
	p := newPeer(s.t, ev.conn, ev.addr, ev.hs)
	p.enc, p.network = ev.enc, ev.network
	p.exts.dht = ev.hs.Reserved.SupportsDHT()
	if ev.outgoing {
		p.exts.dialled, p.exts.listen = true, ev.addr
	}
	s.peers[p] = struct{}{}
	s.byID[p.id] = p
	s.connections++
	if k := s.known[ev.addr]; k != nil {
		k.connected, k.failures = true, 0
	} else if ev.outgoing {
		s.known[ev.addr] = &known{connected: true}
	}
	s.t.log.Debug("peer connected", "addr", p.addr, "outgoing", ev.outgoing, "fast", p.fast, "ext", p.ext, "network", p.network, "encryption", encName(p.enc))
	if s.fetch != nil {
		s.fetch.hands++
	}
	p.start()
	s.greet(p)
}

// greet sends what opens a connection: the extension handshake, then our
// pieces (BEP 6 have-all/have-none when both speak it).
func (s *state) greet(p *peer) {
	if p.ext {
		if payload, err := s.extHandshake(p).Encode(); err == nil { // extensions.go
			p.send(wire.Message{ID: wire.Extended, ExtendedID: 0, Payload: payload})
		}
	}
	if s.t.nodes != nil && p.exts.dht && s.t.cfg.DHTPort > 0 && s.t.cfg.DHTPort <= 65535 {
		p.send(wire.Message{ID: wire.Port, Port: uint16(s.t.cfg.DHTPort)}) // BEP 5
	}
	if s.pk == nil {
		// The metadata phase: nothing to declare yet; the pieces we
		// turn out to have go as HAVEs when the storage is attached.
		if p.fast {
			p.send(wire.Message{ID: wire.HaveNone})
		}
		return
	}
	bf := s.t.sw.Bitfield()
	switch {
	case p.fast && bf.Count() == bf.Len():
		p.send(wire.Message{ID: wire.HaveAll})
	case p.fast && bf.Count() == 0:
		p.send(wire.Message{ID: wire.HaveNone})
	case bf.Count() > 0:
		p.send(wire.Message{ID: wire.Bitfield, Bitfield: bf.Bytes()})
	}
	// A peer that is interested at once gets a slot at once if one is free;
	// otherwise the next rechoke decides.
}

// dropPeer forgets a peer: its requests go back, its pieces leave the
// availability counts.
func (s *state) dropPeer(p *peer, err error) {
	if p.closed {
		return
	}
	p.closed = true
	p.close()
	s.t.cfg.Budget.give()
	delete(s.peers, p)
	if s.byID[p.id] == p {
		delete(s.byID, p.id)
	}
	if k := s.known[p.addr]; k != nil {
		k.connected = false
		k.nextTry = time.Now().Add(redialBackoff)
	}
	s.unlisten(p)
	if s.pexIn != nil {
		s.pexIn.Forget(p.addr)
	}
	for b := range p.outstanding {
		s.releaseRequest(p, b, false)
	}
	s.forgetPieces(p)
	if err != nil {
		s.t.log.Debug("peer gone", "addr", p.addr, "err", err)
	}
	if s.fetch != nil && !s.fetch.opening {
		s.fetch.fetcher.PeerGone(p.key) // its requests go to others
		s.pumpAllMeta(time.Now())
	}
	s.fillAll()
}

// ban closes every connection from addr's host and refuses it from now on.
func (s *state) ban(addr netip.Addr, why string) {
	if s.banned[addr] {
		return
	}
	s.banned[addr] = true
	s.t.log.Warn("peer banned", "addr", addr, "why", why)
	for p := range s.peers {
		if p.addr.Addr() == addr {
			s.dropPeer(p, fmt.Errorf("banned: %s", why))
		}
	}
}

// netip4Port is the listen address a peer announced: its IP, its port.
func netip4Port(p *peer, port int) netip.AddrPort {
	return netip.AddrPortFrom(p.addr.Addr(), uint16(port))
}
