package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"btfs/internal/swarmtest"
	"btfs/metainfo"
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

// TestMountWebSeedMP4MoovAtEnd: an MP4 whose index is at its end, served
// only by an nginx webseed, probes and seeks through the mount.
func TestMountWebSeedMP4MoovAtEnd(t *testing.T) {
	swarmtest.Require(t, "ffmpeg", "ffprobe", "fusermount3", "nginx")
	data := t.TempDir()
	video := filepath.Join(data, "f.mp4")
	// 20 s of 720p without +faststart: the moov atom is at the end.
	out, err := exec.Command("ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
		"-f", "lavfi", "-i", "sine", "-t", "20", "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "2M", "-c:a", "aac", video).CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	ng := swarmtest.StartNginx(t, data, "127.0.0.1")
	tdata, err := metainfo.Build(t.Context(), video, metainfo.BuildOptions{PieceLength: 256 << 10, WebSeeds: []string{ng.URL()}})
	if err != nil {
		t.Fatal(err)
	}
	torrentPath := filepath.Join(t.TempDir(), "x.torrent")
	if err := os.WriteFile(torrentPath, tdata, 0o644); err != nil {
		t.Fatal(err)
	}
	mp := mountpoint(t)
	p := startBtfs(t, mountArgs(t, "-no-trackers", "-read-timeout", "60s", torrentPath, mp)...)
	waitMounted(t, p, mp)
	path := filepath.Join(mp, "f.mp4")
	if out, err := exec.Command("ffprobe", "-v", "error", "-show_format", path).CombinedOutput(); err != nil {
		t.Fatalf("ffprobe on a fresh mount: %v\n%s", err, out)
	}
	if out, err := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-ss", "10", "-i", path, "-frames:v", "1", "-f", "null", "-").CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg seek to the middle: %v\n%s", err, out)
	}
}
