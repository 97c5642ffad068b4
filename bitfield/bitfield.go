// Package bitfield is a compact, fixed-length set of piece indices: the one
// type the wire codec, the picker and the engine share for "which pieces does
// this peer (or do we) have".
//
// Bits are stored in 64-bit words in wire order (BEP 3: the high bit of the
// first byte is piece 0), so Bytes is a big-endian copy of the words and
// FromBytes is the reverse. The number of set bits is kept up to date by
// every mutation, so Count and All are O(1). Iteration skips whole words of
// zeros (NextSet) or ones (NextClear).
//
// A Bitfield is not safe for concurrent use: each one has a single owner (a
// peer's goroutine or the torrent loop), as everything else in the picker path.
package bitfield

import (
	"math/bits"
	"strings"
)

// wordBits is the number of pieces held by one word.
const wordBits = 64

// Bitfield is a set of piece indices in [0, Len()). It is used by pointer;
// methods that only read accept a nil *Bitfield as the empty set of length 0.
// The zero value is an empty bitfield of length 0.
type Bitfield struct {
	// words holds the bits, piece i at bit 63-(i%64) of words[i/64] (the
	// wire's bit order); the spare bits of the last word are always zero,
	// so word-wise scans need no masking at the end.
	words []uint64
	// n is the number of pieces, fixed at creation.
	n int
	// count is the number of set bits, kept by every mutation.
	count int
}

// New returns an empty bitfield for n pieces. A negative n gives an empty
// bitfield of length 0 rather than a panic.
func New(n int) *Bitfield {
	if n < 0 {
		n = 0
	}
	return &Bitfield{words: make([]uint64, numWords(n)), n: n}
}

// numWords is how many words hold n bits.
func numWords(n int) int { return (n + wordBits - 1) / wordBits }

// mask is the bit of piece i inside its word.
func mask(i int) uint64 { return 1 << (wordBits - 1 - uint(i)%wordBits) }

// Len is the number of pieces the bitfield covers.
func (b *Bitfield) Len() int {
	if b == nil {
		return 0
	}
	return b.n
}

// Count is the number of set bits, in O(1).
func (b *Bitfield) Count() int {
	if b == nil {
		return 0
	}
	return b.count
}

// All reports whether every piece is set. An empty bitfield of length 0 has
// all of its (no) pieces.
func (b *Bitfield) All() bool { return b.Count() == b.Len() }

// Has reports whether piece i is set; indices out of range are never set.
func (b *Bitfield) Has(i int) bool {
	if b == nil || uint(i) >= uint(b.n) {
		return false
	}
	return b.words[i/wordBits]&mask(i) != 0
}

// Set sets piece i and reports whether it was clear before. An index out of
// range changes nothing and reports false: the codec rejects such indices
// from the wire before they reach here.
func (b *Bitfield) Set(i int) bool {
	if b == nil || uint(i) >= uint(b.n) {
		return false
	}
	w, m := &b.words[i/wordBits], mask(i)
	if *w&m != 0 {
		return false
	}
	*w |= m
	b.count++
	return true
}

// Clear clears piece i and reports whether it was set before. An index out of
// range changes nothing and reports false.
func (b *Bitfield) Clear(i int) bool {
	if b == nil || uint(i) >= uint(b.n) {
		return false
	}
	w, m := &b.words[i/wordBits], mask(i)
	if *w&m == 0 {
		return false
	}
	*w &^= m
	b.count--
	return true
}

// SetAll sets every piece (a have-all message, or a fully verified torrent).
func (b *Bitfield) SetAll() {
	if b == nil {
		return
	}
	for i := range b.words {
		b.words[i] = ^uint64(0)
	}
	b.clearSpare()
	b.count = b.n
}

// ClearAll clears every piece.
func (b *Bitfield) ClearAll() {
	if b == nil {
		return
	}
	clear(b.words)
	b.count = 0
}

// clearSpare zeroes the bits past n in the last word, keeping the invariant
// that word scans never see them.
func (b *Bitfield) clearSpare() {
	if r := b.n % wordBits; r != 0 {
		b.words[len(b.words)-1] &= ^uint64(0) << (wordBits - r)
	}
}

// Clone returns an independent copy.
func (b *Bitfield) Clone() *Bitfield {
	if b == nil {
		return New(0)
	}
	return &Bitfield{words: append([]uint64(nil), b.words...), n: b.n, count: b.count}
}

// Equal reports whether b and o have the same length and the same pieces.
func (b *Bitfield) Equal(o *Bitfield) bool {
	if b.Len() != o.Len() || b.Count() != o.Count() {
		return false
	}
	if b.Len() == 0 {
		return true
	}
	for i, w := range b.words {
		if o.words[i] != w {
			return false
		}
	}
	return true
}

// String renders the bitfield as '0' and '1' characters, piece 0 first, for
// logs and test failures.
func (b *Bitfield) String() string {
	var s strings.Builder
	s.Grow(b.Len())
	for i := range b.Len() {
		if b.Has(i) {
			s.WriteByte('1')
		} else {
			s.WriteByte('0')
		}
	}
	return s.String()
}

// popcount is the number of set bits in words, used when a bitfield is built
// from outside data.
func popcount(words []uint64) int {
	c := 0
	for _, w := range words {
		c += bits.OnesCount64(w)
	}
	return c
}
