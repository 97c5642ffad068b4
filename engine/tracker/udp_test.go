package tracker

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"btfs/metainfo"
)

// udpPacket is one datagram the fake tracker received.
type udpPacket struct {
	// connID, action and tid are the request header.
	connID uint64
	action uint32
	tid    uint32
	// body is the whole datagram.
	body []byte
}

// udpFake is a scripted BEP 15 tracker on 127.0.0.1: handle sees each
// datagram with its index and returns the datagrams to send back.
type udpFake struct {
	// conn is the tracker's socket.
	conn *net.UDPConn
	// mu guards got.
	mu sync.Mutex
	// got lists the datagrams received, in order.
	got []udpPacket
	// recv receives a copy of each datagram as it arrives.
	recv chan udpPacket
}

func startUDPFake(t *testing.T, handle func(i int, p udpPacket) [][]byte) *udpFake {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	f := &udpFake{conn: conn, recv: make(chan udpPacket, 100)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for i := 0; ; i++ {
			n, from, err := conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			p := udpPacket{body: append([]byte(nil), buf[:n]...)}
			if n >= 16 {
				p.connID = binary.BigEndian.Uint64(buf[0:])
				p.action = binary.BigEndian.Uint32(buf[8:])
				p.tid = binary.BigEndian.Uint32(buf[12:])
			}
			f.mu.Lock()
			f.got = append(f.got, p)
			f.mu.Unlock()
			select {
			case f.recv <- p:
			default:
			}
			for _, r := range handle(i, p) {
				conn.WriteToUDP(r, from)
			}
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return f
}

func (f *udpFake) url() string { return "udp://" + f.conn.LocalAddr().String() + "/announce" }

// actions lists the actions of the datagrams received so far.
func (f *udpFake) actions() []uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var a []uint32
	for _, p := range f.got {
		a = append(a, p.action)
	}
	return a
}

const fakeConnID = 0x1122334455667788

func connectReply(tid uint32, connID uint64) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint32(b[0:], actionConnect)
	binary.BigEndian.PutUint32(b[4:], tid)
	binary.BigEndian.PutUint64(b[8:], connID)
	return b
}

func announceReply(tid uint32, interval, leechers, seeders int32, peers ...byte) []byte {
	b := make([]byte, 20, 20+len(peers))
	binary.BigEndian.PutUint32(b[0:], actionAnnounce)
	binary.BigEndian.PutUint32(b[4:], tid)
	binary.BigEndian.PutUint32(b[8:], uint32(interval))
	binary.BigEndian.PutUint32(b[12:], uint32(leechers))
	binary.BigEndian.PutUint32(b[16:], uint32(seeders))
	return append(b, peers...)
}

func errorReply(tid uint32, msg string) []byte {
	b := make([]byte, 8, 8+len(msg))
	binary.BigEndian.PutUint32(b[0:], actionError)
	binary.BigEndian.PutUint32(b[4:], tid)
	return append(b, msg...)
}

// wellBehaved answers connects with fakeConnID and announces with two
// peers (one with port 0, which the client drops).
func wellBehaved(_ int, p udpPacket) [][]byte {
	switch p.action {
	case actionConnect:
		return [][]byte{connectReply(p.tid, fakeConnID)}
	case actionAnnounce:
		return [][]byte{announceReply(p.tid, 1800, 3, 4, 127, 0, 0, 2, 0x1a, 0xe1, 127, 0, 0, 3, 0, 0)}
	}
	return nil
}

func newUDPClient(t *testing.T, opts UDPOptions) *UDPClient {
	t.Helper()
	if opts.RetransmitBase == 0 {
		opts.RetransmitBase = 10 * time.Second // tests that expect a reply never wait
	}
	c := NewUDPClient(opts)
	t.Cleanup(func() { c.Close() })
	return c
}

