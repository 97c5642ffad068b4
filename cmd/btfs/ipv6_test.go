package main

import (
	"net/netip"
	"regexp"
	"testing"
	"time"

	"btfs/internal/swarmtest"
)

// TestGetFromIPv6Seeder: btfs get downloads from a libtorrent seeder that
// listens only on ::1, given as -peer [::1]:port and as a magnet link's
// x.pe=[::1]:port (metadata and data over IPv6).
func TestGetFromIPv6Seeder(t *testing.T) {
	dir := t.TempDir()
	torrentPath, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Files: swarmtest.MultiFile, PieceLength: 64 << 10, Seed: 160})
	seeder := swarmtest.StartLibtorrentSeeder(t, torrentPath, dir, "::1")
	s := testSwarm{dir: dir, torrentPath: torrentPath, mi: mi}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"peer", []string{"-peer", seeder.Addr().String(), torrentPath}},
		{"magnet", []string{magnetOf(mi, nil, seeder.Addr())}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			args := append(append([]string{"get", "-listen", "[::1]:0", "-no-trackers", "-no-dht"}, tc.args...), out)
			p := startBtfs(t, args...)
			if err := p.wait(t, 2*time.Minute); err != nil {
				t.Fatalf("btfs get: %v\n%s", err, p.out.String())
			}
			if err := s.downloadDiffers(t, out); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestSeedDualStack: `btfs seed -listen :0` binds [::]:port, which a
// libtorrent leecher on ::1 and one on 127.0.0.2 both reach.
func TestSeedDualStack(t *testing.T) {
	dir := t.TempDir()
	torrentPath, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Files: swarmtest.MultiFile, PieceLength: 64 << 10, Seed: 161})
	p := startBtfs(t, "seed", "-listen", ":0", "-no-trackers", "-no-dht", torrentPath, dir)
	ap := listenAddr(t, p, regexp.MustCompile(`msg=listening addr=(\S+)`), "btfs seed to listen")
	if !ap.Addr().IsUnspecified() {
		t.Fatalf("listens on %v, want every address", ap)
	}
	port := ap.Port()
	s := testSwarm{dir: dir, torrentPath: torrentPath, mi: mi}
	for _, tc := range []struct{ ip, dial string }{{"::1", "::1"}, {"127.0.0.2", "127.0.0.1"}} {
		out := t.TempDir()
		leecher := swarmtest.StartLibtorrent(t, torrentPath, out, tc.ip, swarmtest.LibtorrentOptions{Leech: true},
			netip.AddrPortFrom(netip.MustParseAddr(tc.dial), port))
		waitSeeding(t, leecher, mi.Info.TotalLength, "the leecher on "+tc.ip+" to finish")
		if err := s.downloadDiffers(t, out); err != nil {
			t.Fatalf("via %s: %v", tc.ip, err)
		}
	}
}
