package main

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
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
	for _, f := range mi.Info.Files {
		got, err := os.ReadFile(filepath.Join(append([]string{out, mi.Info.Name}, f.Path...)...))
		if err != nil || !bytes.Equal(got, s.source(t, f)) {
			t.Fatalf("%s: %d bytes, %v: not the source", filepath.Join(f.Path...), len(got), err)
		}
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
	for _, f := range mi.Info.Files {
		got, err := os.ReadFile(filepath.Join(append([]string{out, mi.Info.Name}, f.Path...)...))
		if err != nil || !bytes.Equal(got, s.source(t, f)) {
			t.Fatalf("%s: %d bytes, %v: not the source", filepath.Join(f.Path...), len(got), err)
		}
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
	var addr netip.AddrPort
	re := regexp.MustCompile(`msg="uTP listening" addr=(\S+)`)
	poll.UntilNil(t, time.Minute, "btfs seed to listen on uTP", func() error {
		m := re.FindStringSubmatch(p.out.String())
		if m == nil {
			return fmt.Errorf("not yet:\n%s", p.out.String())
		}
		var err error
		addr, err = netip.ParseAddrPort(m[1])
		return err
	})
	out := t.TempDir()
	leecher := swarmtest.StartLibtorrent(t, torrentPath, out, "127.0.0.3", swarmtest.LibtorrentOptions{Settings: swarmtest.LibtorrentUTPOnly, Leech: true}, addr)
	poll.UntilNil(t, 2*time.Minute, "the uTP-only leecher to finish", func() error {
		st, err := leecher.Status()
		if err != nil {
			return err
		}
		if !st.Seeding {
			return fmt.Errorf("has %d of %d bytes; peers %+v", st.Done, mi.Info.TotalLength, st.Peers)
		}
		return nil
	})
	s := testSwarm{dir: dir, torrentPath: torrentPath, mi: mi}
	for _, f := range mi.Info.Files {
		got, err := os.ReadFile(filepath.Join(append([]string{out, mi.Info.Name}, f.Path...)...))
		if err != nil || !bytes.Equal(got, s.source(t, f)) {
			t.Fatalf("%s: %d bytes, %v: not the source", filepath.Join(f.Path...), len(got), err)
		}
	}
}
