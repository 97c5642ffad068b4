package magnet

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"btfs/internal/swarmtest"
)

// TestFetchFromAria2 resolves a magnet link against a real aria2c that
// seeds the torrent from its .torrent file, finding it through an
// opentracker or given its address.
func TestFetchFromAria2(t *testing.T) {
	swarmtest.Require(t, "aria2c", "opentracker")
	for _, tc := range []struct {
		name    string
		opts    swarmtest.TorrentOptions
		tracker bool
	}{
		{"one piece via the tracker", singlePiece, true},
		{"three pieces via the tracker", multiPiece, true},
		{"three pieces given the seeder's address", multiPiece, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tr *swarmtest.Tracker
			if tc.tracker {
				tr = swarmtest.StartTracker(t)
				tc.opts.AnnounceList = [][]string{{tr.HTTPURL()}}
			}
			path, dir, mi := makeTorrent(t, tc.opts)
			if tr != nil {
				tr.AddInfoHash(t, mi.InfoHash)
			}
			seeder := swarmtest.StartAria2Seeder(t, path, dir, "127.0.0.2")
			cfg := Config{InfoHash: mi.InfoHash, Logger: testLogger(t)}
			if tr != nil {
				tr.WaitForPeer(t, mi.InfoHash, seeder.Addr())
				cfg.Trackers = [][]string{{tr.HTTPURL()}}
			} else {
				cfg.Peers = []netip.AddrPort{seeder.Addr()}
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			res, err := Fetch(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			checkResult(t, res, mi)
			if len(res.Peers) == 0 || res.Peers[0] != seeder.Addr() {
				t.Errorf("Result.Peers = %v, want the seeder %v first", res.Peers, seeder.Addr())
			}
			if !slices.Contains(res.Peers, seeder.Addr()) {
				t.Errorf("Result.Peers %v lacks the seeder", res.Peers)
			}
		})
	}
}
