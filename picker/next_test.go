package picker

import (
	"slices"
	"testing"

	"btfs/bitfield"
)

// TestNextRules has one case per rule of Next. The torrent has 10 pieces of
// 10 bytes, so piece i is bytes [10i, 10i+10).
func TestNextRules(t *testing.T) {
	const n = 10
	tests := []struct {
		name string
		// setup runs before the peer registers.
		setup func(t *testing.T, p *Picker)
		// peer is what the asking peer has; nil is a have-all peer.
		peer []int
		// seed makes the asking peer a have-all peer (peer is ignored).
		seed bool
		// want are the acceptable answers; empty means Next must say none.
		want []int
		// allSeen requires every answer in want to come up over many calls
		// (random tie-breaks really are random).
		allSeen bool
	}{
		{
			name: "now by earliest deadline",
			setup: func(t *testing.T, p *Picker) {
				mustWants(t, p, Want{Start: 70, End: 80, Priority: Now, Deadline: at(2)}, Want{Start: 30, End: 40, Priority: Now, Deadline: at(1)})
			},
			seed: true, want: []int{3},
		},
		{
			name: "now with equal deadlines by index",
			setup: func(t *testing.T, p *Picker) {
				mustWants(t, p, Want{Start: 90, End: 100, Priority: Now, Deadline: at(1)}, Want{Start: 40, End: 50, Priority: Now, Deadline: at(1)})
			},
			seed: true, want: []int{4},
		},
		{
			name: "now without a deadline after one with",
			setup: func(t *testing.T, p *Picker) {
				mustWants(t, p, Want{Start: 20, End: 30, Priority: Now}, Want{Start: 80, End: 90, Priority: Now, Deadline: at(5)})
			},
			seed: true, want: []int{8},
		},
		{
			name: "now before an earlier readahead",
			setup: func(t *testing.T, p *Picker) {
				mustWants(t, p, Want{Start: 10, End: 20, Priority: Readahead, Deadline: at(0)}, Want{Start: 90, End: 100, Priority: Now, Deadline: at(9)})
			},
			seed: true, want: []int{9},
		},
		{
			name: "overlapping wants take the highest priority",
			setup: func(t *testing.T, p *Picker) {
				mustWants(t, p, Want{Start: 0, End: 100, Priority: Readahead, Deadline: at(0)}, Want{Start: 60, End: 70, Priority: Now, Deadline: at(9)})
			},
			seed: true, want: []int{6},
		},
		{
			name: "readahead in index order",
			setup: func(t *testing.T, p *Picker) {
				mustWants(t, p, Want{Start: 50, End: 90, Priority: Readahead, Deadline: at(1)})
			},
			seed: true, want: []int{5},
		},
		{
			name: "readahead skips verified and fully requested",
			setup: func(t *testing.T, p *Picker) {
				mustWants(t, p, Want{Start: 50, End: 90, Priority: Readahead, Deadline: at(1)})
				p.FullyRequested(5)
				p.Verified(6)
			},
			seed: true, want: []int{7},
		},
		{
			name: "readahead by deadline before index",
			setup: func(t *testing.T, p *Picker) {
				mustWants(t, p, Want{Start: 80, End: 90, Priority: Readahead, Deadline: at(1)}, Want{Start: 20, End: 30, Priority: Readahead, Deadline: at(2)})
			},
			seed: true, want: []int{8},
		},
		{
			name: "a range straddling a boundary wants the first piece",
			setup: func(t *testing.T, p *Picker) {
				mustWants(t, p, Want{Start: 39, End: 41, Priority: Now, Deadline: at(1)})
			},
			seed: true, want: []int{3},
		},
		{
			name: "a range straddling a boundary wants the second piece",
			setup: func(t *testing.T, p *Picker) {
				mustWants(t, p, Want{Start: 39, End: 41, Priority: Now, Deadline: at(1)})
				p.FullyRequested(3)
			},
			seed: true, want: []int{4},
		},
		{
			name: "peer lacks the now piece",
			setup: func(t *testing.T, p *Picker) {
				mustWants(t, p, Want{Start: 30, End: 40, Priority: Now, Deadline: at(1)}, Want{Start: 50, End: 60, Priority: Readahead, Deadline: at(2)})
			},
			peer: []int{5, 6}, want: []int{5},
		},
		{
			name: "started before random and rarest",
			setup: func(t *testing.T, p *Picker) {
				mustAddPeer(t, p, pieces(n, 0)) // piece 0 is rarest for the partial peer below
				p.Started(7)
			},
			peer: span(0, n), want: []int{7},
		},
		{
			name: "started piece the peer lacks is skipped",
			setup: func(t *testing.T, p *Picker) {
				verify(p, 0, 1, 3, 4)
				p.Started(7)
			},
			peer: []int{2}, want: []int{2},
		},
		{
			name: "random first while fewer than 4 verified",
			setup: func(t *testing.T, p *Picker) {
				mustAddPeer(t, p, pieces(n, span(0, 9)...)) // piece 9 is the rarest
				verify(p, 0, 1, 2)
			},
			peer: span(0, n), want: span(3, 10), allSeen: true,
		},
		{
			name: "rarest first once 4 are verified",
			setup: func(t *testing.T, p *Picker) {
				mustAddPeer(t, p, pieces(n, span(0, 9)...))
				verify(p, 0, 1, 2, 3)
			},
			peer: span(0, n), want: []int{9},
		},
		{
			name: "rarest ties broken at random",
			setup: func(t *testing.T, p *Picker) {
				mustAddPeer(t, p, pieces(n, span(0, 8)...)) // 8 and 9 tie
				verify(p, 0, 1, 2, 3)
			},
			peer: span(0, n), want: []int{8, 9}, allSeen: true,
		},
		{
			name: "have-all peer gets the piece only seeds have",
			setup: func(t *testing.T, p *Picker) {
				mustAddPeer(t, p, pieces(n, span(0, 9)...))
				p.AddSeed()
				verify(p, 0, 1, 2, 3)
			},
			seed: true, want: []int{9},
		},
		{
			name: "have-all peers only: all tie",
			setup: func(t *testing.T, p *Picker) {
				p.AddSeed()
				p.AddSeed()
				verify(p, 0, 1, 2, 3)
			},
			seed: true, want: span(4, 10), allSeen: true,
		},
		{
			name: "verified pieces are skipped",
			setup: func(t *testing.T, p *Picker) {
				verify(p, 0, 1, 2, 3, 4, 5, 7, 8, 9)
			},
			seed: true, want: []int{6},
		},
		{
			name: "fully requested pieces are skipped outside endgame",
			setup: func(t *testing.T, p *Picker) {
				mustAddPeer(t, p, pieces(n, span(0, 8)...))
				verify(p, 0, 1, 2, 3)
				p.FullyRequested(9)
			},
			peer: span(0, n), want: []int{8},
		},
		{
			name: "lost requests make a piece pickable again",
			setup: func(t *testing.T, p *Picker) {
				mustAddPeer(t, p, pieces(n, span(0, 9)...))
				verify(p, 0, 1, 2, 3)
				p.FullyRequested(9)
				p.Unrequested(9)
			},
			peer: span(0, n), want: []int{9},
		},
		{
			name: "some lost requests make a piece started again",
			setup: func(t *testing.T, p *Picker) {
				verify(p, 0, 1, 2, 3)
				p.FullyRequested(6)
				p.Started(6)
			},
			peer: span(0, n), want: []int{6},
		},
		{
			name: "hash failure goes behind equal availability",
			setup: func(t *testing.T, p *Picker) {
				mustAddPeer(t, p, pieces(n, span(0, 8)...))
				verify(p, 0, 1, 2, 3)
				p.FullyRequested(9)
				p.Failed(9)
			},
			peer: span(0, n), want: []int{8},
		},
		{
			name: "hash failure is picked again when it is the rarest",
			setup: func(t *testing.T, p *Picker) {
				mustAddPeer(t, p, pieces(n, span(0, 9)...))
				verify(p, 0, 1, 2, 3)
				p.FullyRequested(9)
				p.Failed(9)
			},
			peer: span(0, n), want: []int{9},
		},
		{
			name: "hash failure is picked again once its peers are done",
			setup: func(t *testing.T, p *Picker) {
				mustAddPeer(t, p, pieces(n, span(0, 8)...))
				verify(p, 0, 1, 2, 3)
				p.Failed(9)
				p.Verified(8)
			},
			peer: span(0, n), want: []int{9},
		},
		{
			name: "hash failure of a wanted piece is not delayed",
			setup: func(t *testing.T, p *Picker) {
				mustWants(t, p, Want{Start: 90, End: 100, Priority: Now, Deadline: at(1)})
				p.FullyRequested(9)
				p.Failed(9)
			},
			seed: true, want: []int{9},
		},
		{
			name: "unverified piece is picked again",
			setup: func(t *testing.T, p *Picker) {
				verify(p, span(0, n)...)
				p.Unverified(4)
			},
			seed: true, want: []int{4},
		},
		{
			name:  "have-none peer gets nothing",
			setup: func(t *testing.T, p *Picker) {},
			peer:  []int{}, want: nil,
		},
		{
			name: "fetch-reads picks nothing without wants",
			setup: func(t *testing.T, p *Picker) {
				p.SetMode(FetchReads)
				p.Started(3)
			},
			seed: true, want: nil,
		},
		{
			name: "fetch-reads picks only wanted pieces",
			setup: func(t *testing.T, p *Picker) {
				p.SetMode(FetchReads)
				p.Started(5)
				mustWants(t, p, Want{Start: 20, End: 40, Priority: Readahead, Deadline: at(1)})
				p.Verified(2)
			},
			seed: true, want: []int{3},
		},
		{
			name: "fetch-reads peer without the wanted piece gets nothing",
			setup: func(t *testing.T, p *Picker) {
				p.SetMode(FetchReads)
				mustWants(t, p, Want{Start: 20, End: 40, Priority: Now, Deadline: at(1)})
			},
			peer: []int{0, 1, 4, 5, 6}, want: nil,
		},
		{
			name: "a released want no longer prioritises",
			setup: func(t *testing.T, p *Picker) {
				mustAddPeer(t, p, pieces(n, 0, 1, 2, 3, 4, 6, 7, 8, 9)) // 5 rarest
				verify(p, 0, 1, 2, 3)
				mustWants(t, p, Want{Start: 90, End: 100, Priority: Now, Deadline: at(1)})
				mustWants(t, p)
			},
			peer: span(0, n), want: []int{5},
		},
		{
			name: "a replaced want prioritises the new range",
			setup: func(t *testing.T, p *Picker) {
				mustWants(t, p, Want{Start: 90, End: 100, Priority: Now, Deadline: at(1)})
				mustWants(t, p, Want{Start: 60, End: 61, Priority: Now, Deadline: at(2)})
			},
			seed: true, want: []int{6},
		},
		{
			name: "a want of priority none is no want",
			setup: func(t *testing.T, p *Picker) {
				p.SetMode(FetchReads)
				mustWants(t, p, Want{Start: 0, End: 100, Priority: None, Deadline: at(1)})
			},
			seed: true, want: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPicker(t, 10, 100)
			tt.setup(t, p)
			var has *bitfield.Bitfield
			if !tt.seed {
				has = pieces(n, tt.peer...)
				mustAddPeer(t, p, has)
			}
			seen := map[int]bool{}
			for range 200 {
				got, ok := p.Next(has)
				if len(tt.want) == 0 {
					if ok {
						t.Fatalf("Next = %d, want none", got)
					}
					continue
				}
				if !ok || !slices.Contains(tt.want, got) {
					t.Fatalf("Next = %d, %v; want one of %v", got, ok, tt.want)
				}
				seen[got] = true
			}
			if tt.allSeen && len(seen) != len(tt.want) {
				t.Fatalf("200 calls returned only %v of %v", seen, tt.want)
			}
		})
	}
}

