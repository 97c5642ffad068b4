package dht

import (
	"container/list"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	peer_store "github.com/anacrolix/dht/v2/peer-store"
)

// Peer store limits. The library's own store (peer_store.InMemory) keys
// peers by IP alone, so two peers behind one address (every peer of a
// 127.0.0.1 test swarm, or a NAT) overwrite each other, and it never
// forgets or caps anything: any host that asks for a token can grow it
// forever. These bounds keep the store a few MB at most.
const (
	// peerTTL is how long an announce is remembered. BEP 5 clients
	// re-announce every 15-30 minutes; libtorrent forgets after 30.
	peerTTL = 30 * time.Minute
	// maxPeersPerHash caps one swarm; the oldest announce makes room.
	maxPeersPerHash = 200
	// maxPeersTotal caps the whole store; the oldest announce of any
	// swarm makes room.
	maxPeersTotal = 20000
	// maxPeersReply is how many peers one get_peers reply carries: 50
	// IPv6 peers (18 bytes each) still fit one 1500-byte packet.
	maxPeersReply = 50
)

// peerStore is a bounded peer_store.Interface: peers announced to this
// node, per info-hash, keyed by address and port, expiring after ttl.
// The library calls it from its own goroutines, so it has one mutex.
type peerStore struct {
	// ttl, perHash, total and reply are the limits (the constants
	// above, smaller in tests).
	ttl     time.Duration
	perHash int
	total   int
	reply   int
	// now is the clock (replaced in tests).
	now func() time.Time

	// mu guards everything below.
	mu sync.Mutex
	// swarms holds each info-hash's peers.
	swarms map[[20]byte]map[netip.AddrPort]*list.Element
	// byAge holds every *storedPeer, least recently announced first:
	// expiry and the total cap pop from the front.
	byAge *list.List
}

// storedPeer is one element of peerStore.byAge.
type storedPeer struct {
	// ih is the swarm and addr the peer.
	ih   [20]byte
	addr netip.AddrPort
	// seen is when it last announced.
	seen time.Time
}

var _ peer_store.Interface = (*peerStore)(nil)

func newPeerStore() *peerStore {
	return &peerStore{
		ttl: peerTTL, perHash: maxPeersPerHash, total: maxPeersTotal, reply: maxPeersReply,
		now:    time.Now,
		swarms: map[[20]byte]map[netip.AddrPort]*list.Element{},
		byAge:  list.New(),
	}
}

// AddPeer records an announce_peer. The library calls it even when the
// announce carried no usable port (port 0); such peers are dropped.
func (s *peerStore) AddPeer(ih peer_store.InfoHash, na krpc.NodeAddr) {
	addr, ok := peerAddr(na)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.expireLocked(now)
	swarm := s.swarms[ih]
	if e, ok := swarm[addr]; ok {
		e.Value.(*storedPeer).seen = now
		s.byAge.MoveToBack(e)
		return
	}
	if swarm == nil {
		swarm = map[netip.AddrPort]*list.Element{}
		s.swarms[ih] = swarm
	}
	if len(swarm) >= s.perHash {
		var oldest *list.Element
		for _, e := range swarm {
			if oldest == nil || e.Value.(*storedPeer).seen.Before(oldest.Value.(*storedPeer).seen) {
				oldest = e
			}
		}
		s.removeLocked(oldest)
	}
	for s.byAge.Len() >= s.total {
		s.removeLocked(s.byAge.Front())
	}
	// The swarm map may have been deleted by the removals above when it
	// held the only peers; look it up again.
	if s.swarms[ih] == nil {
		s.swarms[ih] = swarm
	}
	swarm[addr] = s.byAge.PushBack(&storedPeer{ih: ih, addr: addr, seen: now})
}

// GetPeers answers a get_peers query: at most reply peers of the swarm,
// a random choice when it holds more, so that every peer gets handed out.
func (s *peerStore) GetPeers(ih peer_store.InfoHash) []krpc.NodeAddr {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(s.now())
	swarm := s.swarms[ih]
	out := make([]krpc.NodeAddr, 0, min(len(swarm), s.reply))
	for addr := range swarm {
		out = append(out, nodeAddr(addr))
	}
	if len(out) > s.reply {
		rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
		out = out[:s.reply]
	}
	return out
}

// counts returns how many swarms and peers the store holds.
func (s *peerStore) counts() (swarms, peers int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(s.now())
	return len(s.swarms), s.byAge.Len()
}

// expireLocked drops the peers not heard from for ttl.
func (s *peerStore) expireLocked(now time.Time) {
	for e := s.byAge.Front(); e != nil && now.Sub(e.Value.(*storedPeer).seen) >= s.ttl; e = s.byAge.Front() {
		s.removeLocked(e)
	}
}

// removeLocked drops one peer, and its swarm when it was the last.
func (s *peerStore) removeLocked(e *list.Element) {
	p := s.byAge.Remove(e).(*storedPeer)
	swarm := s.swarms[p.ih]
	delete(swarm, p.addr)
	if len(swarm) == 0 {
		delete(s.swarms, p.ih)
	}
}

// peerAddr converts a library address to a peer address, rejecting the
// ones nobody can connect to: port 0, an unspecified or multicast IP.
func peerAddr(na krpc.NodeAddr) (netip.AddrPort, bool) {
	ip, ok := netip.AddrFromSlice(na.IP)
	if !ok || na.Port <= 0 || na.Port > 65535 {
		return netip.AddrPort{}, false
	}
	ip = ip.Unmap()
	if ip.IsUnspecified() || ip.IsMulticast() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip, uint16(na.Port)), true
}

// nodeAddr converts back, with a 4-byte IP for IPv4 (the compact form).
func nodeAddr(a netip.AddrPort) krpc.NodeAddr {
	return krpc.NodeAddr{IP: a.Addr().AsSlice(), Port: int(a.Port())}
}
