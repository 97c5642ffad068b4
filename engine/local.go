package engine

import (
	"context"
	"net/netip"
	"slices"
	"time"
)

// LocalFinder finds peers on the local network: BEP 14 local service
// discovery (package lsd's *Service), shared by every torrent of the
// process. Declared here, at its consumer, like PeerFinder; cmd/btfs wires
// one in through Config.Local.
type LocalFinder interface {
	// Join announces that we serve ih on TCP port (0: listen only) and
	// calls found with peers heard announcing ih, from any goroutine,
	// until ctx ends; found must not block. need asks for an early
	// announce when the torrent is short of peers; the finder keeps its
	// own minimum gap, so calling it every tick is fine.
	Join(ctx context.Context, ih [20]byte, port int, found func([]netip.AddrPort)) (need func())
}

// joinLocal joins the local finder for the torrent's life. Never for a
// private torrent (BEP 27: its peers come from its trackers only).
func (s *state) joinLocal() {
	f := s.t.cfg.Local
	if f == nil || s.t.private {
		return
	}
	port := 0
	if ap := s.t.ListenAddr(); ap.IsValid() {
		port = int(ap.Port())
	}
	t := s.t
	s.localNeed = f.Join(t.ctx, [20]byte(t.mi.InfoHash), port, func(addrs []netip.AddrPort) {
		if len(addrs) == 0 {
			return
		}
		// Never block the finder's receiver (it serves every torrent):
		// a loop too busy to take the event now misses one announce,
		// and the peer announces again.
		select {
		case t.events <- peersEvent{addrs: slices.Clone(addrs), source: "lsd"}:
		case <-t.done:
		default:
		}
	})
}

// maybeNeedLocal asks the local finder for an early announce while the
// download is short of peers.
func (s *state) maybeNeedLocal(now time.Time) {
	if s.localNeed != nil && s.shortOfPeers(now) {
		s.localNeed()
	}
}
