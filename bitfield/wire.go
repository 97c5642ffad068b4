package bitfield

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrLength is wrapped by FromBytes when the payload does not have exactly
// ceil(n/8) bytes for n pieces.
var ErrLength = errors.New("bitfield has the wrong length")

// ErrSpareBits is wrapped by FromBytes when a bit past the last piece is set:
// BEP 3 says spare bits are zero, and a peer that sets them is broken or
// hostile, so the connection should be dropped.
var ErrSpareBits = errors.New("bitfield has spare bits set")

// Bytes returns the bitfield in wire format (BEP 3): ceil(Len/8) bytes, the
// high bit of byte 0 is piece 0, spare bits zero. The slice is a fresh copy.
func (b *Bitfield) Bytes() []byte {
	n := b.Len()
	out := make([]byte, (n+7)/8)
	if n == 0 {
		return out
	}
	var tmp [8]byte
	for i, w := range b.words {
		off := i * 8
		if off+8 <= len(out) {
			binary.BigEndian.PutUint64(out[off:], w)
			continue
		}
		binary.BigEndian.PutUint64(tmp[:], w)
		copy(out[off:], tmp[:])
	}
	return out
}

// FromBytes parses a wire-format bitfield (BEP 3) for n pieces. It rejects a
// payload whose length is not exactly ceil(n/8) (ErrLength) and one with a
// bit set past piece n-1 (ErrSpareBits); a negative n is a length error. b is
// not retained.
func FromBytes(b []byte, n int) (*Bitfield, error) {
	if n < 0 {
		return nil, fmt.Errorf("bitfield for %d pieces: %w", n, ErrLength)
	}
	if want := (n + 7) / 8; len(b) != want {
		return nil, fmt.Errorf("bitfield of %d bytes for %d pieces, want %d bytes: %w", len(b), n, want, ErrLength)
	}
	if r := n % 8; r != 0 {
		if spare := b[len(b)-1] & (0xff >> r); spare != 0 {
			return nil, fmt.Errorf("bitfield for %d pieces: last byte %#02x: %w", n, b[len(b)-1], ErrSpareBits)
		}
	}
	bf := New(n)
	for i := range bf.words {
		off := i * 8
		if off+8 <= len(b) {
			bf.words[i] = binary.BigEndian.Uint64(b[off:])
			continue
		}
		var tmp [8]byte
		copy(tmp[:], b[off:])
		bf.words[i] = binary.BigEndian.Uint64(tmp[:])
	}
	bf.count = popcount(bf.words)
	return bf, nil
}
