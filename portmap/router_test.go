package portmap

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
	"syscall"
	"testing"
	"time"

	"btfs/internal/leakcheck"
	"btfs/internal/poll"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// The tests run a real gateway: Debian's miniupnpd (UPnP IGD and NAT-PMP,
// nftables backend) in a network namespace standing for the router,
// joined by a veth pair to the namespace of the test, which is itself a
// fresh one: the test binary runs the test again under `unshare -n`, so
// that whatever it does to interfaces and routes never touches the
// network it was started in. Namespaces and veths go away with their
// last process; the processes are killed in cleanup, and with their
// parent (Pdeathsig) should the test die.
//
// The router's LAN is 192.168.77.0/24 (router .1, us .2); its external
// interface is one end of a veth pair inside the router namespace, with
// the address 11.22.33.44 (miniupnpd will not report a private or reserved
// address as external, and nothing leaves the namespace anyway).

const (
	lanRouter    = "192.168.77.1"
	lanClient    = "192.168.77.2"
	externalIP   = "11.22.33.44"
	internetHost = "11.22.33.1"

	// netnsEnv marks the re-run of a test inside its own namespace.
	netnsEnv = "BTFS_PORTMAP_NETNS"
	// requireEnv turns a missing tool from a skip into a failure.
	requireEnv = "BTFS_REQUIRE_PEERS"
)

// requireTools skips t (fails it under BTFS_REQUIRE_PEERS=1) without root,
// iproute2, util-linux's unshare and nsenter, nft and miniupnpd.
func requireTools(t *testing.T) {
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
		t.Fatalf("portmap: %v missing and %s=1 (apt-get install miniupnpd nftables)", missing, requireEnv)
	}
	t.Skipf("portmap: %v missing (apt-get install miniupnpd nftables)", missing)
}

// inOwnNetns runs t again, in the test binary, inside a fresh network
// namespace, and returns true in the parent, which has nothing left to do.
// In that child it brings lo up and returns false: the test's body runs
// there.
func inOwnNetns(t *testing.T) bool {
	t.Helper()
	if os.Getenv(netnsEnv) == t.Name() {
		if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
			t.Fatalf("ip link set lo up: %v: %s", err, out)
		}
		return false
	}
	requireTools(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
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

// routers numbers the routers of one test process: the interfaces of one
// that is gone may linger while the kernel tears its namespace down.
var routers int

// router is miniupnpd in its own network namespace, and beyond its
// external interface a namespace standing for the internet.
type router struct {
	holder   *exec.Cmd // the router namespace's first process; the namespace lives as long as it
	internet *exec.Cmd // the internet namespace's
	daemon   *exec.Cmd
	log      *syncBuffer
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

// run runs a command in the test's namespace.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// in runs a command in the router's namespace.
func (r *router) in(t *testing.T, name string, args ...string) string {
	t.Helper()
	return run(t, "nsenter", append([]string{"-t", strconv.Itoa(r.holder.Process.Pid), "-n", "--", name}, args...)...)
}

// inInternet runs a command in the internet's namespace.
func (r *router) inInternet(t *testing.T, name string, args ...string) string {
	t.Helper()
	return run(t, "nsenter", append([]string{"-t", strconv.Itoa(r.internet.Process.Pid), "-n", "--", name}, args...)...)
}

// newNetns starts a process in a new network namespace, which lives as
// long as it. The process waits on its stdin, which nobody writes: it ends
// when killed in cleanup or when the test process dies (its pipe closes).
func newNetns(t *testing.T) *exec.Cmd {
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
	return cmd
}

// startRouter makes the router's namespace, the veth pair to it, the
// default route through it, and starts miniupnpd there with NAT-PMP
// and/or UPnP IGD (neither: no miniupnpd, a router that ignores us). Call it in the test's own namespace (inOwnNetns).
func startRouter(t *testing.T, natpmp, upnp bool) *router {
	t.Helper()
	routers++
	lan0, lan1, wan0, wan1 := fmt.Sprintf("btfs-lan%da", routers), fmt.Sprintf("btfs-lan%db", routers), fmt.Sprintf("btfs-wan%da", routers), fmt.Sprintf("btfs-wan%db", routers)
	r := &router{log: &syncBuffer{}}
	r.holder = newNetns(t)
	r.internet = newNetns(t)
	pid := strconv.Itoa(r.holder.Process.Pid)
	run(t, "ip", "link", "add", lan0, "type", "veth", "peer", "name", lan1, "netns", pid)
	t.Cleanup(func() {
		// Now, not when the kernel gets round to tearing the namespace
		// down: the next router's LAN has the same addresses.
		exec.Command("ip", "link", "del", lan0).Run()
	})
	run(t, "ip", "addr", "add", lanClient+"/24", "dev", lan0)
	run(t, "ip", "link", "set", lan0, "up")
	run(t, "ip", "route", "replace", "default", "via", lanRouter)
	r.in(t, "ip", "link", "set", "lo", "up")
	r.in(t, "ip", "addr", "add", lanRouter+"/24", "dev", lan1)
	r.in(t, "ip", "link", "set", lan1, "up")
	r.in(t, "ip", "link", "add", wan0, "type", "veth", "peer", "name", wan1, "netns", strconv.Itoa(r.internet.Process.Pid))
	r.in(t, "ip", "addr", "add", externalIP+"/24", "dev", wan0)
	r.in(t, "ip", "link", "set", wan0, "up")
	r.in(t, "ip", "route", "add", "default", "via", internetHost)
	r.in(t, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
	r.inInternet(t, "ip", "link", "set", "lo", "up")
	r.inInternet(t, "ip", "addr", "add", internetHost+"/24", "dev", wan1)
	r.inInternet(t, "ip", "link", "set", wan1, "up")
	// The chains miniupnpd fills (its defaults: table "filter", family
	// inet), as Debian's nft_init.sh makes them, plus what a router has
	// anyway: replies forwarded back, the LAN masqueraded.
	nft := exec.Command("nsenter", "-t", pid, "-n", "--", "nft", "-f", "-")
	nft.Stdin = strings.NewReader(`table inet filter {
	chain forward {
		type filter hook forward priority 0; policy drop;
		ct state established,related accept
		iifname lan1 accept
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
		oifname wan0 masquerade
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
		return r // a router that speaks neither
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
	r.daemon = exec.Command("nsenter", "-t", pid, "-n", "--", "/usr/sbin/miniupnpd", "-d", "-f", conf, "-P", filepath.Join(dir, "miniupnpd.pid"))
	r.daemon.Stdout, r.daemon.Stderr = r.log, r.log
	r.daemon.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := r.daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		done := make(chan struct{})
		go func() { r.daemon.Wait(); close(done) }()
		r.daemon.Process.Signal(syscall.SIGTERM) // it removes its rules
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			r.daemon.Process.Kill()
			<-done
		}
		t.Logf("miniupnpd:\n%s", r.log.String())
	})
	want := "Listening for NAT-PMP"
	if !natpmp {
		want = "HTTP listening on port"
	}
	poll.Until(t, 10*time.Second, "miniupnpd to listen", func() bool { return strings.Contains(r.log.String(), want) })
	return r
}

// rules lists the router's nftables ruleset, where miniupnpd keeps its
// mappings.
func (r *router) rules(t *testing.T) string {
	t.Helper()
	return r.in(t, "nft", "list", "ruleset")
}
