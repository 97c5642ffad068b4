// Package utp is the uTP transport (BEP 29): one UDP socket per listen
// address that carries uTP connections both ways, and hands the datagrams
// that are not uTP (the DHT's KRPC) to a PacketConn view, so a client
// needs one UDP port, the same number as its TCP port.
//
// The protocol itself (LEDBAT congestion control, selective ACK, timeouts,
// MTU probing) is the reference libutp, the implementation libtorrent and
// µTorrent interoperate with, through github.com/anacrolix/go-libutp (cgo:
// building needs a C++ compiler). This package adds what a long-running
// client needs around it: contexts on Dial and Accept, a cap on incoming
// connections (in total and per IP, checked before libutp allocates
// anything for a SYN), incoming connections handed on only once they sent
// data (forged SYNs never reach the engine), views that can be closed
// without closing the shared socket, grown kernel buffers, the window
// update a lagging reader owes its sender (see nudge.go), and a Close
// that ends every goroutine.
package utp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"reflect"
	"sync"
	"time"
	"unsafe"

	libutp "github.com/anacrolix/go-libutp"
	"golang.org/x/sys/unix"

	"btfs/internal/slogalog"
)

// Defaults of Config.
const (
	// DefaultMaxIncoming caps incoming connections alive at once (accepted
	// or waiting to be): a SYN flood costs at most this many.
	DefaultMaxIncoming = 200
	// DefaultMaxIncomingPerIP caps them per remote IP.
	DefaultMaxIncomingPerIP = 8
	// DefaultFirstDataTimeout: a real peer's handshake follows its SYN
	// within a round trip.
	DefaultFirstDataTimeout = 5 * time.Second
)

// Config tunes a Socket; the zero value is usable.
type Config struct {
	// Logger receives what the socket has to say; nil discards it.
	Logger *slog.Logger
	// MaxIncoming and MaxIncomingPerIP cap incoming connections alive at
	// once; 0 means the defaults. A SYN beyond a cap is ignored (no reply),
	// as libutp's firewall callback allows.
	MaxIncoming, MaxIncomingPerIP int
	// FirstDataTimeout is how long an incoming connection may stay
	// silent before Accept would see it; 0 means DefaultFirstDataTimeout.
	FirstDataTimeout time.Duration
}

// Socket is one UDP socket speaking uTP. Its methods are safe for
// concurrent use.
type Socket struct {
	lib     *libutp.Socket
	cfg     Config
	closing chan struct{} // closed by Close
	// accepted queues incoming connections from the accept pump to
	// Accept. The pump never blocks: libutp's own backlog (5) would
	// otherwise fill with whatever came first (a flood from one address)
	// and drop everyone else; here each waiting connection counts under
	// the caps, and one beyond the queue is closed.
	accepted chan *conn
	// packets carries datagrams that are not uTP to the PacketConn views.
	packets chan packet
	// nudges wakes the nudger (nudge.go); self is where it sends.
	nudges chan struct{}
	self   net.Addr
	wg     sync.WaitGroup // the pumps, the nudger and the first-data waiters

	mu       sync.Mutex         // guards the fields below
	incoming int                // live incoming connections (accepted, not yet closed)
	perIP    map[netip.Addr]int // the same, per remote IP
	closed   bool
}

type packet struct {
	b    []byte
	from net.Addr
}

// acceptQueue is how many incoming connections (with data) wait for
// Accept.
const acceptQueue = 32

// packetQueue is how many non-uTP datagrams wait for a slow reader before
// new ones are dropped (UDP semantics: the DHT retries).
const packetQueue = 64

