package picker

import (
	"math/rand/v2"
	"testing"
	"time"

	"btfs/bitfield"
	"btfs/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// t0 is the base of the test deadlines; only their order matters.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// at returns a deadline k seconds after t0.
func at(k int) time.Time { return t0.Add(time.Duration(k) * time.Second) }

// newPicker returns a picker with a fixed random seed.
func newPicker(t testing.TB, pieceLen, totalLen int64) *Picker {
	t.Helper()
	p, err := New(pieceLen, totalLen, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatalf("New(%d, %d): %v", pieceLen, totalLen, err)
	}
	return p
}

// pieces returns a bitfield of n pieces with the given ones set.
func pieces(n int, set ...int) *bitfield.Bitfield {
	b := bitfield.New(n)
	for _, i := range set {
		b.Set(i)
	}
	return b
}

// span returns [lo, hi).
func span(lo, hi int) []int {
	var s []int
	for i := lo; i < hi; i++ {
		s = append(s, i)
	}
	return s
}

func mustWants(t *testing.T, p *Picker, ws ...Want) {
	t.Helper()
	if err := p.SetWants(ws); err != nil {
		t.Fatalf("SetWants: %v", err)
	}
}

func mustAddPeer(t *testing.T, p *Picker, b *bitfield.Bitfield) {
	t.Helper()
	if err := p.AddPeer(b); err != nil {
		t.Fatalf("AddPeer: %v", err)
	}
}

func verify(p *Picker, ps ...int) {
	for _, i := range ps {
		p.Verified(i)
	}
}

func TestNew(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	tests := []struct {
		name               string
		pieceLen, totalLen int64
		rng                *rand.Rand
		wantErr            bool
		wantPieces         int
	}{
		{name: "zero piece length", pieceLen: 0, totalLen: 10, rng: rng, wantErr: true},
		{name: "negative piece length", pieceLen: -5, totalLen: 10, rng: rng, wantErr: true},
		{name: "negative total", pieceLen: 5, totalLen: -1, rng: rng, wantErr: true},
		{name: "nil rng", pieceLen: 5, totalLen: 10, wantErr: true},
		{name: "too many pieces", pieceLen: 1, totalLen: 1 << 40, rng: rng, wantErr: true},
		{name: "empty torrent", pieceLen: 5, totalLen: 0, rng: rng, wantPieces: 0},
		{name: "exact", pieceLen: 5, totalLen: 10, rng: rng, wantPieces: 2},
		{name: "short last", pieceLen: 5, totalLen: 11, rng: rng, wantPieces: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(tt.pieceLen, tt.totalLen, tt.rng)
			if tt.wantErr {
				if err == nil {
					t.Fatal("New succeeded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.NumPieces() != tt.wantPieces || p.Mode() != FetchAll {
				t.Fatalf("NumPieces = %d, mode %v", p.NumPieces(), p.Mode())
			}
			if tt.wantPieces == 0 {
				if _, ok := p.Next(nil); ok || p.Endgame() || p.Interesting(nil) {
					t.Fatal("an empty torrent has something to pick")
				}
			}
		})
	}
}

// TestStateEventsThatDoNotApply checks the no-ops: events for verified
// pieces and out-of-range indices change nothing.
func TestStateEventsThatDoNotApply(t *testing.T) {
	p := newPicker(t, 1, 5)
	verify(p, 0, 1, 2, 3, 4)
	for _, ev := range []func(int){p.Started, p.FullyRequested, p.Unrequested, p.Failed, p.Verified, p.Have} {
		ev(2)
		ev(-1)
		ev(5)
	}
	p.Unverified(9)
	if p.NumVerified() != 5 {
		t.Fatalf("NumVerified = %d, want 5", p.NumVerified())
	}
	if _, ok := p.Next(nil); ok {
		t.Fatal("Next picked a piece of a complete torrent")
	}
	checkInvariants(t, p)
	p.SetMode(Mode(42))
	if p.Mode() != FetchReads {
		t.Fatalf("unknown mode became %v, want fetch-reads", p.Mode())
	}
}

// TestSync: Sync reaches every state from every state, keeping the
// counts and sets Next relies on.
func TestSync(t *testing.T) {
	all := []PieceState{PieceIdle, PieceStarted, PieceFull, PieceVerified}
	for _, from := range all {
		for _, to := range all {
			p := newPicker(t, 1, 4)
			p.Sync(2, from)
			p.Sync(2, to)
			if p.state[2] != to {
				t.Fatalf("%v then %v: state %v", from, to, p.state[2])
			}
			if got, want := p.NumVerified(), map[bool]int{true: 1, false: 0}[to == PieceVerified]; got != want {
				t.Fatalf("%v then %v: %d verified", from, to, got)
			}
			if got := p.pickable.Has(2); got != to.pickable() {
				t.Fatalf("%v then %v: pickable %v", from, to, got)
			}
		}
	}
}
