package transport

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"btfs/engine/utp"
	"btfs/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

const wait = 20 * time.Second

// udpCounter is a UDP socket that answers nothing and counts datagrams.
type udpCounter struct {
	pc *net.UDPConn
	mu sync.Mutex
	n  int
	wg sync.WaitGroup
}

func (u *udpCounter) count() int { u.mu.Lock(); defer u.mu.Unlock(); return u.n }

func listenBoth(t *testing.T, ip string, udp bool) (tcp net.Listener, port uint16, silent *udpCounter) {
	t.Helper()
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ap := netip.MustParseAddrPort(l.Addr().String())
	if udp {
		pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ap))
		if err != nil {
			t.Fatal(err)
		}
		silent = &udpCounter{pc: pc}
		silent.wg.Add(1)
		go func() {
			defer silent.wg.Done()
			buf := make([]byte, 1<<16)
			for {
				if _, _, err := pc.ReadFrom(buf); err != nil {
					return
				}
				silent.mu.Lock()
				silent.n++
				silent.mu.Unlock()
			}
		}()
		t.Cleanup(func() { pc.Close(); silent.wg.Wait() })
	}
	return l, ap.Port(), silent
}

func utpTransport(t *testing.T, headStart time.Duration) (*Transport, *utp.Socket) {
	t.Helper()
	s, err := utp.Listen("127.0.0.1:0", utp.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return New(Config{Dialers: []Dialer{UTPDialer{Socket: s}, TCPDialer{}}, HeadStart: headStart}), s
}

// TestTCPOnlyPeer: uTP gets no answer (the UDP port is silent), TCP joins
// after the head start and wins; the next connection goes straight to TCP
// (no uTP SYN reaches the peer).
func TestTCPOnlyPeer(t *testing.T) {
	tr, _ := utpTransport(t, 100*time.Millisecond)
	l, _, silent := listenBoth(t, "127.0.0.2", true)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	addr := netip.MustParseAddrPort(l.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, network, err := tr.connect(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if network != "tcp" || silent.count() == 0 {
		t.Fatalf("connected over %q after %d uTP datagrams; want tcp after at least one SYN", network, silent.count())
	}
	before := silent.count()
	c, network, err = tr.connect(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if network != "tcp" || silent.count() != before {
		t.Fatalf("second connection over %q with %d more uTP datagrams; want tcp alone", network, silent.count()-before)
	}
}

// TestUTPPreferred: a peer that speaks both is reached over uTP; one that
// speaks only uTP (its TCP port closed) too, at once.
func TestUTPPreferred(t *testing.T) {
	for _, tcpToo := range []bool{true, false} {
		tr, _ := utpTransport(t, time.Minute) // TCP would never start in time
		peer, err := utp.Listen("127.0.0.3:0", utp.Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer peer.Close()
		ap := netip.MustParseAddrPort(peer.Addr().String())
		if tcpToo {
			l, err := net.Listen("tcp", ap.String())
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
		} else {
			tr.cfg.HeadStart = 0 // uTP's failure would start TCP at once; it must win anyway
		}
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		c, network, err := tr.connect(ctx, ap)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if network != "utp" {
			t.Fatalf("tcp too %v: connected over %q, want utp", tcpToo, network)
		}
	}
}

// TestNoAnswer: neither transport answers: both errors come back, ctx
// bounds it, and nothing is remembered.
func TestNoAnswer(t *testing.T) {
	tr, _ := utpTransport(t, 10*time.Millisecond)
	_, port, _ := listenBoth(t, "127.0.0.4", true)
	addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.5"), port) // nothing there
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, _, err := tr.connect(ctx, addr); err == nil {
		t.Fatal("connected to nothing")
	}
	if n := len(tr.works); n != 0 {
		t.Fatalf("%d addresses remembered after a failure", n)
	}
}

// lineLog collects the messages of the Info lines a Transport logs.
type lineLog struct {
	mu   sync.Mutex
	msgs []string
}

func (l *lineLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *lineLog) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}
func (l *lineLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *lineLog) WithGroup(string) slog.Handler      { return l }
func (l *lineLog) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.msgs)
}

// TestUTPCounts: what failed for lack of uTP is counted and logged once
// (a minute): with no uTP dialler, failed dials to peers said to speak uTP
// (and only those); with one, uTP failures TCP made up for, and dials
// where both failed.
func TestUTPCounts(t *testing.T) {
	_, port, _ := listenBoth(t, "127.0.0.7", true) // UDP silent, TCP accepts (backlog)
	tcpPeer := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.7"), port)
	nobody := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.8"), port) // nothing listens
	nobody2 := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.9"), port)
	mapped := netip.AddrPortFrom(netip.AddrFrom16(nobody.Addr().As16()), port)
	for _, tc := range []struct {
		name  string
		utp   bool
		hint  []netip.AddrPort
		dials []netip.AddrPort
		want  Stats
		line  string
	}{
		{"utp off, hinted peers fail", false, []netip.AddrPort{mapped}, []netip.AddrPort{nobody, nobody, nobody2, tcpPeer},
			Stats{NoUTP: 2}, "1 peers may speak only uTP; -utp is off"},
		{"utp off, no hints", false, nil, []netip.AddrPort{nobody, tcpPeer}, Stats{}, ""},
		{"utp on, TCP makes up", true, nil, []netip.AddrPort{tcpPeer}, Stats{UTPFellBack: 1}, "uTP dials failed"},
		{"utp on, both fail", true, []netip.AddrPort{nobody}, []netip.AddrPort{nobody, nobody2}, Stats{UTPAndTCPFailed: 2}, "uTP dials failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lines := &lineLog{}
			// A long head start: TCP joins only once uTP failed (after
			// DialTimeout, the peer's UDP port being silent), so the uTP
			// failure is known.
			cfg := Config{DialTimeout: 300 * time.Millisecond, HeadStart: time.Minute, Logger: slog.New(lines)}
			if tc.utp {
				s, err := utp.Listen("127.0.0.1:0", utp.Config{})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				cfg.Dialers = []Dialer{UTPDialer{Socket: s}, TCPDialer{}}
			}
			tr := New(cfg)
			for _, a := range tc.hint {
				tr.HintUTP(a)
			}
			if n := len(tr.saysUTP); tc.utp && n != 0 {
				t.Fatalf("%d hints kept with a uTP dialler", n)
			}
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			for _, a := range tc.dials {
				c, _, err := tr.connect(ctx, a)
				if (err == nil) != (a == tcpPeer) {
					t.Fatalf("dial %v: err %v", a, err)
				}
				if c != nil {
					c.Close()
				}
			}
			if got := tr.Stats(); got != tc.want {
				t.Fatalf("stats %+v, want %+v", got, tc.want)
			}
			got := lines.lines()
			if tc.line == "" && len(got) != 0 || tc.line != "" && !slices.Equal(got, []string{tc.line}) {
				t.Fatalf("logged %q, want %q once", got, tc.line)
			}
		})
	}
}

// fakeDialer answers when told: each Dial reports that it started on
// started, then returns what answer carries (a connection or an error) or
// the context's error.
type fakeDialer struct {
	network string
	started chan struct{}
	answer  chan error // nil error: a connection
	conns   chan net.Conn
}

func newFake(network string) *fakeDialer {
	return &fakeDialer{network: network, started: make(chan struct{}, 1), answer: make(chan error, 1), conns: make(chan net.Conn, 1)}
}

func (f *fakeDialer) Network() string { return f.network }

func (f *fakeDialer) Dial(ctx context.Context, _ netip.AddrPort) (net.Conn, error) {
	f.started <- struct{}{}
	select {
	case err := <-f.answer:
		if err != nil {
			return nil, err
		}
		a, b := net.Pipe()
		f.conns <- b
		return a, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// closed reports whether the far end of the fake's connection saw it
// closed.
func (f *fakeDialer) closed(t *testing.T) bool {
	t.Helper()
	select {
	case b := <-f.conns:
		b.SetReadDeadline(time.Now().Add(wait))
		_, err := b.Read(make([]byte, 1))
		return errors.Is(err, io.EOF)
	default:
		t.Fatal("no connection was made")
		return false
	}
}

// TestRacePrefersUTP: uTP and TCP are dialled at once; a TCP connection
// that comes first is held while uTP may still answer, and gives way to
// it; it wins when uTP fails or does not answer within the grace.
func TestRacePrefersUTP(t *testing.T) {
	refused := errors.New("refused")
	tests := []struct {
		name    string
		grace   time.Duration
		utp     func(*fakeDialer) // what uTP does once TCP answered
		want    string
		failed  []string
		closure string // whose connection ends up closed, "" none
	}{
		{"uTP answers within the grace", time.Minute, func(f *fakeDialer) { f.answer <- nil }, "utp", nil, "tcp"},
		{"uTP fails", time.Minute, func(f *fakeDialer) { f.answer <- refused }, "tcp", []string{"utp"}, ""},
		{"uTP silent past the grace", time.Millisecond, func(*fakeDialer) {}, "tcp", []string{"utp"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, tcp := newFake("utp"), newFake("tcp")
			tr := New(Config{Dialers: []Dialer{u, tcp}, PreferGrace: tt.grace})
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			go func() {
				<-u.started
				<-tcp.started // both at once, without a head start
				tcp.answer <- nil
				// TCP has connected before uTP answers (whichever of the
				// two results the race sees first, the outcome is the same).
				b := <-tcp.conns
				tcp.conns <- b
				tt.utp(u)
			}()
			c, network, failed, err := tr.race(ctx, netip.MustParseAddrPort("127.0.0.1:1"), tr.cfg.Dialers, 0)
			if err != nil || ctx.Err() != nil {
				t.Fatalf("race: %v (ctx %v)", err, ctx.Err())
			}
			defer c.Close()
			if network != tt.want || !slices.Equal(failed, tt.failed) {
				t.Fatalf("won by %q, failed %q; want %q, %q", network, failed, tt.want, tt.failed)
			}
			if tt.closure == "tcp" && !tcp.closed(t) {
				t.Fatal("the held TCP connection was not closed")
			}
		})
	}
}

// TestPatientAfterFailedHandshake: at an address where TCP connected and
// then failed its handshake (a peer that accepts TCP and drops it), the
// next dial gives uTP its head start: uTP answering at once wins, and TCP
// is not even dialled; a handshake that succeeds clears the note.
func TestPatientAfterFailedHandshake(t *testing.T) {
	u, tcp := newFake("utp"), newFake("tcp")
	tr := New(Config{Dialers: []Dialer{u, tcp}})
	addr := netip.MustParseAddrPort("127.0.0.1:1")
	tr.handshakeFailed(addr, "tcp")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	go func() {
		<-u.started
		u.answer <- nil
	}()
	c, network, err := tr.connect(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if network != "utp" || len(tcp.started) != 0 {
		t.Fatalf("connected over %q, TCP dialled %d times; want utp alone", network, len(tcp.started))
	}
	tr.handshakeDone(addr)
	if tr.patient[addr] {
		t.Fatal("the note outlived a handshake that succeeded")
	}
	tr.handshakeFailed(addr, "utp") // the preferred network failing changes nothing
	if tr.patient[addr] {
		t.Fatal("a failed uTP handshake made the next dial patient")
	}
}
