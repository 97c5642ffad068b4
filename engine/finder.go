package engine

import (
	"context"
	"net/netip"
	"slices"
	"time"
)

// PeerFinder finds peers outside the trackers: the DHT (package dht's
// *Node). Declared here, at its one consumer, so the engine does not
// depend on the DHT; cmd/btfs wires one in through Config.Finder.
type PeerFinder interface {
	// FindPeers runs one lookup for ih, calling found with batches of
	// addresses (from any goroutine); when port > 0 it also announces
	// that we serve ih on that TCP port.
	FindPeers(ctx context.Context, ih [20]byte, port int, found func([]netip.AddrPort)) error
}

// NodeAdder is what a PeerFinder implements when it keeps a DHT routing
// table that peers' BEP 5 port messages can feed. When Config.Finder is
// one, we set the DHT bit in our handshake and send Config.DHTPort. The
// loop calls AddNode: it must not block.
type NodeAdder interface {
	AddNode(netip.AddrPort)
}

// Timing of the Finder's lookups.
const (
	// lookupInterval is the time between two lookups (and announces, which
	// DHT nodes forget after some 30 minutes, so this keeps us listed).
	lookupInterval = 5 * time.Minute
	// lookupMinGap is the shortest time between two lookups started
	// because the download is short of peers.
	lookupMinGap = time.Minute
	// lookupTimeout bounds one lookup.
	lookupTimeout = 2 * time.Minute
)

// lookupState is the loop's record of the Finder's lookups.
type lookupState struct {
	running bool      // one is under way (never two at once)
	started time.Time // when the last one started; zero before the first
	runs    int       // lookups started
	lastErr error     // the last lookup's error, nil if it worked
}

// lookupDoneEvent: a lookup ended.
type lookupDoneEvent struct{ err error }

// maybeLookup starts a lookup when one is due: at start, every
// lookupInterval, and after lookupMinGap when the download is short of
// peers. Never for a private torrent (BEP 27).
func (s *state) maybeLookup(now time.Time) {
	f := s.t.cfg.Finder
	if f == nil || s.t.private || s.lookup.running {
		return
	}
	if st := s.lookup.started; !st.IsZero() {
		since := now.Sub(st)
		if since < lookupInterval && (since < lookupMinGap || !s.shortOfPeers(now)) {
			return
		}
	}
	port := 0
	if ap := s.t.ListenAddr(); ap.IsValid() {
		port = int(ap.Port())
	}
	s.lookup.running, s.lookup.started = true, now
	s.lookup.runs++
	s.t.wg.Add(1)
	go s.t.runLookup(f, port)
}

// runLookup runs one lookup in its own goroutine; found addresses and the
// end go to the loop as events.
func (t *Torrent) runLookup(f PeerFinder, port int) {
	defer t.wg.Done()
	ctx, cancel := context.WithTimeout(t.ctx, lookupTimeout)
	defer cancel()
	err := f.FindPeers(ctx, [20]byte(t.mi.InfoHash), port, func(addrs []netip.AddrPort) {
		if len(addrs) > 0 {
			// ctx, not t.ctx: a finder that calls late, after FindPeers
			// returned, finds the post refused at once.
			t.post(ctx, peersEvent{addrs: slices.Clone(addrs), source: "dht"})
		}
	})
	t.post(t.ctx, lookupDoneEvent{err: err})
}

// lookupDone records the end of a lookup.
func (s *state) lookupDone(err error) {
	s.lookup.running = false
	s.lookup.lastErr = err
	if err != nil && s.t.ctx.Err() == nil {
		s.t.log.Debug("DHT lookup failed", "err", err)
	}
}

// onPort hands the DHT node of a peer's BEP 5 port message to our DHT's
// routing table: the first per connection only, so that a peer cannot
// fill the table with made-up nodes.
func (s *state) onPort(p *peer, port uint16) {
	if s.t.nodes == nil || port == 0 || p.exts.dhtPort != 0 {
		return
	}
	p.exts.dhtPort = port
	s.t.nodes.AddNode(netip.AddrPortFrom(p.addr.Addr(), port))
}
