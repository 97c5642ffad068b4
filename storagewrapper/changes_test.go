package storagewrapper

import (
	"bytes"
	"context"
	"slices"
	"sync"
	"testing"
)

// TestUnverifyRefetch: a verified piece whose file is removed behind the
// wrapper's back (a shared cache evicted it) is noticed by the next read,
// unverified and reported, and the read waits for it to be fetched again
// instead of failing.
func TestUnverifyRefetch(t *testing.T) {
	f := newFixture(t, 4*BlockSize, 3*4*BlockSize)
	ds := NewMemStore(f.info)
	w := newWrapper(t, f, ds, Config{})
	downloadAll(t, w, f)
	if c := w.TakeChanges(); !c.Empty() {
		t.Fatalf("own downloads reported as changes: %+v", c)
	}
	// Another process evicts piece 1.
	ds.removeByHand(1)

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	off := f.info.PieceOffset(1) - 100
	res := startReader(ctx, &wg, w, off, 200) // across pieces 0 and 1
	waitWants(t, w, 1)                        // the read noticed and waits
	if w.DoIHave(1) {
		t.Fatal("piece 1 still verified after its file went")
	}
	if got := w.Stats().VerifiedBytes; got != 2*4*BlockSize {
		t.Fatalf("VerifiedBytes = %d after the loss of a piece", got)
	}
	if c := w.TakeChanges(); !slices.Equal(c.Unverified, []int{1}) || len(c.Verified) != 0 {
		t.Fatalf("changes = %+v, want piece 1 unverified", c)
	}
	if r := fetch(t, w, 1, "peer", f.block); !r.Verified {
		t.Fatalf("fetching piece 1 again: %+v", r)
	}
	r := <-res
	if r.err != nil || !bytes.Equal(r.data, f.data[off:off+200]) {
		t.Fatalf("read: %v, right bytes %v", r.err, bytes.Equal(r.data, f.data[off:off+200]))
	}
	if w.Unverify(99) || w.Unverify(-1) {
		t.Fatal("Unverify of a piece out of range reported true")
	}
}

// TestReadMissAdopts: a reader's miss looks in the store first, where
// another process may have published the piece: a good piece is adopted
// (and reported as a change), a damaged one removed, and the read waits.
func TestReadMissAdopts(t *testing.T) {
	f := newFixture(t, 4*BlockSize, 3*4*BlockSize)
	ds := NewMemStore(f.info)
	w := newWrapper(t, f, ds, Config{})
	publishByHand := ds.publishByHand
	publishByHand(2, f.piece(2))
	buf := make([]byte, 300)
	off := f.info.PieceOffset(2) + 5
	if _, err := w.ReadAt(context.Background(), buf, off); err != nil || !bytes.Equal(buf, f.data[off:off+300]) {
		t.Fatalf("read of a piece published elsewhere: %v", err)
	}
	if c := w.TakeChanges(); !slices.Equal(c.Verified, []int{2}) {
		t.Fatalf("changes = %+v, want piece 2 verified", c)
	}

	publishByHand(0, corrupt(f.piece(0)))
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := startReader(ctx, &wg, w, 10, 100)
	waitWants(t, w, 1) // checked, found wrong, waiting
	if ds.hasPublished(0) {
		t.Fatal("the damaged piece is still there")
	}
	if r := fetch(t, w, 0, "peer", f.block); !r.Verified {
		t.Fatalf("fetch: %+v", r)
	}
	if r := <-res; r.err != nil || !bytes.Equal(r.data, f.data[10:110]) {
		t.Fatalf("read after the damaged copy: %v, right bytes %v", r.err, bytes.Equal(r.data, f.data[10:110]))
	}
}

// TestTakeChanges: each changed piece is reported once, as it stands.
func TestTakeChanges(t *testing.T) {
	f := newFixture(t, BlockSize, 6*BlockSize)
	w := newWrapper(t, f, nil, Config{})
	downloadAll(t, w, f)
	w.Unverify(1)
	w.Unverify(4)
	w.Unverify(4)   // twice: once in the changes
	w.ClaimEnded(3) // never set aside: no change
	if r := fetch(t, w, 4, "peer", f.block); !r.Verified {
		t.Fatal(r)
	}
	got := w.TakeChanges()
	// Piece 4 is verified again by our own download: the engine knows of
	// it through PieceCameIn, and it is reported as it stands (verified).
	if !slices.Equal(got.Unverified, []int{1}) || !slices.Equal(got.Verified, []int{4}) || len(got.ClaimedElsewhere) != 0 {
		t.Fatalf("TakeChanges = %+v", got)
	}
	if c := w.TakeChanges(); !c.Empty() {
		t.Fatalf("second TakeChanges = %+v", c)
	}
}

