package storagewrapper

import (
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"btfs/internal/poll"
)

func TestFaultOf(t *testing.T) {
	tests := []struct {
		err  error
		want Fault
	}{
		{nil, FaultNone},
		{ErrClosed, FaultNone},
		{&os.PathError{Op: "write", Path: "p", Err: syscall.ENOSPC}, FaultFull},
		{syscall.EDQUOT, FaultFull},
		{&os.PathError{Op: "open", Path: "p", Err: syscall.EROFS}, FaultReadOnly},
		{syscall.EACCES, FaultReadOnly},
		{&os.PathError{Op: "open", Path: "p", Err: syscall.ENOENT}, FaultGone},
		{syscall.ENOTDIR, FaultGone},
		{syscall.EIO, FaultIO},
		{errors.New("short write"), FaultIO},
	}
	for _, tt := range tests {
		if got := FaultOf(tt.err); got != tt.want {
			t.Errorf("FaultOf(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// TestStoreFailureWakesReaders: readers already waiting for pieces that
// are not there fail with the Store's error as soon as it fails (they
// would otherwise wait for blocks nobody will fetch), readers of verified
// pieces go on, and the pieces in flight are dropped (reported as
// changed, so that the engine picks them afresh) but for those a reader
// waits on when the disk is merely full.
func TestStoreFailureWakesReaders(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		// keptWaitedOn: the piece readers wait on stays in flight.
		keptWaitedOn bool
	}{
		{"disk full", syscall.ENOSPC, true},
		{"read-only", syscall.EROFS, false},
		{"directory gone", syscall.ENOENT, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 2*BlockSize, 4*BlockSize)
			fs := newFaultyStore(NewMemStore(f.info))
			w := newWrapper(t, f, fs, Config{})
			// Piece 0 verified; piece 1 in flight, one block in.
			for _, b := range requestAll(t, w, 0) {
				if _, err := w.PieceCameIn(0, b.Begin, f.block(b), "a"); err != nil {
					t.Fatal(err)
				}
			}
			bs := requestAll(t, w, 1)
			if _, err := w.PieceCameIn(1, bs[0].Begin, f.block(bs[0]), "a"); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				_, err := w.ReadAt(t.Context(), make([]byte, 10), f.info.PieceOffset(1))
				done <- err
			}()
			poll.Until(t, 10*time.Second, "the reader to wait", func() bool { return len(w.Wants()) == 1 })
			w.TakeChanges()
			fs.mu.Lock()
			fs.writeErr[1] = &os.PathError{Op: "write", Path: "p", Err: tc.err}
			fs.mu.Unlock()
			if _, err := w.PieceCameIn(1, bs[1].Begin, f.block(bs[1]), "a"); !errors.Is(err, tc.err) {
				t.Fatalf("PieceCameIn on the failing store: %v", err)
			}
			select {
			case err := <-done:
				if !errors.Is(err, tc.err) || !errors.Is(err, ErrStore) {
					t.Fatalf("the waiting reader got %v, want %v", err, tc.err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the waiting reader still waits after the store failed")
			}
			if _, err := w.ReadAt(t.Context(), make([]byte, 10), 0); err != nil {
				t.Fatalf("a read of a verified piece while failed: %v", err)
			}
			inFlight := len(w.InFlight()) == 1
			if inFlight != tc.keptWaitedOn {
				t.Fatalf("piece in flight after the failure: %v, want %v", inFlight, tc.keptWaitedOn)
			}
			if ch := w.TakeChanges(); !tc.keptWaitedOn && (len(ch.Unverified) != 1 || ch.Unverified[0] != 1) {
				t.Fatalf("changes after the failure: %+v, want piece 1 requestable again", ch)
			}
			fs.heal()
			poll.Until(t, 10*time.Second, "the store to recover", func() bool { return w.Health().Fault == FaultNone })
			if w.Health().Full {
				t.Fatal("Health().Full set for a Store that cannot evict: btfs get would stop fetching")
			}
		})
	}
}
