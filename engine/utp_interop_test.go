package engine

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"expvar"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"btfs/engine/utp"
	"btfs/engine/wire"
	"btfs/internal/poll"
	"btfs/internal/swarmtest"
)

// These tests talk uTP (BEP 29) with libtorrent's own implementation, the
// one most of a real swarm runs, with TCP disabled on its side.

// utpSocket opens a uTP socket on loopback, closed after the engines
// (cleanups run last-in first-out: open it before starting them).
func utpSocket(t *testing.T, ip string) *utp.Socket {
	t.Helper()
	s, err := utp.Listen(ip+":0", utp.Config{Logger: testLogger(t).With("part", "utp")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func udpAddrPort(a net.Addr) netip.AddrPort {
	ap := a.(*net.UDPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func TestLibtorrentUTPOnlySeederBtfsDownloads(t *testing.T) {
	srcDir := t.TempDir()
	torrentPath, mi := swarmtest.MakeTorrent(t, srcDir, swarmtest.TorrentOptions{Files: swarmtest.MultiFile, PieceLength: 64 << 10, Seed: 29})
	seeder := swarmtest.StartLibtorrent(t, torrentPath, srcDir, "127.0.0.2", swarmtest.LibtorrentOptions{Settings: swarmtest.LibtorrentUTPOnly})
	sock := utpSocket(t, "127.0.0.1")
	dst := t.TempDir()
	tor, _ := fileStoreEngine(t, mi, dst, false, Config{Logger: testLogger(t), UTP: sock, Peers: []netip.AddrPort{seeder.Addr()}})
	waitComplete(t, tor, 90*time.Second)
	sameFiles(t, mi, srcDir, dst)
	st, err := tor.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.PerPeer) == 0 || st.PerPeer[0].Network != "utp" || st.PerPeer[0].Downloaded == 0 {
		t.Fatalf("want a uTP connection that delivered; peers: %+v", st.PerPeer)
	}
	poll.UntilNil(t, 10*time.Second, "libtorrent to report its upload over uTP", func() error {
		ls, err := seeder.Status()
		if err != nil {
			return err
		}
		if ls.Uploaded < mi.Info.TotalLength || len(ls.Peers) == 0 || !ls.Peers[0].UTP {
			return fmt.Errorf("status %+v", ls)
		}
		return nil
	})
}

// TestLibtorrentUTPOnlyLeecherBtfsSeeds: a uTP-only libtorrent downloads
// everything from btfs while a flood of SYNs and garbage datagrams hits
// btfs's uTP port from other addresses: the flood is dropped, the
// download completes.
func TestLibtorrentUTPOnlyLeecherBtfsSeeds(t *testing.T) {
	srcDir := t.TempDir()
	torrentPath, mi := swarmtest.MakeTorrent(t, srcDir, swarmtest.TorrentOptions{Files: swarmtest.MultiFile, PieceLength: 64 << 10, Seed: 30})
	sock := utpSocket(t, "127.0.0.1")
	seeder := seedEngine(t, mi, srcDir, Config{Logger: testLogger(t), UTP: sock})

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Add(1)
	go func() {
		defer wg.Done()
		flood(ctx, t, sock.Addr())
	}()

	dst := t.TempDir()
	leecher := swarmtest.StartLibtorrent(t, torrentPath, dst, "127.0.0.3", swarmtest.LibtorrentOptions{Settings: swarmtest.LibtorrentUTPOnly, Leech: true}, udpAddrPort(sock.Addr()))
	poll.UntilNil(t, 90*time.Second, "the uTP-only libtorrent to download everything", func() error {
		st, err := leecher.Status()
		if err != nil {
			return err
		}
		if !st.Seeding {
			return fmt.Errorf("has %d of %d bytes", st.Done, mi.Info.TotalLength)
		}
		if len(st.Peers) == 0 || !st.Peers[0].UTP {
			return fmt.Errorf("no uTP connection: %+v", st.Peers)
		}
		return nil
	})
	cancel()
	wg.Wait()
	sameFiles(t, mi, srcDir, dst)
	st, err := seeder.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var utpUp int64
	for _, p := range st.PerPeer {
		if p.Network == "utp" {
			utpUp += p.Uploaded
		}
	}
	if utpUp < mi.Info.TotalLength {
		t.Fatalf("uploaded %d bytes over uTP of %d; peers %+v", utpUp, mi.Info.TotalLength, st.PerPeer)
	}
	if n := sock.Stats().Incoming; n > utp.DefaultMaxIncoming {
		t.Fatalf("%d incoming uTP connections alive after the flood, cap %d", n, utp.DefaultMaxIncoming)
	}
}

// flood sends uTP SYNs with ever new connection ids and random datagrams
// with valid uTP headers to addr from 127.0.1.x until ctx ends.
func flood(ctx context.Context, t *testing.T, addr net.Addr) {
	var conns []*net.UDPConn
	for i := 1; i <= 16; i++ {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 1, byte(i))})
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		conns = append(conns, c)
	}
	pkt := make([]byte, 200)
	for id := 0; ctx.Err() == nil; id++ {
		for i, c := range conns {
			rand.Read(pkt)
			pkt[0] = byte(id%5)<<4 | 1 // data, fin, state, reset, syn; version 1
			binary.BigEndian.PutUint16(pkt[2:], uint16(id*16+i))
			c.WriteTo(pkt[:20+id%100], addr)
		}
		if id%64 == 0 { // leave the real peer some of the machine
			select {
			case <-ctx.Done():
			case <-time.After(time.Millisecond):
			}
		}
	}
}

// TestUTPFallsBackToTCP: btfs speaks uTP, libtorrent only TCP (it ignores
// uTP): TCP connects while uTP gets no answer, and downloads.
func TestUTPFallsBackToTCP(t *testing.T) {
	srcDir := t.TempDir()
	torrentPath, mi := swarmtest.MakeTorrent(t, srcDir, swarmtest.TorrentOptions{PieceLength: 64 << 10, Seed: 31})
	seeder := swarmtest.StartLibtorrentSeeder(t, torrentPath, srcDir, "127.0.0.2")
	sock := utpSocket(t, "127.0.0.1")
	tor, _ := leechEngine(t, mi, Config{Logger: testLogger(t), UTP: sock, Peers: []netip.AddrPort{seeder.Addr()}})
	waitComplete(t, tor, 90*time.Second)
	st, err := tor.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.PerPeer) != 1 || st.PerPeer[0].Network != "tcp" {
		t.Fatalf("want one TCP connection; peers: %+v", st.PerPeer)
	}
}

