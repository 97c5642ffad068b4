package utp

import (
	"encoding/binary"
	"net"
	"sync"
	"time"
)

// Why a socket sends itself packets.
//
// When a reader falls behind, libutp's receive buffer (1 MiB) fills and
// the window it advertises shrinks below one packet; the sender stops.
// Reading the backlog reopens the window, and libutp's utp_read_drained
// then owes the sender a window update: it sends it at once only if the
// advertised window had reached exactly 0, otherwise it schedules it as
// a deferred ACK, sent by utp_issue_deferred_acks. go-libutp v1.3.2 calls
// that only after it processed an incoming uTP packet, and none comes:
// the sender waits for a window update, the receiver waits for data, and
// the transfer stands still until libutp's keep-alive 29 s later. It
// stalled every download from a uTP-only libtorrent seeder whose reader
// lagged for a moment (bench/run row T: 2.2 MB/s against 8.3 MB/s).
//
// The library exposes no way to issue the deferred ACKs (the call is
// commented out in its Conn.Read) and libutp is not safe to call outside
// the library's own lock, so the socket makes libutp process a packet:
// it sends itself a 20-byte ST_RESET for a connection that does not
// exist. libutp recognises it as uTP, ignores it (no reply, no state),
// and, as after any uTP packet, issues the deferred ACKs within 1 ms: the
// window update goes out. A connection asks for that when its reader
// drained the buffer after having been behind (lag.read), so a reader
// that keeps up costs nothing, and a lagging one at most one packet per
// drain plus one per trailingNudge.

// nudgePacket is a uTP v1 header: type ST_RESET (3) and version 1 in the
// first byte, then extension 0 and connection id nudgeConnID; the
// timestamps, window and sequence numbers are zero. A RESET for an
// unknown connection is the one packet libutp neither answers nor keeps.
var nudgePacket = func() []byte {
	b := make([]byte, 20)
	b[0] = 3<<4 | 1
	binary.BigEndian.PutUint16(b[2:], nudgeConnID)
	return b
}()

// nudgeConnID is the connection id of the nudge; a real connection with
// our own address as its remote and this id does not exist.
const nudgeConnID = 0xb7f5

// lagBytes is a read large enough that the window had closed to at most
// 1 MiB - lagBytes before it: treated like a read that filled its buffer.
const lagBytes = 256 << 10

// trailingNudge bounds the stall when a read that filled its buffer
// happened to drain libutp's exactly (the next read then blocks, and
// nothing tells this package the window is open): a nudge follows every
// such read within this delay.
const trailingNudge = 10 * time.Millisecond

// nudger sends the nudges asked for; asks that come while one is on its
// way merge into one.
func (s *Socket) nudger() {
	defer s.wg.Done()
	if s.self == nil {
		return
	}
	for {
		select {
		case <-s.closing:
			return
		case <-s.nudges:
		}
		// A lost nudge costs what the missing ACK did; an error here is
		// the socket closing under us.
		_, _ = s.lib.WriteTo(nudgePacket, s.self)
	}
}

// nudge asks the nudger for a nudge without waiting.
func (s *Socket) nudge() {
	select {
	case s.nudges <- struct{}{}:
	default:
	}
}

// selfAddr is the address at which the socket bound to a receives its own
// packets: the loopback address of a wildcard bind (127.0.0.1 reaches a
// dual-stack [::] socket too), the bound address otherwise.
func selfAddr(a net.Addr) net.Addr {
	u, ok := a.(*net.UDPAddr)
	if !ok {
		return nil
	}
	ip := u.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return &net.UDPAddr{IP: ip, Port: u.Port}
}

// lag follows one connection's reads: whether its reader has been behind
// the sender since the buffer was last drained.
type lag struct {
	mu      sync.Mutex
	behind  bool        // a read filled its buffer since the last drain
	timer   *time.Timer // the trailing nudge, armed while behind
	stopped bool        // the connection is closed
}

// read records a read of n bytes into a buffer of size bytes on a
// connection of s, and nudges s when the read may have reopened the
// window: n < size means libutp's buffer is now empty (its Read returns
// all it holds up to size).
func (l *lag) read(s *Socket, n, size int) {
	if n <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if n < size {
		if l.behind || n >= lagBytes {
			l.behind = false
			s.nudge()
		}
		return
	}
	l.behind = true
	if l.timer == nil && !l.stopped {
		l.timer = time.AfterFunc(trailingNudge, func() {
			l.mu.Lock()
			l.timer = nil
			fire := l.behind && !l.stopped
			l.mu.Unlock()
			if fire {
				s.nudge()
			}
		})
	}
}

// stop ends the trailing nudge of a closed connection.
func (l *lag) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
}
