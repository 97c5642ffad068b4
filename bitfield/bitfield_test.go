package bitfield

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"btfs/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// fromString builds a bitfield from '0'/'1' characters, piece 0 first.
func fromString(t *testing.T, s string) *Bitfield {
	t.Helper()
	b := New(len(s))
	for i, c := range s {
		if c == '1' {
			b.Set(i)
		}
	}
	return b
}

func TestSetClearCount(t *testing.T) {
	tests := []struct {
		name    string
		n       int
		set     []int
		clear   []int
		want    string
		wantAll bool
	}{
		{name: "empty", n: 0, want: "", wantAll: true},
		{name: "one piece set", n: 1, set: []int{0}, want: "1", wantAll: true},
		{name: "one piece clear", n: 1, want: "0"},
		{name: "duplicates count once", n: 5, set: []int{1, 1, 3}, want: "01010"},
		{name: "clear twice", n: 5, set: []int{0, 4}, clear: []int{4, 4, 2}, want: "10000"},
		{name: "out of range ignored", n: 3, set: []int{-1, 3, 100, 2}, clear: []int{-5, 7}, want: "001"},
		{name: "word boundaries", n: 130, set: []int{0, 63, 64, 127, 128, 129}},
		{name: "all by hand", n: 9, set: []int{0, 1, 2, 3, 4, 5, 6, 7, 8}, want: "111111111", wantAll: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New(tt.n)
			ref := map[int]bool{}
			for _, i := range tt.set {
				changed := b.Set(i)
				inRange := i >= 0 && i < tt.n
				if changed != (inRange && !ref[i]) {
					t.Errorf("Set(%d) = %v", i, changed)
				}
				if inRange {
					ref[i] = true
				}
			}
			for _, i := range tt.clear {
				changed := b.Clear(i)
				if changed != ref[i] {
					t.Errorf("Clear(%d) = %v", i, changed)
				}
				delete(ref, i)
			}
			if b.Count() != len(ref) {
				t.Errorf("Count = %d, want %d", b.Count(), len(ref))
			}
			for i := -2; i < tt.n+2; i++ {
				if b.Has(i) != ref[i] {
					t.Errorf("Has(%d) = %v, want %v", i, b.Has(i), ref[i])
				}
			}
			if tt.want != "" && b.String() != tt.want {
				t.Errorf("String = %q, want %q", b.String(), tt.want)
			}
			if b.All() != tt.wantAll && tt.n != 130 {
				t.Errorf("All = %v, want %v", b.All(), tt.wantAll)
			}
			if b.Len() != tt.n {
				t.Errorf("Len = %d, want %d", b.Len(), tt.n)
			}
		})
	}
}

func TestNewNegative(t *testing.T) {
	b := New(-3)
	if b.Len() != 0 || b.Count() != 0 || b.Set(0) || b.Has(0) {
		t.Fatalf("New(-3) = %v, want an empty bitfield of length 0", b)
	}
}

func TestNilReceiver(t *testing.T) {
	var b *Bitfield
	if b.Len() != 0 || b.Count() != 0 || b.Has(0) || b.Set(0) || b.Clear(0) || !b.All() {
		t.Fatal("nil bitfield is not the empty set")
	}
	if _, ok := b.NextSet(0); ok {
		t.Fatal("NextSet on nil found a piece")
	}
	if _, ok := b.NextClear(0); ok {
		t.Fatal("NextClear on nil found a piece")
	}
	if got := b.Bytes(); len(got) != 0 {
		t.Fatalf("Bytes on nil = %v", got)
	}
	if c := b.Clone(); c.Len() != 0 {
		t.Fatalf("Clone of nil has length %d", c.Len())
	}
	b.SetAll()
	b.ClearAll()
}

