package dht

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"btfs/internal/poll"
)

// ihOf makes a distinct info-hash per name.
func ihOf(name string) (ih [20]byte) {
	copy(ih[:], name)
	ih[19] = 0xa5
	return ih
}

var localhost = netip.MustParseAddr("127.0.0.1")

func TestPrivateDHTFindsAnnounced(t *testing.T) {
	tests := []struct {
		name  string
		nodes int
		// announcers are indexes of nodes that announce, with ports.
		announcers []int
		ports      []int
	}{
		{name: "3 nodes", nodes: 3, announcers: []int{1}, ports: []int{51413}},
		{name: "5 nodes", nodes: 5, announcers: []int{2}, ports: []int{6000}},
		// The library's own peer store keys peers by IP: the second
		// announce from 127.0.0.1 would replace the first.
		{name: "two peers on one IP", nodes: 3, announcers: []int{1, 2}, ports: []int{7001, 7002}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			nodes := privateDHT(t, tc.nodes)
			ih := ihOf(tc.name)
			var want []netip.AddrPort
			for i, a := range tc.announcers {
				if _, err := findPeers(ctx, nodes[a], ih, tc.ports[i]); err != nil {
					t.Fatalf("node %d announce: %v", a, err)
				}
				want = append(want, netip.AddrPortFrom(localhost, uint16(tc.ports[i])))
			}
			seeker := nodes[len(nodes)-1]
			got := waitFound(t, ctx, seeker, ih, want...)
			for _, a := range got {
				if a.Port() == 0 || a.Addr().IsUnspecified() {
					t.Errorf("FindPeers returned invalid address %v", a)
				}
			}
			// An info-hash nobody announced finds nobody.
			if other, err := findPeers(ctx, seeker, ihOf("nobody "+tc.name), 0); err != nil || len(other) != 0 {
				t.Errorf("FindPeers(unannounced) = %v, %v; want none, nil", other, err)
			}
			var announced int64
			for _, a := range tc.announcers {
				announced += nodes[a].Stats().AnnouncesSent
			}
			if announced == 0 {
				t.Errorf("Stats().AnnouncesSent = 0 after announcing")
			}
			if s := nodes[0].Stats(); s.QueriesReceived == 0 || s.Peers == 0 {
				t.Errorf("bootstrap node Stats = %+v; want queries received and peers stored", s)
			}
		})
	}
}

// A node with no bootstrap and no state knows nobody and sends nothing:
// the library's public-router fallback must be off.
func TestNoBootstrapContactsNobody(t *testing.T) {
	// Only names that need no DNS server: tests contact nothing off 127/8.
	for _, boot := range [][]string{nil, {}, {"127.0.0.1:0", "garbage", "localhost:x", "[::1:6881"}} {
		n := startNode(t, Config{Bootstrap: boot})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		got, err := findPeers(ctx, n, ihOf("alone"), 6881)
		cancel()
		// "no initial nodes" is the library's word for an empty starting
		// list; its public-router fallback would fail differently here
		// (no DNS) or find nodes.
		if err == nil || !strings.Contains(err.Error(), "no initial nodes") {
			t.Errorf("bootstrap %q: FindPeers = %v, %v; want the library's no-initial-nodes error", boot, got, err)
		}
		// The table maintainer's bootstrap may have run too: neither may send.
		if s := n.Stats(); s.QueriesSent != 0 {
			t.Errorf("bootstrap %q: Stats().QueriesSent = %d, want 0", boot, s.QueriesSent)
		}
	}
}

// Bootstrap names are resolved at Start ("localhost" from /etc/hosts; its
// IPv6 address is skipped by a node on 127.0.0.1).
func TestBootstrapByName(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nodes := privateDHT(t, 3)
	named := startNode(t, Config{Bootstrap: []string{"localhost:" + strconv.Itoa(int(nodes[0].Addr().Port()))}})
	ih := ihOf("by name")
	if _, err := findPeers(ctx, nodes[1], ih, 8080); err != nil {
		t.Fatal(err)
	}
	waitFound(t, ctx, named, ih, netip.AddrPortFrom(localhost, 8080))
}

func TestAddNodeLinks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nodes := privateDHT(t, 3)
	lone := startNode(t, Config{})
	lone.AddNode(nodes[0].Addr())
	lone.AddNode(netip.AddrPort{})                               // ignored
	lone.AddNode(netip.AddrPortFrom(netip.IPv4Unspecified(), 1)) // ignored
	poll.Until(t, 10*time.Second, "the added node to enter the table", func() bool { return lone.Stats().Nodes > 0 })
	ih := ihOf("addnode")
	if _, err := findPeers(ctx, nodes[1], ih, 4242); err != nil {
		t.Fatal(err)
	}
	waitFound(t, ctx, lone, ih, netip.AddrPortFrom(localhost, 4242))
}

