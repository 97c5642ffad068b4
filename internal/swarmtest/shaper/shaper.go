// Package shaper puts a wide-area network between processes on loopback:
// a transparent userspace TCP proxy that adds, per peer address, a one-way
// delay with jitter and a rate cap in each direction, for every client
// alike (ours, johang/btfs, aria2c, libtorrent), without their knowing.
//
// This kernel has no netem, but it has nftables. Start installs, in the
// current network namespace, an nftables table that REDIRECTs every new TCP
// connection to or from a shaped peer address (a 127/8 address) to the
// proxy's listener on 127.0.0.1. The proxy reads the connection's original
// destination (SO_ORIGINAL_DST), dials it from the original source address
// with its own sockets marked (SO_MARK) so that nftables lets them through,
// and copies both ways through a shaped pipe. Close removes the table.
// Run it only inside a private network namespace (Start refuses a
// namespace that has an interface other than lo). Every connection to or
// from a shaped address in the namespace is proxied, including other
// tests' (go test runs packages in parallel in one namespace): shaped
// addresses must be nobody else's. By convention 127.0.13.0/24 holds the
// profiles' seeders and 127.0.14.0/24 this package's tests; other tests use
// 127.0.0.0/24.
//
// What it models, per shaped peer:
//   - latency: each chunk read from one side is written to the other RTT/2
//     (plus a uniform jitter in [0, Jitter]) later, in order (the jitter
//     never reorders a stream: TCP would not deliver out of order either);
//     a request/response round trip through the proxy takes ≥ RTT;
//   - bandwidth: a token bucket per peer and direction, shared by all the
//     peer's connections (a peer's access link), so that RateOut caps what
//     the peer sends in all and RateIn what it receives;
//   - direction: the peer is whichever end of the connection is a shaped
//     address (the destination when both are), so connections the peer
//     makes (to a tracker, to a client's listener) are shaped like the ones
//     made to it;
//   - a peer that leaves (SetDown: its connections are reset, new ones in
//     either direction are refused with a TCP reset until it comes back)
//     and a peer that accepts requests and then stalls (SetStalled: its
//     connections stay open and nothing is forwarded either way).
//
// What it does not model: TCP's own window and congestion dynamics at that
// latency (each side talks to the proxy over loopback; the proxy holds at
// most rate × RTT/2 per direction in its delay line (pipeBytes when
// uncapped), and its sockets' small buffers (sockBuf) keep a seeder from
// running far ahead of its link, but there is no slow start and no window
// that shrinks after a loss), packet loss and retransmission, reordering,
// and UDP: it shapes TCP only; uTP, UDP trackers and the DHT pass
// unshaped. The swarms of
// internal/swarmtest and bench/run speak TCP only (aria2c has no uTP, the
// libtorrent seeders have it off), so every peer byte is shaped there.
package shaper

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"
)

// Link is one peer's path: the same in both directions except the rates.
type Link struct {
	// RTT is the round trip the proxy adds: RTT/2 each way.
	RTT time.Duration
	// Jitter adds a uniform [0, Jitter] to each chunk's one-way delay.
	Jitter time.Duration
	// RateOut caps the bytes per second the peer sends (its upload), RateIn
	// the bytes it receives; 0 is no cap.
	RateOut, RateIn float64
}

// PeerStats counts a peer's traffic through the proxy.
type PeerStats struct {
	// Out is the bytes the peer sent (delivered to the other end), In the
	// bytes it received.
	Out, In int64
	// Conns is the peer's open connections; Total all it ever had.
	Conns, Total int
	// Down and Stalled are the peer's state.
	Down, Stalled bool
}

// Config configures a Shaper.
type Config struct {
	// Peers are the shaped addresses (IPv4 loopback) and their links.
	Peers map[netip.Addr]Link
	// Mark is the SO_MARK of the proxy's outgoing sockets (nonzero); the
	// table lets marked packets through. 0 picks 0x62746673 ("btfs").
	Mark uint32
	// Log gets connection events at debug level; nil discards them.
	Log *slog.Logger
}

// chunkMax is the most the proxy reads at once, and so the unit of delay
// and of the token bucket's burst.
const chunkMax = 16 << 10

// sockBuf is SO_RCVBUF and SO_SNDBUF of the proxy's sockets (the kernel
// doubles it). Loopback's 64 KiB segments would otherwise let a seeder
// push megabytes into the kernel buffers between it and the proxy: bytes
// it counts as sent that its shaped link has not carried, queued where a
// CANCEL cannot reach them (minutes at 50 KB/s). On a real path the
// sender's window follows the link; here a seeder can be ahead of its link
// by about 2 × sockBuf plus its own socket's send buffer.
const sockBuf = 16 << 10

