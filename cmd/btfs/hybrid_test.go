package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"btfs/internal/swarmtest"
	"btfs/metainfo"
)

// hybridSwarm is a BEP 52 hybrid torrent made by python3-libtorrent (its
// v1 files padded with BEP 47 padding files) and a libtorrent seeder of it.
func hybridSwarm(t *testing.T, seed uint64) (swarmtest.LibtorrentTorrent, testSwarm, *swarmtest.LibtorrentSeeder) {
	t.Helper()
	dir := t.TempDir()
	lt := swarmtest.MakeLibtorrentTorrent(t, dir, swarmtest.TorrentOptions{Name: "hybrid", Files: swarmtest.MultiFile, PieceLength: 64 << 10, Seed: seed},
		swarmtest.Hybrid, "http://127.0.0.1:1/webseed/")
	mi, err := metainfo.Load(lt.Path)
	if err != nil {
		t.Fatal(err)
	}
	if !mi.Info.Hybrid || mi.InfoHash.String() != lt.V1 {
		t.Fatalf("libtorrent's hybrid parses as Hybrid=%v, info-hash %s (libtorrent's v1: %s)", mi.Info.Hybrid, mi.InfoHash, lt.V1)
	}
	seeder := swarmtest.StartLibtorrentSeeder(t, lt.Path, dir, "127.0.0.2")
	// The files as the mount shows them: padding left out.
	shown := *mi
	info := *mi.Info
	info.Files = nil
	padding := 0
	for _, f := range mi.Info.Files {
		if f.Padding {
			padding++
		} else {
			info.Files = append(info.Files, f)
		}
	}
	if padding == 0 {
		t.Fatal("libtorrent's hybrid has no padding files: the test would not test them")
	}
	shown.Info = &info
	return lt, testSwarm{dir: dir, torrentPath: lt.Path, mi: &shown}, seeder
}

// TestHybridGet: btfs get downloads a libtorrent hybrid from a libtorrent
// seeder through the v1 info-hash, from the .torrent and from libtorrent's
// own magnet link (btih and btmh); the padding files are not written.
func TestHybridGet(t *testing.T) {
	lt, s, seeder := hybridSwarm(t, 70)
	for _, tc := range []struct{ name, source string }{
		{"torrent", lt.Path},
		{"magnet", lt.Magnet + "&x.pe=" + seeder.Addr().String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(lt.Magnet, "urn:btmh:") || !strings.Contains(lt.Magnet, "urn:btih:") {
				t.Fatalf("libtorrent's magnet %q lacks a v1 or v2 hash", lt.Magnet)
			}
			out := t.TempDir()
			p := startBtfs(t, "get", "-listen", "127.0.0.1:0", "-no-trackers", "-peer", seeder.Addr().String(), tc.source, out)
			if err := p.wait(t, 2*time.Minute); err != nil {
				t.Fatalf("btfs get: %v\n%s", err, p.out.String())
			}
			for _, f := range s.mi.Info.Files {
				got, err := os.ReadFile(filepath.Join(append([]string{out, s.mi.Info.Name}, f.Path...)...))
				if err != nil || !bytes.Equal(got, s.source(t, f)) {
					t.Fatalf("%s: %d bytes, %v: not the source", filepath.Join(f.Path...), len(got), err)
				}
			}
			if _, err := os.Stat(filepath.Join(out, s.mi.Info.Name, ".pad")); !os.IsNotExist(err) {
				t.Errorf("padding written: %v", err)
			}
		})
	}
}

// TestHybridMount mounts a libtorrent hybrid seeded by libtorrent and reads
// every file through the mount; the mount lists no padding file.
func TestHybridMount(t *testing.T) {
	swarmtest.Require(t, "fusermount3")
	_, s, seeder := hybridSwarm(t, 71)
	mp := mountpoint(t)
	p := startBtfs(t, append(mountArgs(t, "-no-trackers", "-peer", seeder.Addr().String()), s.torrentPath, mp)...)
	waitMounted(t, p, mp)
	checkAllFiles(t, s, mp)
}

// TestHybridInfo: btfs info names the version and the web seeds.
func TestHybridInfo(t *testing.T) {
	swarmtest.RequireLibtorrent(t)
	for _, tc := range []struct {
		version swarmtest.TorrentVersion
		code    int
		want    []string
	}{
		{swarmtest.V1Only, 0, []string{"version:      v1\n", "web seed:     http://127.0.0.1:1/ws/\n"}},
		{swarmtest.Hybrid, 0, []string{"version:      hybrid v1+v2\n", "web seed:     http://127.0.0.1:1/ws/\n"}},
		{swarmtest.V2Only, 1, []string{"BitTorrent v2-only torrents are not supported yet"}},
	} {
		t.Run(string(tc.version), func(t *testing.T) {
			lt := swarmtest.MakeLibtorrentTorrent(t, t.TempDir(), swarmtest.TorrentOptions{Size: 100 << 10, PieceLength: 16 << 10}, tc.version, "http://127.0.0.1:1/ws/")
			var so, se bytes.Buffer
			if code := run([]string{"info", lt.Path}, &so, &se); code != tc.code {
				t.Fatalf("exit %d, want %d: %s%s", code, tc.code, so.String(), se.String())
			}
			for _, want := range tc.want {
				if !strings.Contains(so.String()+se.String(), want) {
					t.Errorf("output lacks %q:\n%s%s", want, so.String(), se.String())
				}
			}
		})
	}
}

// TestV2OnlyRefused: a v2-only torrent and a btmh-only magnet link are
// refused by mount and get with the v2-only message, and nothing is mounted.
func TestV2OnlyRefused(t *testing.T) {
	lt := swarmtest.MakeLibtorrentTorrent(t, t.TempDir(), swarmtest.TorrentOptions{Size: 100 << 10, PieceLength: 16 << 10}, swarmtest.V2Only)
	if strings.Contains(lt.Magnet, "btih") || lt.V1 != "" {
		t.Fatalf("libtorrent's v2-only torrent has a v1 hash: %+v", lt)
	}
	for name, source := range map[string]string{"torrent": lt.Path, "magnet": lt.Magnet} {
		for _, cmd := range []string{"mount", "get"} {
			t.Run(cmd+"/"+name, func(t *testing.T) {
				target := t.TempDir()
				args := []string{cmd, "-listen", "127.0.0.1:0", "-no-trackers"}
				if cmd == "mount" {
					args = append(args, "-cache-dir", t.TempDir())
				}
				var so, se bytes.Buffer
				code := run(append(args, source, target), &so, &se)
				if code == 0 || !strings.Contains(se.String(), "BitTorrent v2-only torrents are not supported yet") {
					t.Errorf("exit %d, stderr %q: want a failure with the v2-only message", code, se.String())
				}
				if isMounted(target) {
					unmountAll(t, target)
					t.Error("mounted")
				}
			})
		}
	}
}
