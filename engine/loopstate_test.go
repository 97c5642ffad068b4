package engine

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"btfs/bitfield"
	"btfs/engine/wire"
	"btfs/internal/swarmtest"
	"btfs/metainfo"
	"btfs/picker"
	"btfs/storagewrapper"
)

// These tests drive the loop's state directly, from the test goroutine,
// on a Torrent that was never started: the loop is the state's only owner,
// and here the test plays the loop. Peers are real peer values on one end
// of a pipe; what they would send is left in their outbox.

// idleTorrent returns a Torrent over an empty in-memory store whose loop
// does not run.
func idleTorrent(t *testing.T, mi *metainfo.MetaInfo) *Torrent {
	t.Helper()
	sw, err := storagewrapper.New(mi.Info, storagewrapper.NewMemStore(mi.Info), storagewrapper.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sw.Close() })
	tor, err := New(mi, sw, Config{Trackers: [][]string{}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	tor.ctx, tor.cancel = context.WithCancel(context.Background())
	t.Cleanup(tor.cancel)
	return tor
}

// idlePeer adds an unchoked have-all peer we are interested in.
func idlePeer(t *testing.T, tor *Torrent, port uint16) *peer {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	p := newPeer(tor, a, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port), wire.Handshake{PeerID: wire.NewPeerID()})
	tor.s.peers[p] = struct{}{}
	p.seed = true
	tor.s.pk.AddSeed()
	p.amInterested, p.peerChoking = true, false
	return p
}

func TestSnubbing(t *testing.T) {
	_, mi := swarmtest.MakeTorrent(t, t.TempDir(), swarmtest.TorrentOptions{Size: 4 << 20, PieceLength: 64 << 10})
	now := time.Now()
	age := func(p *peer, d time.Duration) {
		for b := range p.outstanding {
			p.outstanding[b] = now.Add(-d)
		}
	}
	t.Run("silent peer keeps one request", func(t *testing.T) {
		tor := idleTorrent(t, mi)
		s := tor.s
		p := idlePeer(t, tor, 1001)
		s.fill(p)
		asked := len(p.outstanding)
		if asked < 2 {
			t.Fatalf("a new peer got %d requests", asked)
		}
		age(p, snubTimeout+time.Second)
		s.checkSnub(p, now)
		if !p.snubbed || len(p.outstanding) != 1 || p.released != asked {
			t.Fatalf("after %v of silence: snubbed %v, %d requests outstanding, %d withdrawn; want true, 1, %d",
				snubTimeout, p.snubbed, len(p.outstanding), p.released, asked)
		}
		// Its blocks went back: only the piece of its one request is in
		// flight now.
		if inFlight := tor.sw.InFlight(); len(inFlight) != 1 {
			t.Fatalf("pieces in flight after the snub: %v; want only the one asked again", inFlight)
		}
		// Still silent: its one request is withdrawn again, and it gets one.
		age(p, snubTimeout+time.Second)
		s.checkSnub(p, now)
		if len(p.outstanding) != 1 || p.released != asked+1 {
			t.Fatalf("second round: %d outstanding, %d withdrawn", len(p.outstanding), p.released)
		}
		// A block revives it.
		for b := range p.outstanding {
			if !p.asked.take(b) {
				t.Fatalf("outstanding block %v not in the asked set", b)
			}
			s.onBlock(p, b, storagewrapper.Result{}, nil)
		}
		if p.snubbed || len(p.outstanding) < 2 {
			t.Fatalf("after a block: snubbed %v, %d outstanding", p.snubbed, len(p.outstanding))
		}
	})
	t.Run("live peer that dropped one request", func(t *testing.T) {
		tor := idleTorrent(t, mi)
		s := tor.s
		p := idlePeer(t, tor, 1003)
		s.fill(p)
		asked := len(p.outstanding)
		age(p, time.Second)
		p.lastBlock = now.Add(-time.Second)
		var dropped storagewrapper.Block
		for b := range p.outstanding {
			dropped = b
			break
		}
		p.outstanding[dropped] = now.Add(-snubTimeout - time.Second)
		s.checkSnub(p, now)
		if p.snubbed {
			t.Fatal("a peer that sent a block a second ago was snubbed for one old request")
		}
		if p.released != 1 || len(p.outstanding) != asked {
			t.Fatalf("withdrew %d requests, %d outstanding; want 1 and %d again", p.released, len(p.outstanding), asked)
		}
		if at, ok := p.outstanding[dropped]; ok && now.Sub(at) > time.Second {
			t.Fatal("the dropped request is still outstanding with its old time")
		}
	})
}

