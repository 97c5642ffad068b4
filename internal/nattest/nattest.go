// Package nattest puts a test behind a real home router: Debian's
// miniupnpd (UPnP IGD and NAT-PMP, nftables backend) in a network
// namespace standing for the router, joined by a veth pair to the LAN
// host's namespace, with a third namespace beyond its external interface
// standing for the internet. Everything lives in namespaces the test
// creates (unshare) and that go away with their processes, killed in
// cleanup and with their parent (Pdeathsig) should the test die; nothing
// touches the network the test was started in.
package nattest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"btfs/internal/poll"
)

// The router's LAN is 192.168.77.0/24 (router .1, the LAN host .2); its
// external interface has the address 11.22.33.44 (miniupnpd will not
// report a private or reserved address as external, and nothing leaves the
// namespaces anyway), and the internet host beyond it 11.22.33.1.
const (
	LANRouter    = "192.168.77.1"
	LANClient    = "192.168.77.2"
	ExternalIP   = "11.22.33.44"
	InternetHost = "11.22.33.1"

	// netnsEnv marks the re-run of a test inside its own namespace.
	netnsEnv = "BTFS_NATTEST_NETNS"
	// requireEnv turns a missing tool from a skip into a failure.
	requireEnv = "BTFS_REQUIRE_PEERS"
)

// Require skips t (fails it under BTFS_REQUIRE_PEERS=1) without root,
// iproute2, util-linux's unshare and nsenter, nft and miniupnpd.
func Require(t testing.TB) {
	t.Helper()
	var missing []string
	for _, b := range []string{"ip", "unshare", "nsenter", "nft", "/usr/sbin/miniupnpd"} {
		if _, err := exec.LookPath(b); err != nil {
			missing = append(missing, b)
		}
	}
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	if len(missing) == 0 {
		return
	}
	if os.Getenv(requireEnv) == "1" {
		t.Fatalf("nattest: %v missing and %s=1 (apt-get install miniupnpd nftables)", missing, requireEnv)
	}
	t.Skipf("nattest: %v missing (apt-get install miniupnpd nftables)", missing)
}

// InOwnNetns is for tests whose own code must sit behind the router: it
// runs t again, in the test binary, inside a fresh network namespace, and
// returns true in the parent, which has nothing left to do. In that child
// it brings lo up and returns false: the test's body runs there, and
// StartRouter(t, nil, ...) makes that namespace the LAN host.
func InOwnNetns(t *testing.T) bool {
	t.Helper()
	if os.Getenv(netnsEnv) == t.Name() {
		if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
			t.Fatalf("ip link set lo up: %v: %s", err, out)
		}
		return false
	}
	Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := []string{"-n", "--", os.Args[0], "-test.run=^" + regexp.QuoteMeta(t.Name()) + "$", "-test.count=1", "-test.v"}
	cmd := exec.CommandContext(ctx, "unshare", args...)
	cmd.Env = append(os.Environ(), netnsEnv+"="+t.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	t.Logf("in its own network namespace:\n%s", out)
	if err != nil {
		t.Fatalf("the test failed in its own network namespace: %v", err)
	}
	if bytes.Contains(out, []byte("--- SKIP")) && !bytes.Contains(out, []byte("--- PASS")) {
		t.Skip("skipped in its own network namespace")
	}
	return true
}

// Netns is a network namespace made for the test; nil stands for the
// test's own.
type Netns struct {
	holder *exec.Cmd // the namespace's first process: it lives as long as it
}

// NewNetns makes a network namespace, with lo up. Its first process waits
// on its stdin, which nobody writes: it ends when killed in cleanup or
// when the test process dies (its pipe closes); the namespace, and the
// interfaces in it, go with it.
func NewNetns(t testing.TB) *Netns {
	t.Helper()
	cmd := exec.Command("unshare", "-n", "--", "cat")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	// unshare execs cat once the namespace is made: wait for that, or
	// what is meant for the new namespace would land in ours.
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	pid := strconv.Itoa(cmd.Process.Pid)
	poll.Until(t, 10*time.Second, "a new network namespace", func() bool {
		ns, err := os.Readlink("/proc/" + pid + "/ns/net")
		return err == nil && ns != self
	})
	n := &Netns{holder: cmd}
	n.Run(t, "ip", "link", "set", "lo", "up")
	return n
}

// PID is a process in the namespace (for ip link ... netns PID).
func (n *Netns) PID() int { return n.holder.Process.Pid }

// Command is exec.Command run in the namespace (through nsenter, which
// execs it: signals sent to the process reach the command).
func (n *Netns) Command(name string, args ...string) *exec.Cmd {
	if n == nil {
		return exec.Command(name, args...)
	}
	return exec.Command("nsenter", append([]string{"-t", strconv.Itoa(n.PID()), "-n", "--", name}, args...)...)
}

// Run runs a command in the namespace and returns its output; it fails t
// if the command does.
func (n *Netns) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := n.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// routers numbers the routers of one test process: the interfaces of one
// that is gone may linger while the kernel tears its namespace down.
var routers atomic.Int64

