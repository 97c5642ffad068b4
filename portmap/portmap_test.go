package portmap

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"btfs/internal/leakcheck"
	"btfs/internal/nattest"
	"btfs/internal/poll"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// TestMiniupnpd maps a listener's port through miniupnpd with each method,
// and checks on the router and from the internet's side: the mapping is in
// the router's nftables ruleset; a TCP connection and a UDP datagram sent
// from the internet to the external address reach the listener; the
// mapping outlives its first lease (renewed; miniupnpd removes expired
// ones); Close removes it.
func TestMiniupnpd(t *testing.T) {
	if nattest.InOwnNetns(t) {
		return
	}
	for _, tc := range []struct {
		name         string
		natpmp, upnp bool     // what the router speaks
		methods      []Method // what we try
		want         Method
		lifetime     time.Duration
		checkRenewal bool
	}{
		{"NAT-PMP", true, true, []Method{NATPMP}, NATPMP, 4 * time.Second, true},
		{"UPnP", true, true, []Method{UPnP}, UPnP, 4 * time.Second, true},
		{"both, NAT-PMP preferred", true, true, nil, NATPMP, time.Hour, false},
		{"UPnP-only router", false, true, nil, UPnP, time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := nattest.StartRouter(t, nil, tc.natpmp, tc.upnp)
			ln, err := net.Listen("tcp4", nattest.LANClient+":0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			port := ln.Addr().(*net.TCPAddr).Port
			pc, err := net.ListenPacket("udp4", nattest.LANClient+":"+strconv.Itoa(port))
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()

			m, err := Start(context.Background(), Config{Port: port, Methods: tc.methods, Lifetime: tc.lifetime, Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			waitReady(t, m)
			if err := m.Err(); err != nil {
				t.Fatal(err)
			}
			want := netip.AddrPortFrom(netip.MustParseAddr(nattest.ExternalIP), uint16(port))
			ms := m.Mappings()
			if len(ms) != 2 || ms[0].Protocol != TCP || ms[1].Protocol != UDP {
				t.Fatalf("mappings %+v, want TCP and UDP", ms)
			}
			for _, mp := range ms {
				if mp.Method != tc.want || mp.External != want || mp.InternalPort != port || mp.Expires.IsZero() {
					t.Errorf("mapping %+v, want %s to %v with a lease", mp, tc.want, want)
				}
			}
			if got := m.ExternalPort(); got != port {
				t.Errorf("ExternalPort() = %d, want %d", got, port)
			}
			dnat := nattest.DNAT(port)
			if rules := r.Rules(t); strings.Count(rules, dnat) != 2 {
				t.Fatalf("the router's rules lack the two %q:\n%s", dnat, rules)
			}
			checkReachable(t, r, ln, pc, port, "first")

			if tc.checkRenewal {
				first := ms[0].Expires
				poll.Until(t, 4*tc.lifetime, "the lease to be renewed", func() bool { return m.Mappings()[0].Expires.After(first) })
				// Past the first lease, and past miniupnpd's removal of
				// expired mappings, the port still reaches us.
				poll.Until(t, 4*tc.lifetime, "the first lease to end", func() bool { return time.Now().After(first.Add(2 * time.Second)) })
				checkReachable(t, r, ln, pc, port, "after the first lease")
			}

			m.Close()
			if rules := r.Rules(t); strings.Contains(rules, dnat) {
				t.Errorf("after Close the router still has %q:\n%s", dnat, rules)
			}
			if len(m.Mappings()) != 0 || m.ExternalPort() != 0 {
				t.Errorf("after Close: %+v, external port %d", m.Mappings(), m.ExternalPort())
			}
		})
	}
}

// TestMiniupnpdLeaseExpires is the control of TestMiniupnpd's renewal
// check: a mapping asked for with a short lease and never renewed is gone
// from miniupnpd's rules once the lease ends.
func TestMiniupnpdLeaseExpires(t *testing.T) {
	if nattest.InOwnNetns(t) {
		return
	}
	for _, method := range []Method{NATPMP, UPnP} {
		t.Run(string(method), func(t *testing.T) {
			r := nattest.StartRouter(t, nil, true, true)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var gw gateway
			var err error
			if method == NATPMP {
				gw, err = discoverNATPMP(ctx, DefaultDiscoveryTimeout)
			} else {
				gw, err = discoverUPnP(ctx, "btfs test")
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := gw.add(ctx, TCP, 40000, 40000, 3*time.Second); err != nil {
				t.Fatal(err)
			}
			dnat := nattest.DNAT(40000)
			if !strings.Contains(r.Rules(t), dnat) {
				t.Fatalf("no %q in the router's rules", dnat)
			}
			poll.Until(t, 30*time.Second, "miniupnpd to drop the expired mapping", func() bool { return !strings.Contains(r.Rules(t), dnat) })
		})
	}
}

// checkReachable sends a line over TCP and a datagram over UDP from the
// internet's namespace to the external address, and wants both at the
// listeners.
func checkReachable(t *testing.T, r *nattest.Router, ln net.Listener, pc net.PacketConn, port int, when string) {
	t.Helper()
	msg := "hello " + strings.ReplaceAll(when, " ", "-")
	dst := nattest.ExternalIP + "/" + strconv.Itoa(port)
	r.Internet.Run(t, "timeout", "10", "bash", "-c", "echo "+msg+" >/dev/tcp/"+dst+" && echo "+msg+" >/dev/udp/"+dst)
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
	conn, err := ln.Accept()
	if err != nil {
		t.Fatalf("%s: no TCP connection from the internet: %v", when, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || line != msg+"\n" {
		t.Fatalf("%s: TCP read %q, %v", when, line, err)
	}
	if from := conn.RemoteAddr().(*net.TCPAddr).IP.String(); from != nattest.InternetHost {
		t.Errorf("%s: the connection comes from %s, want the internet host %s", when, from, nattest.InternetHost)
	}
	pc.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 100)
	n, _, err := pc.ReadFrom(buf)
	if err != nil || string(buf[:n]) != msg+"\n" {
		t.Fatalf("%s: UDP read %q, %v", when, buf[:n], err)
	}
}

func waitReady(t *testing.T, m *Mapper) {
	t.Helper()
	poll.Until(t, 3*DefaultDiscoveryTimeout, "the first mapping attempt", func() bool {
		select {
		case <-m.Ready():
			return true
		default:
			return false
		}
	})
}

// TestNoGateway: without a gateway that answers (none at all, or a router
// that speaks neither protocol), Start still returns at once, the first
// attempt ends within the discovery bound with ErrNoGateway, nothing is
// mapped, and Close returns.
func TestNoGateway(t *testing.T) {
	if nattest.InOwnNetns(t) {
		return
	}
	for _, tc := range []struct {
		name          string
		router, drops bool
	}{
		{"no default route", false, false},
		{"silent router", true, false},
		{"router dropping every packet", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.router {
				r := nattest.StartRouter(t, nil, false, false)
				if tc.drops {
					r.NS.Run(t, "nft", "add table inet blackhole { chain input { type filter hook input priority 0; policy drop; }; }")
				}
			}
			m, err := Start(context.Background(), Config{Port: 6881, DiscoveryTimeout: 2 * time.Second, Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			waitReady(t, m)
			if err := m.Err(); !errors.Is(err, ErrNoGateway) {
				t.Errorf("Err() = %v, want ErrNoGateway", err)
			}
			if len(m.Mappings()) != 0 || m.ExternalPort() != 0 {
				t.Errorf("mapped without a gateway: %+v", m.Mappings())
			}
			closed := make(chan struct{})
			go func() { m.Close(); close(closed) }()
			poll.Until(t, 10*time.Second, "Close", func() bool {
				select {
				case <-closed:
					return true
				default:
					return false
				}
			})
		})
	}
}

func TestStartRefusesBadPort(t *testing.T) {
	for _, port := range []int{0, -1, 65536} {
		if _, err := Start(context.Background(), Config{Port: port}); err == nil {
			t.Errorf("Start(port %d) succeeded", port)
		}
	}
}

func TestDefaultGateway(t *testing.T) {
	const header = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
	for _, tc := range []struct {
		name, table, want string
	}{
		{"default route", header + "eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\neth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n", "192.168.0.1"},
		{"default route second", header + "eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\nwlan0\t00000000\t014DA8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n", "192.168.77.1"},
		{"no default route", header + "eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n", ""},
		{"default without gateway", header + "tun0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n", ""},
		{"garbage", "x\n00000000 zz\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "route")
			if err := os.WriteFile(f, []byte(tc.table), 0o644); err != nil {
				t.Fatal(err)
			}
			gw, err := defaultGateway(f)
			switch {
			case tc.want == "" && err == nil:
				t.Errorf("gateway %v, want none", gw)
			case tc.want != "" && (err != nil || gw.String() != tc.want):
				t.Errorf("gateway %v, %v; want %s", gw, err, tc.want)
			}
		})
	}
}

// FuzzParseRoutes: any routing table (seeds in testdata/fuzz) yields
// an error or a gateway that is a specified IPv4 address the table names.
func FuzzParseRoutes(f *testing.F) {
	f.Fuzz(func(t *testing.T, table string) {
		gw, err := parseRoutes(strings.NewReader(table))
		if err != nil {
			return
		}
		if !gw.Is4() || gw.IsUnspecified() {
			t.Fatalf("gateway %v", gw)
		}
		b := gw.As4()
		hexed := strings.ToUpper(hex.EncodeToString([]byte{b[3], b[2], b[1], b[0]}))
		if !strings.Contains(strings.ToUpper(table), hexed) {
			t.Fatalf("gateway %v (%s) is not in the table", gw, hexed)
		}
	})
}
