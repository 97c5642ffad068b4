package wire

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"btfs/internal/netctx"
	"btfs/metainfo"
)

// Protocol is BEP 3's protocol string, preceded on the wire by its length.
const Protocol = "BitTorrent protocol"

// HandshakeLen is the length of a full handshake: 1 + 19 + 8 + 20 + 20.
const HandshakeLen = 68

// handshakeStartLen is the part before the peer ID, which is what an
// accepting side needs to pick the torrent.
const handshakeStartLen = HandshakeLen - 20

// PeerIDPrefix is our client's Azureus-style peer ID prefix.
const PeerIDPrefix = "-BT0001-"

// Errors of the handshake.
var (
	// ErrBadProtocol: the peer's first 20 bytes are not BEP 3's protocol
	// string (it is not BitTorrent, or it speaks an obfuscated variant).
	ErrBadProtocol = errors.New("wire: not a BitTorrent handshake")
	// ErrInfoHashMismatch: the peer we dialled answered for another torrent.
	ErrInfoHashMismatch = errors.New("wire: handshake for another info-hash")
	// ErrUnknownInfoHash: an incoming peer asked for a torrent we do not
	// serve.
	ErrUnknownInfoHash = errors.New("wire: handshake for an unknown info-hash")
)

// Reserved is the handshake's 8 reserved bytes, where clients announce the
// extensions they speak.
type Reserved [8]byte

// Reserved bits of the extensions this package knows.
const (
	extensionByte, extensionBit = 5, 0x10 // BEP 10 extension protocol
	fastByte, fastBit           = 7, 0x04 // BEP 6 fast extension
	dhtByte, dhtBit             = 7, 0x01 // BEP 5 DHT (port message)
)

// SupportsExtensions reports BEP 10's bit (reserved[5] & 0x10).
func (r Reserved) SupportsExtensions() bool { return r[extensionByte]&extensionBit != 0 }

// SupportsFast reports BEP 6's bit (reserved[7] & 0x04).
func (r Reserved) SupportsFast() bool { return r[fastByte]&fastBit != 0 }

// SupportsDHT reports BEP 5's bit (reserved[7] & 0x01).
func (r Reserved) SupportsDHT() bool { return r[dhtByte]&dhtBit != 0 }

// SetExtensions sets BEP 10's bit.
func (r *Reserved) SetExtensions() { r[extensionByte] |= extensionBit }

// SetFast sets BEP 6's bit.
func (r *Reserved) SetFast() { r[fastByte] |= fastBit }

// SetDHT sets BEP 5's bit.
func (r *Reserved) SetDHT() { r[dhtByte] |= dhtBit }

// Handshake is BEP 3's handshake: what each side sends first.
type Handshake struct {
	// Reserved announces extensions; a feature is used only when both
	// sides set its bit.
	Reserved Reserved
	// InfoHash names the torrent.
	InfoHash metainfo.Hash
	// PeerID identifies the sending client (zero after
	// ReadHandshakeStart, which stops before it).
	PeerID [20]byte
}

// NewPeerID returns a fresh peer ID: PeerIDPrefix and 12 random bytes.
func NewPeerID() [20]byte {
	var id [20]byte
	copy(id[:], PeerIDPrefix)
	rand.Read(id[len(PeerIDPrefix):]) // never fails (crypto/rand: the runtime aborts instead)
	return id
}

// Bytes returns the wire form (what an encrypted connection carries as its
// initial payload).
func (h Handshake) Bytes() [HandshakeLen]byte {
	var b [HandshakeLen]byte
	b[0] = byte(len(Protocol))
	copy(b[1:], Protocol)
	copy(b[20:], h.Reserved[:])
	copy(b[28:], h.InfoHash[:])
	copy(b[48:], h.PeerID[:])
	return b
}

