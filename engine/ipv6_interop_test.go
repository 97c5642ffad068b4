package engine

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"btfs/engine/utp"
	"btfs/internal/poll"
	"btfs/internal/swarmtest"
)

// These tests run the swarm over IPv6 loopback (::1) with libtorrent, and
// a btfs listening dual-stack ("[::]:0", what "-listen :6881" binds) that
// IPv4 and IPv6 peers reach alike.

// ip6Transports are the two ways to reach a libtorrent: TCP (its default
// here) and uTP with TCP off on its side.
var ip6Transports = []struct {
	name     string
	settings map[string]any
	network  string
}{
	{"tcp", nil, "tcp"},
	{"utp", swarmtest.LibtorrentUTPOnly, "utp"},
}

// TestIPv6LibtorrentSeedsBtfs: a libtorrent seeder listening only on ::1
// is dialled at [::1]:port, over TCP and over a dual-stack uTP socket
// (":0", as "-listen :6881" opens it); the same socket dials an IPv4
// uTP-only seeder too.
func TestIPv6LibtorrentSeedsBtfs(t *testing.T) {
	for i, tc := range []struct {
		name, ip string
		settings map[string]any
		network  string
	}{
		{"tcp", "::1", nil, "tcp"},
		{"utp", "::1", swarmtest.LibtorrentUTPOnly, "utp"},
		{"utp to ipv4", "127.0.0.2", swarmtest.LibtorrentUTPOnly, "utp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srcDir := t.TempDir()
			torrentPath, mi := swarmtest.MakeTorrent(t, srcDir, swarmtest.TorrentOptions{Files: swarmtest.MultiFile, PieceLength: 64 << 10, Seed: uint64(60 + i)})
			seeder := swarmtest.StartLibtorrent(t, torrentPath, srcDir, tc.ip, swarmtest.LibtorrentOptions{Settings: tc.settings})
			sock := utpSocket(t, "") // ":0": dual-stack
			dst := t.TempDir()
			tor, _ := fileStoreEngine(t, mi, dst, false, Config{Logger: testLogger(t), UTP: sock, Listen: "[::]:0", Peers: []netip.AddrPort{seeder.Addr()}})
			waitComplete(t, tor, 90*time.Second)
			sameFiles(t, mi, srcDir, dst)
			st, err := tor.Stats(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(st.PerPeer) != 1 || st.PerPeer[0].Addr != seeder.Addr() || st.PerPeer[0].Network != tc.network || st.PerPeer[0].Downloaded == 0 {
				t.Fatalf("want one %s connection to %v that delivered; peers: %+v", tc.network, seeder.Addr(), st.PerPeer)
			}
		})
	}
}

// TestIPv6Aria2SeedsBtfs: an aria2c seeder listening on ::1 (a second
// implementation's IPv6 socket) is dialled at [::1]:port.
func TestIPv6Aria2SeedsBtfs(t *testing.T) {
	srcDir := t.TempDir()
	torrentPath, mi := swarmtest.MakeTorrent(t, srcDir, swarmtest.TorrentOptions{Files: swarmtest.MultiFile, PieceLength: 64 << 10, Seed: 64})
	seeder := swarmtest.StartAria2Seeder(t, torrentPath, srcDir, "::1")
	dst := t.TempDir()
	tor, _ := fileStoreEngine(t, mi, dst, false, Config{Logger: testLogger(t), Listen: "[::1]:0", Peers: []netip.AddrPort{seeder.Addr()}})
	waitComplete(t, tor, 90*time.Second)
	sameFiles(t, mi, srcDir, dst)
	st, err := tor.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.PerPeer) != 1 || st.PerPeer[0].Addr != seeder.Addr() || st.PerPeer[0].Downloaded == 0 {
		t.Fatalf("want one connection to %v that delivered; peers: %+v", seeder.Addr(), st.PerPeer)
	}
}

// TestDualStackBtfsSeeds: btfs seeds from one dual-stack listener (TCP
// and uTP on "[::]:port"); a libtorrent leecher on ::1 and one on
// 127.0.0.2 both download everything, and btfs sees the IPv4 one as
// 127.0.0.2, not ::ffff:127.0.0.2 (one peer, one address for bans, caps
// and the known-peer table).
func TestDualStackBtfsSeeds(t *testing.T) {
	for i, tc := range ip6Transports {
		t.Run(tc.name, func(t *testing.T) {
			srcDir := t.TempDir()
			torrentPath, mi := swarmtest.MakeTorrent(t, srcDir, swarmtest.TorrentOptions{Files: swarmtest.MultiFile, PieceLength: 64 << 10, Seed: uint64(62 + i)})
			// The TCP listener first, then uTP on its port's number in
			// UDP, as cmd/btfs does with -listen.
			ln, err := net.Listen("tcp", "[::]:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			sock, err := utp.Listen(ln.Addr().String(), utp.Config{Logger: testLogger(t).With("part", "utp")})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { sock.Close() })
			seeder := seedEngine(t, mi, srcDir, Config{Logger: testLogger(t), Listener: ln, UTP: sock})
			port := uint16(ln.Addr().(*net.TCPAddr).Port)

			leechers := map[netip.Addr]*swarmtest.LibtorrentSeeder{}
			for _, ip := range []string{"::1", "127.0.0.2"} {
				a := netip.MustParseAddr(ip)
				to := netip.AddrPortFrom(netip.IPv6Loopback(), port)
				if a.Is4() {
					to = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
				}
				leechers[a] = swarmtest.StartLibtorrent(t, torrentPath, t.TempDir(), ip, swarmtest.LibtorrentOptions{Settings: tc.settings, Leech: true}, to)
			}
			for ip, l := range leechers {
				poll.UntilNil(t, 90*time.Second, "the leecher on "+ip.String()+" to download everything", func() error {
					st, err := l.Status()
					if err != nil {
						return err
					}
					if !st.Seeding {
						return fmt.Errorf("has %d of %d bytes; peers %+v", st.Done, mi.Info.TotalLength, st.Peers)
					}
					return nil
				})
			}
			st, err := seeder.Stats(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for ip := range leechers {
				var up int64
				for _, p := range st.PerPeer {
					if p.Addr.Addr() == ip && p.Network == tc.network {
						up += p.Uploaded
					}
				}
				if up == 0 {
					t.Errorf("nothing uploaded over %s to a peer at %v; peers %+v", tc.network, ip, st.PerPeer)
				}
			}
		})
	}
}

// TestAddrOfUnmaps: a connection's remote address as the engine keys it.
func TestAddrOfUnmaps(t *testing.T) {
	for _, tc := range []struct {
		in   net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("::ffff:127.0.0.2"), Port: 1}, "127.0.0.2:1"},
		{&net.TCPAddr{IP: net.ParseIP("127.0.0.2").To4(), Port: 2}, "127.0.0.2:2"},
		{&net.TCPAddr{IP: net.ParseIP("::1"), Port: 3}, "[::1]:3"},
		{&net.UDPAddr{IP: net.ParseIP("::ffff:10.0.0.1"), Port: 4}, "10.0.0.1:4"},
		{&net.UDPAddr{IP: net.ParseIP("2001:db8::1"), Port: 5}, "[2001:db8::1]:5"},
	} {
		if got := addrOf(tc.in).String(); got != tc.want {
			t.Errorf("addrOf(%v) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
