package shaper_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"btfs/internal/leakcheck"
	"btfs/internal/poll"
	"btfs/internal/swarmtest"
	"btfs/internal/swarmtest/shaper"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// requireShaper skips (fails with BTFS_REQUIRE_PEERS=1) unless nft is
// installed and the test runs as root in a private network namespace.
func requireShaper(t *testing.T) {
	t.Helper()
	swarmtest.Require(t, "nft")
	err := shaper.CheckPrivateNetns()
	if err == nil && os.Geteuid() != 0 {
		err = errors.New("not root")
	}
	if err == nil {
		return
	}
	if os.Getenv(swarmtest.RequireEnv) == "1" {
		t.Fatalf("shaper: %v (run the tests under unshare -n as root)", err)
	}
	t.Skipf("shaper: %v", err)
}

// start runs a shaper over peers, closed in cleanup, where the test also
// checks that its table is gone.
func start(t *testing.T, peers map[netip.Addr]shaper.Link) *shaper.Shaper {
	t.Helper()
	requireShaper(t)
	s, err := shaper.Start(t.Context(), shaper.Config{Peers: peers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if out, err := exec.Command("nft", "list", "table", "ip", s.Table()).CombinedOutput(); err == nil {
			t.Errorf("table %s still there after Close:\n%s", s.Table(), out)
		}
	})
	return s
}

// server accepts connections on ip and runs serve on each, in goroutines
// that end when the test does.
func server(t *testing.T, ip string, serve func(net.Conn)) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp4", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	conns := make(chan net.Conn, 16)
	go func() {
		defer close(done)
		var live []net.Conn
		defer func() {
			for _, c := range live {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			live = append(live, c)
			conns <- c
		}
	}()
	served := make(chan struct{})
	go func() {
		defer close(served)
		for c := range conns {
			go serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done; close(conns); <-served })
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// echo answers every byte with the same byte.
func echo(c net.Conn) { _, _ = io.Copy(c, c) }

func dial(t *testing.T, a netip.AddrPort) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp4", a.String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// pingPong sends one byte and waits for it back.
func pingPong(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte{'p'}); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil || b[0] != 'p' {
		t.Fatalf("pong: %q, %v", b, err)
	}
}

var peer2 = netip.MustParseAddr("127.0.14.2")

// TestDelay: a ping-pong over the proxy takes at least the RTT (a lower
// bound: the proxy adds it; nothing bounds it from above on a loaded
// machine), and the connection went through the proxy.
func TestDelay(t *testing.T) {
	const rtt = 80 * time.Millisecond
	s := start(t, map[netip.Addr]shaper.Link{peer2: {RTT: rtt, Jitter: 5 * time.Millisecond}})
	c := dial(t, server(t, "127.0.14.2", echo))
	pingPong(t, c) // the connection set up
	const n = 5
	t0 := time.Now()
	for range n {
		pingPong(t, c)
	}
	if d := time.Since(t0); d < n*rtt {
		t.Fatalf("%d ping-pongs took %v, want ≥ %v", n, d, n*rtt)
	}
	// The counter follows the write that delivered the pong.
	poll.Until(t, 10*time.Second, "6 bytes counted each way", func() bool {
		st := s.Stats()[peer2]
		return st.Out == n+1 && st.In == n+1
	})
	if st := s.Stats()[peer2]; st.Total != 1 || st.Conns != 1 {
		t.Fatalf("stats %+v, want 1 connection", st)
	}
}

