package picker

import (
	"slices"
	"testing"

	"btfs/bitfield"
)

func TestAvailability(t *testing.T) {
	const n = 4
	a, b := pieces(n, 0, 1), pieces(n, 1)
	steps := []struct {
		name string
		do   func(t *testing.T, p *Picker)
		want []int // Availability of pieces 0..3
	}{
		{name: "no peers", do: func(t *testing.T, p *Picker) {}, want: []int{0, 0, 0, 0}},
		{name: "peer a", do: func(t *testing.T, p *Picker) { mustAddPeer(t, p, a) }, want: []int{1, 1, 0, 0}},
		{name: "peer b", do: func(t *testing.T, p *Picker) { mustAddPeer(t, p, b) }, want: []int{1, 2, 0, 0}},
		{name: "two seeds", do: func(t *testing.T, p *Picker) { p.AddSeed(); p.AddSeed() }, want: []int{3, 4, 2, 2}},
		{name: "have from b", do: func(t *testing.T, p *Picker) {
			if b.Set(3) {
				p.Have(3)
			}
			if b.Set(3) { // a duplicate HAVE changes nothing
				p.Have(3)
			}
		}, want: []int{3, 4, 2, 3}},
		{name: "a leaves", do: func(t *testing.T, p *Picker) {
			if err := p.RemovePeer(a); err != nil {
				t.Fatal(err)
			}
		}, want: []int{2, 3, 2, 3}},
		{name: "a seed leaves", do: func(t *testing.T, p *Picker) { p.RemoveSeed() }, want: []int{1, 2, 1, 2}},
		{name: "b leaves", do: func(t *testing.T, p *Picker) {
			if err := p.RemovePeer(b); err != nil {
				t.Fatal(err)
			}
		}, want: []int{1, 1, 1, 1}},
		{name: "the last seed leaves, twice", do: func(t *testing.T, p *Picker) { p.RemoveSeed(); p.RemoveSeed() }, want: []int{0, 0, 0, 0}},
		{name: "removing an unregistered peer does not go below zero", do: func(t *testing.T, p *Picker) {
			if err := p.RemovePeer(pieces(n, 0, 1, 2, 3)); err != nil {
				t.Fatal(err)
			}
		}, want: []int{0, 0, 0, 0}},
	}
	p := newPicker(t, 1, n)
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			s.do(t, p)
			for i, w := range s.want {
				if got := p.Availability(i); got != w {
					t.Errorf("Availability(%d) = %d, want %d", i, got, w)
				}
			}
			checkInvariants(t, p)
		})
	}
	if err := p.AddPeer(pieces(n + 1)); err == nil {
		t.Error("AddPeer accepted a bitfield of the wrong length")
	}
	if err := p.RemovePeer(pieces(n - 1)); err == nil {
		t.Error("RemovePeer accepted a bitfield of the wrong length")
	}
	if got := p.Availability(-1) + p.Availability(n); got != 0 {
		t.Errorf("Availability out of range = %d", got)
	}
}

// TestRarestFollowsPeersLeaving checks that rarest-first follows
// availability as peers come and go.
func TestRarestFollowsPeersLeaving(t *testing.T) {
	const n = 8
	p := newPicker(t, 1, n)
	verify(p, 0, 1, 2, 3)
	x := pieces(n, 4, 5, 6)
	y := pieces(n, 4, 5, 7)
	z := pieces(n, 4, 6, 7)
	for _, b := range []*bitfield.Bitfield{x, y, z} {
		mustAddPeer(t, p, b)
	}
	asker := pieces(n, 4, 5, 6, 7)
	mustAddPeer(t, p, asker)
	// availability 4:4, 5:3, 6:3, 7:3 (asker included)
	expect := func(want ...int) {
		t.Helper()
		for range 50 {
			got, ok := p.Next(asker)
			if !ok || !slices.Contains(want, got) {
				t.Fatalf("Next = %d, %v; want one of %v", got, ok, want)
			}
		}
	}
	expect(5, 6, 7)
	if err := p.RemovePeer(x); err != nil { // 5:2, 6:2, 7:3
		t.Fatal(err)
	}
	expect(5, 6)
	if err := p.RemovePeer(y); err != nil { // 5:1, 6:2, 7:2
		t.Fatal(err)
	}
	expect(5)
}