var wantWellBehaved = &AnnounceResponse{Interval: 1800 * time.Second, Leechers: 3, Seeders: 4,
	Peers: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.2:6881")}}

func TestUDPAnnounce(t *testing.T) {
	f := startUDPFake(t, wellBehaved)
	c := newUDPClient(t, UDPOptions{})
	req := testRequest()
	got, err := c.Announce(context.Background(), f.url(), req)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, wantWellBehaved) {
		t.Fatalf("reply %+v, want %+v", got, wantWellBehaved)
	}
	if a := f.actions(); !reflect.DeepEqual(a, []uint32{actionConnect, actionAnnounce}) {
		t.Fatalf("actions %v, want connect then announce", a)
	}
	f.mu.Lock()
	conn, ann := f.got[0].body, f.got[1].body
	f.mu.Unlock()
	if len(conn) != 16 || binary.BigEndian.Uint64(conn) != udpProtocolID {
		t.Errorf("connect request %x lacks the protocol id", conn)
	}
	if len(ann) != 98 {
		t.Fatalf("announce request of %d bytes, want 98", len(ann))
	}
	for _, c := range []struct {
		field     string
		got, want any
	}{
		{"connection id", binary.BigEndian.Uint64(ann[0:]), uint64(fakeConnID)},
		{"info_hash", string(ann[16:36]), string(req.InfoHash[:])},
		{"peer_id", string(ann[36:56]), string(req.PeerID[:])},
		{"downloaded", binary.BigEndian.Uint64(ann[56:]), uint64(req.Downloaded)},
		{"left", binary.BigEndian.Uint64(ann[64:]), uint64(req.Left)},
		{"uploaded", binary.BigEndian.Uint64(ann[72:]), uint64(req.Uploaded)},
		{"event (started = 2)", binary.BigEndian.Uint32(ann[80:]), uint32(2)},
		{"ip", binary.BigEndian.Uint32(ann[84:]), uint32(0)},
		{"key", binary.BigEndian.Uint32(ann[88:]), req.Key},
		{"num_want", int32(binary.BigEndian.Uint32(ann[92:])), int32(50)},
		{"port", binary.BigEndian.Uint16(ann[96:]), uint16(6881)},
	} {
		if c.got != c.want {
			t.Errorf("announce %s = %v, want %v", c.field, c.got, c.want)
		}
	}

	// Within the connection id's minute, the next announce reuses it.
	req.Event, req.NumWant = EventStopped, 0
	if _, err := c.Announce(context.Background(), f.url(), req); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	ann = f.got[len(f.got)-1].body
	f.mu.Unlock()
	if a := f.actions(); !reflect.DeepEqual(a, []uint32{actionConnect, actionAnnounce, actionAnnounce}) {
		t.Fatalf("actions %v, want one connect for two announces", a)
	}
	if ev, nw := binary.BigEndian.Uint32(ann[80:]), int32(binary.BigEndian.Uint32(ann[92:])); ev != 3 || nw != -1 {
		t.Fatalf("stopped announce: event %d num_want %d, want 3 and -1", ev, nw)
	}
}

func TestUDPIgnoresStrayDatagrams(t *testing.T) {
	// Before each real reply the tracker sends a reply with the wrong
	// transaction id and a runt: both must be ignored.
	f := startUDPFake(t, func(i int, p udpPacket) [][]byte {
		right := wellBehaved(i, p)
		wrong := wellBehaved(i, udpPacket{action: p.action, tid: p.tid + 1})
		return [][]byte{wrong[0], {1, 2, 3}, right[0]}
	})
	c := newUDPClient(t, UDPOptions{})
	got, err := c.Announce(context.Background(), f.url(), testRequest())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, wantWellBehaved) {
		t.Fatalf("reply %+v, want %+v", got, wantWellBehaved)
	}
}

func TestUDPRetransmits(t *testing.T) {
	for _, tc := range []struct {
		name string
		drop int // index of the datagram the tracker ignores
		want []uint32
	}{
		// A lost connect is sent again.
		{"connect lost", 0, []uint32{actionConnect, actionConnect, actionAnnounce}},
		// A lost announce is sent again after a fresh connect: the tracker
		// may have forgotten the connection id.
		{"announce lost", 1, []uint32{actionConnect, actionAnnounce, actionConnect, actionAnnounce}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startUDPFake(t, func(i int, p udpPacket) [][]byte {
				if i == tc.drop {
					return nil
				}
				return wellBehaved(i, p)
			})
			c := newUDPClient(t, UDPOptions{RetransmitBase: 20 * time.Millisecond})
			if _, err := c.Announce(context.Background(), f.url(), testRequest()); err != nil {
				t.Fatal(err)
			}
			if a := f.actions(); !reflect.DeepEqual(a, tc.want) {
				t.Fatalf("actions %v, want %v", a, tc.want)
			}
		})
	}
}

