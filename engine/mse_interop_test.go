package engine

import (
	"context"
	"crypto/rand"
	"crypto/rc4"
	"crypto/sha1"
	"encoding/binary"
	"io"
	"math/big"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"btfs/engine/transport"
	"btfs/internal/poll"
	"btfs/internal/swarmtest"
)

// TestEncryptedSeeders: seeders that speak MSE/PE only — aria2c with
// --bt-require-crypto (and RC4 required), Transmission with -er, libtorrent with pe_forced
// and RC4, libtorrent with pe_forced and the plaintext method (only the
// handshake obfuscated) — each deliver part of the torrent to an engine
// with the default policy, over an encrypted connection. The download is
// capped (512 KiB/s for 8 MiB) so that Transmission's slow unchoke comes
// before the end.
func TestEncryptedSeeders(t *testing.T) {
	swarmtest.Require(t, "opentracker", "aria2c", "transmission-cli")
	swarmtest.RequireLibtorrent(t)
	srcDir := t.TempDir()
	opts := swarmtest.TorrentOptions{Size: 8 << 20, PieceLength: 32 << 10, Seed: 71}
	_, probe := swarmtest.MakeTorrent(t, t.TempDir(), opts)
	tr := swarmtest.StartTracker(t, probe.InfoHash)
	opts.AnnounceList = [][]string{{tr.HTTPURL()}}
	torrentPath, mi := swarmtest.MakeTorrent(t, srcDir, opts)
	aria := swarmtest.StartAria2Seeder(t, torrentPath, srcDir, "127.0.0.2", "--bt-require-crypto=true", "--bt-min-crypto-level=arc4")
	trans := swarmtest.StartTransmissionSeederArgs(t, torrentPath, srcDir, "127.0.0.3", "-er")
	ltRC4 := swarmtest.StartLibtorrent(t, torrentPath, srcDir, "127.0.0.4", swarmtest.LibtorrentOptions{Settings: swarmtest.LibtorrentEncryptionForced})
	ltPlain := swarmtest.StartLibtorrent(t, torrentPath, srcDir, "127.0.0.5", swarmtest.LibtorrentOptions{Settings: map[string]any{
		"in_enc_policy": 0, "out_enc_policy": 0, "allowed_enc_level": 1, // pe_forced, pe_plaintext
	}})
	tr.WaitForPeer(t, mi.InfoHash, aria.Addr())

	dst := t.TempDir()
	// Every seeder is also given directly: Transmission's first announce
	// sometimes comes late, and what is tested is the connection.
	tor, _ := fileStoreEngine(t, mi, dst, false, Config{Logger: testLogger(t), MaxDownloadRate: 512 << 10,
		Peers: []netip.AddrPort{aria.Addr(), trans.Addr(), ltRC4.Addr(), ltPlain.Addr()}})
	type seen struct {
		down int64
		enc  string
	}
	from := map[netip.Addr]seen{}
	st := statsUntilComplete(t, tor, 2*time.Minute, func(st Stats) {
		for _, ps := range st.PerPeer {
			s := from[ps.Addr.Addr()]
			s.down = max(s.down, ps.Downloaded)
			if ps.Encryption != "" {
				s.enc = ps.Encryption
			}
			from[ps.Addr.Addr()] = s
		}
	})
	sameFiles(t, mi, srcDir, dst)
	t.Logf("per seeder: %v; transport %+v", from, st.Transport)
	for _, s := range []struct {
		name string
		addr netip.AddrPort
		enc  string
	}{
		{"aria2c --bt-require-crypto --bt-min-crypto-level=arc4", aria.Addr(), "rc4"},
		{"Transmission -er", trans.Addr(), "rc4"},
		{"libtorrent pe_forced rc4", ltRC4.Addr(), "rc4"},
		{"libtorrent pe_forced plaintext", ltPlain.Addr(), "plaintext"},
	} {
		got := from[s.addr.Addr()]
		if got.down == 0 || got.enc != s.enc {
			t.Errorf("%s at %v: sent %d bytes over encryption %q, want some over %q", s.name, s.addr, got.down, got.enc, s.enc)
		}
	}
	if st.Transport.EncryptedOut < 4 {
		t.Errorf("transport stats %+v: want 4 encrypted outgoing connections", st.Transport)
	}
}