// TestMixedSwarm: three libtorrent seeders, one plain TCP only, one uTP
// only, one that requires RC4 encryption (TCP and uTP): btfs (uTP on,
// encryption preferred, a download cap so that every seeder gets requests)
// downloads from all three, each over what it speaks.
func TestMixedSwarm(t *testing.T) {
	srcDir := t.TempDir()
	torrentPath, mi := swarmtest.MakeTorrent(t, srcDir, swarmtest.TorrentOptions{Size: 4 << 20, PieceLength: 32 << 10, Seed: 33})
	plain := swarmtest.StartLibtorrent(t, torrentPath, srcDir, "127.0.0.2", swarmtest.LibtorrentOptions{Settings: map[string]any{
		"in_enc_policy": 2, "out_enc_policy": 2, // pe_disabled
	}})
	utpOnly := swarmtest.StartLibtorrent(t, torrentPath, srcDir, "127.0.0.3", swarmtest.LibtorrentOptions{Settings: swarmtest.LibtorrentUTPOnly})
	forced := map[string]any{"enable_incoming_utp": true, "enable_outgoing_utp": true}
	for k, v := range swarmtest.LibtorrentEncryptionForced {
		forced[k] = v
	}
	enc := swarmtest.StartLibtorrent(t, torrentPath, srcDir, "127.0.0.4", swarmtest.LibtorrentOptions{Settings: forced})
	sock := utpSocket(t, "127.0.0.1")
	dst := t.TempDir()
	tor, _ := fileStoreEngine(t, mi, dst, false, Config{Logger: testLogger(t), UTP: sock, MaxDownloadRate: 1 << 20,
		Peers: []netip.AddrPort{plain.Addr(), utpOnly.Addr(), enc.Addr()}})
	type seen struct {
		down          int64
		network, encr string
	}
	from := map[netip.Addr]seen{}
	statsUntilComplete(t, tor, 2*time.Minute, func(st Stats) {
		for _, ps := range st.PerPeer {
			s := from[ps.Addr.Addr()]
			s.down = max(s.down, ps.Downloaded)
			s.network = ps.Network
			if ps.Encryption != "" {
				s.encr = ps.Encryption
			}
			from[ps.Addr.Addr()] = s
		}
	})
	sameFiles(t, mi, srcDir, dst)
	t.Logf("per seeder: %+v", from)
	for _, s := range []struct {
		name    string
		addr    netip.AddrPort
		network string // "" for either
		encr    string
	}{
		{"plain TCP-only libtorrent", plain.Addr(), "tcp", ""},
		{"uTP-only libtorrent", utpOnly.Addr(), "utp", "-"},
		{"libtorrent requiring RC4", enc.Addr(), "", "rc4"},
	} {
		got := from[s.addr.Addr()]
		if got.down == 0 || (s.network != "" && got.network != s.network) || (s.encr != "-" && got.encr != s.encr) {
			t.Errorf("%s at %v: sent %d bytes over %q, encryption %q; want some over %q, %q", s.name, s.addr, got.down, got.network, got.encr, s.network, s.encr)
		}
	}
}

