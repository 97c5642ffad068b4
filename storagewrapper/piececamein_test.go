package storagewrapper

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"btfs/internal/poll"
)

// sentinels are PieceCameIn's distinct errors: each bad block must match
// exactly one of them.
var sentinels = []error{ErrOutOfRange, ErrUnaligned, ErrWrongLength, ErrUnrequested, ErrDuplicate, ErrStore, ErrClosed}

func TestPieceCameInErrors(t *testing.T) {
	// Pieces of two blocks, the last piece of one short block; and the
	// 5-byte fixture where a block is larger than the piece.
	two := newFixture(t, 2*BlockSize, 3*BlockSize+10)
	five := newFixture(t, 5, 13)
	tests := []struct {
		name  string
		f     *fixture
		setup func(t *testing.T, w *Wrapper)
		piece int
		begin int64
		data  []byte
		want  error
	}{
		{"negative piece", two, nil, -1, 0, make([]byte, BlockSize), ErrOutOfRange},
		{"piece past the end", two, nil, 2, 0, make([]byte, BlockSize), ErrOutOfRange},
		{"negative begin", two, requestPiece(0), 0, -BlockSize, make([]byte, BlockSize), ErrOutOfRange},
		{"begin past the piece", two, requestPiece(0), 0, 2 * BlockSize, make([]byte, BlockSize), ErrOutOfRange},
		{"begin past a 5-byte piece", five, requestPiece(0), 0, 5, make([]byte, 1), ErrOutOfRange},
		{"unaligned", two, requestPiece(0), 0, 1, make([]byte, BlockSize-1), ErrUnaligned},
		{"unaligned half block", two, requestPiece(0), 0, BlockSize / 2, make([]byte, BlockSize), ErrUnaligned},
		{"too short", two, requestPiece(0), 0, 0, make([]byte, BlockSize-1), ErrWrongLength},
		{"too long", two, requestPiece(0), 0, 0, make([]byte, BlockSize+1), ErrWrongLength},
		{"empty", two, requestPiece(0), 0, 0, nil, ErrWrongLength},
		{"full block where the short last block belongs", two, requestPiece(1), 1, BlockSize, make([]byte, BlockSize), ErrWrongLength},
		{"begin past the short last piece", two, requestPiece(1), 1, 2 * BlockSize, make([]byte, BlockSize), ErrOutOfRange},
		{"short last piece with a full block", two, requestPiece(1), 1, 0, make([]byte, BlockSize+1), ErrWrongLength},
		{"5-byte piece with 16 KiB", five, requestPiece(1), 1, 0, make([]byte, BlockSize), ErrWrongLength},
		{"5-byte last piece (3 bytes) with 5", five, requestPiece(2), 2, 0, make([]byte, 5), ErrWrongLength},
		{"piece never requested", two, nil, 0, 0, make([]byte, BlockSize), ErrUnrequested},
		{"block not handed out", two, func(t *testing.T, w *Wrapper) { w.NewRequest(0) }, 0, BlockSize, make([]byte, BlockSize), ErrUnrequested},
		{"duplicate", two, func(t *testing.T, w *Wrapper) {
			b, _ := w.NewRequest(0)
			w.NewRequest(0)
			if _, err := w.PieceCameIn(0, b.Begin, two.block(b), "a"); err != nil {
				t.Fatal(err)
			}
		}, 0, 0, make([]byte, BlockSize), ErrDuplicate},
		{"piece already verified", five, func(t *testing.T, w *Wrapper) { fetch(t, w, 0, "a", five.block) }, 0, 0, make([]byte, 5), ErrDuplicate},
		{"closed", two, func(t *testing.T, w *Wrapper) {
			w.NewRequest(0)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
		}, 0, 0, make([]byte, BlockSize), ErrClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWrapper(t, tt.f, nil, Config{})
			if tt.setup != nil {
				tt.setup(t, w)
			}
			before := w.Stats()
			res, err := w.PieceCameIn(tt.piece, tt.begin, tt.data, "liar")
			for _, s := range sentinels {
				if got := errors.Is(err, s); got != (s == tt.want) {
					t.Errorf("errors.Is(%v, %v) = %v", err, s, got)
				}
			}
			if res.Completed || res.Verified || res.HashFailed {
				t.Errorf("rejected block changed the piece: %+v", res)
			}
			if after := w.Stats(); after.VerifiedPieces != before.VerifiedPieces {
				t.Errorf("verified pieces %d → %d", before.VerifiedPieces, after.VerifiedPieces)
			}
		})
	}
}

// requestPiece is a setup that hands out every block of piece p.
func requestPiece(p int) func(t *testing.T, w *Wrapper) {
	return func(t *testing.T, w *Wrapper) { requestAll(t, w, p) }
}