// WriteHandshake sends h. ctx bounds the write (its deadline becomes the
// connection's; cancelling it interrupts the write).
func WriteHandshake(ctx context.Context, conn net.Conn, h Handshake) error {
	b := h.Bytes()
	return withDeadline(ctx, conn, func() error {
		if _, err := conn.Write(b[:]); err != nil {
			return fmt.Errorf("wire: writing handshake: %w", err)
		}
		return nil
	})
}

// ReadHandshake reads a peer's full handshake, checking the protocol
// string.
func ReadHandshake(ctx context.Context, conn net.Conn) (Handshake, error) {
	var b [HandshakeLen]byte
	err := withDeadline(ctx, conn, func() error {
		if err := readStart(conn, b[:handshakeStartLen]); err != nil {
			return err
		}
		return readPeerID(conn, b[handshakeStartLen:])
	})
	if err != nil {
		return Handshake{}, err
	}
	return parseHandshake(b[:]), nil
}

// ReadHandshakeStart reads a peer's handshake up to and including the
// info-hash, leaving PeerID zero. An accepting side that serves several
// torrents uses it to find the torrent before answering, then sends its own
// handshake and calls ReadPeerID; Accept does all of that.
func ReadHandshakeStart(ctx context.Context, conn net.Conn) (Handshake, error) {
	var b [HandshakeLen]byte
	if err := withDeadline(ctx, conn, func() error { return readStart(conn, b[:handshakeStartLen]) }); err != nil {
		return Handshake{}, err
	}
	return parseHandshake(b[:]), nil
}

// ReadPeerID reads the last 20 bytes of a handshake begun with
// ReadHandshakeStart.
func ReadPeerID(ctx context.Context, conn net.Conn) ([20]byte, error) {
	var id [20]byte
	err := withDeadline(ctx, conn, func() error { return readPeerID(conn, id[:]) })
	return id, err
}

// Initiate performs the dialling side's handshake on a fresh connection:
// it sends ours and reads the peer's (at the same time, so it works on
// unbuffered pipes), and checks the peer answered for our info-hash
// (ErrInfoHashMismatch). Comparing peer IDs (a connection to ourselves, the
// ID the tracker announced) is the engine's call. On error the connection
// should be closed.
func Initiate(ctx context.Context, conn net.Conn, ours Handshake) (peer Handshake, err error) {
	out := ours.Bytes()
	var in [HandshakeLen]byte
	err = withDeadline(ctx, conn, func() error {
		rerr, werr := duplex(conn, out[:], func() error {
			if err := readStart(conn, in[:handshakeStartLen]); err != nil {
				return err
			}
			return readPeerID(conn, in[handshakeStartLen:])
		})
		if rerr != nil {
			return rerr
		}
		// A peer for another torrent may hang up before taking our
		// bytes: the mismatch explains more than the failed write.
		if peer = parseHandshake(in[:]); peer.InfoHash != ours.InfoHash {
			return fmt.Errorf("%w: dialled for %s, peer answered %s", ErrInfoHashMismatch, ours.InfoHash, peer.InfoHash)
		}
		return werr
	})
	if err != nil {
		return Handshake{}, err
	}
	return peer, nil
}

// Accept performs the listening side's handshake: it reads the peer's
// handshake up to the info-hash, asks lookup for our handshake for that
// torrent (false: ErrUnknownInfoHash, nothing is sent), sends it while
// reading the peer's ID, and returns both. One listener can so serve every
// torrent. lookup must not block. On error the connection should be closed.
func Accept(ctx context.Context, conn net.Conn, lookup func(metainfo.Hash) (Handshake, bool)) (peer, ours Handshake, err error) {
	return AcceptPeeked(ctx, conn, nil, lookup)
}

