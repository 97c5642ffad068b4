package swarmtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// LibtorrentPython is the interpreter with the libtorrent module: the
// Debian one (python3-libtorrent), never a virtualenv's.
const LibtorrentPython = "/usr/bin/python3"

// libtorrentScript runs one torrent with libtorrent (rasterbar) and
// prints a JSON status line every 200 ms. argv: torrent, save path,
// listen IP, port, options (LibtorrentOptions as JSON), then the peers to
// connect to (IP:PORT). Its settings: nothing but TCP on the given address
// (no DHT, LSD, UPnP, NAT-PMP, uTP, no encryption, outgoing connections
// from that address too) unless the options say uTP only; seed-to-seed
// connections kept (close_redundant_connections off, or two seeds hang up
// on each other and never list each other in PEX); PEX on (the ut_pex
// plugin is a default one). A seeder starts in seed mode; a leecher
// checks what is in the save path and downloads the rest.
const libtorrentScript = `
import json, sys, time
import libtorrent as lt

torrent, save, ip, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
opts = json.loads(sys.argv[5])
UTP_SOCKET = 1 << 17  # peer_info::utp_socket, which the Python binding does not name
peers = sys.argv[6:]
settings = {
    'listen_interfaces': '%s:%d' % (ip, port),
    'outgoing_interfaces': ip,
    'enable_dht': False,
    'enable_lsd': False,
    'enable_upnp': False,
    'enable_natpmp': False,
    'enable_incoming_utp': False,
    'enable_outgoing_utp': False,
    'close_redundant_connections': False,
    'allow_multiple_connections_per_ip': True,
    # Plain BitTorrent handshakes: btfs speaks no MSE, and an encrypted
    # attempt costs a second before libtorrent retries in the clear.
    'out_enc_policy': int(lt.enc_policy.disabled),
    'alert_mask': 0,
}
if opts.get('UTPOnly'):
    settings.update({'enable_incoming_utp': True, 'enable_outgoing_utp': True,
                     'enable_incoming_tcp': False, 'enable_outgoing_tcp': False})
ses = lt.session(settings)
atp = lt.add_torrent_params()
atp.ti = lt.torrent_info(torrent)
atp.save_path = save
atp.flags = atp.flags & ~lt.torrent_flags.auto_managed & ~lt.torrent_flags.paused
if not opts.get('Leech'):
    atp.flags |= lt.torrent_flags.seed_mode
h = ses.add_torrent(atp)
for p in peers:
    host, _, pport = p.rpartition(':')
    h.connect_peer((host, int(pport)))
while True:
    s = h.status()
    ps = [{'ip': pi.ip[0], 'port': pi.ip[1], 'up': pi.total_upload, 'down': pi.total_download,
           'seed': bool(pi.flags & lt.peer_info.seed), 'utp': bool(pi.flags & UTP_SOCKET)} for pi in h.get_peer_info()]
    print(json.dumps({'state': str(s.state), 'seeding': s.is_seeding, 'listen': ses.is_listening(),
                      'uploaded': s.total_payload_upload, 'downloaded': s.total_payload_download,
                      'done': s.total_wanted_done, 'peers': ps}), flush=True)
    time.sleep(0.2)
`

// LibtorrentSeeder is a python3-libtorrent seeder: libtorrent-rasterbar,
// a third implementation of the wire protocol, and the one whose seeds
// keep their connections to other seeds (so that they tell others about
// each other by PEX).
type LibtorrentSeeder struct {
	peerProcess // python3
}

// LibtorrentStatus is one of the seeder's status lines.
type LibtorrentStatus struct {
	// State is libtorrent's torrent state ("seeding").
	State string `json:"state"`
	// Seeding is set once it has every piece.
	Seeding bool `json:"seeding"`
	// Listen is set once its listen socket is open.
	Listen bool `json:"listen"`
	// Uploaded and Downloaded count the payload bytes it sent and
	// received this session.
	Uploaded   int64 `json:"uploaded"`
	Downloaded int64 `json:"downloaded"`
	// Done is how many bytes of the torrent it has (verified).
	Done int64 `json:"done"`
	// Peers are its connections.
	Peers []LibtorrentPeer `json:"peers"`
}

// LibtorrentPeer is one connection of the seeder.
type LibtorrentPeer struct {
	// IP and Port are the remote end of the connection.
	IP   string `json:"ip"`
	Port int    `json:"port"`
	// Up counts the bytes sent to it.
	Up int64 `json:"up"`
	// Down counts the bytes received from it.
	Down int64 `json:"down"`
	// Seed is set when the peer has every piece.
	Seed bool `json:"seed"`
	// UTP is set when the connection is uTP.
	UTP bool `json:"utp"`
}

// LibtorrentOptions change what StartLibtorrent runs; the zero value is a
// TCP-only seeder.
type LibtorrentOptions struct {
	// UTPOnly disables TCP both ways and enables uTP (a peer reachable
	// only over uTP, as many home peers are).
	UTPOnly bool
	// Leech starts it as a leecher: it checks the save path and
	// downloads what is missing (Status().Seeding once done).
	Leech bool
}

// RequireLibtorrent skips t unless python3's libtorrent module imports
// (BTFS_REQUIRE_PEERS=1 fails instead, as Require does).
func RequireLibtorrent(t testing.TB) {
	t.Helper()
	err := exec.Command(LibtorrentPython, "-c", "import libtorrent").Run()
	if err == nil {
		return
	}
	Require(t, LibtorrentPython) // a missing interpreter says so
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("swarmtest: python3-libtorrent not installed (%v) and %s=1 (run scripts/deps)", err, RequireEnv)
	}
	t.Skipf("swarmtest: python3-libtorrent not installed: %v (run scripts/deps)", err)
}