func TestReleasedPieceBookkeeping(t *testing.T) {
	_, mi := swarmtest.MakeTorrent(t, t.TempDir(), swarmtest.TorrentOptions{Size: 64 * 32 << 10, PieceLength: 32 << 10})
	const piece = 5
	for _, tc := range []struct {
		name      string
		handedOut int  // blocks of piece handed out to the peer
		wantNext  bool // the released piece comes first from the picker
	}{
		{"last block back: the piece is idle again", 1, false},
		{"other block still out: the piece stays started", 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tor := idleTorrent(t, mi)
			s := tor.s
			// Past random-first, with the piece more common than the rest:
			// rarest-first would never choose it before an idle piece.
			for i := range 4 {
				s.pk.Verified(60 + i)
			}
			bf := bitfield.New(mi.Info.NumPieces())
			bf.Set(piece)
			if err := s.pk.AddPeer(bf); err != nil {
				t.Fatal(err)
			}
			p := idlePeer(t, tor, 2001)
			var first storagewrapper.Block
			for k := range tc.handedOut {
				b, st := tor.sw.NewRequest(piece)
				if st != storagewrapper.RequestGranted {
					t.Fatalf("NewRequest: %v", st)
				}
				s.pk.Started(piece)
				s.request(p, b)
				if k == 0 {
					first = b
				}
			}
			s.releaseRequest(p, first, true)
			for range 20 {
				next, ok := s.pk.Next(nil)
				if !ok {
					t.Fatal("nothing to pick")
				}
				if (next == piece) != tc.wantNext {
					t.Fatalf("picker chose piece %d after the release; want the released piece first: %v", next, tc.wantNext)
				}
			}
		})
	}
}

// TestInterestLinger: in FetchReads mode, interest in a peer that has
// pieces we lack outlives the last want by interestLinger (a reader
// between two reads keeps its peers unchoked), then follows the wants
// again at the next tick; a peer we were not interested in is not made
// interesting by the linger.
func TestInterestLinger(t *testing.T) {
	_, mi := swarmtest.MakeTorrent(t, t.TempDir(), swarmtest.TorrentOptions{Size: 1 << 20, PieceLength: 64 << 10})
	tor := idleTorrent(t, mi)
	s := tor.s
	s.pk.SetMode(picker.FetchReads)
	p := idlePeer(t, tor, 1005)
	q := idlePeer(t, tor, 1006)
	q.amInterested = false
	now := time.Now()

	s.wants, s.wantedAt = nil, now.Add(-interestLinger/2)
	s.updateInterest(p)
	s.updateInterest(q)
	if !p.amInterested || p.uninterested != 0 {
		t.Fatalf("%v after the last want: interested %v, not-interested sent %d; want still interested", interestLinger/2, p.amInterested, p.uninterested)
	}
	if q.amInterested {
		t.Fatal("the linger made a peer we were not interested in interesting")
	}
	s.wantedAt = now.Add(-interestLinger - time.Second)
	s.tick(now)
	if p.amInterested || p.uninterested != 1 {
		t.Fatalf("after the linger: interested %v, not-interested sent %d; want not interested, once", p.amInterested, p.uninterested)
	}
	msgs, _, _ := p.out.take(nil)
	if n := len(msgs); n == 0 || msgs[n-1].ID != wire.NotInterested {
		t.Fatalf("messages queued for the peer: %v; want not-interested last", msgs)
	}
}
