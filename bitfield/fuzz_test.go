package bitfield

import (
	"bytes"
	"math/bits"
	"testing"
)

// FuzzFromBytes checks that any payload FromBytes accepts survives a round
// trip through Bytes unchanged, that Count and Has agree with the raw bits,
// and that anything rejected really had the wrong length or spare bits.
func FuzzFromBytes(f *testing.F) {
	f.Add([]byte{}, 0)
	f.Add([]byte{0x80}, 1)
	f.Add([]byte{0xff, 0x80}, 9)
	f.Add([]byte{0x01}, 7)
	f.Fuzz(func(t *testing.T, data []byte, n int) {
		if n > 8*len(data)+64 {
			return // avoid huge allocations for lengths that must be rejected anyway
		}
		b, err := FromBytes(data, n)
		validLen := n >= 0 && len(data) == (n+7)/8
		if err != nil {
			if validLen {
				spare := n%8 != 0 && data[len(data)-1]&(0xff>>(n%8)) != 0
				if !spare {
					t.Fatalf("FromBytes(%x, %d) rejected a valid payload: %v", data, n, err)
				}
			}
			return
		}
		if !validLen {
			t.Fatalf("FromBytes(%x, %d) accepted a payload of the wrong length", data, n)
		}
		if got := b.Bytes(); !bytes.Equal(got, data) {
			t.Fatalf("round trip %x -> %x", data, got)
		}
		ones := 0
		for _, c := range data {
			ones += bits.OnesCount8(c)
		}
		if b.Count() != ones {
			t.Fatalf("Count = %d, want %d", b.Count(), ones)
		}
		for i := range n {
			want := data[i/8]&(0x80>>(i%8)) != 0
			if b.Has(i) != want {
				t.Fatalf("Has(%d) = %v, want %v", i, b.Has(i), want)
			}
		}
	})
}
