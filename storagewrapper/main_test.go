package storagewrapper

import (
	"context"
	"crypto/sha1"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"btfs/internal/leakcheck"
	"btfs/metainfo"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// fixture is a torrent whose bytes the test knows.
type fixture struct {
	// info describes the torrent; one file per piece-unaligned span is
	// added by withFiles.
	info *metainfo.Info
	// data is the whole torrent.
	data []byte
}

// newFixture makes a torrent of total bytes in pieces of pieceLen, filled
// with cheap pseudo-random bytes (a ChaCha8 stream: GB/s, so 16 MiB costs
// nothing) that differ between pieces, so misplaced bytes fail the hash.
func newFixture(t testing.TB, pieceLen, total int64) *fixture {
	t.Helper()
	data := make([]byte, total)
	seed := [32]byte{byte(pieceLen), byte(total), byte(total >> 8)}
	_, _ = rand.NewChaCha8(seed).Read(data)
	n := int((total + pieceLen - 1) / pieceLen)
	info := &metainfo.Info{Name: "fixture", PieceLength: pieceLen, TotalLength: total, Pieces: make([]metainfo.Hash, n)}
	for p := range n {
		end := min(int64(p+1)*pieceLen, total)
		info.Pieces[p] = sha1.Sum(data[int64(p)*pieceLen : end])
	}
	info.Files = []metainfo.File{{Path: []string{"fixture"}, Length: total}}
	return &fixture{info: info, data: data}
}

// piece returns piece p's bytes.
func (f *fixture) piece(p int) []byte {
	off := f.info.PieceOffset(p)
	return f.data[off : off+f.info.PieceLen(p)]
}

// block returns block b's bytes.
func (f *fixture) block(b Block) []byte {
	return f.piece(b.Piece)[b.Begin : b.Begin+int64(b.Length)]
}

// newWrapper returns a Wrapper over store (a MemStore when nil) closed at
// the end of the test.
func newWrapper(t testing.TB, f *fixture, store Store, cfg Config) *Wrapper {
	t.Helper()
	if store == nil {
		store = NewMemStore(f.info)
	}
	w, err := New(f.info, store, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return w
}

// requestAll hands out every block of piece p, lowest first.
func requestAll(t testing.TB, w *Wrapper, p int) []Block {
	t.Helper()
	var out []Block
	for {
		b, st := w.NewRequest(p)
		if st != RequestGranted {
			if st != RequestExhausted {
				t.Fatalf("NewRequest(%d) = %v after %d blocks, want exhausted", p, st, len(out))
			}
			return out
		}
		out = append(out, b)
	}
}

// fetch requests and delivers every block of piece p from peer, with
// the bytes returned by data, and returns the last Result.
func fetch(t testing.TB, w *Wrapper, p int, peer string, data func(Block) []byte) Result {
	t.Helper()
	var res Result
	for _, b := range requestAll(t, w, p) {
		r, err := w.PieceCameIn(p, b.Begin, data(b), peer)
		if err != nil {
			t.Fatalf("PieceCameIn(%v): %v", b, err)
		}
		res = r
	}
	return res
}

// downloadAll downloads every piece of f into w from one peer.
func downloadAll(t testing.TB, w *Wrapper, f *fixture) {
	t.Helper()
	for p := range f.info.NumPieces() {
		if res := fetch(t, w, p, "peer", f.block); !res.Verified {
			t.Fatalf("piece %d: %+v, want verified", p, res)
		}
	}
}

// corrupt returns data with its first byte flipped.
func corrupt(data []byte) []byte {
	out := append([]byte(nil), data...)
	out[0] ^= 0xff
	return out
}

// waitWants blocks until at least n wants are registered: every blocked
// ReadAt registers one before it waits. It uses Kick, so it does not poll.
func waitWants(t testing.TB, w *Wrapper, n int) {
	t.Helper()
	for len(w.Wants()) < n {
		<-w.Kick()
	}
}

// fixedClock is a Config.Now for tests.
var fixedTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func fixedClock() time.Time { return fixedTime }

// readResult is what a reader goroutine saw.
type readResult struct {
	// n and err are ReadAt's results; data is the buffer.
	n    int
	err  error
	data []byte
}

// startReader runs ReadAt(ctx, len n, off) in a goroutine; the result comes
// on the returned channel. The goroutine always ends: the test cancels ctx
// or closes the wrapper, or the read completes.
func startReader(ctx context.Context, wg *sync.WaitGroup, w *Wrapper, off int64, n int) <-chan readResult {
	ch := make(chan readResult, 1)
	wg.Go(func() {
		buf := make([]byte, n)
		got, err := w.ReadAt(ctx, buf, off)
		ch <- readResult{n: got, err: err, data: buf[:got]}
	})
	return ch
}

// faultyStore stands for a failing disk under a real Store: writes or
// publishes of chosen pieces fail the way a full disk makes them fail.
type faultyStore struct {
	Store
	// mu guards the fault maps, so a test can "free disk space" midway.
	mu sync.Mutex
	// writeErr fails WriteAt of a piece after writing half of the block.
	writeErr map[int]error
	// shortWrite makes WriteAt of a piece write half and report no error
	// (a broken store; the wrapper must not take it for a full write).
	shortWrite map[int]bool
	// publishErr fails Publish of a piece (fsync reporting ENOSPC).
	publishErr map[int]error
}

func newFaultyStore(s Store) *faultyStore {
	return &faultyStore{Store: s, writeErr: map[int]error{}, shortWrite: map[int]bool{}, publishErr: map[int]error{}}
}

func (s *faultyStore) Piece(i int) Piece { return faultyPiece{Piece: s.Store.Piece(i), s: s, i: i} }

// heal removes every fault.
func (s *faultyStore) heal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.writeErr)
	clear(s.shortWrite)
	clear(s.publishErr)
}

// faultyPiece is a Piece of a faultyStore.
type faultyPiece struct {
	Piece
	// s holds the faults; i is the piece index.
	s *faultyStore
	i int
}

func (p faultyPiece) WriteAt(b []byte, off int64) (int, error) {
	p.s.mu.Lock()
	err, short := p.s.writeErr[p.i], p.s.shortWrite[p.i]
	p.s.mu.Unlock()
	if err != nil || short {
		n, werr := p.Piece.WriteAt(b[:len(b)/2], off)
		return n, errors.Join(err, werr)
	}
	return p.Piece.WriteAt(b, off)
}

func (p faultyPiece) Publish() error {
	p.s.mu.Lock()
	err := p.s.publishErr[p.i]
	p.s.mu.Unlock()
	if err != nil {
		return err
	}
	return p.Piece.Publish()
}