// Router is miniupnpd in its own network namespace, with a LAN host on one
// side and the internet on the other.
type Router struct {
	// NS is the router's namespace, Internet the one beyond its external
	// interface.
	NS, Internet *Netns
	daemon       *exec.Cmd
	log          *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// StartRouter makes the router's and the internet's namespaces, joins the
// LAN host's namespace lan (nil: the test's own, see InOwnNetns) to the
// router by a veth pair with the default route through it, and starts
// miniupnpd with NAT-PMP and/or UPnP IGD (neither: no miniupnpd, a router
// that ignores us). It stops miniupnpd in cleanup.
func StartRouter(t testing.TB, lan *Netns, natpmp, upnp bool) *Router {
	t.Helper()
	Require(t)
	n := routers.Add(1)
	lan0, lan1 := fmt.Sprintf("btfs-lan%da", n), fmt.Sprintf("btfs-lan%db", n)
	wan0, wan1 := fmt.Sprintf("btfs-wan%da", n), fmt.Sprintf("btfs-wan%db", n)
	r := &Router{log: &syncBuffer{}, NS: NewNetns(t), Internet: NewNetns(t)}
	lan.Run(t, "ip", "link", "add", lan0, "type", "veth", "peer", "name", lan1, "netns", strconv.Itoa(r.NS.PID()))
	t.Cleanup(func() {
		// Now, not when the kernel gets round to tearing the namespace
		// down: the next router's LAN has the same addresses.
		lan.Command("ip", "link", "del", lan0).Run()
	})
	lan.Run(t, "ip", "addr", "add", LANClient+"/24", "dev", lan0)
	lan.Run(t, "ip", "link", "set", lan0, "up")
	lan.Run(t, "ip", "route", "replace", "default", "via", LANRouter)
	r.NS.Run(t, "ip", "addr", "add", LANRouter+"/24", "dev", lan1)
	r.NS.Run(t, "ip", "link", "set", lan1, "up")
	r.NS.Run(t, "ip", "link", "add", wan0, "type", "veth", "peer", "name", wan1, "netns", strconv.Itoa(r.Internet.PID()))
	r.NS.Run(t, "ip", "addr", "add", ExternalIP+"/24", "dev", wan0)
	r.NS.Run(t, "ip", "link", "set", wan0, "up")
	r.NS.Run(t, "ip", "route", "add", "default", "via", InternetHost)
	r.NS.Run(t, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
	r.Internet.Run(t, "ip", "addr", "add", InternetHost+"/24", "dev", wan1)
	r.Internet.Run(t, "ip", "link", "set", wan1, "up")
	// The chains miniupnpd fills (its defaults: table "filter", family
	// inet), as Debian's nft_init.sh makes them, plus what a router has
	// anyway: the LAN's traffic and the replies to it forwarded, the LAN
	// masqueraded.
	nft := r.NS.Command("nft", "-f", "-")
	nft.Stdin = strings.NewReader(`table inet filter {
	chain forward {
		type filter hook forward priority 0; policy drop;
		ct state established,related accept
		iifname "` + lan1 + `" accept
		jump miniupnpd
	}
	chain miniupnpd {
	}
	chain prerouting {
		type nat hook prerouting priority -100; policy accept;
		jump prerouting_miniupnpd
	}
	chain postrouting {
		type nat hook postrouting priority 100; policy accept;
		jump postrouting_miniupnpd
		oifname "` + wan0 + `" masquerade
	}
	chain prerouting_miniupnpd {
	}
	chain postrouting_miniupnpd {
	}
}
`)
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("nft -f: %v: %s", err, out)
	}
	if !natpmp && !upnp {
		return r
	}

	dir := t.TempDir()
	conf := filepath.Join(dir, "miniupnpd.conf")
	yes := map[bool]string{true: "yes", false: "no"}
	err := os.WriteFile(conf, []byte(fmt.Sprintf(`ext_ifname=%s
listening_ip=%s
enable_natpmp=%s
enable_upnp=%s
secure_mode=yes
system_uptime=yes
uuid=3c3b2b3e-0a4e-4b62-9f5d-6b7471667301
allow 1024-65535 192.168.77.0/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
`, wan0, lan1, yes[natpmp], yes[upnp])), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	r.daemon = r.NS.Command("/usr/sbin/miniupnpd", "-d", "-f", conf, "-P", filepath.Join(dir, "miniupnpd.pid"))
	r.daemon.Stdout, r.daemon.Stderr = r.log, r.log
	r.daemon.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := r.daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		done := make(chan struct{})
		go func() { r.daemon.Wait(); close(done) }()
		r.daemon.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			r.daemon.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("miniupnpd:\n%s", r.log.String())
		}
	})
	want := "Listening for NAT-PMP"
	if !natpmp {
		want = "HTTP listening on port"
	}
	poll.Until(t, 10*time.Second, "miniupnpd to listen", func() bool { return strings.Contains(r.log.String(), want) })
	return r
}

// Rules lists the router's nftables ruleset, where miniupnpd keeps its
// mappings ("dnat ip to 192.168.77.2:PORT").
func (r *Router) Rules(t testing.TB) string {
	t.Helper()
	return r.NS.Run(t, "nft", "list", "ruleset")
}

// DNAT is the rule miniupnpd adds for a mapping to the LAN host's port.
func DNAT(port int) string { return "dnat ip to " + LANClient + ":" + strconv.Itoa(port) }

// Log is miniupnpd's output so far (it runs with -d: every request).
func (r *Router) Log() string { return r.log.String() }
