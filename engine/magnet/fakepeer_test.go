package magnet

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

	"btfs/engine/metadata"
	"btfs/engine/transport"
	"btfs/engine/wire"
	"btfs/metainfo"
)

// fakePeer is a BitTorrent peer written in the test: it listens on a
// loopback address, answers the handshake for one info-hash, and then does
// exactly what its behaviour says, including what no real client would.
type fakePeer struct {
	// addr is where it listens.
	addr netip.AddrPort
	// ln accepts connections.
	ln net.Listener
	// accepted counts connections accepted (redials show up here).
	accepted atomic.Int32
	// requests counts ut_metadata requests received.
	requests atomic.Int32
	// ended is closed when its first connection has ended, for any
	// reason (Fetch dropped it, or returned).
	ended chan struct{}
	// endOnce guards ended.
	endOnce sync.Once
	// mu guards conns.
	mu sync.Mutex
	// conns are the open connections, closed by cleanup.
	conns map[net.Conn]bool
	// stopping is set by cleanup.
	stopping bool
	// wg counts its goroutines.
	wg sync.WaitGroup
	// noExtensions leaves BEP 10's bit out of its handshake; set it
	// before the first connection.
	noExtensions bool
}

// fakeConn is one connection of a fakePeer after the handshake.
type fakeConn struct {
	p    *fakePeer
	conn net.Conn
	r    *wire.Reader
	w    *wire.Writer
	// theirMeta is the ut_metadata ID of the other side (Fetch), once its
	// extension handshake has been read.
	theirMeta int
}

// fakeMetaID is the ut_metadata ID fake peers announce.
const fakeMetaID = 7

// behaviour is what a fake peer does on a connection after the
// handshake; the connection closes when it returns.
type behaviour func(c *fakeConn) error

// listenFake starts a fake peer on ip for ih.
func listenFake(t *testing.T, ip string, ih metainfo.Hash, behave behaviour) *fakePeer {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	p := &fakePeer{ln: ln, addr: ln.Addr().(*net.TCPAddr).AddrPort(), ended: make(chan struct{}), conns: map[net.Conn]bool{}}
	hs := wire.Handshake{InfoHash: ih, PeerID: wire.NewPeerID()}
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		p.stopping = true
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	p.wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			p.accepted.Add(1)
			p.mu.Lock()
			if p.stopping {
				p.mu.Unlock()
				conn.Close()
				return
			}
			p.conns[conn] = true
			p.mu.Unlock()
			p.wg.Go(func() {
				defer p.endOnce.Do(func() { close(p.ended) })
				defer conn.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				// Like a real client it takes MSE or plain (Fetch dials
				// encrypted first).
				tc, err := transport.New(transport.Config{}).Accept(ctx, conn, func(metainfo.Hash) (wire.Handshake, bool) {
					hs := hs
					if !p.noExtensions {
						hs.Reserved.SetExtensions()
					}
					return hs, true
				}, slices.Values([][20]byte{hs.InfoHash}))
				cancel()
				if err != nil {
					return
				}
				c := &fakeConn{p: p, conn: tc.Conn, r: wire.NewReader(tc.Conn, wire.Limits{}), w: wire.NewWriter(tc.Conn)}
				behave(c)
			})
		}
	})
	return p
}

// send writes and flushes messages.
func (c *fakeConn) send(ms ...wire.Message) error {
	for _, m := range ms {
		if err := c.w.WriteMessage(m); err != nil {
			return err
		}
	}
	return c.w.Flush()
}

// sendExtHandshake announces ut_metadata and, when size > 0,
// metadata_size.
func (c *fakeConn) sendExtHandshake(size int64) error {
	eh := wire.ExtHandshake{M: map[string]int{wire.ExtMetadata: fakeMetaID}, V: "fake", MetadataSize: size}
	payload, err := eh.Encode()
	if err != nil {
		return err
	}
	return c.send(wire.Message{ID: wire.Extended, ExtendedID: wire.ExtHandshakeID, Payload: payload})
}

// serve reads until the connection ends, answering each ut_metadata
// request with answer(piece) (ok false: a reject).
func (c *fakeConn) serve(answer func(piece int) (wire.MetadataMsg, bool)) error {
	for {
		m, err := c.r.ReadMessage()
		if err != nil {
			return err
		}
		if m.ID != wire.Extended || m.KeepAlive {
			continue
		}
		switch m.ExtendedID {
		case wire.ExtHandshakeID:
			eh, err := wire.ParseExtHandshake(m.Payload, 0)
			if err != nil {
				return err
			}
			c.theirMeta = eh.M[wire.ExtMetadata]
		case fakeMetaID:
			req, err := wire.ParseMetadataMsg(m.Payload, 0)
			if err != nil {
				return err
			}
			if req.Type != wire.MetadataRequest {
				continue
			}
			c.p.requests.Add(1)
			if c.theirMeta == 0 {
				return errors.New("request before the extension handshake")
			}
			reply, ok := answer(req.Piece)
			if !ok {
				reply = wire.MetadataMsg{Type: wire.MetadataReject, Piece: req.Piece}
			}
			payload, err := wire.EncodeMetadataMsg(reply)
			if err != nil {
				return err
			}
			if err := c.send(wire.Message{ID: wire.Extended, ExtendedID: uint8(c.theirMeta), Payload: payload}); err != nil {
				return err
			}
		}
	}
}

// honest serves info once gate is closed (nil: at once): it sends its
// extension handshake only then, so that hostile peers have had their
// turn first.
func honest(info []byte, gate <-chan struct{}) behaviour {
	srv := metadata.NewServer(info)
	return func(c *fakeConn) error {
		if gate != nil {
			select {
			case <-gate:
			case <-time.After(30 * time.Second):
			}
		}
		if err := c.sendExtHandshake(int64(len(info))); err != nil {
			return err
		}
		return c.serve(func(i int) (wire.MetadataMsg, bool) {
			m := srv.Answer(i)
			return m, m.Type == wire.MetadataData
		})
	}
}

// claims announces size and answers requests with data made by fill
// (nil fill: rejects).
func claims(size int64, fill func(piece, n int) []byte) behaviour {
	return func(c *fakeConn) error {
		if err := c.sendExtHandshake(size); err != nil {
			return err
		}
		return c.serve(func(i int) (wire.MetadataMsg, bool) {
			if fill == nil {
				return wire.MetadataMsg{}, false
			}
			n := wire.MetadataPieceLen(size, i)
			return wire.MetadataMsg{Type: wire.MetadataData, Piece: i, TotalSize: size, Data: fill(i, n)}, true
		})
	}
}

// raw sends bytes as they are after the handshake, then reads until the
// connection ends.
func raw(b []byte) behaviour {
	return func(c *fakeConn) error {
		if _, err := c.conn.Write(b); err != nil {
			return err
		}
		_, err := c.conn.Read(make([]byte, 1<<16))
		for err == nil {
			_, err = c.conn.Read(make([]byte, 1<<16))
		}
		return err
	}
}

// afterExt sends a valid extension handshake announcing size, then, on
// the first request, the bytes b as they are.
func afterExt(size int64, b []byte) behaviour {
	return func(c *fakeConn) error {
		if err := c.sendExtHandshake(size); err != nil {
			return err
		}
		sent := false
		return c.serve(func(int) (wire.MetadataMsg, bool) {
			if !sent {
				sent = true
				c.conn.Write(b)
			}
			return wire.MetadataMsg{}, false
		})
	}
}