func TestHashFailureBlame(t *testing.T) {
	f := newFixture(t, 4*BlockSize, 8*BlockSize)
	tests := []struct {
		name string
		// sender names the peer of each block and whether it lies.
		sender      func(idx int) (peer string, lie bool)
		contributed []Contribution
		blamed      string
	}{
		{"one liar among two peers", func(idx int) (string, bool) {
			if idx%2 == 0 {
				return "honest", false
			}
			return "liar", idx == 3
		}, []Contribution{{"honest", 2}, {"liar", 2}}, ""},
		{"one peer sent all blocks", func(int) (string, bool) { return "liar", true },
			[]Contribution{{"liar", 4}}, "liar"},
		{"one peer, one bad block", func(idx int) (string, bool) { return "solo", idx == 2 },
			[]Contribution{{"solo", 4}}, "solo"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWrapper(t, f, nil, Config{})
			var res Result
			for idx, b := range requestAll(t, w, 1) {
				peer, lie := tt.sender(idx)
				data := f.block(b)
				if lie {
					data = corrupt(data)
				}
				r, err := w.PieceCameIn(1, b.Begin, data, peer)
				if err != nil {
					t.Fatal(err)
				}
				res = r
			}
			want := Result{Piece: 1, Completed: true, HashFailed: true, Contributors: tt.contributed, Blamed: tt.blamed}
			if !resultEqual(res, want) {
				t.Fatalf("Result = %+v, want %+v", res, want)
			}
			if w.DoIHave(1) {
				t.Fatal("DoIHave after a hash failure")
			}
			// Every block is re-queued, lowest first, and good data then
			// verifies the piece.
			if got := requestAll(t, w, 1); !slices.Equal(got, fullBlocks(1, 4*BlockSize)) {
				t.Fatalf("after failure: re-requested %v", got)
			}
			for _, b := range w.Missing(1) {
				res, _ = w.PieceCameIn(1, b.Begin, f.block(b), "honest")
			}
			if !res.Verified || !w.DoIHave(1) {
				t.Fatalf("good data after failure: %+v", res)
			}
		})
	}
}

func resultEqual(a, b Result) bool {
	return a.Piece == b.Piece && a.Completed == b.Completed && a.Verified == b.Verified &&
		a.HashFailed == b.HashFailed && a.Blamed == b.Blamed && slices.Equal(a.Contributors, b.Contributors)
}

