package lsd

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"btfs/internal/netnstest"
	"btfs/internal/poll"
)

// heard records what a join's found callback was given.
type heard struct {
	mu    sync.Mutex
	addrs []netip.AddrPort
}

func (h *heard) found(addrs []netip.AddrPort) {
	h.mu.Lock()
	h.addrs = append(h.addrs, addrs...)
	h.mu.Unlock()
}

func (h *heard) has(a netip.AddrPort) bool {
	return slices.Contains(h.list(), a)
}

func (h *heard) list() []netip.AddrPort {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.addrs)
}

// startIn starts a Service inside ns (its sockets live there).
func startIn(t *testing.T, ns *netnstest.NS, groups ...netip.AddrPort) *Service {
	t.Helper()
	var s *Service
	if err := ns.Do(func() (err error) {
		s, err = Start(context.Background(), Config{Groups: groups})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// hostAddr is ns's address on its veth in the family of group: the IPv4
// one, or the IPv6 link-local one (which multicast comes from).
func hostAddr(t *testing.T, ns *netnstest.NS, group netip.AddrPort) netip.Addr {
	t.Helper()
	if group.Addr().Is4() {
		return ns.Addr
	}
	var ll netip.Addr
	// The kernel adds the link-local address a moment after the link
	// comes up.
	poll.UntilNil(t, 10*time.Second, "an IPv6 link-local address on "+ns.Dev, func() error {
		return ns.Do(func() error {
			ifi, err := net.InterfaceByName(ns.Dev)
			if err != nil {
				return err
			}
			addrs, err := ifi.Addrs()
			if err != nil {
				return err
			}
			for _, a := range addrs {
				if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is6() && p.Addr().IsLinkLocalUnicast() {
					ll = p.Addr()
					return nil
				}
			}
			return fmt.Errorf("addresses %v", addrs)
		})
	})
	return ll
}

// unzoned drops the zones of addrs (an IPv6 link-local address comes with
// the index of the interface it was heard on).
func unzoned(addrs []netip.AddrPort) []netip.AddrPort {
	out := make([]netip.AddrPort, len(addrs))
	for i, a := range addrs {
		out[i] = netip.AddrPortFrom(a.Addr().WithZone(""), a.Port())
	}
	return out
}

// TestTwoHosts: two Services on two "hosts" (namespaces joined by a veth)
// and a third on the first host hear each other's announces, at the
// announcer's address on the LAN (or loopback's multicast copy on the same
// host), and only for the torrents they joined; never their own. In IPv4
// and in IPv6.
func TestTwoHosts(t *testing.T) {
	for _, group := range []netip.AddrPort{GroupV4, GroupV6} {
		t.Run(group.String(), func(t *testing.T) {
			a, b := netnstest.Pair(t)
			addrA, addrB := hostAddr(t, a, group), hostAddr(t, b, group)
			ih, other := ihN(1), ihN(2)
			sa := startIn(t, a, group)
			sb := startIn(t, b, group)
			sc := startIn(t, a, group) // a second process on host a
			var ha, hb, hc, hOther heard
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			sa.Join(ctx, ih, 1111, ha.found)
			sb.Join(ctx, ih, 2222, hb.found)
			sc.Join(ctx, ih, 3333, hc.found)
			sb.Join(ctx, other, 0, hOther.found) // listens only
			heardAddr := func(h *heard, want netip.AddrPort) func() bool {
				return func() bool { return slices.Contains(unzoned(h.list()), want) }
			}
			fromA := netip.AddrPortFrom(addrA, 1111)
			poll.Until(t, 10*time.Second, "b hears a", heardAddr(&hb, fromA))
			poll.Until(t, 10*time.Second, "a hears b", heardAddr(&ha, netip.AddrPortFrom(addrB, 2222)))
			poll.Until(t, 10*time.Second, "c (same host as a) hears a", heardAddr(&hc, fromA))
			poll.Until(t, 10*time.Second, "a hears c", heardAddr(&ha, netip.AddrPortFrom(addrA, 3333)))
			if heardAddr(&ha, fromA)() {
				t.Errorf("a heard its own announce: %v", ha.list())
			}
			if got := hOther.list(); len(got) != 0 {
				t.Errorf("a torrent nobody announced heard %v", got)
			}
		})
	}
}

// TestReceive: a Service ignores its own cookie, torrents it did not join
// and malformed or oversized datagrams, and takes the sender's address
// with the announced port. The datagrams come from one socket in order,
// so once the last is heard the others have been read.
func TestReceive(t *testing.T) {
	a, _ := netnstest.Pair(t)
	s := startIn(t, a, GroupV4)
	var h heard
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ih := ihN(7)
	s.Join(ctx, ih, 0, h.found)
	var conn *net.UDPConn
	if err := a.Do(func() (err error) {
		conn, err = net.ListenUDP("udp4", nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msg := func(port int, cookie string, ihs ...[20]byte) []byte {
		return Format(GroupV4.String(), uint16(port), cookie, ihs)[0]
	}
	huge := append(msg(4, "x", ih), make([]byte, MaxMessage)...)
	for _, m := range [][]byte{
		msg(1, s.Cookie(), ih),                            // ours
		msg(2, "other", ihN(8)),                           // not joined
		[]byte("BT-SEARCH * HTTP/1.1\r\nPort: 3\r\n\r\n"), // no hash
		huge,                        // too large
		msg(5, "other", ihN(9), ih), // joined among others: heard
	} {
		if _, err := conn.WriteToUDPAddrPort(m, GroupV4); err != nil {
			t.Fatal(err)
		}
	}
	want := netip.AddrPortFrom(a.Addr, 5)
	poll.Until(t, 10*time.Second, "the valid announce", func() bool { return h.has(want) })
	if got := h.list(); !slices.Equal(got, []netip.AddrPort{want}) {
		t.Errorf("heard %v, want only %v", got, want)
	}
}

// TestBatch: torrents due together go out in one message with several
// Infohash lines (the test adds them without waking the sender and sends
// the batch itself); a torrent that needs peers soon after is not
// announced again before MinGap.
func TestBatch(t *testing.T) {
	a, _ := netnstest.Pair(t)
	var rc, mark *net.UDPConn
	var s *Service
	if err := a.Do(func() (err error) {
		if rc, err = net.ListenMulticastUDP("udp4", nil, net.UDPAddrFromAddrPort(GroupV4)); err != nil {
			return err
		}
		if mark, err = net.ListenUDP("udp4", nil); err != nil {
			return err
		}
		s, err = Start(context.Background(), Config{Groups: []netip.AddrPort{GroupV4}, MinGap: time.Hour})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	defer mark.Close()
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var js []*join
	for i := range 3 {
		js = append(js, s.add(ctx, ihN(10+i), 6000, func([]netip.AddrPort) {}))
	}
	s.announceDue(time.Now())
	rc.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 2048)
	n, _, err := rc.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	if got.Port != 6000 || got.Cookie != s.Cookie() || len(got.InfoHashes) != 3 {
		t.Fatalf("first announce %+v, want port 6000, our cookie and 3 infohashes", got)
	}
	// Needs within MinGap (an hour) send nothing: after a batch of our
	// own, a datagram from another socket is the next thing heard.
	for _, j := range js {
		s.mu.Lock()
		j.sched.needed = true
		s.mu.Unlock()
	}
	s.announceDue(time.Now())
	if _, err := mark.WriteToUDPAddrPort([]byte("mark"), GroupV4); err != nil {
		t.Fatal(err)
	}
	n, _, err = rc.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	if string(buf[:n]) != "mark" {
		t.Fatalf("announced again within MinGap: %q", fmt.Sprintf("%.80s", buf[:n]))
	}
}