// TestRandomTieBreakDeterministic checks that the same seed gives the same
// choices: tests and bug reports can replay a run.
func TestRandomTieBreakDeterministic(t *testing.T) {
	run := func() []int {
		p := newPicker(t, 1, 1000)
		p.AddSeed()
		verify(p, 0, 1, 2, 3)
		var got []int
		for range 20 {
			i, _ := p.Next(nil)
			got = append(got, i)
		}
		return got
	}
	a, b := run(), run()
	if !slices.Equal(a, b) {
		t.Fatalf("same seed, different picks: %v vs %v", a, b)
	}
}

func TestInteresting(t *testing.T) {
	const n = 10
	p := newPicker(t, 10, 100)
	verify(p, 0, 1, 2)
	p.FullyRequested(5)
	tests := []struct {
		name  string
		mode  Mode
		wants []Want
		peer  []int
		want  bool
	}{
		{name: "has only verified pieces", peer: []int{0, 1, 2}, want: false},
		{name: "has a piece in flight", peer: []int{0, 5}, want: true},
		{name: "fetch-reads: has an unwanted piece", mode: FetchReads, peer: []int{5, 6}, want: false},
		{name: "fetch-reads: has a wanted piece", mode: FetchReads, wants: []Want{{Start: 60, End: 61, Priority: Readahead}}, peer: []int{5, 6}, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p.SetMode(tt.mode)
			mustWants(t, p, tt.wants...)
			if got := p.Interesting(pieces(n, tt.peer...)); got != tt.want {
				t.Fatalf("Interesting = %v, want %v", got, tt.want)
			}
		})
	}
}
