package client

import (
	"errors"
	"net"

	"btfs/engine"
	"btfs/engine/wire"
	"btfs/metainfo"
)

// acceptLoop accepts on one of the client's listeners (TCP, or the uTP
// socket's view) and handshakes each connection in its own goroutine: the
// transport reads the first bytes, MSE looks the torrent up among every
// info-hash whose engine runs (its SKEY is one of them), the plain or
// decrypted handshake names it, and the connection goes to that torrent's
// engine. A handshake for a torrent we do not serve is refused. The
// transport caps the handshakes under way (ErrBusy), so a flood of
// connections costs a bounded number of goroutines.
func (c *Client) acceptLoop(ln net.Listener) {
	defer c.wg.Done()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if c.ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				c.log.Warn("listener stopped", "addr", ln.Addr(), "err", err)
			}
			return
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.handshake(conn)
		}()
	}
}

// handshake completes an incoming connection and hands it to its torrent.
func (c *Client) handshake(conn net.Conn) {
	var target *engine.Torrent
	serve := func(h metainfo.Hash) (wire.Handshake, bool) {
		c.mu.Lock()
		e := c.running[h]
		c.mu.Unlock()
		if e == nil {
			return wire.Handshake{}, false
		}
		target = e
		return e.Handshake(), true
	}
	hashes := func(yield func([20]byte) bool) {
		c.mu.Lock()
		hs := make([][20]byte, 0, len(c.running))
		for h := range c.running {
			hs = append(hs, h)
		}
		c.mu.Unlock()
		for _, h := range hs {
			if !yield(h) {
				return
			}
		}
	}
	tc, err := c.tr.Accept(c.ctx, conn, serve, hashes)
	if err != nil {
		c.log.Debug("incoming handshake failed", "addr", conn.RemoteAddr(), "err", err)
		conn.Close()
		return
	}
	if target == nil || !target.AddConn(tc) {
		tc.Close()
	}
}
