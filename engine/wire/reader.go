package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// readBufSize is the Reader's bufio size: enough that a burst of small
// messages (a peer's haves, our pipeline's worth of requests) costs one
// read(2); blocks larger than what is buffered bypass it and land in the
// body buffer directly.
const readBufSize = 8 << 10

// retainBuf is the largest body buffer a Reader keeps between messages.
// Bodies up to it (every piece block) reuse one buffer; larger ones (a huge
// bitfield, a big extended message) get a buffer that grows with the bytes
// received and is dropped after the next ReadMessage.
const retainBuf = 64 << 10

// Reader decodes length-prefixed messages (after the handshake). It is not
// safe for concurrent use: one goroutine, the peer's reader, owns it.
type Reader struct {
	br  *bufio.Reader // buffered source
	lim Limits        // caps, defaults applied
	hdr [12]byte      // scratch for the length prefix and fixed-size bodies
	buf []byte        // reusable body buffer, capacity at most retainBuf
}

// NewReader returns a Reader of r with the given limits. r is usually the
// net.Conn right after the handshake; the Reader buffers it, so nothing
// else may read r afterwards.
func NewReader(r io.Reader, lim Limits) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, readBufSize), lim: lim.withDefaults()}
}

// SetLimits replaces the limits, e.g. to set NumPieces once a magnet link's
// metadata has arrived. Call it from the goroutine that calls ReadMessage.
func (r *Reader) SetLimits(lim Limits) { r.lim = lim.withDefaults() }

// ReadMessage reads the next message.
//
// The slices in the returned Message alias the Reader's buffer and are valid
// only until the next call (see Message). A message with an ID this package
// does not know is returned with only ID set, its body (up to
// Limits.MaxUnknown) discarded: some clients send extras such as BEP 52's
// hash messages, and the engine decides whether it cares.
//
// It returns io.EOF when the stream ends cleanly between messages,
// io.ErrUnexpectedEOF (wrapped) when it ends inside one, ErrMessageTooLarge,
// ErrBadLength or ErrBadIndex (wrapped, naming the type and values) for a
// peer breaking the rules, and any error of the underlying reader. All of
// these leave the stream unusable, except ErrRequestTooLarge, which comes
// with the complete request message.
func (r *Reader) ReadMessage() (Message, error) {
	if _, err := io.ReadFull(r.br, r.hdr[:4]); err != nil {
		if err == io.EOF {
			return Message{}, io.EOF
		}
		return Message{}, fmt.Errorf("wire: reading message length: %w", err)
	}
	n := binary.BigEndian.Uint32(r.hdr[:4])
	if n == 0 {
		return Message{KeepAlive: true}, nil
	}
	idb, err := r.br.ReadByte()
	if err != nil {
		return Message{}, fmt.Errorf("wire: reading message id: %w", unexpected(err))
	}
	m := Message{ID: ID(idb)}
	body := uint64(n) - 1 // the peer's claim: checked below before anything is sized from it

	if size, ok := fixedBody(m.ID); ok {
		return r.readFixed(m, body, size)
	}
	switch m.ID {
	case Bitfield:
		if err := checkCap(m.ID, body, r.lim.maxBitfield()); err != nil {
			return Message{}, err
		}
		if m.Bitfield, err = r.readBody(int(body)); err != nil {
			return Message{}, fmt.Errorf("wire: reading bitfield: %w", err)
		}
	case Piece:
		if body < 8 {
			return Message{}, fmt.Errorf("%w: piece body of %d bytes, need at least 8", ErrBadLength, body)
		}
		if err := checkCap(m.ID, body-8, r.lim.MaxBlock); err != nil {
			return Message{}, err
		}
		if _, err := io.ReadFull(r.br, r.hdr[:8]); err != nil {
			return Message{}, fmt.Errorf("wire: reading piece header: %w", unexpected(err))
		}
		m.Index = binary.BigEndian.Uint32(r.hdr[0:])
		m.Begin = binary.BigEndian.Uint32(r.hdr[4:])
		if err := r.checkIndex(m); err != nil {
			return Message{}, err
		}
		if m.Block, err = r.readBody(int(body - 8)); err != nil {
			return Message{}, fmt.Errorf("wire: reading block of piece %d at %d: %w", m.Index, m.Begin, err)
		}
	case Extended:
		if body < 1 {
			return Message{}, fmt.Errorf("%w: extended message without its sub-id", ErrBadLength)
		}
		if err := checkCap(m.ID, body-1, r.lim.MaxExtended); err != nil {
			return Message{}, err
		}
		if m.ExtendedID, err = r.br.ReadByte(); err != nil {
			return Message{}, fmt.Errorf("wire: reading extended sub-id: %w", unexpected(err))
		}
		if m.Payload, err = r.readBody(int(body - 1)); err != nil {
			return Message{}, fmt.Errorf("wire: reading extended message %d: %w", m.ExtendedID, err)
		}
	default:
		if err := checkCap(m.ID, body, r.lim.MaxUnknown); err != nil {
			return Message{}, err
		}
		if _, err := r.br.Discard(int(body)); err != nil {
			return Message{}, fmt.Errorf("wire: skipping %s: %w", m.ID, unexpected(err))
		}
	}
	return m, nil
}