func TestUDPGivesUpAfterMaxRetransmits(t *testing.T) {
	f := startUDPFake(t, func(int, udpPacket) [][]byte { return nil })
	c := newUDPClient(t, UDPOptions{RetransmitBase: 5 * time.Millisecond, MaxRetransmits: 2})
	_, err := c.Announce(context.Background(), f.url(), testRequest())
	if err == nil || !strings.Contains(err.Error(), "no reply after 3 attempts") {
		t.Fatalf("err = %v, want no reply after 3 attempts", err)
	}
	if a := f.actions(); !reflect.DeepEqual(a, []uint32{actionConnect, actionConnect, actionConnect}) {
		t.Fatalf("actions %v, want 3 connects", a)
	}
}

func TestUDPErrorAction(t *testing.T) {
	f := startUDPFake(t, func(i int, p udpPacket) [][]byte {
		if p.action == actionAnnounce && i == 1 {
			return [][]byte{errorReply(p.tid, "torrent not registered\n")}
		}
		return wellBehaved(i, p)
	})
	c := newUDPClient(t, UDPOptions{})
	_, err := c.Announce(context.Background(), f.url(), testRequest())
	var fe *FailureError
	if !errors.As(err, &fe) || fe.Reason != "torrent not registered " || fe.URL != f.url() {
		t.Fatalf("err = %#v, want a FailureError with the tracker's message", err)
	}
	// The refused connection id is not reused.
	if _, err := c.Announce(context.Background(), f.url(), testRequest()); err != nil {
		t.Fatal(err)
	}
	want := []uint32{actionConnect, actionAnnounce, actionConnect, actionAnnounce}
	if a := f.actions(); !reflect.DeepEqual(a, want) {
		t.Fatalf("actions %v, want %v", a, want)
	}
}

func TestUDPConnectionIDExpires(t *testing.T) {
	f := startUDPFake(t, wellBehaved)
	var mu sync.Mutex
	now := time.Unix(1e9, 0)
	c := newUDPClient(t, UDPOptions{Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }})
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	steps := []struct {
		advance time.Duration
		want    []uint32 // actions of this announce
	}{
		{0, []uint32{actionConnect, actionAnnounce}},
		{59 * time.Second, []uint32{actionAnnounce}},
		{time.Second, []uint32{actionConnect, actionAnnounce}}, // a minute after the connect
		{30 * time.Second, []uint32{actionAnnounce}},
	}
	seen := 0
	for i, s := range steps {
		advance(s.advance)
		if _, err := c.Announce(context.Background(), f.url(), testRequest()); err != nil {
			t.Fatal(err)
		}
		a := f.actions()
		if !reflect.DeepEqual(a[seen:], s.want) {
			t.Fatalf("step %d: actions %v, want %v", i, a[seen:], s.want)
		}
		seen = len(a)
	}
}

func TestUDPContext(t *testing.T) {
	f := startUDPFake(t, func(int, udpPacket) [][]byte { return nil })
	c := newUDPClient(t, UDPOptions{RetransmitBase: time.Hour})
	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		if _, err := c.Announce(ctx, f.url(), testRequest()); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want DeadlineExceeded", err)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		for len(f.recv) > 0 { // the deadline test's datagrams
			<-f.recv
		}
		go func() { <-f.recv; cancel() }() // cancel once the request is out
		if _, err := c.Announce(ctx, f.url(), testRequest()); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want Canceled", err)
		}
	})
}

func TestUDPRefusedAndClosed(t *testing.T) {
	// A port nobody listens on: the kernel's ICMP reply fails the
	// exchange at once instead of after the retransmissions.
	l, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	dead := "udp://" + l.LocalAddr().String()
	l.Close()
	c := newUDPClient(t, UDPOptions{RetransmitBase: time.Hour})
	if _, err := c.Announce(context.Background(), dead, testRequest()); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("err = %v, want connection refused", err)
	}
	c.Close()
	if _, err := c.Announce(context.Background(), dead, testRequest()); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: err = %v, want ErrClosed", err)
	}
	for _, bad := range []string{"udp://127.0.0.1", "http://127.0.0.1:1", "udp://:80"} {
		if _, err := newUDPClient(t, UDPOptions{}).Announce(context.Background(), bad, testRequest()); err == nil {
			t.Errorf("Announce(%q) succeeded", bad)
		}
	}
}