// gatedStore holds the reads of one piece until gate is closed: a hash
// caught in the middle.
type gatedStore struct {
	Store
	// piece is the piece whose reads wait; gate is closed to let them go.
	piece int
	gate  chan struct{}
	// reading is closed by the first read that waits.
	reading   chan struct{}
	readingMu sync.Once
}

func (s *gatedStore) Piece(i int) Piece {
	if i != s.piece {
		return s.Store.Piece(i)
	}
	return gatedPiece{Piece: s.Store.Piece(i), s: s}
}

// gatedPiece is a Piece of a gatedStore.
type gatedPiece struct {
	Piece
	// s is the store.
	s *gatedStore
}

func (p gatedPiece) ReadAt(b []byte, off int64) (int, error) {
	p.s.readingMu.Do(func() { close(p.s.reading) })
	<-p.s.gate
	return p.Piece.ReadAt(b, off)
}

// TestAdoptFailureRequeues: while a stored piece is being adopted the
// engine hears "busy" from NewRequest and sets the piece aside; when the
// adoption fails (the data was bad), the piece is reported as one to fetch.
func TestAdoptFailureRequeues(t *testing.T) {
	f := newFixture(t, 4*BlockSize, 3*4*BlockSize)
	ds := NewMemStore(f.info)
	ds.publishByHand(1, corrupt(f.piece(1)))
	gs := &gatedStore{Store: ds, piece: 1, gate: make(chan struct{}), reading: make(chan struct{})}
	w := newWrapper(t, f, gs, Config{})
	adopted := make(chan bool, 1)
	go func() {
		ok, _ := w.Adopt(context.Background(), 1)
		adopted <- ok
	}()
	<-gs.reading
	if _, st := w.NewRequest(1); st != RequestBusy {
		t.Fatalf("NewRequest during the adoption = %v, want busy", st)
	}
	close(gs.gate)
	if <-adopted {
		t.Fatal("a bad stored piece was adopted")
	}
	if c := w.TakeChanges(); !slices.Equal(c.Unverified, []int{1}) {
		t.Fatalf("after the failed adoption, changes = %+v; want piece 1 to fetch", c)
	}
	if r := fetch(t, w, 1, "peer", f.block); !r.Verified {
		t.Fatalf("fetch: %+v", r)
	}
}

// claimingStore is a MemStore with claims that another process holds: its
// Claim refuses every piece, and can make a claim end while Claim runs (the
// other process gives the piece up just after we asked).
type claimingStore struct {
	*MemStore
	// mu guards the fields below.
	mu sync.Mutex
	// calls counts Claims per piece.
	calls map[int]int
	// during, when set, runs inside Claim.
	during func(i int)
}

func (s *claimingStore) Claim(i int) (bool, error) {
	s.mu.Lock()
	s.calls[i]++
	during := s.during
	s.mu.Unlock()
	if during != nil {
		during(i)
	}
	return false, nil
}

func (s *claimingStore) Release(int) {}

// TestClaimedElsewhere: a refused piece is set aside (reported once, not
// asked again) until its claim ends; a claim that ends while the Store is
// being asked does not leave the piece set aside for good.
func TestClaimedElsewhere(t *testing.T) {
	f := newFixture(t, BlockSize, 4*BlockSize)
	cs := &claimingStore{MemStore: NewMemStore(f.info), calls: map[int]int{}}
	w := newWrapper(t, f, cs, Config{})
	for range 3 {
		if _, st := w.NewRequest(1); st != RequestClaimedElsewhere {
			t.Fatalf("NewRequest = %v, want claimed elsewhere", st)
		}
	}
	if cs.calls[1] != 1 {
		t.Fatalf("the Store was asked %d times for a piece set aside", cs.calls[1])
	}
	if c := w.TakeChanges(); !slices.Equal(c.ClaimedElsewhere, []int{1}) {
		t.Fatalf("changes = %+v", c)
	}
	if r := w.Refused(); !slices.Equal(r, []int{1}) {
		t.Fatalf("Refused = %v, want [1]", r)
	}
	w.ClaimEnded(1)
	if r := w.Refused(); len(r) != 0 {
		t.Fatalf("after the claim ended, Refused = %v", r)
	}
	if c := w.TakeChanges(); !slices.Equal(c.Unverified, []int{1}) {
		t.Fatalf("after the claim ended, changes = %+v", c)
	}
	// The race: the claim ends while we ask.
	cs.mu.Lock()
	cs.during = w.ClaimEnded
	cs.mu.Unlock()
	if _, st := w.NewRequest(2); st != RequestClaimedElsewhere {
		t.Fatalf("NewRequest = %v", st)
	}
	if c := w.TakeChanges(); !slices.Equal(c.Unverified, []int{2}) {
		t.Fatalf("a refusal that raced with the end of the claim: changes = %+v, want piece 2 requestable", c)
	}
	w.NewRequest(2)
	if cs.calls[2] != 2 {
		t.Fatalf("after the race the Store was asked %d times, want 2", cs.calls[2])
	}
}