// TestEncryptedEngines: two engines, every pair of policies that can
// talk; the leecher gets everything, the connection is encrypted or not
// as the policies say, and a refused MSE attempt is counted.
func TestEncryptedEngines(t *testing.T) {
	dir := t.TempDir()
	_, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Size: 2 << 20, PieceLength: 32 << 10, Seed: 72})
	for _, tc := range []struct {
		seed, leech transport.Policy
		enc         string // the leecher's view of the connection
		fallbacks   int
	}{
		{transport.Prefer, transport.Prefer, "rc4", 0},
		{transport.Require, transport.Require, "rc4", 0},
		{transport.Require, transport.Prefer, "rc4", 0},
		{transport.Off, transport.Prefer, "", 1},
		{transport.Prefer, transport.Off, "", 0},
	} {
		t.Run(tc.seed.String()+"-"+tc.leech.String(), func(t *testing.T) {
			log := testLogger(t)
			seeder := seedEngine(t, mi, dir, Config{Logger: log, Transport: transport.New(transport.Config{Policy: tc.seed})})
			leecher, sw := leechEngine(t, mi, Config{Logger: log, Peers: []netip.AddrPort{seeder.ListenAddr()},
				Transport: transport.New(transport.Config{Policy: tc.leech})})
			var enc string
			var connected bool
			poll.Until(t, 30*time.Second, "the leecher connects", func() bool {
				st, err := leecher.Stats(context.Background())
				if err == nil && len(st.PerPeer) > 0 {
					enc, connected = st.PerPeer[0].Encryption, true
				}
				return connected
			})
			waitComplete(t, leecher, 60*time.Second)
			checkData(t, mi, sw, dir)
			st, err := leecher.Stats(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if enc != tc.enc || st.Transport.Fallbacks != tc.fallbacks {
				t.Errorf("encryption %q, fallbacks %d; want %q, %d (%+v)", enc, st.Transport.Fallbacks, tc.enc, tc.fallbacks, st.Transport)
			}
		})
	}
}

// mseKeyLen is the length of an MSE public key (the 768-bit prime's).
const mseKeyLen = 96

// mseOpen plays the first steps of an MSE initiator by hand (from the
// specification, independently of engine/mse) against the engine at addr:
// it sends a public key and reads the engine's, and returns the
// connection and the shared secret S.
func mseOpen(t *testing.T, addr netip.AddrPort) (net.Conn, []byte) {
	t.Helper()
	p, _ := new(big.Int).SetString("FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A63A36210000000000090563", 16)
	x, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 160))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ya := new(big.Int).Exp(big.NewInt(2), x, p).FillBytes(make([]byte, mseKeyLen))
	if _, err := conn.Write(ya); err != nil {
		t.Fatal(err)
	}
	yb := make([]byte, mseKeyLen)
	if _, err := io.ReadFull(conn, yb); err != nil {
		t.Fatal(err)
	}
	return conn, new(big.Int).Exp(new(big.Int).SetBytes(yb), x, p).FillBytes(make([]byte, mseKeyLen))
}

func sha1Of(parts ...[]byte) []byte {
	h := sha1.New()
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum(nil)
}

// TestHostileMSE: incoming MSE handshakes that break the rules — garbage
// after the key, a padding length of 65535, a stall — each end in a
// dropped connection (within the handshake timeout), allocate nothing
// big, and the engine keeps serving an honest leecher.
func TestHostileMSE(t *testing.T) {
	dir := t.TempDir()
	_, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Size: 1 << 20, PieceLength: 32 << 10, Seed: 73})
	log := testLogger(t)
	seeder := seedEngine(t, mi, dir, Config{Logger: log, HandshakeTimeout: 2 * time.Second})
	addr := seeder.ListenAddr()
	for _, tc := range []struct {
		name string
		send func(t *testing.T) net.Conn
	}{
		{"garbage after the key", func(t *testing.T) net.Conn {
			conn, _ := mseOpen(t, addr)
			junk := make([]byte, 1<<20)
			rand.Read(junk)
			go conn.Write(junk) // the engine stops reading after 532 bytes
			return conn
		}},
		{"pad claim 65535", func(t *testing.T) net.Conn {
			conn, s := mseOpen(t, addr)
			skey := mi.InfoHash[:]
			msg := append([]byte{}, sha1Of([]byte("req1"), s)...)
			req2, req3 := sha1Of([]byte("req2"), skey), sha1Of([]byte("req3"), s)
			for i := range req2 {
				msg = append(msg, req2[i]^req3[i])
			}
			hdr := make([]byte, 8, 16) // VC
			hdr = binary.BigEndian.AppendUint32(hdr, 3)
			hdr = binary.BigEndian.AppendUint16(hdr, 65535) // len(PadC)
			c, _ := rc4.NewCipher(sha1Of([]byte("keyA"), s, skey))
			discard := make([]byte, 1024)
			c.XORKeyStream(discard, discard)
			c.XORKeyStream(hdr, hdr)
			conn.Write(append(msg, hdr...))
			go conn.Write(make([]byte, 65535)) // what the claim asks for
			return conn
		}},
		{"stalled after the key", func(t *testing.T) net.Conn {
			conn, _ := mseOpen(t, addr)
			return conn
		}},
		{"stalled before the key", func(t *testing.T) net.Conn {
			conn, err := net.Dial("tcp", addr.String())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			conn.Write(make([]byte, 50))
			return conn
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			conn := tc.send(t)
			// The engine hangs up: reads end (EOF or reset) well before
			// our own deadline.
			conn.SetReadDeadline(time.Now().Add(20 * time.Second))
			_, err := io.Copy(io.Discard, conn)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("the engine kept the connection")
			}
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > 16<<20 {
				t.Errorf("heap grew by %d MiB", grew>>20)
			}
		})
	}
	leecher, sw := leechEngine(t, mi, Config{Logger: log, Peers: []netip.AddrPort{addr}})
	waitComplete(t, leecher, 60*time.Second)
	checkData(t, mi, sw, dir)
}
