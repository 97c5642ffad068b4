package swarmtest

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TransmissionSeeder is a transmission-cli seeding one torrent from
// existing data: a libtransmission peer, a second independent
// implementation of the wire protocol next to aria2c.
type TransmissionSeeder struct {
	peerProcess // transmission-cli
}

// transmissionSettings is the settings.json every instance gets. The
// command line of transmission-cli has no flag for the bind address nor
// for DHT, LPD, PEX or uTP, but it reads settings.json from its config
// directory (-g) before it starts the session.
func transmissionSettings(ip netip.Addr, port int) map[string]any {
	return map[string]any{
		// Bind the peer listener, the outgoing peer connections and the
		// tracker announces (libcurl's interface) to ip; IPv6 to ::1.
		"bind-address-ipv4": ip.String(),
		"bind-address-ipv6": "::1",
		"peer-port":         port,
		// Nothing that talks to anyone but the tracker and its peers.
		"dht-enabled":               false,
		"lpd-enabled":               false,
		"pex-enabled":               false,
		"utp-enabled":               false,
		"port-forwarding-enabled":   false,
		"peer-port-random-on-start": false,
		"blocklist-enabled":         false,
		"rpc-enabled":               false,
		"rpc-bind-address":          "127.0.0.1",
		// Seed without end and without limits.
		"ratio-limit-enabled":        false,
		"idle-seeding-limit-enabled": false,
		"speed-limit-up-enabled":     false,
		"alt-speed-enabled":          false,
		"message-level":              3, // debug: "Verification is done"
	}
}

// StartTransmissionSeeder runs transmission-cli on ip (a 127/8 address)
// seeding the torrent at torrentPath from dataDir, which holds the content
// under the torrent's name (MakeTorrent's dir). transmission-cli seeds
// existing data only after verifying it (-v), which is quick for test
// sizes. Its config directory is a fresh t.TempDir. Start it only after
// the torrent's tracker answers: after a failed announce it waits 20 s.
//
// It returns once the data is verified, the torrent started (it has
// announced: the torrent needs a tracker) and its BitTorrent port accepts
// connections; a transmission-cli that exits before is started again; it is killed by PID in t.Cleanup. Expect it to be slow:
// about 10 MB/s on loopback, and up to 10 s (its rechoke period) before it
// unchokes a new peer. It takes one incoming connection per source IP at a
// time: a connection that closes before its handshake keeps that IP out
// until Transmission's handshake timeout (30 s).
func StartTransmissionSeeder(t testing.TB, torrentPath, dataDir, ip string) *TransmissionSeeder {
	t.Helper()
	return StartTransmissionSeederArgs(t, torrentPath, dataDir, ip)
}

// StartTransmissionSeederArgs is StartTransmissionSeeder with more
// transmission-cli flags, e.g. "-er" (encryption required).
func StartTransmissionSeederArgs(t testing.TB, torrentPath, dataDir, ip string, extra ...string) *TransmissionSeeder {
	t.Helper()
	Require(t, "transmission-cli")
	addr := checkLoopback(t, ip)
	if !addr.Is4() {
		t.Fatalf("swarmtest: the Transmission seeder binds IPv4 only, not %v", addr)
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
		s, err := tryTransmission(t, torrentPath, dataDir, addr, extra)
		if err == nil {
			return s
		}
		lastErr = err
		t.Logf("swarmtest: transmission-cli did not come up, starting it again: %v", err)
	}
	t.Fatalf("swarmtest: transmission-cli did not start: %v", lastErr)
	return nil
}

// tryTransmission is one attempt of StartTransmissionSeeder.
func tryTransmission(t testing.TB, torrentPath, dataDir string, ip netip.Addr, extra []string) (*TransmissionSeeder, error) {
	port, err := freePort("tcp", ip)
	if err != nil {
		return nil, err
	}
	cfgDir := t.TempDir()
	settings, err := json.MarshalIndent(transmissionSettings(ip, port), "", "  ")
	if err != nil {
		return nil, fmt.Errorf("swarmtest: transmission settings: %w", err)
	}
	if err := os.WriteFile(filepath.Join(cfgDir, "settings.json"), settings, 0o644); err != nil {
		return nil, fmt.Errorf("swarmtest: %w", err)
	}
	s := &TransmissionSeeder{peerProcess{addr: netip.AddrPortFrom(ip, uint16(port))}}
	args := []string{
		"-g", cfgDir, // settings.json above, resume files, nothing of the user's
		"-w", dataDir,
		"-p", fmt.Sprint(port),
		"-M", // no NAT-PMP or UPnP
		"-B", // no blocklist
		"-v", // verify the data first: the only way it seeds existing files
	}
	s.proc, err = startProcess(t, cfgDir, false, "transmission-cli", append(append(args, extra...), torrentPath)...)
	if err != nil {
		return nil, err
	}
	// Its graceful exit waits for a "stopped" announce: nothing a test needs.
	s.proc.stopSignal = syscall.SIGKILL
	err = s.waitListening(func() bool { return transmissionSeeding(s.proc.out.String()) })
	if err != nil {
		return nil, err
	}
	// It sometimes removes its torrent and exits 0 about half a second
	// after it is ready ("Removing torrent"): watch it a little longer
	// and start it again if it does.
	for end := time.Now().Add(aliveFor); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if err := s.proc.exited(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// transmissionSeeding reports whether transmission-cli's log shows the
// torrent started after its check. "Verification is done" is not enough:
// now and then transmission-cli leaves the torrent paused after the check
// ("Verification is done", "Pausing", "Removing torrent") and exits 0 a
// moment later, which a test would only notice when the tracker never
// lists it; waitListening sees that exit, and StartTransmissionSeeder
// starts it again. A started torrent announces (these seeders always have
// a tracker); its status line says "Seeding" too, but stdout is a pipe,
// block-buffered, so that comes late.
func transmissionSeeding(out string) bool {
	verified := strings.Index(out, "Verification is done")
	return verified >= 0 && strings.Contains(out[verified:], "Announcing to tracker") || strings.Contains(out, "Seeding")
}

// aliveFor is how long a fresh transmission-cli must keep running to be
// trusted to.
const aliveFor = 1500 * time.Millisecond
