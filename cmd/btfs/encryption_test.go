package main

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"btfs/internal/poll"
	"btfs/internal/swarmtest"
)

// encryptedLibtorrent makes a torrent and starts a libtorrent seeder of
// it on 127.0.0.2 that speaks MSE/PE with RC4 only (pe_forced).
func encryptedLibtorrent(t *testing.T, opts swarmtest.TorrentOptions) (testSwarm, *swarmtest.LibtorrentSeeder) {
	t.Helper()
	swarmtest.RequireLibtorrent(t)
	dir := t.TempDir()
	torrentPath, mi := swarmtest.MakeTorrent(t, dir, opts)
	l := swarmtest.StartLibtorrent(t, torrentPath, dir, "127.0.0.2", swarmtest.LibtorrentOptions{Settings: swarmtest.LibtorrentEncryptionForced})
	return testSwarm{dir: dir, torrentPath: torrentPath, mi: mi}, l
}

// TestGetFromEncryptedLibtorrent: btfs get, with the default policy and
// with -encryption require, downloads everything from a libtorrent that
// accepts encrypted connections only.
func TestGetFromEncryptedLibtorrent(t *testing.T) {
	s, l := encryptedLibtorrent(t, swarmtest.TorrentOptions{Files: swarmtest.MultiFile, PieceLength: 32 << 10, Seed: 81})
	for _, policy := range []string{"prefer", "require"} {
		t.Run(policy, func(t *testing.T) {
			out := t.TempDir()
			p := startBtfs(t, "get", "-listen", "", "-no-trackers", "-peer", l.Addr().String(), "-encryption", policy,
				"-log-level", "debug", s.torrentPath, out)
			if err := p.wait(t, 2*time.Minute); err != nil {
				t.Fatalf("btfs get: %v\n%s", err, p.out.String())
			}
			for _, f := range s.mi.Info.Files {
				got, err := os.ReadFile(filepath.Join(append([]string{out, s.mi.Info.Name}, f.Path...)...))
				if err != nil || !bytes.Equal(got, s.source(t, f)) {
					t.Fatalf("%s: %d bytes, %v: not the source", filepath.Join(f.Path...), len(got), err)
				}
			}
			if !strings.Contains(p.out.String(), "encryption=rc4") {
				t.Errorf("no connection logged as encryption=rc4:\n%s", p.out.String())
			}
		})
	}
}

// TestMountFromEncryptedLibtorrent: a mount with -encryption require reads
// every file correctly from a libtorrent that accepts encrypted
// connections only.
func TestMountFromEncryptedLibtorrent(t *testing.T) {
	swarmtest.Require(t, "fusermount3")
	s, l := encryptedLibtorrent(t, swarmtest.TorrentOptions{Files: swarmtest.MultiFile, PieceLength: 64 << 10, Seed: 82})
	mp := mountpoint(t)
	p := startBtfs(t, mountArgs(t, "-no-trackers", "-peer", l.Addr().String(), "-encryption", "require", s.torrentPath, mp)...)
	waitMounted(t, p, mp)
	checkAllFiles(t, s, mp)
	if up, err := l.Uploaded(); err != nil || up == 0 {
		t.Errorf("libtorrent uploaded %d bytes (%v)", up, err)
	}
}

// TestSeedToEncryptedLibtorrent: a libtorrent leecher that speaks MSE/PE
// only (RC4) downloads everything from btfs seed, which it dials.
func TestSeedToEncryptedLibtorrent(t *testing.T) {
	swarmtest.RequireLibtorrent(t)
	dir := t.TempDir()
	torrentPath, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Files: swarmtest.MultiFile, PieceLength: 32 << 10, Seed: 83})
	port := freeTCPPort(t, "127.0.0.1")
	btfsAddr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	p := startBtfs(t, "seed", "-listen", btfsAddr.String(), "-no-trackers", "-log-level", "debug", torrentPath, dir)
	poll.Until(t, 30*time.Second, "btfs seed listens", func() bool {
		c, err := net.DialTimeout("tcp", btfsAddr.String(), time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	out := t.TempDir()
	l := swarmtest.StartLibtorrent(t, torrentPath, out, "127.0.0.3",
		swarmtest.LibtorrentOptions{Settings: swarmtest.LibtorrentEncryptionForced, Leech: true}, btfsAddr)
	poll.Until(t, 2*time.Minute, "the libtorrent leecher has everything", func() bool {
		st, err := l.Status()
		return err == nil && st.Seeding
	})
	s := testSwarm{dir: dir, torrentPath: torrentPath, mi: mi}
	for _, f := range mi.Info.Files {
		got, err := os.ReadFile(filepath.Join(append([]string{out, mi.Info.Name}, f.Path...)...))
		if err != nil || !bytes.Equal(got, s.source(t, f)) {
			t.Fatalf("%s: %d bytes, %v: not the source", filepath.Join(f.Path...), len(got), err)
		}
	}
	if !strings.Contains(p.out.String(), "encryption=rc4") {
		t.Errorf("btfs logged no encrypted connection:\n%s", p.out.String())
	}
}

// TestRequireLogsPlainPeers: with -encryption require and only a peer that
// speaks no MSE, btfs says so in its log (not silence).
func TestRequireLogsPlainPeers(t *testing.T) {
	swarmtest.RequireLibtorrent(t)
	dir := t.TempDir()
	torrentPath, _ := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Size: 1 << 20, PieceLength: 32 << 10, Seed: 84})
	l := swarmtest.StartLibtorrent(t, torrentPath, dir, "127.0.0.2", swarmtest.LibtorrentOptions{Settings: map[string]any{
		"in_enc_policy": 2, "out_enc_policy": 2, // pe_disabled: plain only
	}})
	p := startBtfs(t, "get", "-listen", "", "-no-trackers", "-peer", l.Addr().String(), "-encryption", "require", torrentPath, t.TempDir())
	poll.Until(t, 30*time.Second, "btfs logs the connection lost to the policy", func() bool {
		return strings.Contains(p.out.String(), "connections lost to the encryption policy")
	})
	if out := p.out.String(); !strings.Contains(out, "peer_without_encryption=1") {
		t.Errorf("the log line does not count the peer:\n%s", out)
	}
}

// freeTCPPort returns a port that was free on ip a moment ago.
func freeTCPPort(t *testing.T, ip string) int {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