// pipeBytes bounds the bytes in flight in one direction of one connection
// (read from one side, not yet written to the other): what the delay line
// holds. 4 MiB covers 160 ms at 25 MB/s.
const pipeBytes = 4 << 20

// Shaper is a running proxy with its nftables table.
type Shaper struct {
	cfg   Config
	ln    *net.TCPListener
	table string
	log   *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	peers map[netip.Addr]*peer
	// closed is set once Close began.
	closed bool
}

// peer is a shaped address's state.
type peer struct {
	link            Link
	out, in         *rate.Limiter
	outBytes        atomic.Int64
	inBytes         atomic.Int64
	conns           map[*conn]struct{}
	total           int
	down            bool
	stalled         bool
	stallCh         chan struct{} // closed when a stall ends
	linkMu          sync.Mutex
	lastOut, lastIn time.Time // the latest due time per direction (no reordering across jitter)
}

// conn is one proxied connection: a accepted (the connecting side), b dialled.
type conn struct {
	a, b *net.TCPConn
	once sync.Once
}

func (c *conn) close(reset bool) {
	c.once.Do(func() {
		if reset {
			_ = c.a.SetLinger(0)
			_ = c.b.SetLinger(0)
		}
		c.a.Close()
		c.b.Close()
	})
}

// Start checks that it runs in a private network namespace, listens on
// 127.0.0.1, installs the nftables table and serves until Close.
func Start(ctx context.Context, cfg Config) (*Shaper, error) {
	if err := CheckPrivateNetns(); err != nil {
		return nil, err
	}
	if cfg.Mark == 0 {
		cfg.Mark = 0x62746673
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for a := range cfg.Peers {
		if !a.Is4() || !a.IsLoopback() || a == netip.AddrFrom4([4]byte{127, 0, 0, 1}) {
			return nil, fmt.Errorf("shaper: peer %v: want a 127/8 address other than 127.0.0.1", a)
		}
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error { return smallBuffers(rc, 0) }}
	l, err := lc.Listen(ctx, "tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("shaper: listen: %w", err)
	}
	ln := l.(*net.TCPListener)
	port := ln.Addr().(*net.TCPAddr).Port
	s := &Shaper{cfg: cfg, ln: ln, log: log, peers: map[netip.Addr]*peer{},
		table: fmt.Sprintf("btfs_shaper_%d", port)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	for a, l := range cfg.Peers {
		s.peers[a] = newPeer(l)
	}
	if err := s.nft(ctx, s.rules(port)); err != nil {
		ln.Close()
		s.cancel()
		return nil, err
	}
	s.wg.Go(s.serve)
	return s, nil
}

func newPeer(l Link) *peer {
	p := &peer{conns: map[*conn]struct{}{}}
	p.setLink(l)
	return p
}

// setLink sets the link and its limiters (callers hold Shaper.mu or own p).
func (p *peer) setLink(l Link) {
	p.link = l
	p.out, p.in = limiter(l.RateOut), limiter(l.RateIn)
}

// limiter is a token bucket of r bytes/s whose burst is one chunk: the cap
// holds over any window longer than a chunk's time.
func limiter(r float64) *rate.Limiter {
	if r <= 0 {
		return rate.NewLimiter(rate.Inf, chunkMax)
	}
	return rate.NewLimiter(rate.Limit(r), chunkMax)
}

// CheckPrivateNetns returns an error unless the only network interface is
// lo: the table redirects traffic of the whole namespace, which must never
// be the host's.
func CheckPrivateNetns() error {
	// Asked by netlink: /sys/class/net shows the namespace sysfs was
	// mounted in, not necessarily this one.
	ifs, err := net.Interfaces()
	if err != nil {
		return fmt.Errorf("shaper: %w", err)
	}
	for _, i := range ifs {
		if i.Name != "lo" {
			return fmt.Errorf("shaper: network interface %s: run in a private network namespace (unshare -n) with only lo", i.Name)
		}
	}
	return nil
}

// rules is the table: a reject chain before NAT for peers that are down,
// and the redirect of every other new TCP connection to or from a peer.
func (s *Shaper) rules(port int) string {
	var addrs []string
	for a := range s.peers {
		addrs = append(addrs, a.String())
	}
	return fmt.Sprintf(`table ip %[1]s {
	set peers { type ipv4_addr; elements = { %[2]s } }
	set down { type ipv4_addr; }
	chain gone {
		type filter hook output priority -150; policy accept;
		meta mark %[3]d return
		ct state new ip daddr @down meta l4proto tcp reject with tcp reset
		ct state new ip saddr @down meta l4proto tcp reject with tcp reset
	}
	chain proxy {
		type nat hook output priority -100; policy accept;
		meta mark %[3]d return
		ip daddr @peers meta l4proto tcp redirect to :%[4]d
		ip saddr @peers meta l4proto tcp redirect to :%[4]d
	}
}
`, s.table, strings.Join(addrs, ", "), s.cfg.Mark, port)
}

// nft runs nft -f with script on stdin.
func (s *Shaper) nft(ctx context.Context, script string) error {
	cmd := exec.CommandContext(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("shaper: nft: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Table is the name of the nftables table (family ip) it installed.
func (s *Shaper) Table() string { return s.table }

// Addr is the proxy's listener.
func (s *Shaper) Addr() netip.AddrPort { return s.ln.Addr().(*net.TCPAddr).AddrPort() }

// Close removes the table, resets every proxied connection and waits for
// the proxy's goroutines.
func (s *Shaper) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var all []*conn
	for _, p := range s.peers {
		for c := range p.conns {
			all = append(all, c)
		}
		if p.stallCh != nil {
			close(p.stallCh)
			p.stallCh = nil
		}
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.nft(ctx, "delete table ip "+s.table+"\n")
	s.cancel()
	s.ln.Close()
	for _, c := range all {
		c.close(true)
	}
	s.wg.Wait()
	return err
}

func (s *Shaper) serve() {
	for {
		a, err := s.ln.AcceptTCP()
		if err != nil {
			if s.ctx.Err() == nil {
				s.log.Warn("shaper: accept", "err", err)
			}
			return
		}
		s.wg.Go(func() { s.handle(a) })
	}
}

// smallBuffers sets sockBuf as the socket's buffers (before connect or
// listen, so that the window scale follows) and, when mark is nonzero, its
// SO_MARK.
func smallBuffers(rc syscall.RawConn, mark uint32) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = errors.Join(
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, sockBuf),
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, sockBuf))
		if mark != 0 && serr == nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
		}
	}); err != nil {
		return err
	}
	return serr
}

