package storagewrapper

import (
	"errors"
	"slices"
	"testing"

	"btfs/picker"
)

// blocks builds the expected blocks of piece p from (begin, length) pairs.
func blocks(p int, pairs ...int64) []Block {
	var out []Block
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, Block{Piece: p, Begin: pairs[i], Length: int(pairs[i+1])})
	}
	return out
}

// fullBlocks is every block of a piece of plen bytes, built independently
// of blockOf.
func fullBlocks(p int, plen int64) []Block {
	var out []Block
	for begin := int64(0); begin < plen; begin += BlockSize {
		out = append(out, Block{Piece: p, Begin: begin, Length: int(min(BlockSize, plen-begin))})
	}
	return out
}

func TestNewRequestSequence(t *testing.T) {
	const k = BlockSize
	tests := []struct {
		name            string
		pieceLen, total int64
		piece           int
		want            []Block
	}{
		// The seed's teststoragewrapper: two slices per piece, (0, slice)
		// then (slice, slice).
		{"seed example: two blocks", 2 * k, 4 * k, 1, blocks(1, 0, k, k, k)},
		{"one block of 16 KiB", k, 3 * k, 2, blocks(2, 0, k)},
		{"short last block", 2*k + 100, 4*k + 200, 0, blocks(0, 0, k, k, k, 2*k, 100)},
		{"short last piece", 2 * k, 3*k + 7, 1, blocks(1, 0, k, k, 7)},
		{"last piece of one byte", 2 * k, 2*k + 1, 1, blocks(1, 0, 1)},
		{"5-byte pieces: one short block", 5, 13, 1, blocks(1, 0, 5)},
		{"5-byte pieces: short last piece", 5, 13, 2, blocks(2, 0, 3)},
		{"16 MiB piece: 1024 blocks", 16 << 20, 16<<20 + k, 0, fullBlocks(0, 16<<20)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.pieceLen, tt.total)
			w := newWrapper(t, f, nil, Config{})
			got := requestAll(t, w, tt.piece)
			if !slices.Equal(got, tt.want) {
				if len(got) > 8 || len(tt.want) > 8 {
					t.Fatalf("got %d blocks, want %d (first %v, %v)", len(got), len(tt.want), got[:min(2, len(got))], tt.want[:min(2, len(tt.want))])
				}
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			if b, st := w.NewRequest(tt.piece); st != RequestExhausted {
				t.Errorf("after every block: NewRequest = %v, %v; want exhausted", b, st)
			}
			if got := w.Missing(tt.piece); !slices.Equal(got, tt.want) {
				t.Errorf("Missing = %d blocks, want the %d handed out", len(got), len(tt.want))
			}
		})
	}
}

func TestNewRequestStatus(t *testing.T) {
	f := newFixture(t, 2*BlockSize, 6*BlockSize)
	tests := []struct {
		name  string
		setup func(t *testing.T, w *Wrapper)
		piece int
		want  RequestStatus
	}{
		{"fresh piece", func(*testing.T, *Wrapper) {}, 0, RequestGranted},
		{"negative piece", func(*testing.T, *Wrapper) {}, -1, RequestOutOfRange},
		{"piece past the end", func(*testing.T, *Wrapper) {}, 3, RequestOutOfRange},
		{"verified piece", func(t *testing.T, w *Wrapper) { fetch(t, w, 1, "a", f.block) }, 1, RequestVerified},
		{"all blocks out", func(t *testing.T, w *Wrapper) { requestAll(t, w, 2) }, 2, RequestExhausted},
		{"being adopted", func(t *testing.T, w *Wrapper) {
			w.mu.Lock()
			w.adopting[0] = make(chan struct{})
			w.mu.Unlock()
		}, 0, RequestBusy},
		{"being hashed", func(t *testing.T, w *Wrapper) {
			requestAll(t, w, 0)
			w.mu.Lock()
			w.downloads[0].hashing = true
			w.mu.Unlock()
		}, 0, RequestBusy},
		{"closed", func(t *testing.T, w *Wrapper) {
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
		}, 0, RequestClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWrapper(t, f, nil, Config{})
			tt.setup(t, w)
			b, st := w.NewRequest(tt.piece)
			if st != tt.want {
				t.Fatalf("NewRequest(%d) = %v, %v; want %v", tt.piece, b, st, tt.want)
			}
			if st.OK() != (st == RequestGranted) || (st != RequestGranted && b != Block{}) {
				t.Errorf("status %v with block %v", st, b)
			}
		})
	}
}