// Listen opens a uTP socket on the UDP address addr ("127.0.0.1:6881",
// ":0"). The caller closes it.
func Listen(addr string, cfg Config) (*Socket, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxIncoming <= 0 {
		cfg.MaxIncoming = DefaultMaxIncoming
	}
	if cfg.MaxIncomingPerIP <= 0 {
		cfg.MaxIncomingPerIP = DefaultMaxIncomingPerIP
	}
	if cfg.FirstDataTimeout <= 0 {
		cfg.FirstDataTimeout = DefaultFirstDataTimeout
	}
	network := "udp"
	if host, _, err := net.SplitHostPort(addr); err == nil {
		if ip, err := netip.ParseAddr(host); err == nil && ip.Is4() {
			network = "udp4"
		}
	}
	lib, err := libutp.NewSocket(network, addr, libutp.WithLogger(slogalog.New(cfg.Logger)))
	if err != nil {
		return nil, fmt.Errorf("utp: listen on %s: %w", addr, err)
	}
	if err := growBuffers(lib, socketBuffer); err != nil {
		cfg.Logger.Debug("utp: socket buffers keep their default size", "err", err)
	}
	s := &Socket{
		lib:      lib,
		cfg:      cfg,
		closing:  make(chan struct{}),
		accepted: make(chan *conn, acceptQueue),
		packets:  make(chan packet, packetQueue),
		nudges:   make(chan struct{}, 1),
		self:     selfAddr(lib.Addr()),
		perIP:    map[netip.Addr]int{},
	}
	// Called by libutp, under its package lock, for each SYN of a new
	// connection before it allocates anything: true ignores the SYN.
	lib.SetSyncFirewallCallback(s.refuse)
	s.wg.Add(3)
	go s.acceptPump()
	go s.packetPump()
	go s.nudger()
	return s, nil
}

// Addr is the socket's local UDP address.
func (s *Socket) Addr() net.Addr { return s.lib.Addr() }

// refuse is the firewall: over a cap, a SYN is ignored.
func (s *Socket) refuse(a net.Addr) bool {
	ip := addrOf(a).Addr()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed || s.incoming >= s.cfg.MaxIncoming || s.perIP[ip] >= s.cfg.MaxIncomingPerIP
}

// acceptPump moves libutp's accepted connections to Accept's queue,
// counting them against the caps until they are closed.
func (s *Socket) acceptPump() {
	defer s.wg.Done()
	for {
		nc, err := s.lib.Accept()
		if err != nil { // the socket is closed
			return
		}
		ip := addrOf(nc.RemoteAddr()).Addr()
		s.mu.Lock()
		// The firewall let it in, but libutp's backlog may hold a few
		// admitted under the same count: the caps are enforced here.
		over := s.incoming >= s.cfg.MaxIncoming || s.perIP[ip] >= s.cfg.MaxIncomingPerIP
		if !over {
			s.incoming++
			s.perIP[ip]++
		}
		s.mu.Unlock()
		if over {
			nc.Close()
			continue
		}
		c := &conn{Conn: nc, s: s}
		c.release = func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.incoming--
			if s.perIP[ip]--; s.perIP[ip] <= 0 {
				delete(s.perIP, ip)
			}
		}
		s.wg.Add(1)
		go s.awaitFirstData(c)
	}
}

// awaitFirstData queues c for Accept once its first byte has come (a
// BitTorrent dialler speaks first), or closes it after FirstDataTimeout. A
// SYN costs nothing to forge (uTP has no SYN cookies): silent connections
// from a SYN flood so never reach Accept, where each would hold a
// handshake slot of the engine's for its whole timeout; they hold one of
// MaxIncoming here, for FirstDataTimeout.
func (s *Socket) awaitFirstData(c *conn) {
	defer s.wg.Done()
	c.SetReadDeadline(time.Now().Add(s.cfg.FirstDataTimeout))
	n, _ := c.Conn.Read(c.first[:])
	c.SetReadDeadline(time.Time{})
	if n == 0 {
		c.Close()
		return
	}
	c.peeked = c.first[:n]
	select {
	case s.accepted <- c:
	default:
		c.Close()
	}
}

// packetPump moves the datagrams libutp did not claim to the views,
// dropping them when nobody reads.
func (s *Socket) packetPump() {
	defer s.wg.Done()
	buf := make([]byte, 1<<16)
	for {
		n, from, err := s.lib.ReadFrom(buf)
		if err != nil { // the socket is closed
			return
		}
		select {
		case s.packets <- packet{b: append([]byte(nil), buf[:n]...), from: from}:
		default:
		}
	}
}

