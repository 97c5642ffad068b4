package pex

import (
	"net/netip"
	"time"

	"btfs/engine/wire"
)

// Defaults of IntakeConfig.
const (
	// DefaultPerMessage caps the peers learned from one message: BEP 11's
	// 50 added a message.
	DefaultPerMessage = 50
	// DefaultPerMinute caps the peers learned from one peer per minute,
	// as a bucket that refills at that rate: two full messages a minute.
	// A peer cannot flood our peer list faster than that, however often
	// it sends.
	DefaultPerMinute = 100
	// MinInterval is the shortest gap between two messages from one peer
	// that is not reported as TooFrequent: BEP 11's minute, less slack
	// for timer jitter.
	MinInterval = 45 * time.Second
)

// IntakeConfig bounds what we learn. Zero fields take their defaults.
type IntakeConfig struct {
	// PerMessage caps the added peers accepted from one message.
	PerMessage int
	// PerMinute caps the added peers accepted from one peer per minute.
	PerMinute int
}

// Intake filters and rate-limits the peers that peers tell us about. The
// zero value is not usable: use NewIntake.
type Intake struct {
	// cfg holds the limits, defaults filled.
	cfg IntakeConfig
	// self are our own listen addresses, never learned.
	self map[netip.AddrPort]bool
	// from holds each telling peer's budget.
	from map[netip.AddrPort]*budget
}

// budget is one telling peer's allowance.
type budget struct {
	// tokens are the peers it may still add; refills at PerMinute a
	// minute up to PerMinute.
	tokens float64
	// at is when tokens was last brought up to date.
	at time.Time
	// last is when its previous message came.
	last time.Time
}

// Learned is what one message taught us.
type Learned struct {
	// Added are the peers worth trying, unmapped, deduplicated, in message
	// order.
	Added []wire.PexPeer
	// Dropped are the peers the sender says it left (filtered the same
	// way, capped at PerMessage). Advice only: the peers may still be
	// good.
	Dropped []netip.AddrPort
	// Refused counts added entries left out: bad or own addresses,
	// duplicates, and entries over the per-message or per-minute cap.
	Refused int
	// TooFrequent is set when the message came within MinInterval of the
	// previous one from the same peer. It is still taken within the
	// budget; the engine may count it against the peer.
	TooFrequent bool
}

// NewIntake returns an Intake with the given limits.
func NewIntake(cfg IntakeConfig) *Intake {
	if cfg.PerMessage <= 0 {
		cfg.PerMessage = DefaultPerMessage
	}
	if cfg.PerMinute <= 0 {
		cfg.PerMinute = DefaultPerMinute
	}
	return &Intake{cfg: cfg, self: make(map[netip.AddrPort]bool), from: make(map[netip.AddrPort]*budget)}
}

// AddSelf records one of our own listen addresses (the address we listen
// on, or our address as a peer saw it, "yourip", with our listen port):
// peers that tell us about ourselves are not believed.
func (in *Intake) AddSelf(a netip.AddrPort) {
	if a.IsValid() {
		in.self[normalize(a)] = true
	}
}

// Accept filters one parsed message from the peer at from (the address of
// our connection to it) at now. Entries are refused when Acceptable
// refuses them, when they are one of our own addresses or from itself,
// when they repeat an earlier entry, and past the per-message cap and the
// peer's per-minute budget.
func (in *Intake) Accept(from netip.AddrPort, now time.Time, msg wire.PexMsg) Learned {
	from = normalize(from)
	b := in.from[from]
	if b == nil {
		b = &budget{tokens: float64(in.cfg.PerMinute), at: now}
		in.from[from] = b
	}
	var l Learned
	if !b.last.IsZero() && now.Sub(b.last) < MinInterval {
		l.TooFrequent = true
	}
	b.last = now
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(float64(in.cfg.PerMinute), b.tokens+d.Minutes()*float64(in.cfg.PerMinute))
		b.at = now
	}
	seen := make(map[netip.AddrPort]bool, len(msg.Added))
	for _, p := range msg.Added {
		a := normalize(p.Addr)
		if seen[a] || a == from || in.self[a] || !Acceptable(a, from.Addr()) || len(l.Added) >= in.cfg.PerMessage || b.tokens < 1 {
			l.Refused++
			continue
		}
		seen[a] = true
		b.tokens--
		l.Added = append(l.Added, wire.PexPeer{Addr: a, Flags: p.Flags})
	}
	for _, a := range msg.Dropped {
		a = normalize(a)
		if len(l.Dropped) < in.cfg.PerMessage && !in.self[a] && Acceptable(a, from.Addr()) {
			l.Dropped = append(l.Dropped, a)
		}
	}
	return l
}

// Forget drops the budget of a peer we disconnected from.
func (in *Intake) Forget(from netip.AddrPort) { delete(in.from, normalize(from)) }

// Acceptable reports whether a peer's address, as told by the peer at
// from, is worth connecting to. Refused: invalid addresses and port 0;
// unspecified, multicast and broadcast addresses; 0.0.0.0/8 and the
// reserved 240.0.0.0/4; link-local unicast (unusable without a zone).
// Loopback and private (RFC 1918, fc00::/7) addresses are local to
// whoever sent them, so they are accepted only from a peer that is itself
// loopback or private (libtorrent's rule): a stranger on the Internet
// cannot send us to our own loopback or LAN. IPv4-mapped addresses are
// judged as IPv4.
func Acceptable(a netip.AddrPort, from netip.Addr) bool {
	if reason(a) != "" {
		return false
	}
	if local(a.Addr().Unmap()) {
		return local(from.Unmap())
	}
	return true
}

// reason says why an address is no peer for anyone, or "" if it may be.
func reason(a netip.AddrPort) string {
	ip := a.Addr().Unmap()
	switch {
	case !a.IsValid() || ip.Zone() != "":
		return "invalid"
	case a.Port() == 0:
		return "port 0"
	case ip.IsUnspecified():
		return "unspecified"
	case ip.IsMulticast():
		return "multicast"
	case ip.IsLinkLocalUnicast():
		return "link-local"
	case ip.Is4():
		b := ip.As4()
		switch {
		case b == [4]byte{255, 255, 255, 255}:
			return "broadcast"
		case b[0] == 0:
			return "this network"
		case b[0] >= 240:
			return "reserved"
		}
	}
	return ""
}

// local reports loopback and private addresses.
func local(ip netip.Addr) bool { return ip.IsLoopback() || ip.IsPrivate() }