func TestSetAllClearAll(t *testing.T) {
	for _, n := range []int{0, 1, 7, 8, 9, 63, 64, 65, 200} {
		b := New(n)
		b.SetAll()
		if b.Count() != n || !b.All() {
			t.Errorf("n=%d: after SetAll Count=%d All=%v", n, b.Count(), b.All())
		}
		if _, err := FromBytes(b.Bytes(), n); err != nil {
			t.Errorf("n=%d: SetAll left spare bits: %v", n, err)
		}
		if _, ok := b.NextClear(0); ok {
			t.Errorf("n=%d: NextClear found a clear piece after SetAll", n)
		}
		b.ClearAll()
		if b.Count() != 0 || (n > 0 && b.All()) {
			t.Errorf("n=%d: after ClearAll Count=%d", n, b.Count())
		}
	}
}

func TestCloneEqual(t *testing.T) {
	a := fromString(t, "1010011")
	c := a.Clone()
	if !a.Equal(c) {
		t.Fatalf("clone %v differs from %v", c, a)
	}
	c.Set(1)
	if a.Has(1) {
		t.Fatal("changing the clone changed the original")
	}
	if a.Equal(c) {
		t.Fatal("Equal ignores a differing bit")
	}
	if a.Equal(fromString(t, "10100110")) {
		t.Fatal("Equal ignores length")
	}
	if !New(0).Equal(nil) {
		t.Fatal("empty bitfield is not equal to nil")
	}
}

func TestBytesWireOrder(t *testing.T) {
	tests := []struct {
		name string
		bits string
		want []byte
	}{
		{name: "empty", bits: "", want: []byte{}},
		{name: "piece 0 is the high bit", bits: "1", want: []byte{0x80}},
		{name: "piece 7 is the low bit", bits: "00000001", want: []byte{0x01}},
		{name: "piece 8 starts byte 1", bits: "000000001", want: []byte{0x00, 0x80}},
		{name: "mixed", bits: "1010000011110000111", want: []byte{0xa0, 0xf0, 0xe0}},
		{name: "nine bytes across a word", bits: "1000000000000000000000000000000000000000000000000000000000000001" + "11", want: []byte{0x80, 0, 0, 0, 0, 0, 0, 0x01, 0xc0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := fromString(t, tt.bits)
			if got := b.Bytes(); !bytes.Equal(got, tt.want) {
				t.Fatalf("Bytes = %x, want %x", got, tt.want)
			}
			back, err := FromBytes(tt.want, len(tt.bits))
			if err != nil {
				t.Fatalf("FromBytes: %v", err)
			}
			if !back.Equal(b) {
				t.Fatalf("FromBytes = %v, want %v", back, b)
			}
		})
	}
}

