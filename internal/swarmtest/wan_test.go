package swarmtest

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	pollpkg "btfs/internal/poll"
	"btfs/internal/swarmtest/shaper"
)

// ciProfile is a small shaped swarm for CI: 8 seeders, libtorrent and
// aria2c alternating, 20-90 ms, 0.5-2 MB/s, one very slow (100 KB/s,
// 300 ms), one that leaves for 0.3 s every 0.5 s.
func ciProfile() shaper.Profile {
	p := shaper.Profile{Name: "ci"}
	for i := range 8 {
		kind := "libtorrent"
		if i%2 == 1 {
			kind = "aria2c"
		}
		rtt := time.Duration(20+10*i) * time.Millisecond
		rate := float64(500_000 + 200_000*i)
		if i == 7 {
			rtt, rate = 300*time.Millisecond, 100_000
		}
		p.Seeders = append(p.Seeders, shaper.Seeder{Kind: kind, Addr: netip.AddrFrom4([4]byte{127, 0, 13, byte(10 + i)}),
			Link: shaper.Link{RTT: rtt, Jitter: rtt / 20, RateOut: rate, RateIn: rate}})
	}
	p.Slow = p.Seeders[7].Addr
	p.Churn, p.ChurnEvery, p.ChurnDown = p.Seeders[2].Addr, 500*time.Millisecond, 300*time.Millisecond
	return p
}

// TestShapedSwarm: an aria2c leecher downloads a torrent from a shaped
// swarm of 8 seeders of two implementations; every byte it gets passed
// through the shaper, from more than one seeder, and the churning seeder
// leaves and comes back. It checks behaviour only, never timings.
func TestShapedSwarm(t *testing.T) {
	Require(t, "aria2c", "opentracker")
	RequireLibtorrent(t)
	RequireShaper(t)
	seedDir, leechDir := t.TempDir(), t.TempDir()
	tr := StartTracker(t)
	path, mi := MakeTorrent(t, seedDir, TorrentOptions{Seed: 13, AnnounceList: [][]string{{tr.HTTPURL()}}})
	tr.AddInfoHash(t, mi.InfoHash)
	prof := ciProfile()
	sw := StartShapedSwarm(t, prof, path, seedDir)
	if len(sw.Seeders) != 8 {
		t.Fatalf("%d seeders, want 8", len(sw.Seeders))
	}
	for i, a := range sw.Seeders {
		if a.Addr() != prof.Seeders[i].Addr {
			t.Fatalf("seeder %d on %v, want %v", i, a, prof.Seeders[i].Addr)
		}
	}
	// The churning seeder leaves and comes back.
	pollpkg.Until(t, Guard, "the churning seeder to leave", func() bool { return sw.Shaper.Stats()[prof.Churn].Down })
	pollpkg.Until(t, Guard, "the churning seeder to come back", func() bool { return !sw.Shaper.Stats()[prof.Churn].Down })

	l := StartAria2Leecher(t, path, leechDir, "127.0.0.3")
	ctx, cancel := context.WithTimeout(context.Background(), 2*Guard)
	defer cancel()
	if err := l.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(seedDir, mi.Info.Name))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(leechDir, mi.Info.Name))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the leecher's copy differs")
	}
	var out int64
	senders := 0
	for a, st := range sw.Shaper.Stats() {
		out += st.Out
		if st.Out >= 16<<10 {
			senders++
		}
		t.Logf("%v: %+v", a, st)
	}
	if out < mi.Info.TotalLength {
		t.Fatalf("the seeders sent %d bytes through the shaper, less than the torrent's %d", out, mi.Info.TotalLength)
	}
	if senders < 2 {
		t.Fatalf("%d seeders sent a block or more, want several", senders)
	}
}
