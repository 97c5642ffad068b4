package dht

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"btfs/internal/swarmtest"
)

// aria2c seeds a torrent without trackers and announces it into our
// private DHT through one node; another node finds aria2c's BitTorrent
// address. This checks our KRPC against another implementation in both
// directions: aria2c queries and announces to us, we query it.
func TestAria2Interop(t *testing.T) {
	swarmtest.Require(t, "aria2c")
	ctx, cancel := context.WithTimeout(context.Background(), 2*swarmtest.Guard)
	defer cancel()
	nodes := privateDHT(t, 3)
	dir := t.TempDir()
	torrent, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Size: 100 << 10, PieceLength: 16 << 10})
	start := time.Now()
	seeder := swarmtest.StartAria2SeederDHT(t, torrent, dir, "127.0.0.2", nodes[0].Addr())
	t.Logf("aria2c started in %v (BitTorrent %v, DHT %v)", time.Since(start), seeder.Addr(), seeder.DHTAddr())
	start = time.Now()
	got := waitFound(t, ctx, nodes[2], mi.InfoHash, seeder.Addr())
	t.Logf("aria2c's address found through the DHT %v after it started; FindPeers returned %v", time.Since(start), got)

	// A node that knows only aria2c's node joins through it (aria2c
	// answers our queries and tells us about the others) and announces.
	lone := startNode(t, Config{Addr: "127.0.0.3:0", Bootstrap: []string{seeder.DHTAddr().String()}})
	before := lone.Stats().AnnouncesSent
	if _, err := findPeers(ctx, lone, mi.InfoHash, 4747); err != nil {
		t.Fatal(err)
	}
	if after := lone.Stats().AnnouncesSent; after == before {
		t.Errorf("no announce_peer accepted by aria2c or the nodes it told us about")
	}
	waitFound(t, ctx, nodes[1], mi.InfoHash, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.3"), 4747))
}