// Accept returns the next incoming connection that has sent data (its
// first bytes are still there to Read), or an error once ctx is done or
// the socket is closed.
func (s *Socket) Accept(ctx context.Context) (net.Conn, error) {
	select {
	case c := <-s.accepted:
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.closing:
		return nil, net.ErrClosed
	}
}

// Dial opens a uTP connection to addr ("IP:port"); ctx bounds the
// connect (libutp itself gives up after a few SYN retransmissions).
func (s *Socket) Dial(ctx context.Context, addr string) (net.Conn, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // Close ends a dial at once
		select {
		case <-s.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	network := "udp"
	if ap, err := netip.ParseAddrPort(addr); err == nil && ap.Addr().Unmap().Is4() && s.is4() {
		network = "udp4"
		addr = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
	}
	c, err := s.lib.DialContext(ctx, network, addr)
	if err != nil {
		if s.isClosed() {
			return nil, fmt.Errorf("utp: dial %s: %w", addr, net.ErrClosed)
		}
		return nil, fmt.Errorf("utp: dial %s: %w", addr, err)
	}
	return &conn{Conn: c, s: s}, nil
}

func (s *Socket) is4() bool {
	a, ok := s.lib.Addr().(*net.UDPAddr)
	return ok && a.IP.To4() != nil
}

func (s *Socket) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close closes the socket: every connection on it ends (reads and writes
// fail), every view returns net.ErrClosed, and the goroutines are gone
// when it returns.
func (s *Socket) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closing)
	s.mu.Unlock()
	err := s.lib.Close()
	s.wg.Wait()
	return err
}

// Stats is a snapshot for status lines and tests.
type Stats struct {
	// Incoming is the number of live incoming connections.
	Incoming int
}

// Stats returns a snapshot.
func (s *Socket) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Incoming: s.incoming}
}

// conn is a libutp connection; an incoming one gives its place under the
// caps back when closed.
type conn struct {
	net.Conn
	s       *Socket
	lag     lag
	once    sync.Once
	release func() // nil for outgoing connections
	// first holds an accepted connection's first byte, read before
	// Accept returned it; peeked is what of it Read has still to return.
	first  [1]byte
	peeked []byte
}

func (c *conn) Read(b []byte) (int, error) {
	if len(c.peeked) > 0 && len(b) > 0 {
		n := copy(b, c.peeked)
		c.peeked = c.peeked[n:]
		return n, nil
	}
	n, err := c.Conn.Read(b)
	c.lag.read(c.s, n, len(b))
	return n, err
}

// RemoteAddr is the peer's UDP address, an IPv4 one unmapped (a socket
// listening on every address reports IPv4 peers as ::ffff:a.b.c.d).
func (c *conn) RemoteAddr() net.Addr {
	return net.UDPAddrFromAddrPort(addrOf(c.Conn.RemoteAddr()))
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.lag.stop()
	c.once.Do(func() {
		if c.release != nil {
			c.release()
		}
	})
	return err
}

// IsUTP reports whether c is a connection of this package, for the
// engine's per-connection facts.
func IsUTP(c net.Conn) bool {
	_, ok := c.(*conn)
	return ok
}

// Listener returns a net.Listener view of the socket's incoming
// connections. Closing the view stops its Accept; the socket stays open
// (it is shared with Dial and the PacketConn view).
func (s *Socket) Listener() net.Listener {
	ctx, cancel := context.WithCancel(context.Background())
	return &listener{s: s, ctx: ctx, cancel: cancel}
}

type listener struct {
	s      *Socket
	ctx    context.Context
	cancel context.CancelFunc
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.s.Accept(l.ctx)
	if err != nil && l.ctx.Err() != nil {
		return nil, net.ErrClosed
	}
	return c, err
}

func (l *listener) Close() error   { l.cancel(); return nil }
func (l *listener) Addr() net.Addr { return l.s.Addr() }

// PacketConn returns a view of the datagrams that are not uTP (the DHT
// shares the port through it). Writes go out on the socket. Closing the
// view ends its reads, not the socket. One reader at a time is expected:
// concurrent readers split the datagrams between them.
func (s *Socket) PacketConn() net.PacketConn {
	return &packetConn{s: s, closing: make(chan struct{})}
}

