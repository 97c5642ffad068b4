package engine

import (
	"net/netip"
	"testing"
	"time"

	"btfs/engine/wire"
	"btfs/internal/poll"
	"btfs/internal/swarmtest"
	"btfs/storagewrapper"
)

// TestLibtorrentPex is the acceptance for PEX: two libtorrent
// seeders, L1 (127.0.0.2) and L2 (127.0.0.3), connected to each other;
// btfs is told only of L1, learns L2 from L1's ut_pex message, and
// downloads from both. libtorrent keeps seed-to-seed connections only
// with close_redundant_connections off (swarmtest sets it), and lists a
// peer in PEX only while connected to it. btfs does not listen: L1 would
// otherwise tell L2 about btfs, L2 would dial in first, and btfs's own
// PEX intake would go untested. btfs caps its download rate so that the
// download outlasts L1's first PEX message (about a second after the
// extension handshake) and L2's unchoke.
func TestLibtorrentPex(t *testing.T) { libtorrentPex(t, "127.0.0.2", "127.0.0.3", false) }

// TestLibtorrentPexIPv6 is TestLibtorrentPex over IPv6: both seeders on
// ::1, so that one can only tell of the other in "added6". btfs is told
// of the seeder that dialled (L2 of the pair): over IPv6 the one dialled
// left the other out of its PEX messages (libtorrent 2.0, both on ::1).
func TestLibtorrentPexIPv6(t *testing.T) { libtorrentPex(t, "::1", "::1", true) }

func libtorrentPex(t *testing.T, ip1, ip2 string, swap bool) {
	swarmtest.RequireLibtorrent(t)
	srcDir := t.TempDir()
	torrentPath, mi := swarmtest.MakeTorrent(t, srcDir, swarmtest.TorrentOptions{Size: 4 << 20, PieceLength: 32 << 10, Seed: 71})
	l1, l2 := swarmtest.StartLibtorrentPairOn(t, torrentPath, srcDir, ip1, ip2)
	if swap {
		l1, l2 = l2, l1
	}

	sw, err := storagewrapper.New(mi.Info, storagewrapper.NewMemStore(mi.Info), storagewrapper.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sw.Close() })
	tor := noListenEngine(t, mi, sw, Config{Logger: testLogger(t), Peers: []netip.AddrPort{l1.Addr()}, MaxDownloadRate: 512 << 10})
	from := map[netip.AddrPort]int64{}
	st := statsUntilComplete(t, tor, 90*time.Second, func(st Stats) {
		for _, ps := range st.PerPeer {
			from[ps.Addr] = max(from[ps.Addr], ps.Downloaded)
			if ps.Addr == l2.Addr() && st.Learned["pex"] < 1 {
				t.Fatalf("connected to L2 at %v before learning anything by PEX: %v", l2.Addr(), st.Learned)
			}
		}
	})
	checkData(t, mi, sw, srcDir)
	if st.Learned["pex"] < 1 {
		t.Errorf("learned %v: nothing by PEX", st.Learned)
	}
	// libtorrent's own counts, from its status lines (200 ms apart).
	// libtorrent's counters lag its uploads a little: wait (bounded) for
	// both, and report what they say either way.
	var up1, up2 int64
	poll.Check(5*time.Second, func() bool {
		var err error
		if up1, err = l1.Uploaded(); err != nil {
			t.Fatal(err)
		}
		if up2, err = l2.Uploaded(); err != nil {
			t.Fatal(err)
		}
		return up1 > 0 && up2 > 0
	})
	t.Logf("btfs got %d bytes from L1, %d from L2; L1 says it uploaded %d, L2 %d", from[l1.Addr()], from[l2.Addr()], up1, up2)
	if from[l1.Addr()] == 0 || from[l2.Addr()] == 0 || up1 == 0 || up2 == 0 {
		t.Errorf("want bytes from both seeders: per peer %v, learned %v", from, st.Learned)
	}
}

// TestLibtorrentLearnsFromBtfsPex checks our ut_pex messages against a
// real reader: btfs (A) is connected to a raw peer R on 127.0.0.4 that
// never dials anyone; a libtorrent seeder L (127.0.0.2) knows only A.
// A's PEX message tells L about R, and L connects to R.
func TestLibtorrentLearnsFromBtfsPex(t *testing.T) {
	learnsFromBtfsPex(t, "127.0.0.4", "127.0.0.2", "")
}

// TestLibtorrentLearnsFromBtfsPexIPv6 is TestLibtorrentLearnsFromBtfsPex
// on ::1: R reaches L in our "added6".
func TestLibtorrentLearnsFromBtfsPexIPv6(t *testing.T) {
	learnsFromBtfsPex(t, "::1", "::1", "[::1]:0")
}

func learnsFromBtfsPex(t *testing.T, rIP, lIP, aListen string) {
	swarmtest.RequireLibtorrent(t)
	srcDir := t.TempDir()
	torrentPath, mi := swarmtest.MakeTorrent(t, srcDir, swarmtest.TorrentOptions{Size: 256 << 10, PieceLength: 32 << 10, Seed: 72})
	type dialer struct {
		addr netip.AddrPort
		id   [20]byte
	}
	from := make(chan dialer, 8)
	r := listenRawPeer(t, mi, rIP, true, func(c *rawConn) error {
		from <- dialer{addrOf(c.conn.RemoteAddr()), c.hs.PeerID}
		return c.readUntil(func(wire.Message) error { return nil })
	})
	a := seedEngine(t, mi, srcDir, Config{Logger: testLogger(t), Listen: aListen, Peers: []netip.AddrPort{r.addr}})
	waitStats(t, a, 20*time.Second, "A connected to R", func(st Stats) bool { return st.Peers == 1 })
	l := swarmtest.StartLibtorrentSeeder(t, torrentPath, srcDir, lIP, a.ListenAddr())
	guard := time.After(30 * time.Second)
	for {
		select {
		case d := <-from:
			if d.addr.Addr() == l.Addr().Addr() && d.id != a.PeerID() {
				return // L dialled R: it read R's address in A's PEX message
			}
		case <-guard:
			st, _ := l.Status()
			t.Fatalf("libtorrent never connected to R at %v; its peers: %+v", r.addr, st.Peers)
		}
	}
}