// OriginalDst is where a redirected connection was headed (SO_ORIGINAL_DST).
func OriginalDst(c *net.TCPConn) (netip.AddrPort, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	var mreq *unix.IPv6Mreq
	var serr error
	if err := rc.Control(func(fd uintptr) {
		// sockaddr_in fits in the 16 bytes of an ipv6_mreq: the usual way
		// to read it without cgo.
		mreq, serr = unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST)
	}); err != nil {
		return netip.AddrPort{}, err
	}
	if serr != nil {
		return netip.AddrPort{}, fmt.Errorf("shaper: SO_ORIGINAL_DST: %w", serr)
	}
	m := mreq.Multiaddr
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{m[4], m[5], m[6], m[7]}), uint16(m[2])<<8|uint16(m[3])), nil
}

func (s *Shaper) handle(a *net.TCPConn) {
	dst, err := OriginalDst(a)
	if err != nil {
		s.log.Warn("shaper: original destination", "err", err)
		a.Close()
		return
	}
	src := a.RemoteAddr().(*net.TCPAddr).AddrPort()
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	s.mu.Lock()
	addr, p := dst.Addr(), s.peers[dst.Addr()]
	if p == nil {
		addr, p = src.Addr(), s.peers[src.Addr()]
	}
	closed := s.closed
	s.mu.Unlock()
	if p == nil || closed {
		a.Close()
		return
	}
	d := net.Dialer{
		LocalAddr: &net.TCPAddr{IP: src.Addr().AsSlice()},
		Control:   func(_, _ string, rc syscall.RawConn) error { return smallBuffers(rc, s.cfg.Mark) },
	}
	bc, err := d.DialContext(s.ctx, "tcp4", dst.String())
	if err != nil {
		s.log.Debug("shaper: dial", "dst", dst, "err", err)
		_ = a.SetLinger(0)
		a.Close()
		return
	}
	c := &conn{a: a, b: bc.(*net.TCPConn)}
	s.mu.Lock()
	if s.closed || p.down {
		s.mu.Unlock()
		c.close(true)
		return
	}
	p.conns[c] = struct{}{}
	p.total++
	s.mu.Unlock()
	s.log.Debug("shaper: proxying", "src", src, "dst", dst, "peer", addr)
	// The peer's outgoing direction is the one from its side.
	peerIsDst := addr == dst.Addr()
	var wg sync.WaitGroup
	wg.Go(func() { s.pipe(c, c.b, c.a, p, peerIsDst) })  // dst -> src
	wg.Go(func() { s.pipe(c, c.a, c.b, p, !peerIsDst) }) // src -> dst
	wg.Wait()
	c.close(false)
	s.mu.Lock()
	delete(p.conns, c)
	s.mu.Unlock()
}