// TestOriginalDestination: the proxy reaches the address the client
// dialled, from the client's own address (so a seeder sees the client's
// IP), and a connection the peer makes is shaped too; an unshaped address
// is not proxied.
func TestOriginalDestination(t *testing.T) {
	peer3 := netip.MustParseAddr("127.0.14.3")
	s := start(t, map[netip.Addr]shaper.Link{peer2: {}, peer3: {}})
	// Each server tells the client its own port and the client's address.
	tell := func(port uint16) func(net.Conn) {
		return func(c net.Conn) {
			defer c.Close()
			_, _ = io.WriteString(c, netip.AddrPortFrom(netip.Addr{}, port).String()+" "+c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().String()+"\n")
		}
	}
	var addrs []netip.AddrPort
	for _, ip := range []string{"127.0.14.2", "127.0.14.3", "127.0.14.4"} {
		ln := reserve(t, ip)
		addrs = append(addrs, ln)
	}
	for _, a := range addrs {
		server2(t, a, tell(a.Port()))
	}
	for i, a := range addrs {
		// From 127.0.14.5 (unshaped): the server must see 127.0.14.5.
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 14, 5)}, Timeout: 10 * time.Second}
		c, err := d.Dial("tcp4", a.String())
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		want := netip.AddrPortFrom(netip.Addr{}, a.Port()).String() + " 127.0.14.5\n"
		if string(got) != want {
			t.Fatalf("server %d answered %q, want %q", i, got, want)
		}
	}
	st := s.Stats()
	if st[peer2].Total != 1 || st[peer3].Total != 1 {
		t.Fatalf("stats %+v: want one proxied connection per shaped peer", st)
	}
	// A connection the peer makes (from 127.0.14.2 to the unshaped
	// 127.0.14.4) is the peer's too.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 14, 2)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp4", addrs[2].String())
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(c)
	c.Close()
	if want := netip.AddrPortFrom(netip.Addr{}, addrs[2].Port()).String() + " 127.0.14.2\n"; string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if st := s.Stats()[peer2]; st.Total != 2 || st.In == 0 {
		t.Fatalf("peer's own connection not proxied: %+v", st)
	}
}

// reserve returns a free port on ip.
func reserve(t *testing.T, ip string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp4", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// server2 is server on a given address.
func server2(t *testing.T, a netip.AddrPort, serve func(net.Conn)) {
	t.Helper()
	ln, err := net.Listen("tcp4", a.String())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
}

// TestRateCap: a bulk transfer from a capped peer runs no faster than the
// cap (plus one chunk of burst and 10 %), and the proxy counts every byte.
func TestRateCap(t *testing.T) {
	const capBps, total = 256 << 10, 384 << 10
	s := start(t, map[netip.Addr]shaper.Link{peer2: {RateOut: capBps}})
	a := server(t, "127.0.14.2", func(c net.Conn) {
		defer c.Close()
		_, _ = c.Write(make([]byte, total))
	})
	c := dial(t, a)
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	t0 := time.Now()
	n, err := io.Copy(io.Discard, c)
	d := time.Since(t0)
	if err != nil || n != total {
		t.Fatalf("read %d bytes, %v; want %d", n, err, total)
	}
	if rate := float64(n-16<<10) / d.Seconds(); rate > capBps*1.1 {
		t.Fatalf("%d bytes in %v: %.0f B/s over a cap of %d", n, d, rate, capBps)
	}
	if st := s.Stats()[peer2]; st.Out != total {
		t.Fatalf("stats %+v, want Out %d", st, total)
	}
}

// TestDownAndStall: a peer that leaves has its connection reset and new
// ones refused until it comes back; a stalled peer forwards nothing until
// the stall ends.
func TestDownAndStall(t *testing.T) {
	s := start(t, map[netip.Addr]shaper.Link{peer2: {RTT: 10 * time.Millisecond}})
	a := server(t, "127.0.14.2", echo)
	c := dial(t, a)
	pingPong(t, c)

	if err := s.SetStalled(peer2, true); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte{'p'}); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read from a stalled peer: %v, want a time-out", err)
	}
	if err := s.SetStalled(peer2, false); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("after the stall: %v", err)
	}

	ctx := context.Background()
	if err := s.SetDown(ctx, peer2, true); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection to a peer that left still open")
	}
	if _, err := net.DialTimeout("tcp4", a.String(), 10*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial a peer that left: %v, want connection refused", err)
	}
	if err := s.SetDown(ctx, peer2, false); err != nil {
		t.Fatal(err)
	}
	pingPong(t, dial(t, a))
	poll.Until(t, 10*time.Second, "the closed connections forgotten", func() bool { return s.Stats()[peer2].Conns == 1 })
	if err := s.SetDown(ctx, netip.MustParseAddr("127.0.14.9"), true); err == nil {
		t.Fatal("SetDown of an unshaped address: no error")
	}
}
