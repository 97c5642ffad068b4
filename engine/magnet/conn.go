package magnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"btfs/engine/wire"
)

// Tuning of a connection.
const (
	// ourMetadataID is the sub-ID we ask peers to send ut_metadata
	// messages with (any of 1..255; the engine's choice is its own).
	ourMetadataID = 3
	// maxExtended caps an extended message: an extension handshake is at
	// most wire.MaxExtHandshakeLen, a ut_metadata data message 16 KiB and
	// a small dictionary. Anything larger is not something we asked for.
	maxExtended = wire.MaxExtHandshakeLen
	// outQueue is a connection's send queue: requests (at most
	// metadata.PeerPipeline, or four times that for a single-mode owner)
	// and our rejects of its requests. A peer that does not take them is
	// dropped when the queue is full.
	outQueue = 32
	// idleTimeout drops a peer that sends nothing, not even a keep-alive.
	idleTimeout = 3 * time.Minute
	// keepAliveEvery is how often we send a keep-alive to an idle peer.
	keepAliveEvery = time.Minute
	// writeTimeout bounds one write: a peer that does not read is gone.
	writeTimeout = 30 * time.Second
)

// peerConn is one handshaken connection. The loop owns the fields below
// conn; the connection's goroutines use only id, addr, conn and out.
type peerConn struct {
	id   string         // the Fetcher's id for it: addr.String()
	addr netip.AddrPort // the address dialled
	conn net.Conn       // closed by close, or when Fetch returns
	out  chan wire.Message
	quit chan struct{} // closed when the reader ends: the writer stops

	closed  bool      // the loop dropped it; later events are ignored
	extDone bool      // its extension handshake arrived
	offered bool      // it announced a usable metadata_size
	metaID  int       // its ut_metadata sub-ID, 0 before its handshake
	since   time.Time // when the loop admitted it
}

// close closes the connection; its goroutines then end.
func (c *peerConn) close() { c.conn.Close() }

// send queues m for the writer without blocking; false when the queue is
// full.
func (c *peerConn) send(m wire.Message) bool {
	select {
	case c.out <- m:
		return true
	default:
		return false
	}
}