// readFixed reads the body of a fixed-size message whose length prefix
// claimed body bytes.
func (r *Reader) readFixed(m Message, body uint64, size int) (Message, error) {
	if body > uint64(size) {
		return Message{}, fmt.Errorf("%w: %s body of %d bytes, want %d", ErrMessageTooLarge, m.ID, body, size)
	}
	if body < uint64(size) {
		return Message{}, fmt.Errorf("%w: %s body of %d bytes, want %d", ErrBadLength, m.ID, body, size)
	}
	if size == 0 {
		return m, nil
	}
	b := r.hdr[:size]
	if _, err := io.ReadFull(r.br, b); err != nil {
		return Message{}, fmt.Errorf("wire: reading %s: %w", m.ID, unexpected(err))
	}
	switch m.ID {
	case Port:
		m.Port = binary.BigEndian.Uint16(b)
		return m, nil
	case Request, Cancel, RejectRequest:
		m.Begin = binary.BigEndian.Uint32(b[4:])
		m.Length = binary.BigEndian.Uint32(b[8:])
	}
	m.Index = binary.BigEndian.Uint32(b)
	if err := r.checkIndex(m); err != nil {
		return Message{}, err
	}
	if m.ID == Request && uint64(m.Length) > uint64(r.lim.MaxRequest) {
		return m, fmt.Errorf("%w: %s, cap %d", ErrRequestTooLarge, m, r.lim.MaxRequest)
	}
	return m, nil
}

// checkIndex rejects a piece index past the torrent's last piece, when the
// piece count is known.
func (r *Reader) checkIndex(m Message) error {
	if r.lim.NumPieces > 0 && uint64(m.Index) >= uint64(r.lim.NumPieces) {
		return fmt.Errorf("%w: %s index %d, torrent has %d pieces", ErrBadIndex, m.ID, m.Index, r.lim.NumPieces)
	}
	return nil
}

// checkCap compares a declared payload length with a cap; it is the gate
// every peer-declared length passes before a buffer is sized from it.
func checkCap(id ID, n uint64, limit int) error {
	if n > uint64(limit) {
		return fmt.Errorf("%w: %s payload of %d bytes, cap %d", ErrMessageTooLarge, id, n, limit)
	}
	return nil
}

// readBody reads exactly n bytes (n already checked against a cap). Up to
// retainBuf it reuses the Reader's buffer; beyond, the buffer grows by
// doubling as bytes arrive, so what a peer makes us hold is bounded by what
// it actually sent (times two), not by what it declared.
func (r *Reader) readBody(n int) ([]byte, error) {
	if n <= retainBuf {
		if cap(r.buf) < n {
			r.buf = make([]byte, roundUp(n))
		}
		b := r.buf[:n]
		if _, err := io.ReadFull(r.br, b); err != nil {
			return nil, unexpected(err)
		}
		return b, nil
	}
	b := make([]byte, 0, retainBuf)
	for len(b) < n {
		if len(b) == cap(b) {
			nb := make([]byte, len(b), min(2*cap(b), n))
			copy(nb, b)
			b = nb
		}
		k, err := io.ReadFull(r.br, b[len(b):min(cap(b), n)])
		b = b[:len(b)+k]
		if err != nil {
			return nil, unexpected(err)
		}
	}
	return b, nil
}

// roundUp returns the power of two at or above n, at least 512, so a
// growing sequence of bodies reallocates the buffer only a few times.
func roundUp(n int) int {
	c := 512
	for c < n {
		c *= 2
	}
	return c
}

// unexpected turns io.EOF inside a message into io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