func TestFromBytesRejects(t *testing.T) {
	tests := []struct {
		name    string
		b       []byte
		n       int
		wantErr error
	}{
		{name: "too short", b: []byte{0xff}, n: 9, wantErr: ErrLength},
		{name: "too long", b: []byte{0xff, 0x00}, n: 8, wantErr: ErrLength},
		{name: "bytes for zero pieces", b: []byte{0}, n: 0, wantErr: ErrLength},
		{name: "negative n", b: nil, n: -1, wantErr: ErrLength},
		{name: "lowest spare bit", b: []byte{0x01}, n: 7, wantErr: ErrSpareBits},
		{name: "first spare bit", b: []byte{0xff, 0x40}, n: 9, wantErr: ErrSpareBits},
		{name: "spare bits after a full word", b: append(make([]byte, 8), 0x01), n: 65, wantErr: ErrSpareBits},
		{name: "no spare bits ok", b: []byte{0xff, 0x80}, n: 9},
		{name: "zero pieces ok", b: nil, n: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := FromBytes(tt.b, tt.n)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("FromBytes: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("FromBytes error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// TestIterationAgainstNaive compares NextSet, NextClear, NextSetAnd, Ones
// and Zeros with a bit-by-bit scan on random bitfields of awkward sizes.
func TestIterationAgainstNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 5, 63, 64, 65, 127, 128, 129, 1000} {
		for _, density := range []float64{0, 0.01, 0.5, 0.99, 1} {
			a, o := New(n), New(n)
			for i := range n {
				if rng.Float64() < density {
					a.Set(i)
				}
				if rng.Float64() < 0.5 {
					o.Set(i)
				}
			}
			var ones, zeros []int
			for i := range n {
				if a.Has(i) {
					ones = append(ones, i)
				} else {
					zeros = append(zeros, i)
				}
			}
			if got := slices.Collect(a.Ones()); !slices.Equal(got, ones) {
				t.Fatalf("n=%d d=%v: Ones = %v, want %v", n, density, got, ones)
			}
			if got := slices.Collect(a.Zeros()); !slices.Equal(got, zeros) {
				t.Fatalf("n=%d d=%v: Zeros = %v, want %v", n, density, got, zeros)
			}
			for from := -1; from <= n+1; from++ {
				for _, to := range []int{from, from + 1, from + 70, n, n + 5} {
					want, wantOK := naiveNextAnd(a, o, from, to)
					got, ok := a.NextSetAnd(from, to, o)
					if ok != wantOK || (ok && got != want) {
						t.Fatalf("n=%d NextSetAnd(%d,%d) = %d,%v want %d,%v", n, from, to, got, ok, want, wantOK)
					}
				}
				want, wantOK := naiveNextAnd(a, nil, from, n)
				if got, ok := a.NextSet(from); ok != wantOK || (ok && got != want) {
					t.Fatalf("n=%d NextSet(%d) = %d,%v want %d,%v", n, from, got, ok, want, wantOK)
				}
			}
			// a short other bitfield limits the scan to its length
			short := New(n / 2)
			short.SetAll()
			if i, ok := a.NextSetAnd(0, n, short); ok && i >= n/2 {
				t.Fatalf("NextSetAnd with a shorter bitfield returned %d >= %d", i, n/2)
			}
		}
	}
}

func naiveNextAnd(a, o *Bitfield, from, to int) (int, bool) {
	for i := max(from, 0); i < to && i < a.Len(); i++ {
		if a.Has(i) && (o == nil || o.Has(i)) {
			return i, true
		}
	}
	return 0, false
}

func TestIteratorsStopEarly(t *testing.T) {
	b := fromString(t, "0110110")
	var got []int
	for i := range b.Ones() {
		got = append(got, i)
		if len(got) == 2 {
			break
		}
	}
	if !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("Ones with break = %v", got)
	}
	got = nil
	for i := range b.Zeros() {
		got = append(got, i)
		break
	}
	if !slices.Equal(got, []int{0}) {
		t.Fatalf("Zeros with break = %v", got)
	}
}

func BenchmarkNextSet(b *testing.B) {
	bf := New(100_000)
	for i := 0; i < bf.Len(); i += 997 {
		bf.Set(i)
	}
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		for i, ok := bf.NextSet(0); ok; i, ok = bf.NextSet(i + 1) {
			n++
		}
		if n != bf.Count() {
			b.Fatalf("visited %d of %d", n, bf.Count())
		}
	}
}

func TestWord(t *testing.T) {
	b := fromString(t, "1"+strings.Repeat("0", 62)+"1"+"01")
	tests := []struct {
		w    int
		want uint64
	}{
		{0, 1<<63 | 1},
		{1, 1 << 62},
		{2, 0},
		{-1, 0},
	}
	for _, tt := range tests {
		if got := b.Word(tt.w); got != tt.want {
			t.Errorf("Word(%d) = %#x, want %#x", tt.w, got, tt.want)
		}
	}
	if b.Words() != 2 || New(0).Words() != 0 || New(64).Words() != 1 || New(65).Words() != 2 {
		t.Errorf("Words = %d", b.Words())
	}
	var nilBF *Bitfield
	if nilBF.Word(0) != 0 || nilBF.Words() != 0 {
		t.Error("nil bitfield has words")
	}
}