// StartLibtorrentSeeder runs a libtorrent seeder on ip (a 127/8 address;
// give each libtorrent its own, as it takes one connection per IP)
// seeding the torrent at torrentPath from dataDir (MakeTorrent's dir), in
// seed mode (pieces are checked when first sent, not up front). It
// connects to peers at start. It returns once it seeds and listens; it is
// stopped by PID in t.Cleanup.
func StartLibtorrentSeeder(t testing.TB, torrentPath, dataDir, ip string, peers ...netip.AddrPort) *LibtorrentSeeder {
	t.Helper()
	return StartLibtorrent(t, torrentPath, dataDir, ip, LibtorrentOptions{}, peers...)
}

// StartLibtorrent runs libtorrent as opts say (StartLibtorrentSeeder's
// seeder by default) on ip, with dataDir as its save path. A leecher is
// returned once it listens; a seeder once it also seeds.
func StartLibtorrent(t testing.TB, torrentPath, dataDir, ip string, opts LibtorrentOptions, peers ...netip.AddrPort) *LibtorrentSeeder {
	t.Helper()
	RequireLibtorrent(t)
	addr := checkLoopback(t, ip)
	for _, p := range peers {
		if !p.Addr().IsLoopback() {
			t.Fatalf("swarmtest: peer %v is not on loopback", p)
		}
	}
	torrentPath, err := filepath.Abs(torrentPath)
	if err != nil {
		t.Fatal(err)
	}
	if dataDir, err = filepath.Abs(dataDir); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	for range startAttempts {
		s, err := tryLibtorrent(t, torrentPath, dataDir, addr, opts, peers)
		if err == nil {
			return s
		}
		lastErr = err
	}
	t.Fatalf("swarmtest: libtorrent seeder did not start: %v", lastErr)
	return nil
}

// StartLibtorrentPair starts two libtorrent seeders of the torrent, on
// 127.0.0.2 and 127.0.0.3, the second dialling the first, and returns once
// they are connected: each lists the other in its PEX messages (seeds keep
// seed-to-seed connections here, see the script).
func StartLibtorrentPair(t testing.TB, torrentPath, dataDir string) (l1, l2 *LibtorrentSeeder) {
	t.Helper()
	l1 = StartLibtorrentSeeder(t, torrentPath, dataDir, "127.0.0.2")
	l2 = StartLibtorrentSeeder(t, torrentPath, dataDir, "127.0.0.3", l1.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l1.WaitConnected(ctx, l2.Addr().Addr()); err != nil {
		t.Fatal(err)
	}
	return l1, l2
}

// tryLibtorrent is one attempt of StartLibtorrentSeeder.
func tryLibtorrent(t testing.TB, torrentPath, dataDir string, ip netip.Addr, opts LibtorrentOptions, peers []netip.AddrPort) (*LibtorrentSeeder, error) {
	port, err := freePort("tcp", ip)
	if err != nil {
		return nil, err
	}
	if opts.UTPOnly && portTakenUDP(netip.AddrPortFrom(ip, uint16(port))) {
		return nil, fmt.Errorf("swarmtest: UDP port %d on %v is taken", port, ip)
	}
	o, err := json.Marshal(opts)
	if err != nil {
		return nil, err
	}
	args := []string{"-c", libtorrentScript, torrentPath, dataDir, ip.String(), fmt.Sprint(port), string(o)}
	for _, p := range peers {
		args = append(args, p.String())
	}
	s := &LibtorrentSeeder{peerProcess{addr: netip.AddrPortFrom(ip, uint16(port))}}
	if s.proc, err = startProcess(t, dataDir, false, LibtorrentPython, args...); err != nil {
		return nil, err
	}
	err = s.waitListening(func() bool {
		st, err := s.Status()
		return err == nil && (st.Seeding || opts.Leech) && st.Listen
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Status is the seeder's latest status line (at most 200 ms old).
func (s *LibtorrentSeeder) Status() (LibtorrentStatus, error) {
	out := strings.TrimRight(s.proc.out.String(), "\n")
	for out != "" {
		line := out
		if i := strings.LastIndexByte(out, '\n'); i >= 0 {
			line, out = out[i+1:], out[:i]
		} else {
			out = ""
		}
		var st LibtorrentStatus
		if strings.HasPrefix(line, "{") && json.Unmarshal([]byte(line), &st) == nil {
			return st, nil
		}
		// A warning, or a line the tail buffer cut: the one before.
	}
	if err := s.proc.exited(); err != nil {
		return LibtorrentStatus{}, err
	}
	return LibtorrentStatus{}, fmt.Errorf("swarmtest: no status from libtorrent yet")
}

// Uploaded is the payload the seeder has sent this session.
func (s *LibtorrentSeeder) Uploaded() (int64, error) {
	st, err := s.Status()
	return st.Uploaded, err
}

// WaitConnected waits until the seeder has a connection to (or from) a
// peer at ip, or ctx ends.
func (s *LibtorrentSeeder) WaitConnected(ctx context.Context, ip netip.Addr) error {
	for {
		if st, err := s.Status(); err == nil {
			for _, p := range st.Peers {
				if a, err := netip.ParseAddr(p.IP); err == nil && a.Unmap() == ip {
					return nil
				}
			}
		} else if err := s.proc.exited(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("swarmtest: libtorrent at %v not connected to %v: %w", s.addr, ip, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// portTakenUDP reports whether addr cannot be bound in UDP now (uTP
// listens on the TCP port's number).
func portTakenUDP(addr netip.AddrPort) bool {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return true
	}
	c.Close()
	return false
}
