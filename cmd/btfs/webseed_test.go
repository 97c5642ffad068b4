package main

import (
	"bytes"
	"io"
	"os"
	"testing"
	"time"

	"btfs/internal/swarmtest"
)

// TestMountWebSeedOnly: a torrent whose only source is an nginx webseed
// (no tracker, no peer, no DHT) streams through the mount: the first
// bytes, then the whole file read sequentially, all correct.
func TestMountWebSeedOnly(t *testing.T) {
	swarmtest.Require(t, "fusermount3", "nginx")
	dir := t.TempDir()
	ng := swarmtest.StartNginx(t, dir, "127.0.0.1")
	torrentPath, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Name: "movie.bin", Size: 24<<20 + 11, PieceLength: 256 << 10, Seed: 19, WebSeeds: []string{ng.URL()}})
	s := testSwarm{dir: dir, torrentPath: torrentPath, mi: mi}
	mp := mountpoint(t)
	p := startBtfs(t, mountArgs(t, "-no-trackers", "-read-timeout", "60s", torrentPath, mp)...)
	waitMounted(t, p, mp)
	f := mi.Info.Files[0]
	src := s.source(t, f)
	fh, err := os.Open(s.mounted(mp, f))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	start := time.Now()
	first := make([]byte, 1)
	if _, err := io.ReadFull(fh, first); err != nil {
		t.Fatal(err)
	}
	t.Logf("first byte after %v", time.Since(start))
	rest, err := io.ReadAll(fh)
	if err != nil {
		t.Fatal(err)
	}
	if got := append(first, rest...); !bytes.Equal(got, src) {
		t.Fatalf("read %d bytes, not the source's %d", len(got), len(src))
	}
	t.Logf("%d bytes in %v", len(src), time.Since(start))
}