// TestConcurrentBlocksOfOnePiece sends the 1024 blocks of a 16 MiB piece
// from 8 goroutines (peers) at once, with an endgame duplicate of each:
// exactly one call completes the piece, and every duplicate is refused.
func TestConcurrentBlocksOfOnePiece(t *testing.T) {
	f := newFixture(t, 16<<20, 16<<20)
	w := newWrapper(t, f, nil, Config{})
	bs := requestAll(t, w, 0)
	if len(bs) != 1024 {
		t.Fatalf("%d blocks, want 1024", len(bs))
	}
	var (
		mu                 sync.Mutex
		completed, dups    int
		wg                 sync.WaitGroup
		verified, unwanted int
	)
	for g := range 8 {
		wg.Go(func() {
			peer := fmt.Sprintf("peer%d", g)
			order := rand.New(rand.NewPCG(uint64(g), 1)).Perm(len(bs))
			for _, i := range order {
				if i%8 != g && i%8 != (g+1)%8 { // each block from two peers
					continue
				}
				b := bs[i]
				res, err := w.PieceCameIn(0, b.Begin, f.block(b), peer)
				mu.Lock()
				switch {
				case errors.Is(err, ErrDuplicate):
					dups++
				case err != nil:
					unwanted++
					t.Errorf("block %v: %v", b, err)
				case res.Completed:
					completed++
					if res.Verified {
						verified++
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if completed != 1 || verified != 1 || dups != len(bs) || unwanted != 0 {
		t.Fatalf("completed %d, verified %d, duplicates %d (want 1, 1, %d)", completed, verified, dups, len(bs))
	}
	if !w.DoIHave(0) {
		t.Fatal("piece not had")
	}
}

func TestStoreFailures(t *testing.T) {
	enospc := syscall.ENOSPC
	tests := []struct {
		name  string
		fault func(s *faultyStore)
		// failAt is the block (index) whose PieceCameIn fails.
		failAt int
		want   []error
	}{
		{"disk full on write", func(s *faultyStore) { s.writeErr[0] = enospc }, 0, []error{ErrStore, enospc}},
		{"short write without error", func(s *faultyStore) { s.shortWrite[0] = true }, 0, []error{ErrStore, io.ErrShortWrite}},
		{"disk full on publish", func(s *faultyStore) { s.publishErr[0] = enospc }, 1, []error{ErrStore, enospc}},
	}
	for _, tt := range tests {
		for _, kind := range []string{"mem", "file"} {
			t.Run(tt.name+"/"+kind, func(t *testing.T) {
				f := newFixture(t, 2*BlockSize, 4*BlockSize)
				var base Store = NewMemStore(f.info)
				if kind == "file" {
					ds, err := NewFileStore(t.TempDir(), f.info, false)
					if err != nil {
						t.Fatal(err)
					}
					base = ds
				}
				fs := newFaultyStore(base)
				tt.fault(fs)
				w := newWrapper(t, f, fs, Config{})
				bs := requestAll(t, w, 0)
				var err error
				var res Result
				for _, b := range bs[:tt.failAt+1] {
					res, err = w.PieceCameIn(0, b.Begin, f.block(b), "a")
				}
				for _, want := range tt.want {
					if !errors.Is(err, want) {
						t.Errorf("error %v does not wrap %v", err, want)
					}
				}
				if errors.Is(err, ErrDuplicate) || errors.Is(err, ErrUnrequested) || res.Verified || res.HashFailed {
					t.Errorf("store failure taken for a peer's fault or a success: %+v, %v", res, err)
				}
				if w.DoIHave(0) {
					t.Fatal("piece had after a store failure")
				}
				// The store is failed (health.go): nothing is handed out,
				// and a read of the piece fails at once with the store's
				// error instead of waiting for blocks nobody will fetch.
				if h := w.Health(); h.Fault == FaultNone || !errors.Is(h.Err, tt.want[1]) {
					t.Fatalf("health after the failure: %+v", h)
				}
				if _, st := w.NewRequest(0); st != RequestStoreFailed {
					t.Fatalf("NewRequest while failed: %v", st)
				}
				if _, rerr := w.ReadAt(t.Context(), make([]byte, 10), 0); !errors.Is(rerr, tt.want[1]) || !errors.Is(rerr, ErrStore) {
					t.Fatalf("ReadAt while failed: %v, want %v", rerr, tt.want)
				}
				// The failed block (or the whole piece, when publishing
				// failed) is handed out again, lowest first, once the
				// probe sees the disk healed; then the piece verifies.
				fs.heal()
				poll.Until(t, 10*time.Second, "the store to recover", func() bool { return w.Health().Fault == FaultNone })
				if b, st := w.NewRequest(0); st != RequestGranted || b != bs[0] {
					t.Fatalf("after failure: NewRequest = %v, %v; want %v", b, st, bs[0])
				}
				for _, b := range w.Missing(0) {
					w.RequestLost(b)
				}
				res = Result{}
				for {
					b, st := w.NewRequest(0)
					if !st.OK() {
						break
					}
					if res, err = w.PieceCameIn(0, b.Begin, f.block(b), "a"); err != nil {
						t.Fatal(err)
					}
				}
				if !res.Verified || !w.DoIHave(0) {
					t.Fatalf("after healing: %+v", res)
				}
				buf := make([]byte, 2*BlockSize)
				if _, err := w.ReadAt(t.Context(), buf, 0); err != nil || !slices.Equal(buf, f.piece(0)) {
					t.Fatalf("ReadAt after healing: %v, equal %v", err, slices.Equal(buf, f.piece(0)))
				}
			})
		}
	}
}

// TestDownloadAll fetches whole torrents with blocks arriving out of order,
// over both stores, and reads them back.
func TestDownloadAll(t *testing.T) {
	shapes := []struct {
		name            string
		pieceLen, total int64
	}{
		{"5-byte pieces", 5, 13},
		{"5-byte pieces, exact", 5, 15},
		{"16 KiB pieces", BlockSize, 5*BlockSize + 1},
		{"pieces of 2.5 blocks", 2*BlockSize + BlockSize/2, 7 * BlockSize},
		{"one piece, one byte", 1 << 20, 1},
	}
	for _, sh := range shapes {
		for _, kind := range []string{"mem", "file"} {
			t.Run(sh.name+"/"+kind, func(t *testing.T) {
				f := newFixture(t, sh.pieceLen, sh.total)
				var store Store = NewMemStore(f.info)
				if kind == "file" {
					ds, err := NewFileStore(t.TempDir(), f.info, false)
					if err != nil {
						t.Fatal(err)
					}
					store = ds
				}
				w := newWrapper(t, f, store, Config{MaxInFlight: 2})
				rng := rand.New(rand.NewPCG(uint64(sh.total), 2))
				pieces := rng.Perm(f.info.NumPieces())
				for len(pieces) > 0 {
					// Two pieces at a time, blocks interleaved in random order.
					var out []Block
					for _, p := range pieces[:min(2, len(pieces))] {
						out = append(out, requestAll(t, w, p)...)
					}
					pieces = pieces[min(2, len(pieces)):]
					rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
					for _, b := range out {
						if _, err := w.PieceCameIn(b.Piece, b.Begin, f.block(b), "p"); err != nil {
							t.Fatal(err)
						}
					}
				}
				st := w.Stats()
				if st.VerifiedPieces != f.info.NumPieces() || st.VerifiedBytes != sh.total || st.InFlight != 0 || !w.Bitfield().All() {
					t.Fatalf("Stats = %+v, bitfield %v", st, w.Bitfield())
				}
				buf := make([]byte, sh.total)
				if n, err := w.ReadAt(t.Context(), buf, 0); n != len(buf) || err != nil || !slices.Equal(buf, f.data) {
					t.Fatalf("ReadAt = %d, %v; equal %v", n, err, slices.Equal(buf, f.data))
				}
			})
		}
	}
}
