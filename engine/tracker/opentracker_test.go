package tracker_test

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"btfs/engine/tracker"
	"btfs/internal/swarmtest"
	"btfs/metainfo"
)

// These tests announce to a real opentracker (swarmtest starts it on
// 127.0.0.1); they are skipped when it is not installed, and fail instead
// under BTFS_REQUIRE_PEERS=1.

func peerID(s string) (id [20]byte) {
	copy(id[:], s)
	return id
}

func TestOpentrackerExchange(t *testing.T) {
	var ih metainfo.Hash
	copy(ih[:], "tracker-exchange-001")
	tr := swarmtest.StartTracker(t, ih)
	c := tracker.NewClient(tracker.Options{UDP: tracker.UDPOptions{RetransmitBase: 500 * time.Millisecond}})
	defer c.Close()
	for i, tc := range []struct{ name, url string }{{"http", tr.HTTPURL()}, {"udp", tr.UDPURL()}} {
		url := tc.url
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), swarmtest.Guard)
			defer cancel()
			a := tracker.AnnounceRequest{InfoHash: ih, PeerID: peerID("-BT0001-peer-a"), Port: 50001 + 10*i, Left: 100, Key: 1}
			b := tracker.AnnounceRequest{InfoHash: ih, PeerID: peerID("-BT0001-peer-b"), Port: 50002 + 10*i, Key: 2}
			addrA := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(a.Port))
			addrB := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(b.Port))
			announce := func(r tracker.AnnounceRequest, ev tracker.Event) *tracker.AnnounceResponse {
				t.Helper()
				r.Event = ev
				resp, err := c.Announce(ctx, url, r)
				if err != nil {
					t.Fatalf("announce %q as %s: %v", ev.String(), r.PeerID[:14], err)
				}
				return resp
			}
			announce(a, tracker.EventStarted)
			rb := announce(b, tracker.EventStarted)
			if !slices.Contains(rb.Peers, addrA) {
				t.Fatalf("b sees %v, want a (%v) among them", rb.Peers, addrA)
			}
			if rb.Interval <= 0 {
				t.Fatalf("no interval in %+v", rb)
			}
			ra := announce(a, tracker.EventNone)
			if !slices.Contains(ra.Peers, addrB) {
				t.Fatalf("a sees %v, want b (%v) among them", ra.Peers, addrB)
			}
			if ra.Seeders != 1 || ra.Leechers != 1 {
				t.Fatalf("a sees %d seeders, %d leechers; want 1 and 1 (b seeds, a leeches)", ra.Seeders, ra.Leechers)
			}
			announce(b, tracker.EventStopped)
			if ra := announce(a, tracker.EventNone); slices.Contains(ra.Peers, addrB) {
				t.Fatalf("b still listed after stopped: %v", ra.Peers)
			}
			announce(a, tracker.EventStopped)
		})
	}
}

func TestOpentrackerRefusesUnknownTorrent(t *testing.T) {
	tr := swarmtest.StartTracker(t)
	c := tracker.NewClient(tracker.Options{UDP: tracker.UDPOptions{RetransmitBase: 500 * time.Millisecond}})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), swarmtest.Guard)
	defer cancel()
	_, err := c.Announce(ctx, tr.HTTPURL(), tracker.AnnounceRequest{Port: 1})
	if fe, ok := err.(*tracker.FailureError); !ok || fe.Reason == "" {
		t.Fatalf("err = %#v, want the tracker's failure reason", err)
	}
}

func TestOpentrackerAnnouncer(t *testing.T) {
	var ih metainfo.Hash
	copy(ih[:], "tracker-announcer-01")
	tr := swarmtest.StartTracker(t, ih)
	c := tracker.NewClient(tracker.Options{UDP: tracker.UDPOptions{RetransmitBase: 500 * time.Millisecond}})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), swarmtest.Guard)
	defer cancel()

	// Another peer is already there.
	other := tracker.AnnounceRequest{InfoHash: ih, PeerID: peerID("-BT0001-other"), Port: 50100}
	if _, err := c.Announce(ctx, tr.UDPURL(), other); err != nil {
		t.Fatal(err)
	}
	defer c.Announce(context.Background(), tr.UDPURL(), tracker.AnnounceRequest{InfoHash: ih, PeerID: other.PeerID, Port: 50100, Event: tracker.EventStopped})

	// The first tier holds a tracker that is not there: the Announcer
	// falls through to the live ones.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String() + "/announce"
	l.Close()
	tiers := tracker.NewTiers("", [][]string{{dead}, {tr.HTTPURL(), tr.UDPURL()}}, nil)
	peers := make(chan []netip.AddrPort, 10)
	a, err := tracker.NewAnnouncer(tracker.AnnouncerConfig{
		Client: c, Tiers: tiers, InfoHash: ih, PeerID: peerID("-BT0001-announcer"), Port: 50101,
		Stats:   func() tracker.Stats { return tracker.Stats{Left: 10} },
		OnPeers: func(p []netip.AddrPort) { peers <- p },
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); a.Run(runCtx) }()
	defer func() { stop(); <-done }()

	select {
	case p := <-peers:
		if !slices.Contains(p, netip.MustParseAddrPort("127.0.0.1:50100")) {
			t.Fatalf("announcer got %v, want the other peer", p)
		}
	case <-ctx.Done():
		t.Fatal("no peers from the Announcer")
	}
	me := netip.MustParseAddrPort("127.0.0.1:50101")
	listed, err := tr.Peers(ctx, ih)
	if err != nil || !slices.Contains(listed, me) {
		t.Fatalf("tracker lists %v (%v), want the announcer's %v", listed, err, me)
	}
	// Stopping the Announcer says "stopped": the tracker forgets it.
	stop()
	<-done
	listed, err = tr.Peers(ctx, ih)
	if err != nil || slices.Contains(listed, me) {
		t.Fatalf("after stop the tracker lists %v (%v), want no %v", listed, err, me)
	}
}