// AcceptPeeked is Accept for a connection whose first bytes, peeked, were
// already read (at most the 48 before the peer ID) by a caller that looked
// at them to tell an encrypted stream from a plain handshake.
func AcceptPeeked(ctx context.Context, conn net.Conn, peeked []byte, lookup func(metainfo.Hash) (Handshake, bool)) (peer, ours Handshake, err error) {
	if len(peeked) > handshakeStartLen {
		return Handshake{}, Handshake{}, fmt.Errorf("wire: %d peeked bytes, at most %d", len(peeked), handshakeStartLen)
	}
	var in [HandshakeLen]byte
	err = withDeadline(ctx, conn, func() error {
		if err := readStart(io.MultiReader(bytes.NewReader(peeked), conn), in[:handshakeStartLen]); err != nil {
			return err
		}
		peer = parseHandshake(in[:])
		var ok bool
		if ours, ok = lookup(peer.InfoHash); !ok {
			return fmt.Errorf("%w: %s", ErrUnknownInfoHash, peer.InfoHash)
		}
		if ours.InfoHash != peer.InfoHash {
			return fmt.Errorf("%w: lookup of %s returned a handshake for %s", ErrInfoHashMismatch, peer.InfoHash, ours.InfoHash)
		}
		out := ours.Bytes()
		rerr, werr := duplex(conn, out[:], func() error { return readPeerID(conn, in[handshakeStartLen:]) })
		return cmp.Or(rerr, werr)
	})
	if err != nil {
		return Handshake{}, Handshake{}, err
	}
	return parseHandshake(in[:]), ours, nil
}

// readStart reads the protocol string, reserved bytes and info-hash into b
// (48 bytes), failing fast on a wrong protocol string.
func readStart(r io.Reader, b []byte) error {
	if _, err := io.ReadFull(r, b[:1+len(Protocol)]); err != nil {
		return fmt.Errorf("wire: reading handshake protocol: %w", unexpected(err))
	}
	if b[0] != byte(len(Protocol)) || !bytes.Equal(b[1:1+len(Protocol)], []byte(Protocol)) {
		return fmt.Errorf("%w: starts with %q", ErrBadProtocol, b[:1+len(Protocol)])
	}
	if _, err := io.ReadFull(r, b[1+len(Protocol):handshakeStartLen]); err != nil {
		return fmt.Errorf("wire: reading handshake info-hash: %w", unexpected(err))
	}
	return nil
}

// readPeerID reads the 20-byte peer ID into b.
func readPeerID(r io.Reader, b []byte) error {
	if _, err := io.ReadFull(r, b[:20]); err != nil {
		return fmt.Errorf("wire: reading handshake peer id: %w", unexpected(err))
	}
	return nil
}

// parseHandshake decodes the (already checked) wire form; a peer ID not yet
// read is zero.
func parseHandshake(b []byte) Handshake {
	var h Handshake
	copy(h.Reserved[:], b[20:28])
	copy(h.InfoHash[:], b[28:48])
	copy(h.PeerID[:], b[48:68])
	return h
}

// duplex writes out while read runs, and returns both errors (the write's
// wrapped). Writing and reading at once matters on synchronous transports
// (net.Pipe), where a write blocks until the other side reads it; on TCP
// the kernel buffers the 68 bytes and the write returns at once.
func duplex(conn net.Conn, out []byte, read func() error) (rerr, werr error) {
	done := make(chan error, 1)
	go func() {
		_, err := conn.Write(out)
		done <- err
	}()
	rerr = read()
	if rerr != nil {
		conn.SetWriteDeadline(aLongTimeAgo) // unblock the writer; the connection is done anyway
	}
	if err := <-done; err != nil {
		werr = fmt.Errorf("wire: writing handshake: %w", err)
	}
	return rerr, werr
}

// aLongTimeAgo is a deadline in the past: setting it makes pending I/O on a
// connection return at once.
var aLongTimeAgo = time.Unix(1, 0)

// withDeadline runs fn under ctx (netctx.Do): ctx's deadline becomes the
// connection's, cancelling ctx interrupts fn, and the deadline is cleared
// after a success.
func withDeadline(ctx context.Context, conn net.Conn, fn func() error) error {
	if err := netctx.Do(ctx, conn, fn); err != nil {
		return fmt.Errorf("wire: handshake: %w", err)
	}
	return nil
}
