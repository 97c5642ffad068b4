package storagewrapper

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"btfs/internal/poll"
)

// completionErrStore fails Completion of one piece, as a store that cannot
// stat a file would.
type completionErrStore struct {
	Store
	// bad is the failing piece.
	bad int
}

func (s completionErrStore) Piece(i int) Piece {
	if i == s.bad {
		return completionErrPiece{s.Store.Piece(i)}
	}
	return s.Store.Piece(i)
}

// completionErrPiece is a Piece whose Completion fails.
type completionErrPiece struct{ Piece }

func (completionErrPiece) Completion() (Completion, error) { return Unknown, os.ErrPermission }

func TestResumeErrors(t *testing.T) {
	f := newFixture(t, 5, 20)
	full := func(t *testing.T) Store {
		s := NewMemStore(f.info)
		for p := range f.info.NumPieces() {
			if _, err := s.Piece(p).WriteAt(f.piece(p), 0); err != nil {
				t.Fatal(err)
			}
			if err := s.Piece(p).Publish(); err != nil {
				t.Fatal(err)
			}
		}
		return s
	}
	t.Run("unreadable piece", func(t *testing.T) {
		w := newWrapper(t, f, completionErrStore{full(t), 2}, Config{HashWorkers: 3})
		err := w.Resume(t.Context())
		if !errors.Is(err, os.ErrPermission) || !errors.Is(err, ErrStore) {
			t.Fatalf("Resume: %v", err)
		}
		if got := w.Bitfield().String(); got != "1101" {
			t.Fatalf("verified %s, want 1101", got)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		w := newWrapper(t, f, full(t), Config{})
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := w.Resume(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Resume: %v", err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		w := newWrapper(t, f, full(t), Config{})
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := w.Resume(t.Context()); !errors.Is(err, ErrClosed) {
			t.Fatalf("Resume: %v", err)
		}
	})
}

// TestAdopt plays the shared cache: another process publishes pieces into
// the store, and Adopt takes the good ones, waking readers.
func TestAdopt(t *testing.T) {
	f := newFixture(t, 2*BlockSize, 6*BlockSize)
	store := NewMemStore(f.info)
	w := newWrapper(t, f, store, Config{})
	publish := func(p int, data []byte) {
		t.Helper()
		if _, err := store.Piece(p).WriteAt(data, 0); err != nil {
			t.Fatal(err)
		}
		if err := store.Piece(p).Publish(); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	reader := startReader(t.Context(), &wg, w, 0, 2*BlockSize)
	waitWants(t, w, 1)

	publish(0, f.piece(0))
	publish(1, corrupt(f.piece(1)))
	requestAll(t, w, 2) // in flight here
	tests := []struct {
		name    string
		piece   int
		want    bool
		wantErr error
		after   Completion
	}{
		{"good piece", 0, true, nil, Complete},
		{"again", 0, true, nil, Complete},
		{"corrupt piece is discarded", 1, false, nil, Missing},
		{"piece in flight is left alone", 2, false, nil, Missing},
		{"missing piece", 2, false, nil, Missing},
		{"out of range", 3, false, ErrOutOfRange, Unknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := w.Adopt(t.Context(), tt.piece)
			if got != tt.want || !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("Adopt(%d) = %v, %v; want %v, %v", tt.piece, got, err, tt.want, tt.wantErr)
			}
			if tt.wantErr == nil {
				if c, _ := store.Piece(tt.piece).Completion(); c != tt.after {
					t.Fatalf("Completion after = %v, want %v", c, tt.after)
				}
			}
			if w.DoIHave(tt.piece) != tt.want {
				t.Fatalf("DoIHave = %v", !tt.want)
			}
		})
	}
	wg.Wait()
	if r := <-reader; r.err != nil || !slices.Equal(r.data, f.piece(0)) {
		t.Fatalf("reader woken by Adopt: %v", r.err)
	}
	// The download of piece 2 was not disturbed.
	for _, b := range w.Missing(2) {
		if _, err := w.PieceCameIn(2, b.Begin, f.block(b), "a"); err != nil {
			t.Fatal(err)
		}
	}
	if !w.DoIHave(2) {
		t.Fatal("piece 2 not verified")
	}
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	publish(1, f.piece(1))
	if ok, err := w.Adopt(cancelled, 1); ok || !errors.Is(err, context.Canceled) {
		t.Fatalf("Adopt with a cancelled context: %v, %v", ok, err)
	}
	if c, _ := store.Piece(1).Completion(); c != Complete {
		t.Fatal("cancelled Adopt discarded the piece")
	}
}

// TestResumeWaitsForAConcurrentAdopt: a piece that another call is
// adopting while Resume runs (a reader's miss, the shared cache's watcher)
// is counted by Resume, which returns only once it is verified: the engine
// connects peers after Resume, with the bitfield Resume leaves.
func TestResumeWaitsForAConcurrentAdopt(t *testing.T) {
	f := newFixture(t, 2*BlockSize, 6*BlockSize)
	mem := NewMemStore(f.info)
	for p := range f.info.NumPieces() {
		if _, err := mem.Piece(p).WriteAt(f.piece(p), 0); err != nil {
			t.Fatal(err)
		}
		if err := mem.Piece(p).Publish(); err != nil {
			t.Fatal(err)
		}
	}
	last := f.info.NumPieces() - 1
	gs := &gatedStore{Store: mem, piece: last, gate: make(chan struct{}), reading: make(chan struct{})}
	examined := make(chan int, f.info.NumPieces())
	w := newWrapper(t, f, gs, Config{HashWorkers: 1, ResumeProgress: func(done, _ int) { examined <- done }})
	released := false
	defer func() {
		if !released {
			close(gs.gate)
		}
	}()

	other := make(chan bool, 1)
	go func() {
		ok, _ := w.Adopt(t.Context(), last)
		other <- ok
	}()
	select {
	case <-gs.reading: // it is adopting the piece, held in the middle of the hash
	case <-time.After(10 * time.Second):
		t.Fatal("the other Adopt never read the piece")
	}
	resumed := make(chan error, 1)
	go func() { resumed <- w.Resume(t.Context()) }()
	// Resume goes through the pieces in order (one worker): once it has
	// examined all but the last, it is at the one being adopted.
	poll.Until(t, 10*time.Second, "Resume to examine every other piece", func() bool {
		return len(examined) >= last
	})
	close(gs.gate)
	released = true
	select {
	case err := <-resumed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Resume did not return after the other Adopt could finish")
	}
	if got, want := w.Bitfield().String(), strings.Repeat("1", f.info.NumPieces()); got != want {
		t.Fatalf("verified when Resume returned: %s, want %s", got, want)
	}
	if ok := <-other; !ok {
		t.Fatal("the other Adopt did not verify the piece")
	}
}
