// Package pex is BEP 11's peer exchange without the wire: what to tell
// each connected peer (Sender) and what to believe of what peers tell us
// (Intake). Like picker, it does no I/O, starts no goroutines and takes no
// locks; the torrent's loop owns the state and passes the time in. The
// codec is engine/wire's EncodePex and ParsePex.
//
// The engine must not use PEX at all for a private torrent (BEP 27,
// metainfo.Info.Private).
package pex

import (
	"net/netip"
	"slices"
	"time"

	"btfs/engine/wire"
)

// Limits of what we send.
const (
	// Interval is the least time between two messages to one peer: BEP 11
	// asks for no more than one a minute, and libtorrent disconnects
	// peers that send more often.
	Interval = time.Minute
	// MaxAdded caps the added peers of one message, BEP 11's suggestion;
	// the rest go in the next messages.
	MaxAdded = 50
	// MaxDropped caps the dropped peers of one message likewise.
	MaxDropped = 50
)

// Sender is what we have told one connected peer, so that each message
// carries only the change since the previous one. The zero value is not
// usable: use NewSender.
type Sender struct {
	// remote is the peer's own listen address, never sent back to it.
	remote netip.AddrPort
	// told are the peers it has from us as added and not since dropped.
	told map[netip.AddrPort]bool
	// last is when the previous message went; zero before the first.
	last time.Time
}

// NewSender starts the bookkeeping for one connection. remote is the
// peer's listen address (invalid if unknown): it is left out of what we
// tell it.
func NewSender(remote netip.AddrPort) *Sender {
	return &Sender{remote: normalize(remote), told: make(map[netip.AddrPort]bool)}
}

// Next returns the message to send at now, given the peers we are
// connected to (their listen addresses, with the flags to tell). ok is
// false when it is too soon (within Interval of the previous message) or
// there is nothing new to say; the engine calls Next again on its next
// tick.
//
// Added are connected peers not told yet, in the order given, at most
// MaxAdded; dropped are told peers no longer connected, lowest address
// first, at most MaxDropped. Addresses Acceptable would refuse, and the
// remote itself, are never sent. The first message may go at once.
func (s *Sender) Next(now time.Time, connected []wire.PexPeer) (msg wire.PexMsg, ok bool) {
	if !s.last.IsZero() && now.Sub(s.last) < Interval {
		return wire.PexMsg{}, false
	}
	current := make(map[netip.AddrPort]bool, len(connected))
	for _, p := range connected {
		a := normalize(p.Addr)
		if a == s.remote || !sendable(a) || current[a] {
			continue
		}
		current[a] = true
		if !s.told[a] && len(msg.Added) < MaxAdded {
			msg.Added = append(msg.Added, wire.PexPeer{Addr: a, Flags: p.Flags})
		}
	}
	for a := range s.told {
		if !current[a] {
			msg.Dropped = append(msg.Dropped, a)
		}
	}
	slices.SortFunc(msg.Dropped, netip.AddrPort.Compare)
	if len(msg.Dropped) > MaxDropped {
		msg.Dropped = msg.Dropped[:MaxDropped]
	}
	if len(msg.Added) == 0 && len(msg.Dropped) == 0 {
		return wire.PexMsg{}, false
	}
	for _, p := range msg.Added {
		s.told[p.Addr] = true
	}
	for _, a := range msg.Dropped {
		delete(s.told, a)
	}
	s.last = now
	return msg, true
}

// Told reports how many peers the remote has from us, for tests and
// statistics.
func (s *Sender) Told() int { return len(s.told) }

// sendable is the part of Acceptable that does not depend on who is
// listening: a peer we are connected to is worth telling about unless its
// address is one nobody can connect to.
func sendable(a netip.AddrPort) bool { return reason(a) == "" }

// normalize unmaps IPv4-mapped IPv6 addresses, so that one peer has one
// key whichever way it was written.
func normalize(a netip.AddrPort) netip.AddrPort {
	if !a.IsValid() {
		return a
	}
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}
