// Package netnstest gives tests a small LAN of their own: network
// namespaces joined by a veth pair, with a multicast route, so that
// multicast (BEP 14 local discovery) can be tested without touching the
// host's network. Everything is created by the test and deleted in its
// cleanup (deleting a namespace deletes its end of the veth, and the pair
// with it).
//
// It needs root and iproute2's ip: without them a test is skipped, or
// fails under BTFS_REQUIRE_PEERS=1, as swarmtest.Require does.
package netnstest

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"btfs/internal/swarmtest"
)

// NS is one network namespace made by Pair.
type NS struct {
	Name string     // as `ip netns` knows it
	Path string     // /run/netns/Name
	Addr netip.Addr // our address on the veth
	Dev  string     // the veth's name inside the namespace
}

// seq makes namespace names unique within the test binary; the pid makes
// them unique across the binaries of one machine.
var seq atomic.Int64

// Pair makes two namespaces, each with lo up and one end of a veth pair
// (10.77.X.1/24 and 10.77.X.2/24) up, and routes 224.0.0.0/4 (multicast)
// through the veth in both. Deleted in t's cleanup, even when t fails.
func Pair(t testing.TB) (a, b *NS) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv(swarmtest.RequireEnv) == "1" {
			t.Fatalf("netnstest: needs root and %s=1", swarmtest.RequireEnv)
		}
		t.Skip("netnstest: needs root")
	}
	swarmtest.Require(t, "ip")
	n := seq.Add(1)
	subnet := 10 + n%200
	a = &NS{Name: fmt.Sprintf("btfs-%d-%d-a", os.Getpid(), n), Dev: "veth0", Addr: netip.AddrFrom4([4]byte{10, 77, byte(subnet), 1})}
	b = &NS{Name: fmt.Sprintf("btfs-%d-%d-b", os.Getpid(), n), Dev: "veth0", Addr: netip.AddrFrom4([4]byte{10, 77, byte(subnet), 2})}
	for _, ns := range []*NS{a, b} {
		ns.Path = "/run/netns/" + ns.Name
		run(t, "netns", "add", ns.Name)
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns.Name).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v: %s", ns.Name, err, out)
			}
		})
	}
	for _, ns := range []*NS{a, b} {
		// No duplicate address detection: the veth's IPv6 link-local
		// address is usable at once, not after a second or two.
		if out, err := exec.Command("ip", "netns", "exec", ns.Name, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0").CombinedOutput(); err != nil {
			t.Logf("netnstest: IPv6 DAD stays on in %s: %v: %s", ns.Name, err, out)
		}
	}
	run(t, "link", "add", a.Dev, "netns", a.Name, "type", "veth", "peer", "name", b.Dev, "netns", b.Name)
	for _, ns := range []*NS{a, b} {
		run(t, "-n", ns.Name, "link", "set", "lo", "up")
		run(t, "-n", ns.Name, "addr", "add", ns.Addr.String()+"/24", "dev", ns.Dev)
		run(t, "-n", ns.Name, "link", "set", ns.Dev, "up")
		run(t, "-n", ns.Name, "route", "add", "224.0.0.0/4", "dev", ns.Dev)
	}
	return a, b
}

// run runs ip with args, failing t on error.
func run(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// Do runs fn on an OS thread that has entered ns. Sockets fn opens belong
// to ns for their whole life, whichever thread uses them later. The
// thread is thrown away afterwards (never unlocked), so that no other
// goroutine runs in ns by accident.
func (ns *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open(ns.Path)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns.Name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Command is exec.Command for a program that runs in ns (through nsenter,
// which changes only the network namespace: mounts it makes are seen by
// the test).
func (ns *NS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--net=" + ns.Path, "--", name}, args...)...)
}
