package main

import (
	"bytes"
	"regexp"
	"testing"
	"time"

	"btfs/internal/poll"
	"btfs/internal/swarmtest"
)

// TestGetFromUTPOnlySeeder: libtorrent with TCP disabled both ways is the
// only seeder; the btfs binary (uTP on by default) downloads everything.
func TestGetFromUTPOnlySeeder(t *testing.T) {
	dir := t.TempDir()
	torrentPath, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Files: swarmtest.MultiFile, PieceLength: 64 << 10, Seed: 129})
	seeder := swarmtest.StartLibtorrent(t, torrentPath, dir, "127.0.0.2", swarmtest.LibtorrentOptions{Settings: swarmtest.LibtorrentUTPOnly})
	out := t.TempDir()
	p := startBtfs(t, "get", "-listen", "127.0.0.1:0", "-no-trackers", "-peer", seeder.Addr().String(), torrentPath, out)
	if err := p.wait(t, 2*time.Minute); err != nil {
		t.Fatalf("btfs get: %v\n%s", err, p.out.String())
	}
	s := testSwarm{dir: dir, torrentPath: torrentPath, mi: mi}
	if err := s.downloadDiffers(t, out); err != nil {
		t.Fatal(err)
	}
}

// TestGetMagnetFromUTPOnlySeeder: the metadata of a magnet link comes
// over uTP too (the fetch dials through the same transport), then the data.
func TestGetMagnetFromUTPOnlySeeder(t *testing.T) {
	dir := t.TempDir()
	torrentPath, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Files: swarmtest.MultiFile, PieceLength: 64 << 10, Seed: 132})
	seeder := swarmtest.StartLibtorrent(t, torrentPath, dir, "127.0.0.2", swarmtest.LibtorrentOptions{Settings: swarmtest.LibtorrentUTPOnly})
	out := t.TempDir()
	p := startBtfs(t, "get", "-listen", "127.0.0.1:0", "-no-trackers", magnetOf(mi, nil, seeder.Addr()), out)
	if err := p.wait(t, 2*time.Minute); err != nil {
		t.Fatalf("btfs get: %v\n%s", err, p.out.String())
	}
	s := testSwarm{dir: dir, torrentPath: torrentPath, mi: mi}
	if err := s.downloadDiffers(t, out); err != nil {
		t.Fatal(err)
	}
}

// TestGetWithoutUTP: -utp=false never speaks uTP, so a uTP-only seeder
// is out of reach (and the flag is what turns it off).
func TestGetWithoutUTP(t *testing.T) {
	dir := t.TempDir()
	torrentPath, _ := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{PieceLength: 64 << 10, Seed: 131})
	seeder := swarmtest.StartLibtorrent(t, torrentPath, dir, "127.0.0.2", swarmtest.LibtorrentOptions{Settings: swarmtest.LibtorrentUTPOnly})
	out := t.TempDir()
	p := startBtfs(t, "get", "-utp=false", "-listen", "127.0.0.1:0", "-no-trackers", "-peer", seeder.Addr().String(), "-log-level", "debug", torrentPath, out)
	poll.Until(t, time.Minute, "a failed TCP dial of the uTP-only seeder", func() bool {
		return regexp.MustCompile(`msg="dial failed" .*addr=` + regexp.QuoteMeta(seeder.Addr().String()) + ` `).MatchString(p.out.String())
	})
	if bytes.Contains([]byte(p.out.String()), []byte("uTP listening")) {
		t.Fatalf("-utp=false opened a uTP socket:\n%s", p.out.String())
	}
	if st, _ := seeder.Status(); st.Uploaded != 0 {
		t.Fatalf("the uTP-only seeder uploaded %d bytes to a btfs without uTP", st.Uploaded)
	}
}

// TestSeedToUTPOnlyLeecher: `btfs seed` serves a libtorrent leecher that
// speaks only uTP, which finds it on the listen port's number in UDP.
func TestSeedToUTPOnlyLeecher(t *testing.T) {
	dir := t.TempDir()
	torrentPath, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Files: swarmtest.MultiFile, PieceLength: 64 << 10, Seed: 130})
	p := startBtfs(t, "seed", "-listen", "127.0.0.1:0", "-no-trackers", torrentPath, dir)
	addr := listenAddr(t, p, regexp.MustCompile(`msg="uTP listening" addr=(\S+)`), "btfs seed to listen on uTP")
	out := t.TempDir()
	leecher := swarmtest.StartLibtorrent(t, torrentPath, out, "127.0.0.3", swarmtest.LibtorrentOptions{Settings: swarmtest.LibtorrentUTPOnly, Leech: true}, addr)
	waitSeeding(t, leecher, mi.Info.TotalLength, "the uTP-only leecher to finish")
	s := testSwarm{dir: dir, torrentPath: torrentPath, mi: mi}
	if err := s.downloadDiffers(t, out); err != nil {
		t.Fatal(err)
	}
}
