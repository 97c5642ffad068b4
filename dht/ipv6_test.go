package dht

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

// TestPrivateDHTOverIPv6 is BEP 32 as the library does it: nodes on ::1
// link up (nodes6), one announces, another finds it at [::1]:port.
func TestPrivateDHTOverIPv6(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nodes := privateDHTOn(t, 4, "[::1]:0")
	for _, n := range nodes {
		if !n.Addr().Addr().Is6() {
			t.Fatalf("node at %v, want ::1", n.Addr())
		}
	}
	ih := ihOf("ipv6")
	if _, err := findPeers(ctx, nodes[1], ih, 51413); err != nil {
		t.Fatal(err)
	}
	waitFound(t, ctx, nodes[3], ih, netip.AddrPortFrom(netip.IPv6Loopback(), 51413))
	if s := nodes[1].Stats(); s.AnnouncesSent == 0 {
		t.Errorf("announcer Stats = %+v: no announce sent", s)
	}
}

// TestDualStackNodeJoinsFamilies: a node on [::] (what "-listen :6881"
// gives the DHT through the shared UDP socket) serves IPv4-only and
// IPv6-only nodes: an IPv6 node finds what an IPv4 one announced, and
// what another IPv6 node announced. (An IPv4-only node is not given IPv6
// peers: it could not reach them.)
func TestDualStackNodeJoinsFamilies(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dual := startNode(t, Config{Addr: "[::]:0"})
	port := dual.Addr().Port()
	v4 := startNode(t, Config{Addr: "127.0.0.1:0", Bootstrap: []string{netip.AddrPortFrom(localhost, port).String()}})
	v6 := func() *Node {
		return startNode(t, Config{Addr: "[::1]:0", Bootstrap: []string{netip.AddrPortFrom(netip.IPv6Loopback(), port).String()}})
	}
	seeker, v6b := v6(), v6()
	for _, tc := range []struct {
		name     string
		from     *Node
		fromIP   netip.Addr
		announce int
	}{
		{"from v4", v4, localhost, 7001},
		{"from v6", v6b, netip.IPv6Loopback(), 7002},
	} {
		ih := ihOf("dual " + tc.name)
		if _, err := findPeers(ctx, tc.from, ih, tc.announce); err != nil {
			t.Fatalf("%s: announce: %v", tc.name, err)
		}
		waitFound(t, ctx, seeker, ih, netip.AddrPortFrom(tc.fromIP, uint16(tc.announce)))
	}
}