type packetConn struct {
	s       *Socket
	once    sync.Once
	closing chan struct{}
	mu      sync.Mutex // guards the fields below
	// expired is closed when the read deadline passes; timer closes it.
	expired chan struct{}
	timer   *time.Timer
}

func (p *packetConn) ReadFrom(b []byte) (int, net.Addr, error) {
	p.mu.Lock()
	expired := p.expired // nil (never ready) without a deadline
	p.mu.Unlock()
	select {
	case <-p.closing:
		return 0, nil, net.ErrClosed
	case <-p.s.closing:
		return 0, nil, net.ErrClosed
	case <-expired:
		return 0, nil, errTimeout
	case pk := <-p.s.packets:
		return copy(b, pk.b), pk.from, nil
	}
}

func (p *packetConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	select {
	case <-p.closing:
		return 0, net.ErrClosed
	default:
	}
	return p.s.lib.WriteTo(b, addr)
}

func (p *packetConn) Close() error {
	p.once.Do(func() {
		close(p.closing)
		p.SetReadDeadline(time.Time{})
	})
	return nil
}

func (p *packetConn) LocalAddr() net.Addr { return p.s.Addr() }

func (p *packetConn) SetDeadline(t time.Time) error { return p.SetReadDeadline(t) }

func (p *packetConn) SetReadDeadline(t time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	p.expired = nil
	if t.IsZero() {
		return nil
	}
	ch := make(chan struct{})
	p.expired = ch
	p.timer = time.AfterFunc(time.Until(t), func() { close(ch) })
	return nil
}

// SetWriteDeadline is accepted and ignored: a UDP write does not block.
func (p *packetConn) SetWriteDeadline(time.Time) error { return nil }

// errTimeout is a read deadline passing; it is a net.Error with Timeout().
var errTimeout error = timeoutError{}

type timeoutError struct{}

func (timeoutError) Error() string     { return "utp: i/o timeout" }
func (timeoutError) Timeout() bool     { return true }
func (timeoutError) Temporary() bool   { return true }
func (timeoutError) Is(err error) bool { return err == os.ErrDeadlineExceeded }

func addrOf(a net.Addr) netip.AddrPort {
	if u, ok := a.(*net.UDPAddr); ok {
		ap := u.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// socketBuffer is the kernel buffer asked for each way. With the default
// (208 KiB) a uTP sender on a fast path overruns the receiver's socket
// between two reads: the loss makes LEDBAT halve its window again and
// again, and throughput on loopback stays near 15 MB/s. Linux caps the
// request at net.core.rmem_max / wmem_max (4 MiB on Debian).
const socketBuffer = 4 << 20

// growBuffers sets the UDP socket's kernel buffers: beyond the sysctl
// caps when the process may (CAP_NET_ADMIN), else up to them.
func growBuffers(lib *libutp.Socket, size int) error {
	u, err := udpConnOf(lib)
	if err != nil {
		return err
	}
	raw, err := u.SyscallConn()
	if err != nil {
		return err
	}
	var forced error
	if err := raw.Control(func(fd uintptr) {
		forced = errors.Join(
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size),
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size))
	}); err != nil {
		return err
	}
	if forced == nil {
		return nil
	}
	return errors.Join(u.SetReadBuffer(size), u.SetWriteBuffer(size))
}

// udpConnOf returns the socket go-libutp opened. The library does not
// expose it, so its unexported field is read with reflect; a version of
// the library without it makes this fail (TestSocketBuffers notices).
func udpConnOf(lib *libutp.Socket) (*net.UDPConn, error) {
	f := reflect.ValueOf(lib).Elem().FieldByName("pc")
	if !f.IsValid() || f.Type() != reflect.TypeFor[net.PacketConn]() {
		return nil, errors.New("go-libutp's Socket has no pc field")
	}
	pc := reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().Interface()
	u, ok := pc.(*net.UDPConn)
	if !ok {
		return nil, fmt.Errorf("go-libutp's socket is a %T", pc)
	}
	return u, nil
}
