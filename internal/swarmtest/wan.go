package swarmtest

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"testing"

	"btfs/internal/swarmtest/shaper"
)

// ShapedSwarm is a swarm whose seeders sit behind a wide-area network of
// their own: each on its own 127/8 address, with the RTT, jitter and rate
// cap its profile gives it (package shaper says what is modelled and what
// is not). Every client of the test, whatever its implementation, sees them
// through the shaper; everything else on loopback is unshaped.
type ShapedSwarm struct {
	// Shaper is the running proxy: Stats, SetDown, SetStalled, RunEvents.
	Shaper *shaper.Shaper
	// Profile is what it was started with.
	Profile shaper.Profile
	// Seeders are the seeders' BitTorrent addresses, in profile order.
	Seeders []netip.AddrPort
}

// RequireShaper skips t unless the shaper can run: nft installed, root, a
// private network namespace with only lo (BTFS_REQUIRE_PEERS=1 fails
// instead). The shaper redirects the whole namespace's traffic to its
// peers, so it refuses a namespace that is not the test's own.
func RequireShaper(t testing.TB) {
	t.Helper()
	Require(t, "nft")
	err := shaper.CheckPrivateNetns()
	if err == nil && os.Geteuid() != 0 {
		err = fmt.Errorf("shaper: not root")
	}
	if err == nil {
		return
	}
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("swarmtest: %v and %s=1 (run the tests as root under unshare -n)", err, RequireEnv)
	}
	t.Skipf("swarmtest: %v", err)
}

// StartShapedSwarm starts the shaper for prof, then every seeder of prof
// (aria2c or python3-libtorrent, on its own address) seeding the torrent
// at torrentPath from dataDir, and, when prof has a churning seeder, its
// comings and goings until the test ends. The torrent's tracker must
// already accept it (aria2c waits minutes after a refusal). Everything
// stops in t.Cleanup: the seeders, the churn, then the shaper and its
// nftables table.
func StartShapedSwarm(t testing.TB, prof shaper.Profile, torrentPath, dataDir string) *ShapedSwarm {
	t.Helper()
	RequireShaper(t)
	s, err := shaper.Start(context.Background(), shaper.Config{Peers: prof.Links()})
	if err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs last: after the seeders have stopped.
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("swarmtest: shaper: %v", err)
		}
	})
	sw := &ShapedSwarm{Shaper: s, Profile: prof}
	for _, sd := range prof.Seeders {
		switch sd.Kind {
		case "libtorrent":
			sw.Seeders = append(sw.Seeders, StartLibtorrentSeeder(t, torrentPath, dataDir, sd.Addr.String()).Addr())
		case "aria2c":
			sw.Seeders = append(sw.Seeders, StartAria2Seeder(t, torrentPath, dataDir, sd.Addr.String()).Addr())
		default:
			t.Fatalf("swarmtest: seeder kind %q", sd.Kind)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := s.RunChurn(ctx, prof); err != nil {
			t.Errorf("swarmtest: churn: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	return sw
}
