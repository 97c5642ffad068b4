package engine

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"btfs/engine/transport"
	"btfs/engine/wire"
	"btfs/metainfo"
)

// rawPeer is a BitTorrent peer written in the test: it speaks the wire
// protocol through engine/wire and does exactly what a test case says,
// including what no real client would. It either listens (btfs dials it)
// or dials (it connects to btfs).
type rawPeer struct {
	// ln accepts connections; nil for a dialling peer.
	ln net.Listener
	// addr is where it listens.
	addr netip.AddrPort
	// dropped is closed the first time the other side ends a connection
	// (a read or write fails while the test is still running).
	dropped chan struct{}
	// dropOnce guards dropped.
	dropOnce sync.Once
	// stopping is set by cleanup: failures after it are ours.
	stopping atomic.Bool
	// mu guards conns and from.
	mu sync.Mutex
	// conns are the open connections, closed by cleanup.
	conns map[net.Conn]bool
	// from counts the handshaken connections per peer ID of the other
	// side: a test with two btfs engines tells their dials apart.
	from map[[20]byte]int
	// wg counts the goroutines it started.
	wg sync.WaitGroup
}

// rawConn is one connection of a rawPeer after the handshake.
type rawConn struct {
	conn net.Conn       // the connection, after the handshake
	r    *wire.Reader   // reads conn; one goroutine at a time
	w    *wire.Writer   // writes conn; one goroutine at a time
	hs   wire.Handshake // the other side's
	bg   sync.WaitGroup // goroutines of the behaviour, waited for after the connection closes
}

// goRead runs fn in a goroutine of the connection (a reader beside a
// writing behaviour); it ends when the connection closes.
func (c *rawConn) goRead(fn func()) { c.bg.Go(fn) }

// send writes and flushes messages.
func (c *rawConn) send(ms ...wire.Message) error {
	for _, m := range ms {
		if err := c.w.WriteMessage(m); err != nil {
			return err
		}
	}
	return c.w.Flush()
}

// rawHandshake is the handshake a rawPeer sends for mi.
func rawHandshake(mi *metainfo.MetaInfo, fast bool) wire.Handshake {
	hs := wire.Handshake{InfoHash: mi.InfoHash, PeerID: wire.NewPeerID()}
	if fast {
		hs.Reserved.SetFast()
	}
	return hs
}

func newRawPeer(t *testing.T) *rawPeer {
	rp := &rawPeer{dropped: make(chan struct{}), conns: map[net.Conn]bool{}, from: map[[20]byte]int{}}
	t.Cleanup(func() {
		rp.stopping.Store(true)
		if rp.ln != nil {
			rp.ln.Close()
		}
		rp.mu.Lock()
		for c := range rp.conns {
			c.Close()
		}
		rp.mu.Unlock()
		rp.wg.Wait()
	})
	return rp
}

// listenRawPeer starts a rawPeer listening on ip that runs behave on every
// connection it accepts, after the handshake (fast: it offers BEP 6).
func listenRawPeer(t *testing.T, mi *metainfo.MetaInfo, ip string, fast bool, behave func(*rawConn) error) *rawPeer {
	t.Helper()
	return listenRawPeerHS(t, mi, ip, rawHandshake(mi, fast), behave)
}

// listenRawPeerHS is listenRawPeer with the handshake to send.
func listenRawPeerHS(t *testing.T, mi *metainfo.MetaInfo, ip string, ours wire.Handshake, behave func(*rawConn) error) *rawPeer {
	t.Helper()
	rp := newRawPeer(t)
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	rp.ln = ln
	rp.addr = addrOf(ln.Addr())
	rp.wg.Add(1)
	go func() {
		defer rp.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			rp.serve(conn, func(ctx context.Context) (net.Conn, wire.Handshake, error) {
				// Like a real client it takes MSE or plain (the engine
				// dials encrypted first): the behaviour runs on the
				// decrypted stream.
				c, err := transport.New(transport.Config{}).Accept(ctx, conn, func(metainfo.Hash) (wire.Handshake, bool) { return ours, true }, slices.Values([][20]byte{mi.InfoHash}))
				if err != nil {
					return nil, wire.Handshake{}, err
				}
				return c.Conn, c.Peer, nil
			}, behave)
		}
	}()
	return rp
}

// dialRawPeer connects a rawPeer to btfs at addr and runs behave on the
// connection after the handshake.
func dialRawPeer(t *testing.T, mi *metainfo.MetaInfo, addr netip.AddrPort, fast bool, behave func(*rawConn) error) *rawPeer {
	t.Helper()
	return dialRawPeerHS(t, addr, rawHandshake(mi, fast), behave)
}

// dialRawPeerHS is dialRawPeer with the handshake to send (reserved bits
// of the test's choosing).
func dialRawPeerHS(t *testing.T, addr netip.AddrPort, ours wire.Handshake, behave func(*rawConn) error) *rawPeer {
	t.Helper()
	rp := newRawPeer(t)
	conn, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	rp.serve(conn, func(ctx context.Context) (net.Conn, wire.Handshake, error) {
		hs, err := wire.Initiate(ctx, conn, ours)
		return conn, hs, err
	}, behave)
	return rp
}

// serve handshakes conn and runs behave on it (on the stream the
// handshake returns: conn, or conn decrypted) in a goroutine.
func (rp *rawPeer) serve(conn net.Conn, handshake func(context.Context) (net.Conn, wire.Handshake, error), behave func(*rawConn) error) {
	rp.mu.Lock()
	if rp.stopping.Load() {
		rp.mu.Unlock()
		conn.Close()
		return
	}
	rp.conns[conn] = true
	rp.mu.Unlock()
	rp.wg.Add(1)
	go func() {
		defer rp.wg.Done()
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		stream, hs, err := handshake(ctx)
		cancel()
		if err == nil {
			rp.mu.Lock()
			rp.from[hs.PeerID]++
			rp.mu.Unlock()
			conn.SetDeadline(time.Time{})
			c := &rawConn{conn: stream, r: wire.NewReader(stream, wire.Limits{MaxBlock: wire.DefaultMaxRequest}), w: wire.NewWriter(stream), hs: hs}
			err = behave(c)
			conn.Close()
			c.bg.Wait()
		}
		if err != nil && !errors.Is(err, errDone) && !rp.stopping.Load() {
			rp.dropOnce.Do(func() { close(rp.dropped) })
		}
	}()
}

// connectionsFrom is how many handshaken connections the peer whose ID is
// id made with rp.
func (rp *rawPeer) connectionsFrom(id [20]byte) int {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	return rp.from[id]
}

// errDone ends a behaviour without counting as a drop.
var errDone = errors.New("behaviour done")

// waitDropped fails t unless the other side ends a connection within d.
func (rp *rawPeer) waitDropped(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-rp.dropped:
	case <-time.After(d):
		t.Fatalf("btfs kept the connection of the raw peer for %v", d)
	}
}

// readUntil reads messages, calling fn on each, until fn or the
// connection fails.
func (c *rawConn) readUntil(fn func(wire.Message) error) error {
	for {
		m, err := c.r.ReadMessage()
		if err != nil {
			return err
		}
		if m.KeepAlive {
			continue
		}
		if err := fn(m); err != nil {
			return err
		}
	}
}
