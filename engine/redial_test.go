package engine

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"btfs/internal/poll"
	"btfs/internal/swarmtest"
	"btfs/picker"
	"btfs/storagewrapper"
)

// freeAddr returns a loopback address with a port nobody listens on (it
// was bound a moment ago and released).
func freeAddr(t *testing.T, ip string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	a := addrOf(ln.Addr())
	ln.Close()
	return a
}

// dialFailures reads how many dials of a failed in a row, from the loop.
func dialFailures(t *testing.T, tor *Torrent, a netip.AddrPort) int {
	t.Helper()
	n := 0
	if err := tor.do(context.Background(), func() {
		if k := tor.s.known[a]; k != nil {
			n = k.failures
		}
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// readWithin reads 1000 bytes of piece i, failing the test if that takes
// longer than timeout.
func readWithin(t *testing.T, sw *storagewrapper.Wrapper, tor *Torrent, piece int, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	buf := make([]byte, 1000)
	if _, err := sw.ReadAt(ctx, buf, int64(piece)*int64(64<<10)); err != nil {
		st, _ := tor.Stats(context.Background())
		t.Fatalf("read of piece %d: %v; stats %+v", piece, err, st)
	}
}

// TestPeerNotListeningYet: a -peer that refuses the first dial (it starts
// a moment after us) is dialled again soon, not after a fixed 15 s. Once
// the refused dials are seen and the seeder listens, a read succeeds
// within 5 s.
func TestPeerNotListeningYet(t *testing.T) {
	dir := t.TempDir()
	_, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Size: 1 << 20, PieceLength: 64 << 10, Seed: 81})
	log := testLogger(t)
	addr := freeAddr(t, "127.0.0.5")
	leecher, sw := leechEngine(t, mi, Config{Logger: log, Mode: picker.FetchReads, Peers: []netip.AddrPort{addr}})
	poll.Until(t, 10*time.Second, "a refused dial of the -peer", func() bool { return dialFailures(t, leecher, addr) >= 1 })
	seedEngine(t, mi, dir, Config{Logger: log, Listen: addr.String()})
	readWithin(t, sw, leecher, 3, 5*time.Second)
}

// TestSeederComesBack: the only seeder goes away, its address is dialled
// and refused, and it comes back on the same address. A reader that waits
// meanwhile must get its piece within 5 s of the seeder's return: with no
// peer connected, a waiting read makes the known addresses be dialled
// every second, whatever their backoff.
func TestSeederComesBack(t *testing.T) {
	dir := t.TempDir()
	_, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Size: 1 << 20, PieceLength: 64 << 10, Seed: 82})
	log := testLogger(t)
	addr := freeAddr(t, "127.0.0.6")
	seeder := seedEngine(t, mi, dir, Config{Logger: log, Listen: addr.String()})
	leecher, sw := leechEngine(t, mi, Config{Logger: log, Mode: picker.FetchReads, Peers: []netip.AddrPort{addr}})
	readWithin(t, sw, leecher, 0, 30*time.Second)

	seeder.Close()
	// The connection's end sets a 15 s redial wait; make the address fail
	// a few dials so that its backoff grows too.
	waitStats(t, leecher, 10*time.Second, "the seeder's connection gone", func(st Stats) bool { return st.Peers == 0 })
	waitCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // a reader waits from now on: the leecher redials every second
		buf := make([]byte, 1000)
		sw.ReadAt(waitCtx, buf, 5*64<<10)
	}()
	poll.Until(t, 10*time.Second, "two refused redials", func() bool { return dialFailures(t, leecher, addr) >= 2 })
	cancel()

	seedEngine(t, mi, dir, Config{Logger: log, Listen: addr.String()})
	readWithin(t, sw, leecher, 7, 5*time.Second)
}
