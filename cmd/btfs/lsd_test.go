package main

import (
	"strings"
	"testing"
	"time"

	"btfs/internal/netnstest"
	"btfs/internal/poll"
	"btfs/internal/swarmtest"
)

// TestLSDMountFindsSeeder: two hosts on a LAN of their own (network
// namespaces joined by a veth, multicast routed through it), no tracker,
// no DHT, no -peer: a btfs seed on one and a btfs mount on the other find
// each other by local service discovery (BEP 14), and every file reads
// back correctly through the mount.
func TestLSDMountFindsSeeder(t *testing.T) {
	swarmtest.Require(t, "fusermount3", "nsenter")
	a, b := netnstest.Pair(t)
	dir := t.TempDir()
	torrentPath, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Files: swarmtest.MultiFile, PieceLength: 64 << 10, Seed: 14})
	s := testSwarm{dir: dir, torrentPath: torrentPath, mi: mi}

	seedArgs := noPublicDHT([]string{"seed", lsdTestLAN, "-no-trackers", "-listen", a.Addr.String() + ":6881", "-log-level", "debug", torrentPath, dir})
	seeder := startProc(t, a.Command(btfsBin, seedArgs...), seedArgs)
	poll.Until(t, 30*time.Second, "the seeder to join LSD", func() bool {
		return strings.Contains(seeder.out.String(), "local service discovery started")
	})

	mp := mountpoint(t)
	mountArgs := noPublicDHT([]string{"mount", lsdTestLAN, "-no-trackers", "-listen", b.Addr.String() + ":0", "-cache-dir", t.TempDir(),
		"-log-level", "debug", "-read-timeout", "60s", torrentPath, mp})
	m := startProc(t, b.Command(btfsBin, mountArgs...), mountArgs)
	waitMounted(t, m, mp)
	checkAllFiles(t, s, mp)
	if !strings.Contains(m.out.String()+seeder.out.String(), "source=lsd") {
		t.Errorf("neither side logged a peer learned by LSD")
	}
}