func TestMaxInFlight(t *testing.T) {
	f := newFixture(t, 2*BlockSize, 6*BlockSize)
	w := newWrapper(t, f, nil, Config{MaxInFlight: 2})
	b0, _ := w.NewRequest(0)
	b1, _ := w.NewRequest(1)
	if _, st := w.NewRequest(2); st != RequestAtCap {
		t.Fatalf("third piece: %v, want at cap", st)
	}
	// Pieces already in flight still hand out blocks.
	if _, st := w.NewRequest(0); st != RequestGranted {
		t.Fatalf("piece in flight: %v, want granted", st)
	}
	if got := w.InFlight(); !slices.Equal(got, []int{0, 1}) {
		t.Fatalf("InFlight = %v", got)
	}
	// Losing piece 1's only request takes it out of flight: room for 2.
	if !w.RequestLost(b1) {
		t.Fatal("RequestLost of a handed-out block = false")
	}
	if _, st := w.NewRequest(2); st != RequestGranted {
		t.Fatalf("after a piece left flight: %v, want granted", st)
	}
	if _, st := w.NewRequest(1); st != RequestAtCap {
		t.Fatalf("piece 1 again: %v, want at cap", st)
	}
	// Verifying piece 0 frees its slot too.
	if _, err := w.PieceCameIn(0, b0.Begin, f.block(b0), "a"); err != nil {
		t.Fatal(err)
	}
	b := Block{Piece: 0, Begin: BlockSize, Length: BlockSize}
	if res, err := w.PieceCameIn(0, b.Begin, f.block(b), "a"); err != nil || !res.Verified {
		t.Fatalf("last block of piece 0: %+v, %v", res, err)
	}
	if _, st := w.NewRequest(1); st != RequestGranted {
		t.Fatalf("after piece 0 verified: %v, want granted", st)
	}
	if st := w.Stats(); st.InFlight != 2 {
		t.Errorf("Stats.InFlight = %d, want 2", st.InFlight)
	}
}

func TestRequestLost(t *testing.T) {
	f := newFixture(t, 4*BlockSize, 4*BlockSize)
	w := newWrapper(t, f, nil, Config{})
	bs := requestAll(t, w, 0)
	if _, err := w.PieceCameIn(0, bs[0].Begin, f.block(bs[0]), "a"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		b    Block
		want bool
	}{
		{"handed out", bs[2], true},
		{"lost twice", bs[2], false},
		{"already received", bs[0], false},
		{"unaligned", Block{Piece: 0, Begin: 1, Length: BlockSize}, false},
		{"wrong length", Block{Piece: 0, Begin: BlockSize, Length: 1}, false},
		{"piece out of range", Block{Piece: 9, Begin: 0, Length: BlockSize}, false},
		{"piece not in flight", Block{Piece: -1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := w.RequestLost(tt.b); got != tt.want {
				t.Fatalf("RequestLost(%v) = %v, want %v", tt.b, got, tt.want)
			}
		})
	}
	// The lost block is handed out again, before anything else.
	if b, st := w.NewRequest(0); st != RequestGranted || b != bs[2] {
		t.Fatalf("NewRequest after loss = %v, %v; want %v", b, st, bs[2])
	}
	if got := w.Missing(0); !slices.Equal(got, bs[1:]) {
		t.Fatalf("Missing = %v, want %v", got, bs[1:])
	}
	// A lost block that arrives anyway was not requested any more.
	w.RequestLost(bs[3])
	if _, err := w.PieceCameIn(0, bs[3].Begin, f.block(bs[3]), "a"); !errors.Is(err, ErrUnrequested) {
		t.Fatalf("late block after loss: %v, want ErrUnrequested", err)
	}
}

func TestRequestLostRetiresIdlePiece(t *testing.T) {
	f := newFixture(t, 2*BlockSize, 2*BlockSize)
	w := newWrapper(t, f, nil, Config{})
	for _, b := range requestAll(t, w, 0) {
		w.RequestLost(b)
	}
	if got := w.InFlight(); len(got) != 0 {
		t.Fatalf("InFlight = %v after every request was lost, want none", got)
	}
	// It starts again from the lowest block.
	if b, st := w.NewRequest(0); st != RequestGranted || b.Begin != 0 {
		t.Fatalf("restart: %v, %v", b, st)
	}
}

// TestPieceState: the state the picker keeps a copy of, as the wrapper
// sees it after each step of a piece's download.
func TestPieceState(t *testing.T) {
	const k = BlockSize
	f := newFixture(t, 2*k, 4*k)
	w := newWrapper(t, f, nil, Config{})
	steps := []struct {
		name string
		do   func()
		want picker.PieceState
	}{
		{"nothing handed out", func() {}, picker.PieceIdle},
		{"one of two blocks out", func() { w.NewRequest(0) }, picker.PieceStarted},
		{"both out", func() { w.NewRequest(0) }, picker.PieceFull},
		{"one back", func() { w.RequestLost(Block{Piece: 0, Begin: k, Length: k}) }, picker.PieceStarted},
		{"the other back: out of flight", func() { w.RequestLost(Block{Piece: 0, Begin: 0, Length: k}) }, picker.PieceIdle},
		{"received and verified", func() {
			for _, b := range requestAll(t, w, 0) {
				if _, err := w.PieceCameIn(b.Piece, b.Begin, f.block(b), "peer"); err != nil {
					t.Fatal(err)
				}
			}
		}, picker.PieceVerified},
		{"evicted", func() { w.Unverify(0) }, picker.PieceIdle},
	}
	for _, s := range steps {
		s.do()
		if got := w.PieceState(0); got != s.want {
			t.Fatalf("%s: state %v, want %v", s.name, got, s.want)
		}
	}
	if got := w.PieceState(99); got != picker.PieceIdle {
		t.Fatalf("out of range: %v", got)
	}
}
