package dht

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
)

// fakeClock is a settable clock for the peer store.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func na(s string) krpc.NodeAddr {
	return nodeAddr(netip.MustParseAddrPort(s))
}

func TestPeerStoreBounds(t *testing.T) {
	ihA, ihB := [20]byte{'a'}, [20]byte{'b'}
	type step struct {
		// advance moves the clock before the add.
		advance time.Duration
		ih      [20]byte
		addr    krpc.NodeAddr
	}
	tests := []struct {
		name                  string
		perHash, total, reply int
		steps                 []step
		wantA, wantB          []string // the peers GetPeers returns, in any order
		wantSwarms, wantPeers int
	}{
		{
			name: "same IP, different ports are different peers",
			steps: []step{
				{ih: ihA, addr: na("127.0.0.1:1")}, {ih: ihA, addr: na("127.0.0.1:2")},
			},
			wantA: []string{"127.0.0.1:1", "127.0.0.1:2"}, wantSwarms: 1, wantPeers: 2,
		},
		{
			name: "re-announce refreshes, no duplicate",
			steps: []step{
				{ih: ihA, addr: na("10.0.0.1:1")}, {ih: ihA, addr: na("10.0.0.1:1")},
				{ih: ihA, addr: krpc.NodeAddr{IP: net.ParseIP("10.0.0.1"), Port: 1}}, // 16-byte form of the same IPv4
			},
			wantA: []string{"10.0.0.1:1"}, wantSwarms: 1, wantPeers: 1,
		},
		{
			name: "unusable addresses are dropped",
			steps: []step{
				{ih: ihA, addr: na("10.0.0.1:0")}, {ih: ihA, addr: na("0.0.0.0:5")}, {ih: ihA, addr: na("[::]:5")},
				{ih: ihA, addr: na("224.0.0.1:5")}, {ih: ihA, addr: krpc.NodeAddr{IP: net.IP{1, 2, 3}, Port: 5}},
				{ih: ihA, addr: krpc.NodeAddr{IP: net.IPv4(1, 2, 3, 4), Port: 70000}},
			},
		},
		{
			name: "expiry after the TTL",
			steps: []step{
				{ih: ihA, addr: na("10.0.0.1:1")},
				{advance: 20 * time.Minute, ih: ihB, addr: na("10.0.0.2:1")},
				{advance: 11 * time.Minute, ih: ihB, addr: na("10.0.0.3:1")},
			},
			wantB: []string{"10.0.0.2:1", "10.0.0.3:1"}, wantSwarms: 1, wantPeers: 2,
		},
		{
			name:    "per-hash cap evicts the oldest of that swarm",
			perHash: 2,
			steps: []step{
				{ih: ihA, addr: na("10.0.0.1:1")}, {advance: time.Second, ih: ihA, addr: na("10.0.0.2:1")},
				{advance: time.Second, ih: ihB, addr: na("10.0.0.9:1")},
				{advance: time.Second, ih: ihA, addr: na("10.0.0.1:1")}, // refresh: .2 is now the oldest
				{advance: time.Second, ih: ihA, addr: na("10.0.0.3:1")},
			},
			wantA: []string{"10.0.0.1:1", "10.0.0.3:1"}, wantB: []string{"10.0.0.9:1"}, wantSwarms: 2, wantPeers: 3,
		},
		{
			name:  "total cap evicts the oldest of any swarm",
			total: 2,
			steps: []step{
				{ih: ihA, addr: na("10.0.0.1:1")}, {advance: time.Second, ih: ihB, addr: na("10.0.0.2:1")},
				{advance: time.Second, ih: ihB, addr: na("10.0.0.3:1")},
			},
			wantB: []string{"10.0.0.2:1", "10.0.0.3:1"}, wantSwarms: 1, wantPeers: 2,
		},
		{
			name:    "per-hash cap of one",
			perHash: 1,
			steps:   []step{{ih: ihA, addr: na("10.0.0.1:1")}, {ih: ihA, addr: na("10.0.0.2:1")}},
			wantA:   []string{"10.0.0.2:1"}, wantSwarms: 1, wantPeers: 1,
		},
		{
			name:  "IPv6",
			steps: []step{{ih: ihA, addr: na("[2001:db8::1]:6881")}},
			wantA: []string{"[2001:db8::1]:6881"}, wantSwarms: 1, wantPeers: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newPeerStore()
			clock := &fakeClock{t: time.Unix(1e9, 0)}
			s.now = clock.now
			if tc.perHash > 0 {
				s.perHash = tc.perHash
			}
			if tc.total > 0 {
				s.total = tc.total
			}
			for _, st := range tc.steps {
				clock.t = clock.t.Add(st.advance)
				s.AddPeer(st.ih, st.addr)
			}
			for _, c := range []struct {
				ih   [20]byte
				want []string
			}{{ihA, tc.wantA}, {ihB, tc.wantB}} {
				if got := addrStrings(s.GetPeers(c.ih)); !sameSet(got, c.want) {
					t.Errorf("GetPeers(%c) = %v, want %v", c.ih[0], got, c.want)
				}
			}
			if swarms, peers := s.counts(); swarms != tc.wantSwarms || peers != tc.wantPeers {
				t.Errorf("counts = %d swarms, %d peers; want %d, %d", swarms, peers, tc.wantSwarms, tc.wantPeers)
			}
		})
	}
}

// A full store stays at its caps under a flood, and a reply carries at
// most maxPeersReply peers, a different choice each time.
func TestPeerStoreFlood(t *testing.T) {
	s := newPeerStore()
	for i := range 3 * maxPeersTotal {
		ih := [20]byte{byte(i % 251), byte(i / 251)}
		s.AddPeer(ih, krpc.NodeAddr{IP: net.IPv4(10, byte(i>>16), byte(i>>8), byte(i)).To4(), Port: 1 + i%60000})
	}
	if _, peers := s.counts(); peers != maxPeersTotal {
		t.Errorf("after a flood: %d peers, want the cap %d", peers, maxPeersTotal)
	}
	one := [20]byte{'x'}
	for i := range 2 * maxPeersPerHash {
		s.AddPeer(one, krpc.NodeAddr{IP: net.IPv4(11, 0, byte(i>>8), byte(i)).To4(), Port: 80})
	}
	if got := len(s.swarms[one]); got != maxPeersPerHash {
		t.Errorf("one swarm holds %d peers, want the cap %d", got, maxPeersPerHash)
	}
	seen := map[string]bool{}
	for range 10 {
		reply := s.GetPeers(one)
		if len(reply) != maxPeersReply {
			t.Fatalf("GetPeers returned %d peers, want %d", len(reply), maxPeersReply)
		}
		for _, p := range reply {
			seen[p.String()] = true
		}
	}
	if len(seen) <= maxPeersReply {
		t.Errorf("10 replies handed out only %d distinct peers", len(seen))
	}
}

func addrStrings(ps []krpc.NodeAddr) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, x := range a {
		m[x]++
	}
	for _, x := range b {
		m[x]--
	}
	for _, v := range m {
		if v != 0 {
			return false
		}
	}
	return true
}
