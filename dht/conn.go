package dht

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"
)

// conn is the socket the library's Server reads and writes. It exists for
// three behaviours of the library that a long-running mount cannot have:
//   - a packet that is not valid bencoded KRPC is logged by the library
//     through anacrolix/log's global logger, to stderr, whatever Logger
//     the Server was given: conn drops such packets first (and counts them);
//   - a read error while the Server is not closed makes the library panic
//     (serveUntilClosed): conn reports read errors only once Close has
//     been called, and otherwise logs the error and blocks until then;
//   - the library closes its socket from a goroutine of its own and its
//     read loop may return without reading again, so its Close does not
//     tell when the loop ended: conn's Close returns only when no read is
//     in progress, and no read starts after it.
type conn struct {
	net.PacketConn
	// log receives a read error that came before Close.
	log *slog.Logger
	// garbage counts dropped packets that were not KRPC.
	garbage atomic.Int64
	// closing is closed by Close.
	closing chan struct{}

	// mu guards the fields below; idle is signalled when reading drops to 0.
	mu       sync.Mutex
	idle     *sync.Cond
	closed   bool
	reading  int
	closeErr error
}

func newConn(pc net.PacketConn, log *slog.Logger) *conn {
	c := &conn{PacketConn: pc, log: log, closing: make(chan struct{})}
	c.idle = sync.NewCond(&c.mu)
	return c
}

// ReadFrom returns the next packet that decodes as a KRPC message.
func (c *conn) ReadFrom(b []byte) (int, net.Addr, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, nil, net.ErrClosed
	}
	c.reading++
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.reading--
		if c.reading == 0 {
			c.idle.Broadcast()
		}
		c.mu.Unlock()
	}()
	for {
		n, addr, err := c.PacketConn.ReadFrom(b)
		if err != nil {
			select {
			case <-c.closing:
			default:
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					continue
				}
				c.log.Warn("dht: socket read failed; DHT stopped until close", "err", err)
				<-c.closing
			}
			return n, addr, err
		}
		if n == len(b) || !isKRPC(b[:n]) {
			c.garbage.Add(1)
			continue
		}
		return n, addr, nil
	}
}

// isKRPC reports whether the library will decode b without complaint: the
// same test as its processPacket, so that its global log is never reached.
func isKRPC(b []byte) bool {
	if len(b) < 2 || b[0] != 'd' {
		return false
	}
	var m krpc.Msg
	err := bencode.Unmarshal(b, &m)
	var trailing bencode.ErrUnusedTrailingBytes
	return err == nil || errors.As(err, &trailing)
}

// Close closes the socket once (the library calls it too) and returns
// when no ReadFrom is running.
func (c *conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		close(c.closing)
		c.closeErr = c.PacketConn.Close()
	}
	for c.reading > 0 {
		c.idle.Wait()
	}
	return c.closeErr
}