// connect dials addr, handshakes, sends our extension handshake, and then
// reads the connection until it ends, reporting to the loop. It runs in a
// goroutine counted by f.wg.
func (f *fetch) connect(addr netip.AddrPort) {
	defer f.wg.Done()
	conn, hs, err := f.dial(addr)
	if err != nil {
		f.post(dialFailedEvent{addr: addr, err: err})
		return
	}
	stop := context.AfterFunc(f.ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	c := &peerConn{
		id:   addr.String(),
		addr: addr,
		conn: conn,
		out:  make(chan wire.Message, outQueue),
		quit: make(chan struct{}),
	}
	if !f.post(connEvent{c: c, hs: hs}) {
		return
	}
	f.wg.Add(1)
	go f.write(c)
	err = f.read(c)
	close(c.quit)
	conn.Close()
	f.post(goneEvent{c: c, err: err})
}

// dial connects and handshakes through the transport (encrypted or not,
// as its policy says; each attempt within DialTimeout + HandshakeTimeout);
// on success the connection has no deadline and our extension handshake
// has been sent when the peer speaks BEP 10.
func (f *fetch) dial(addr netip.AddrPort) (net.Conn, wire.Handshake, error) {
	c, err := f.cfg.Transport.Dial(f.ctx, addr, f.hs)
	if err != nil {
		return nil, wire.Handshake{}, err
	}
	conn, hs := net.Conn(c.Conn), c.Peer
	if hs.Reserved.SupportsExtensions() {
		// No metadata_size: we have none. The engine announces ours later.
		eh := wire.ExtHandshake{M: map[string]int{wire.ExtMetadata: ourMetadataID}, V: "btfs 0.1", Port: f.cfg.Port}
		if a := addr.Addr(); a.IsValid() {
			eh.YourIP = a
		}
		payload, err := eh.Encode()
		if err == nil {
			w := wire.NewWriter(conn)
			conn.SetWriteDeadline(time.Now().Add(f.cfg.HandshakeTimeout))
			if err = w.WriteMessage(wire.Message{ID: wire.Extended, ExtendedID: wire.ExtHandshakeID, Payload: payload}); err == nil {
				err = w.Flush()
			}
		}
		if err != nil {
			conn.Close()
			return nil, wire.Handshake{}, fmt.Errorf("sending extension handshake: %w", err)
		}
	}
	conn.SetDeadline(time.Time{})
	return conn, hs, nil
}

// write sends what the loop queues, and keep-alives, until the reader
// ends or Fetch returns.
func (f *fetch) write(c *peerConn) {
	defer f.wg.Done()
	w := wire.NewWriter(c.conn)
	keepAlive := time.NewTicker(keepAliveEvery)
	defer keepAlive.Stop()
	for {
		var m wire.Message
		select {
		case <-c.quit:
			return
		case <-f.ctx.Done():
			return
		case <-keepAlive.C:
			m = wire.Message{KeepAlive: true}
		case m = <-c.out:
		}
		c.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		err := w.WriteMessage(m)
		for err == nil && len(c.out) > 0 { // batch what is queued into one write
			err = w.WriteMessage(<-c.out)
		}
		if err == nil {
			err = w.Flush()
		}
		if err != nil {
			c.conn.Close() // the reader sees it and reports the end
			return
		}
	}
}

// read reads the connection until it fails, passing what matters to the
// loop: the extension handshake, ut_metadata data and rejects. Requests
// for our metadata get a reject (we have none); everything else
// (bitfield, have, have-all, choke, ...) is read within wire's limits and
// ignored. A message that breaks the rules ends the connection.
func (f *fetch) read(c *peerConn) error {
	r := wire.NewReader(c.conn, wire.Limits{MaxExtended: maxExtended})
	theirMeta := 0 // the peer's ut_metadata ID, for our rejects
	for {
		c.conn.SetReadDeadline(time.Now().Add(idleTimeout))
		m, err := r.ReadMessage()
		if err != nil && !errors.Is(err, wire.ErrRequestTooLarge) {
			return err
		}
		if m.KeepAlive || m.ID != wire.Extended {
			continue
		}
		switch m.ExtendedID {
		case wire.ExtHandshakeID:
			eh, err := wire.ParseExtHandshake(m.Payload, f.cfg.MaxSize)
			if err != nil && !errors.Is(err, wire.ErrMetadataTooLarge) {
				return err
			}
			theirMeta = eh.M[wire.ExtMetadata]
			if !f.post(extEvent{c: c, metaID: theirMeta, size: eh.MetadataSize, err: err}) {
				return f.ctx.Err()
			}
		case ourMetadataID:
			mm, err := wire.ParseMetadataMsg(m.Payload, f.cfg.MaxSize)
			if errors.Is(err, wire.ErrUnknownMetadataMsg) {
				continue // BEP 9: ignore unknown message types
			}
			if err != nil {
				return err
			}
			var ev event
			switch mm.Type {
			case wire.MetadataRequest:
				if theirMeta > 0 {
					payload, err := wire.EncodeMetadataMsg(wire.MetadataMsg{Type: wire.MetadataReject, Piece: mm.Piece})
					if err == nil && !c.send(wire.Message{ID: wire.Extended, ExtendedID: uint8(theirMeta), Payload: payload}) {
						return errors.New("peer floods ut_metadata requests")
					}
				}
				continue
			case wire.MetadataData:
				ev = dataEvent{c: c, piece: mm.Piece, data: bytes.Clone(mm.Data)}
			case wire.MetadataReject:
				ev = rejectEvent{c: c, piece: mm.Piece}
			}
			if !f.post(ev) {
				return f.ctx.Err()
			}
		}
	}
}