// TestUTPReaderBehindLibtorrent: a reader that falls behind a libtorrent
// uTP sender lets the receive window shrink below a packet, and
// libtorrent stops. Reading the backlog must reopen the window at once:
// go-libutp v1.3.2 queued that ACK until the next packet arrived, none
// did, and the transfer stood still until libutp's 29 s keep-alive (the
// 6-60 s pauses of bench/run's row T). engine/utp nudges it out.
func TestUTPReaderBehindLibtorrent(t *testing.T) {
	srcDir := t.TempDir()
	const size = 4 << 20
	torrentPath, mi := swarmtest.MakeTorrent(t, srcDir, swarmtest.TorrentOptions{Size: size, PieceLength: 256 << 10, Seed: 31})
	seeder := swarmtest.StartLibtorrent(t, torrentPath, srcDir, "127.0.0.2", swarmtest.LibtorrentOptions{Settings: swarmtest.LibtorrentUTPOnly})
	sock := utpSocket(t, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var conn net.Conn
	poll.UntilNil(t, 30*time.Second, "a uTP connection to libtorrent", func() error {
		var err error
		conn, err = sock.Dial(ctx, seeder.Addr().String())
		return err
	})
	t.Cleanup(func() { conn.Close() })
	if _, err := wire.Initiate(ctx, conn, rawHandshake(mi, false)); err != nil {
		t.Fatal(err)
	}
	r, w := wire.NewReader(conn, wire.Limits{}), wire.NewWriter(conn)
	if err := w.WriteMessage(wire.Message{ID: wire.Interested}); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		m, err := r.ReadMessage()
		if err != nil {
			t.Fatalf("waiting for unchoke: %v", err)
		}
		if !m.KeepAlive && m.ID == wire.Unchoke {
			break
		}
	}
	const block = 16 << 10
	for off := int64(0); off < size; off += block {
		pl := mi.Info.PieceLength
		if err := w.WriteMessage(wire.Message{ID: wire.Request, Index: uint32(off / pl), Begin: uint32(off % pl), Length: block}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	// Read nothing until libtorrent has stopped sending: the window is
	// closed (4 MiB asked, libutp's receive buffer is 1 MiB).
	received := expvar.Get("utpSocketUtpPacketsReceived").(*expvar.Int)
	last, same := int64(-1), 0
	poll.Until(t, 20*time.Second, "libtorrent to stop on a closed window", func() bool {
		if n := received.Value(); n != last {
			last, same = n, 0
		}
		same++
		return same > 50
	})
	// libtorrent's stall would last 29 s: 20 s tells it from a transfer.
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	got := int64(0)
	for got < size {
		m, err := r.ReadMessage()
		if err != nil {
			t.Fatalf("read %d of %d bytes after the window closed: %v", got, int64(size), err)
		}
		if !m.KeepAlive && m.ID == wire.Piece {
			got += int64(len(m.Block))
		}
	}
}
