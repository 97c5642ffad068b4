// Package swarmtest runs real BitTorrent programs on loopback for
// end-to-end tests: an opentracker, aria2c seeders and leechers, a
// Transmission seeder, and deterministic torrents for them to share.
//
// Every helper binds only 127.0.0.1, another 127/8 address or (for the
// IPv6 tests, where the helper supports it) ::1, picks free
// ports itself, waits until the program really answers (a tracker that
// accepts the torrent, an aria2c whose RPC replies), and stops what it
// started by PID in t.Cleanup, logging the program's output when the test
// failed. Programs also die with the test binary (parent-death signal), so
// a test killed by its time-out leaves nothing behind.
//
// Tests need the binaries: Require skips a test when one is missing,
// unless BTFS_REQUIRE_PEERS=1 (set by CI), where it fails instead, so that
// a CI run can never pass by skipping every real-peer test.
package swarmtest

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"
)

// RequireEnv is the environment variable that turns a missing binary from
// a skip into a failure.
const RequireEnv = "BTFS_REQUIRE_PEERS"

// Guard bounds every wait for a program to become ready: long enough for a
// loaded 2-core machine, short enough that a broken setup fails the test
// instead of hanging it. It is a safety net, not a performance bound.
var Guard = 30 * time.Second

// Require skips t unless every named binary is on PATH; with
// BTFS_REQUIRE_PEERS=1 a missing binary fails t instead.
func Require(t testing.TB, binaries ...string) {
	t.Helper()
	var missing []string
	for _, b := range binaries {
		if _, err := exec.LookPath(b); err != nil {
			missing = append(missing, b)
		}
	}
	if len(missing) == 0 {
		return
	}
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("swarmtest: %v not installed and %s=1 (run scripts/deps)", missing, RequireEnv)
	}
	t.Skipf("swarmtest: %v not installed (run scripts/deps; %s=1 makes this a failure)", missing, RequireEnv)
}

// checkLoopback fails t unless ip is a loopback address (127.0.0.0/8 or
// ::1): these helpers never bind anything else.
func checkLoopback(t testing.TB, ip string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(ip)
	if err != nil || a.Zone() != "" || a.Is4In6() || !a.IsLoopback() {
		t.Fatalf("swarmtest: address %q is not a loopback address (127.0.0.0/8 or ::1)", ip)
	}
	return a
}

// freePort returns a port that was free for network ("tcp" or "udp") on
// ip a moment ago. Another process may take it before the caller binds it;
// the Start functions retry with new ports when a program fails to start.
func freePort(network string, ip netip.Addr) (int, error) {
	switch network {
	case "tcp":
		l, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
		if err != nil {
			return 0, err
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port, nil
	case "udp":
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port, nil
	}
	return 0, fmt.Errorf("swarmtest: unknown network %q", network)
}

// startAttempts is how many times a program is started with fresh ports
// before giving up: a port picked by freePort can be taken in between.
const startAttempts = 3

// poll calls ready every interval until it returns true or Guard passes;
// it gives up early when stop returns a non-nil error.
func poll(interval time.Duration, ready func() bool, stop func() error) error {
	deadline := time.Now().Add(Guard)
	for {
		if ready() {
			return nil
		}
		if err := stop(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v", Guard)
		}
		time.Sleep(interval)
	}
}

// portTaken reports whether something listens on addr, asked without
// connecting: binding fails while another listener holds the port. A probe
// connection would do harm: one that closes without a handshake keeps
// Transmission from taking another from the same IP until its handshake
// times out (30 s).
func portTaken(addr netip.AddrPort) bool {
	l, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(addr))
	if err != nil {
		return true
	}
	l.Close()
	return false
}
