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

// libtorrentScript seeds (or downloads) one torrent with libtorrent
// (rasterbar) and prints a JSON status line every 200 ms. argv: torrent,
// save path, listen IP (IPv4 or IPv6), port, a JSON object of settings that override the
// defaults below, "seed" or "leech", then the peers to connect to
// (IP:PORT, an IPv6 IP in brackets). Its default settings:
// nothing but TCP on the given address (no DHT, LSD, UPnP, NAT-PMP, uTP,
// no encryption, outgoing connections from that address too);
// seed-to-seed connections kept (close_redundant_connections off, or two
// seeds hang up on each other and never list each other in PEX); PEX on
// (the ut_pex plugin is a default one).
const libtorrentScript = `
import json, sys, time
import libtorrent as lt

torrent, save, ip, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
extra, mode = json.loads(sys.argv[5]), sys.argv[6]
peers = sys.argv[7:]
UTP_SOCKET = 1 << 17  # peer_info::utp_socket, which the Python binding does not name
settings = {
    'listen_interfaces': ('[%s]:%d' if ':' in ip else '%s:%d') % (ip, port),
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
settings.update(extra)
ses = lt.session(settings)
atp = lt.add_torrent_params()
atp.ti = lt.torrent_info(torrent)
atp.save_path = save
atp.flags = atp.flags & ~lt.torrent_flags.auto_managed & ~lt.torrent_flags.paused
if mode == 'seed':
    atp.flags |= lt.torrent_flags.seed_mode
h = ses.add_torrent(atp)
for p in peers:
    host, _, pport = p.rpartition(':')
    h.connect_peer((host.strip('[]'), int(pport)))
while True:
    s = h.status()
    ps = [{'ip': pi.ip[0], 'port': pi.ip[1], 'up': pi.total_upload, 'down': pi.total_download, 'seed': bool(pi.flags & lt.peer_info.seed),
           'rc4': bool(pi.flags & lt.peer_info.rc4_encrypted), 'obfuscated': bool(pi.flags & lt.peer_info.plaintext_encrypted),
           'utp': bool(pi.flags & UTP_SOCKET)}
          for pi in h.get_peer_info()]
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
	// Up counts the bytes sent to it, Down those received from it.
	Up   int64 `json:"up"`
	Down int64 `json:"down"`
	// RC4 is set on an MSE connection with RC4 selected, Obfuscated on
	// one with plaintext selected (handshake obfuscated only).
	RC4        bool `json:"rc4"`
	Obfuscated bool `json:"obfuscated"`
	// UTP is set when the connection is uTP.
	UTP bool `json:"utp"`
	// Seed is set when the peer has every piece.
	Seed bool `json:"seed"`
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

// StartLibtorrentSeeder runs a libtorrent seeder on ip (a 127/8 address
// or ::1; give each libtorrent its own, as it takes one connection per IP)
// seeding the torrent at torrentPath from dataDir (MakeTorrent's dir), in
// seed mode (pieces are checked when first sent, not up front). It
// connects to peers at start. It returns once it seeds and listens; it is
// stopped by PID in t.Cleanup.
func StartLibtorrentSeeder(t testing.TB, torrentPath, dataDir, ip string, peers ...netip.AddrPort) *LibtorrentSeeder {
	t.Helper()
	return StartLibtorrent(t, torrentPath, dataDir, ip, LibtorrentOptions{}, peers...)
}

// LibtorrentOptions vary a libtorrent peer.
type LibtorrentOptions struct {
	// Settings override the script's session settings (libtorrent's
	// settings_pack names; enums as integers), e.g. LibtorrentEncryptionForced.
	Settings map[string]any
	// Leech starts it without the data: it downloads into dataDir (its
	// status says Seeding once it has everything). Its start then waits
	// only for its listen socket.
	Leech bool
}

// LibtorrentEncryptionForced are the settings of a libtorrent that speaks
// MSE/PE only, both ways (pe_forced), with RC4 for the whole stream
// (allowed_enc_level pe_rc4; libtorrent otherwise selects plaintext after
// the obfuscated handshake when offered both).
var LibtorrentEncryptionForced = map[string]any{
	"in_enc_policy":     0, // pe_forced
	"out_enc_policy":    0,
	"allowed_enc_level": 2, // pe_rc4
	"prefer_rc4":        true,
}

// LibtorrentUTPOnly are the settings of a libtorrent reachable only over
// uTP, as many home peers are: TCP off both ways, uTP on.
var LibtorrentUTPOnly = map[string]any{
	"enable_incoming_utp": true,
	"enable_outgoing_utp": true,
	"enable_incoming_tcp": false,
	"enable_outgoing_tcp": false,
}

// StartLibtorrent is StartLibtorrentSeeder with options: other settings,
// or a leecher.
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
	return StartLibtorrentPairOn(t, torrentPath, dataDir, "127.0.0.2", "127.0.0.3")
}

// StartLibtorrentPairOn is StartLibtorrentPair on ip1 and ip2, which may
// be one address (two ports): ::1 twice makes a pair that tells of each
// other in PEX's added6.
func StartLibtorrentPairOn(t testing.TB, torrentPath, dataDir, ip1, ip2 string) (l1, l2 *LibtorrentSeeder) {
	t.Helper()
	l1 = StartLibtorrentSeeder(t, torrentPath, dataDir, ip1)
	l2 = StartLibtorrentSeeder(t, torrentPath, dataDir, ip2, l1.Addr())
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
	if opts.Settings["enable_incoming_utp"] == true && portTakenUDP(netip.AddrPortFrom(ip, uint16(port))) {
		return nil, fmt.Errorf("swarmtest: UDP port %d on %v is taken", port, ip)
	}
	settings, err := json.Marshal(opts.Settings)
	if err != nil || opts.Settings == nil {
		settings = []byte("{}")
	}
	mode := "seed"
	if opts.Leech {
		mode = "leech"
	}
	args := []string{"-c", libtorrentScript, torrentPath, dataDir, ip.String(), fmt.Sprint(port), string(settings), mode}
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