// blackHole is a UDP socket on 127.0.0.1 that never answers.
func blackHole(t *testing.T) netip.AddrPort {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return netip.MustParseAddrPort(c.LocalAddr().String())
}

func TestFindPeersStops(t *testing.T) {
	tests := []struct {
		name string
		// stop ends the lookup: cancel its context or close the node.
		stop func(cancel context.CancelFunc, n *Node)
		want error
	}{
		{"context canceled", func(cancel context.CancelFunc, _ *Node) { cancel() }, context.Canceled},
		{"node closed", func(_ context.CancelFunc, n *Node) { n.Close() }, ErrClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The library waits 2 s for a reply that never comes; the
			// lookup must not wait for it.
			n := startNode(t, Config{Bootstrap: []string{blackHole(t).String()}})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			errc := make(chan error, 1)
			go func() {
				_, err := findPeers(ctx, n, ihOf("stop"), 1234)
				errc <- err
			}()
			poll.Until(t, 10*time.Second, "the lookup's first query", func() bool { return n.Stats().QueriesSent > 0 })
			tc.stop(cancel, n)
			select {
			case err := <-errc:
				if !errors.Is(err, tc.want) {
					t.Fatalf("FindPeers = %v, want %v", err, tc.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("FindPeers still runs 10 s after %s", tc.name)
			}
			if err := n.FindPeers(context.Background(), ihOf("x"), 0, func([]netip.AddrPort) {}); tc.want == ErrClosed && !errors.Is(err, ErrClosed) {
				t.Errorf("FindPeers after Close = %v, want ErrClosed", err)
			}
		})
	}
}

func TestFindPeersBadPort(t *testing.T) {
	n := startNode(t, Config{})
	for _, port := range []int{-1, 65536} {
		if err := n.FindPeers(context.Background(), ihOf("p"), port, func([]netip.AddrPort) {}); err == nil {
			t.Errorf("FindPeers(port %d) = nil, want an error", port)
		}
	}
}

// Packets that are not KRPC are dropped before the library sees them (it
// would print them to stderr), and the node keeps working.
func TestGarbagePacketsDropped(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nodes := privateDHT(t, 3)
	c, err := net.Dial("udp", nodes[0].Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	garbage := []string{"x", "d1:ai1e", "d1:t2:aa1:y1:q1:q4:ping1:ad2:id3:abcee", "de", "d1:ad2:id20:" + string(make([]byte, 25))}
	for _, g := range garbage {
		if _, err := c.Write([]byte(g)); err != nil {
			t.Fatal(err)
		}
	}
	poll.Until(t, 10*time.Second, "a garbage packet to be counted", func() bool { return nodes[0].Stats().GarbagePackets > 0 })
	ih := ihOf("after garbage")
	if _, err := findPeers(ctx, nodes[1], ih, 999); err != nil {
		t.Fatal(err)
	}
	waitFound(t, ctx, nodes[2], ih, netip.AddrPortFrom(localhost, 999))
}

func TestConfigConn(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := startNode(t, Config{Conn: pc, Addr: "ignored:1"})
	if got, want := n.Addr().String(), pc.LocalAddr().String(); got != want {
		t.Errorf("Addr() = %s, want %s", got, want)
	}
	if _, err := Start(context.Background(), Config{}); err == nil {
		t.Errorf("Start without Addr or Conn succeeded")
	}
}

// Close leaves no goroutine of ours or of the library behind, even right
// after lookups and announces.
func TestCloseStopsEverything(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var nodes []*Node
	first, err := Start(ctx, Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	nodes = append(nodes, first)
	for range 3 {
		n, err := Start(ctx, Config{Addr: "127.0.0.1:0", Bootstrap: []string{first.Addr().String()}})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	ih := ihOf("close")
	if _, err := findPeers(ctx, nodes[1], ih, 5555); err != nil {
		t.Fatal(err)
	}
	nodes[3].AddNode(blackHole(t))
	go findPeers(ctx, nodes[2], ih, 0) // may be cut short by Close
	for _, n := range nodes {
		start := time.Now()
		if err := n.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		t.Logf("Close took %v", time.Since(start))
		if err := n.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	}
	waitLibraryStopped(t)
}