// segment is a chunk in the delay line.
type segment struct {
	b   []byte
	due time.Time
}

// pipe copies from r to w through the peer's delay and token bucket;
// fromPeer says the bytes are the peer's upload.
func (s *Shaper) pipe(c *conn, r, w *net.TCPConn, p *peer, fromPeer bool) {
	line := make(chan segment, pipeBytes/chunkMax)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.writer(c, w, line, p, fromPeer)
	}()
	defer func() { close(line); <-done }()
	for {
		s.mu.Lock()
		lim := p.in
		if fromPeer {
			lim = p.out
		}
		link := p.link
		s.mu.Unlock()
		buf := make([]byte, chunkMax)
		n, err := r.Read(buf)
		if n > 0 {
			if werr := lim.WaitN(s.ctx, n); werr != nil {
				return
			}
			due := time.Now().Add(link.RTT / 2)
			if link.Jitter > 0 {
				due = due.Add(rand.N(link.Jitter + 1))
			}
			p.linkMu.Lock()
			last := &p.lastIn
			if fromPeer {
				last = &p.lastOut
			}
			if due.Before(*last) {
				due = *last
			}
			*last = due
			p.linkMu.Unlock()
			select {
			case line <- segment{buf[:n], due}:
			case <-done: // the writer gave up
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				c.close(true)
			}
			return
		}
	}
}

// writer writes each segment when it is due, holding it while the peer
// stalls; it half-closes w once the line is closed and drained.
func (s *Shaper) writer(c *conn, w *net.TCPConn, line <-chan segment, p *peer, fromPeer bool) {
	t := time.NewTimer(0)
	defer t.Stop()
	for seg := range line {
		if d := time.Until(seg.due); d > 0 {
			t.Reset(d)
			select {
			case <-t.C:
			case <-s.ctx.Done():
				return
			}
		}
		for {
			s.mu.Lock()
			ch := p.stallCh
			s.mu.Unlock()
			if ch == nil {
				break
			}
			select {
			case <-ch:
			case <-s.ctx.Done():
				return
			}
		}
		if _, err := w.Write(seg.b); err != nil {
			c.close(true)
			return
		}
		if fromPeer {
			p.outBytes.Add(int64(len(seg.b)))
		} else {
			p.inBytes.Add(int64(len(seg.b)))
		}
	}
	_ = w.CloseWrite()
}

// peerOf returns the peer at a, or an error.
func (s *Shaper) peerOf(a netip.Addr) (*peer, error) {
	p := s.peers[a]
	if p == nil {
		return nil, fmt.Errorf("shaper: %v is not a shaped peer", a)
	}
	return p, nil
}

// SetDown makes the peer leave (its connections are reset, new ones
// refused) or come back.
func (s *Shaper) SetDown(ctx context.Context, a netip.Addr, down bool) error {
	s.mu.Lock()
	p, err := s.peerOf(a)
	if err != nil || p.down == down {
		s.mu.Unlock()
		return err
	}
	p.down = down
	var conns []*conn
	for c := range p.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	op := "add"
	if !down {
		op = "delete"
	}
	// The set first, so that a connection accepted meanwhile is refused.
	if err := s.nft(ctx, fmt.Sprintf("%s element ip %s down { %s }\n", op, s.table, a)); err != nil {
		return err
	}
	for _, c := range conns {
		c.close(true)
	}
	return nil
}

// SetStalled stops (or resumes) forwarding anything to or from the peer;
// its connections stay open.
func (s *Shaper) SetStalled(a netip.Addr, stalled bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.peerOf(a)
	if err != nil || p.stalled == stalled {
		return err
	}
	p.stalled = stalled
	if stalled {
		p.stallCh = make(chan struct{})
	} else {
		close(p.stallCh)
		p.stallCh = nil
	}
	return nil
}

// SetLink changes the peer's link for the chunks read from now on.
func (s *Shaper) SetLink(a netip.Addr, l Link) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.peerOf(a)
	if err != nil {
		return err
	}
	p.setLink(l)
	return nil
}

// Stats returns every peer's counters.
func (s *Shaper) Stats() map[netip.Addr]PeerStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[netip.Addr]PeerStats, len(s.peers))
	for a, p := range s.peers {
		out[a] = PeerStats{Out: p.outBytes.Load(), In: p.inBytes.Load(), Conns: len(p.conns),
			Total: p.total, Down: p.down, Stalled: p.stalled}
	}
	return out
}
