package wire

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net"
)

// writeBufSize is the Writer's batch buffer: room for a few hundred
// requests or haves, so a whole pipeline goes out in one write(2).
const writeBufSize = 16 << 10

// copyThreshold is the payload size above which a message's payload is not
// copied into the batch buffer but written in place (writev on TCP).
const copyThreshold = 1 << 10

// Writer encodes messages. Small messages are batched in a buffer until
// Flush (or until the buffer fills); a message with a large payload (a
// piece's block, a big bitfield or extended message) is written at once,
// together with everything batched before it, as one vectored write that
// never copies the payload. So WriteMessage never retains m's slices after
// it returns.
//
// A Writer is not safe for concurrent use: one goroutine, the peer's writer,
// owns it. After a write error every later call returns that error: the
// connection is broken.
type Writer struct {
	w   io.Writer   // destination, usually a net.Conn
	buf []byte      // batched bytes not yet written
	vec [2][]byte   // backing array for the vectored write
	err error       // first write error, sticky
	nb  net.Buffers // reused view over vec
}

// NewWriter returns a Writer to w. Rate limiting or accounting, if any, is
// the job of w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, buf: make([]byte, 0, writeBufSize)}
}

// Buffered returns the number of bytes batched and not yet written.
func (w *Writer) Buffered() int { return len(w.buf) }

// Flush writes everything batched.
func (w *Writer) Flush() error {
	if w.err != nil {
		return w.err
	}
	if len(w.buf) == 0 {
		return nil
	}
	_, err := w.w.Write(w.buf)
	w.buf = w.buf[:0]
	if err != nil {
		w.err = fmt.Errorf("wire: writing: %w", err)
	}
	return w.err
}

// WriteMessage encodes m. Messages with small bodies are batched until
// Flush; see Writer for large payloads. It refuses an ID this package does
// not know (ErrUnknownID) and a payload too long for the 32-bit length
// prefix.
func (w *Writer) WriteMessage(m Message) error {
	if w.err != nil {
		return w.err
	}
	if m.KeepAlive {
		return w.appendSmall([]byte{0, 0, 0, 0})
	}
	var hdr [17]byte // length, id and up to 12 bytes of fixed fields
	var payload []byte
	h := 5
	switch m.ID {
	case Choke, Unchoke, Interested, NotInterested, HaveAll, HaveNone:
	case Have, Suggest, AllowedFast:
		binary.BigEndian.PutUint32(hdr[5:], m.Index)
		h = 9
	case Request, Cancel, RejectRequest:
		binary.BigEndian.PutUint32(hdr[5:], m.Index)
		binary.BigEndian.PutUint32(hdr[9:], m.Begin)
		binary.BigEndian.PutUint32(hdr[13:], m.Length)
		h = 17
	case Port:
		binary.BigEndian.PutUint16(hdr[5:], m.Port)
		h = 7
	case Bitfield:
		payload = m.Bitfield
	case Piece:
		binary.BigEndian.PutUint32(hdr[5:], m.Index)
		binary.BigEndian.PutUint32(hdr[9:], m.Begin)
		h = 13
		payload = m.Block
	case Extended:
		hdr[5] = m.ExtendedID
		h = 6
		payload = m.Payload
	default:
		return fmt.Errorf("%w: %s", ErrUnknownID, m.ID)
	}
	total := uint64(h-4) + uint64(len(payload))
	if total > math.MaxUint32 {
		return fmt.Errorf("wire: %s payload of %d bytes does not fit a message", m.ID, len(payload))
	}
	binary.BigEndian.PutUint32(hdr[0:], uint32(total))
	hdr[4] = byte(m.ID)
	if len(payload) <= copyThreshold {
		if len(w.buf)+h+len(payload) > cap(w.buf) {
			if err := w.Flush(); err != nil {
				return err
			}
		}
		w.buf = append(w.buf, hdr[:h]...)
		w.buf = append(w.buf, payload...)
		return nil
	}
	return w.writeLarge(hdr[:h], payload)
}

// appendSmall batches b, flushing first if it does not fit.
func (w *Writer) appendSmall(b []byte) error {
	if len(w.buf)+len(b) > cap(w.buf) {
		if err := w.Flush(); err != nil {
			return err
		}
	}
	w.buf = append(w.buf, b...)
	return nil
}

// writeLarge writes the batch, hdr and payload as one vectored write
// (writev(2) when w is a TCP connection), so the payload is never copied.
func (w *Writer) writeLarge(hdr, payload []byte) error {
	if len(w.buf)+len(hdr) > cap(w.buf) {
		if err := w.Flush(); err != nil {
			return err
		}
	}
	w.buf = append(w.buf, hdr...)
	w.vec[0], w.vec[1] = w.buf, payload
	w.nb = w.vec[:]
	_, err := w.nb.WriteTo(w.w)
	w.vec[0], w.vec[1], w.nb = nil, nil, nil // drop the reference to the caller's payload
	w.buf = w.buf[:0]
	if err != nil {
		w.err = fmt.Errorf("wire: writing: %w", err)
	}
	return w.err
}
