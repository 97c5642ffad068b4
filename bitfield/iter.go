package bitfield

import (
	"iter"
	"math/bits"
)

// NextSet returns the first set piece at or after from, skipping whole words
// of zeros. ok is false when there is none.
func (b *Bitfield) NextSet(from int) (i int, ok bool) {
	return b.NextSetAnd(from, b.Len(), nil)
}

// NextSetAnd returns the first piece in [from, to) that is set in b and, when
// o is not nil, also in o. It works a word at a time, so a scan over a range
// costs (to-from)/64 word operations however sparse the intersection is; it
// is the primitive the picker uses to find "a piece this peer has that we
// still need" inside a wanted range. Pieces past either bitfield's length
// are never set.
func (b *Bitfield) NextSetAnd(from, to int, o *Bitfield) (i int, ok bool) {
	if from < 0 {
		from = 0
	}
	to = min(to, b.Len())
	if o != nil {
		to = min(to, o.n)
	}
	if from >= to {
		return 0, false
	}
	wi := from / wordBits
	last := (to - 1) / wordBits
	w := b.words[wi] & (^uint64(0) >> (uint(from) % wordBits))
	for {
		if o != nil {
			w &= o.words[wi]
		}
		if w != 0 {
			i = wi*wordBits + bits.LeadingZeros64(w)
			if i >= to {
				return 0, false
			}
			return i, true
		}
		if wi == last {
			return 0, false
		}
		wi++
		w = b.words[wi]
	}
}

// NextClear returns the first clear piece at or after from, skipping whole
// words of ones. ok is false when there is none.
func (b *Bitfield) NextClear(from int) (i int, ok bool) {
	if from < 0 {
		from = 0
	}
	n := b.Len()
	if from >= n {
		return 0, false
	}
	wi := from / wordBits
	w := ^b.words[wi] & (^uint64(0) >> (uint(from) % wordBits))
	for {
		if w != 0 {
			// Spare bits are zero in words, so they read as clear here;
			// the bound check below rejects them.
			i = wi*wordBits + bits.LeadingZeros64(w)
			if i >= n {
				return 0, false
			}
			return i, true
		}
		wi++
		if wi == len(b.words) {
			return 0, false
		}
		w = ^b.words[wi]
	}
}

// Ones iterates over the set pieces in increasing order. The bitfield must
// not be changed during the iteration.
func (b *Bitfield) Ones() iter.Seq[int] {
	return func(yield func(int) bool) {
		for i, ok := b.NextSet(0); ok; i, ok = b.NextSet(i + 1) {
			if !yield(i) {
				return
			}
		}
	}
}

// Zeros iterates over the clear pieces in increasing order. The bitfield must
// not be changed during the iteration.
func (b *Bitfield) Zeros() iter.Seq[int] {
	return func(yield func(int) bool) {
		for i, ok := b.NextClear(0); ok; i, ok = b.NextClear(i + 1) {
			if !yield(i) {
				return
			}
		}
	}
}

// Words is the number of 64-piece words, for loops over Word.
func (b *Bitfield) Words() int {
	if b == nil {
		return 0
	}
	return len(b.words)
}

// Word returns the bits of pieces [64w, 64w+64) with piece 64w in the most
// significant bit (the wire's order, as a big-endian uint64); bits past Len
// are zero, and so is a word out of range. It lets a hot loop combine
// bitfields a word at a time without a call per word.
func (b *Bitfield) Word(w int) uint64 {
	if b == nil || uint(w) >= uint(len(b.words)) {
		return 0
	}
	return b.words[w]
}