func TestUDPScrape(t *testing.T) {
	f := startUDPFake(t, func(i int, p udpPacket) [][]byte {
		if p.action != actionScrape {
			return wellBehaved(i, p)
		}
		n := (len(p.body) - 16) / 20
		b := make([]byte, 8+12*n)
		binary.BigEndian.PutUint32(b[0:], actionScrape)
		binary.BigEndian.PutUint32(b[4:], p.tid)
		for j := range n {
			binary.BigEndian.PutUint32(b[8+12*j:], uint32(p.body[16+20*j])) // seeders = first byte of the hash
			binary.BigEndian.PutUint32(b[12+12*j:], 7)
			binary.BigEndian.PutUint32(b[16+12*j:], 9)
		}
		return [][]byte{b}
	})
	c := newUDPClient(t, UDPOptions{})
	hashes := []metainfo.Hash{{1}, {2}, {3}}
	got, err := c.Scrape(context.Background(), f.url(), hashes)
	if err != nil {
		t.Fatal(err)
	}
	want := []ScrapeResult{{1, 7, 9}, {2, 7, 9}, {3, 7, 9}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("scrape %v, want %v", got, want)
	}
	if _, err := c.Scrape(context.Background(), f.url(), make([]metainfo.Hash, 75)); err == nil {
		t.Fatal("scrape of 75 hashes accepted")
	}
}

func TestParseUDPReply(t *testing.T) {
	v6peer := append(netip.MustParseAddr("2001:db8::7").AsSlice(), 0x1a, 0xe1)
	for _, tc := range []struct {
		name    string
		b       []byte
		addrLen int
		want    udpReply
		wantErr string
	}{
		{name: "connect", b: connectReply(5, 77), addrLen: 4, want: udpReply{action: actionConnect, tid: 5, connID: 77}},
		{name: "announce v6", b: announceReply(6, 60, 1, 2, v6peer...), addrLen: 16,
			want: udpReply{action: actionAnnounce, tid: 6, announce: &AnnounceResponse{Interval: time.Minute, Leechers: 1, Seeders: 2,
				Peers: []netip.AddrPort{netip.MustParseAddrPort("[2001:db8::7]:6881")}}}},
		{name: "negative counts clamp", b: announceReply(6, 60, -1, -2), addrLen: 4,
			want: udpReply{action: actionAnnounce, tid: 6, announce: &AnnounceResponse{Interval: time.Minute}}},
		{name: "error", b: errorReply(7, "no\x00way"), want: udpReply{action: actionError, tid: 7, message: "no way"}},
		{name: "runt", b: []byte{0, 0, 0}, wantErr: "shorter than its 8-byte header"},
		{name: "short connect", b: connectReply(5, 77)[:12], wantErr: "want 16"},
		{name: "short announce", b: announceReply(1, 1, 1, 1)[:19], wantErr: "at least 20"},
		{name: "negative interval", b: announceReply(1, -1, 1, 1), addrLen: 4, wantErr: "out of range"},
		{name: "ragged peers", b: announceReply(1, 1, 1, 1, 1, 2, 3), addrLen: 4, wantErr: "not a multiple of 6"},
		{name: "v4 peers over v6", b: announceReply(1, 1, 1, 1, 127, 0, 0, 1, 0, 1), addrLen: 16, wantErr: "not a multiple of 18"},
		{name: "ragged scrape", b: []byte{0, 0, 0, 2, 0, 0, 0, 1, 1, 2, 3}, wantErr: "multiple of 12"},
		{name: "unknown action", b: []byte{0, 0, 0, 9, 0, 0, 0, 1}, wantErr: "unknown action 9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseUDPReply(tc.b, tc.addrLen)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v (%+v), want %+v (%+v)", got, got.announce, tc.want, tc.want.announce)
			}
		})
	}
}
