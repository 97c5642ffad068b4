package picker

import (
	"slices"
	"testing"

	"btfs/bitfield"
)

func TestEndgame(t *testing.T) {
	const n = 10
	tests := []struct {
		name  string
		setup func(t *testing.T, p *Picker)
		// peer is what the asking peer has (nil: have-all).
		peer []int
		// wantEndgame is Endgame's answer.
		wantEndgame bool
		// want are the acceptable answers of Next; empty means none.
		want []int
		// wantCandidates are the pieces AppendEndgame lists for the peer.
		wantCandidates []int
	}{
		{
			name: "not before every missing piece is in flight",
			setup: func(t *testing.T, p *Picker) {
				verify(p, span(0, 7)...)
				p.FullyRequested(7)
				p.FullyRequested(8)
			},
			peer: []int{7, 8}, want: nil,
		},
		{
			name: "a started piece is not endgame",
			setup: func(t *testing.T, p *Picker) {
				verify(p, span(0, 7)...)
				p.FullyRequested(7)
				p.FullyRequested(8)
				p.Started(9)
			},
			peer: []int{7, 8}, want: nil,
		},
		{
			name: "entered when every missing piece is fully requested",
			setup: func(t *testing.T, p *Picker) {
				verify(p, span(0, 7)...)
				p.FullyRequested(7)
				p.FullyRequested(8)
				p.FullyRequested(9)
			},
			peer: []int{7, 8}, wantEndgame: true, want: []int{7, 8}, wantCandidates: []int{7, 8},
		},
		{
			name: "a peer without the pieces gets nothing",
			setup: func(t *testing.T, p *Picker) {
				verify(p, span(0, 9)...)
				p.FullyRequested(9)
			},
			peer: []int{0, 1}, wantEndgame: true, want: nil,
		},
		{
			name: "left when requests are lost",
			setup: func(t *testing.T, p *Picker) {
				verify(p, span(0, 8)...)
				p.FullyRequested(8)
				p.FullyRequested(9)
				p.Unrequested(9)
			},
			peer: []int{8, 9}, want: []int{9},
		},
		{
			name: "left on a hash failure",
			setup: func(t *testing.T, p *Picker) {
				verify(p, span(0, 8)...)
				p.FullyRequested(8)
				p.FullyRequested(9)
				p.Failed(8)
			},
			peer: []int{8, 9}, want: []int{8},
		},
		{
			name: "left when a cached piece is evicted",
			setup: func(t *testing.T, p *Picker) {
				verify(p, span(0, 9)...)
				p.FullyRequested(9)
				p.Unverified(2)
			},
			peer: []int{2, 9}, want: []int{2},
		},
		{
			name: "over when everything is verified",
			setup: func(t *testing.T, p *Picker) {
				verify(p, span(0, n)...)
			},
			want: nil,
		},
		{
			name: "wanted pieces first",
			setup: func(t *testing.T, p *Picker) {
				verify(p, span(0, 7)...)
				p.FullyRequested(7)
				p.FullyRequested(8)
				p.FullyRequested(9)
				mustWants(t, p, Want{Start: 80, End: 90, Priority: Readahead, Deadline: at(1)})
			},
			wantEndgame: true, want: []int{8}, wantCandidates: []int{7, 8, 9},
		},
		{
			name: "fetch-reads: judged over wanted pieces only",
			setup: func(t *testing.T, p *Picker) {
				p.SetMode(FetchReads)
				mustWants(t, p, Want{Start: 70, End: 90, Priority: Now, Deadline: at(1)})
				p.FullyRequested(7)
				p.Verified(8)
				p.FullyRequested(2) // unwanted: never a candidate
			},
			wantEndgame: true, want: []int{7}, wantCandidates: []int{7},
		},
		{
			name: "fetch-reads: a new wanted piece ends it",
			setup: func(t *testing.T, p *Picker) {
				p.SetMode(FetchReads)
				mustWants(t, p, Want{Start: 70, End: 90, Priority: Now, Deadline: at(1)})
				p.FullyRequested(7)
				p.Verified(8)
				mustWants(t, p, Want{Start: 70, End: 100, Priority: Now, Deadline: at(1)})
			},
			want: []int{9},
		},
		{
			name: "fetch-reads: nothing wanted is no endgame",
			setup: func(t *testing.T, p *Picker) {
				p.SetMode(FetchReads)
				p.FullyRequested(7)
			},
			want: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPicker(t, 10, 100)
			tt.setup(t, p)
			var has *bitfield.Bitfield
			if tt.peer != nil {
				has = pieces(n, tt.peer...)
				mustAddPeer(t, p, has)
			}
			if got := p.Endgame(); got != tt.wantEndgame {
				t.Fatalf("Endgame = %v, want %v", got, tt.wantEndgame)
			}
			for range 50 {
				got, ok := p.Next(has)
				if len(tt.want) == 0 && ok {
					t.Fatalf("Next = %d, want none", got)
				}
				if len(tt.want) > 0 && (!ok || !slices.Contains(tt.want, got)) {
					t.Fatalf("Next = %d, %v; want one of %v", got, ok, tt.want)
				}
			}
			cands := p.AppendEndgame(nil, has)
			slices.Sort(cands)
			if !slices.Equal(cands, tt.wantCandidates) {
				t.Fatalf("AppendEndgame = %v, want %v", cands, tt.wantCandidates)
			}
			for i := range n {
				if got, want := p.EndgameCandidate(i), tt.wantEndgame && slices.Contains(tt.wantCandidates, i); got != want && (has == nil || has.Has(i)) {
					t.Errorf("EndgameCandidate(%d) = %v, want %v", i, got, want)
				}
			}
		})
	}
}
