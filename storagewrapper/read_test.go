package storagewrapper

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"btfs/metainfo"
	"btfs/picker"
)

// withFiles gives f's torrent files that straddle piece boundaries and a
// zero-length one, as a multi-file torrent of 5-byte pieces does.
func withFiles(f *fixture, lengths ...int64) *fixture {
	f.info.Files = nil
	off := int64(0)
	for i, l := range lengths {
		f.info.Files = append(f.info.Files, metainfo.File{Path: []string{fmt.Sprint("f", i)}, Length: l, Offset: off})
		off += l
	}
	return f
}

func TestReadAtSpans(t *testing.T) {
	// 13 bytes in 5-byte pieces: files of 7, 0, 4 and 2 bytes, so files
	// start and end inside pieces and one is empty.
	f := withFiles(newFixture(t, 5, 13), 7, 0, 4, 2)
	w := newWrapper(t, f, nil, Config{})
	downloadAll(t, w, f)
	total := f.info.TotalLength
	tests := []struct {
		name    string
		off     int64
		n       int
		wantN   int
		wantErr error
	}{
		{"first byte", 0, 1, 1, nil},
		{"one piece", 5, 5, 5, nil},
		{"across one boundary", 3, 4, 4, nil},
		{"across two boundaries", 4, 7, 7, nil},
		{"whole torrent", 0, 13, 13, nil},
		{"last byte", 12, 1, 1, nil},
		{"into the end", 10, 5, 3, io.EOF},
		{"past the end", 13, 1, 0, io.EOF},
		{"far past the end", 1 << 40, 1, 0, io.EOF},
		{"zero bytes at 0", 0, 0, 0, nil},
		{"zero bytes at the end", total, 0, 0, nil},
		{"zero bytes past the end", total + 10, 0, 0, nil},
		{"negative offset", -1, 1, 0, ErrOutOfRange},
	}
	for _, file := range f.info.Files {
		tests = append(tests, struct {
			name    string
			off     int64
			n       int
			wantN   int
			wantErr error
		}{"file " + file.Path[0], file.Offset, int(file.Length), int(file.Length), nil})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf := make([]byte, tt.n)
			n, err := w.ReadAt(t.Context(), buf, tt.off)
			if n != tt.wantN || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("ReadAt(%d bytes at %d) = %d, %v; want %d, %v", tt.n, tt.off, n, err, tt.wantN, tt.wantErr)
			}
			if n > 0 && !slices.Equal(buf[:n], f.data[tt.off:tt.off+int64(n)]) {
				t.Fatalf("wrong bytes")
			}
		})
	}
}

// readerAt adapts Wrapper.ReadAt to io.ReaderAt for testing/iotest.
type readerAt struct {
	// w is the wrapper; ctx bounds every read.
	w   *Wrapper
	ctx context.Context
}

func (r readerAt) ReadAt(p []byte, off int64) (int, error) { return r.w.ReadAt(r.ctx, p, off) }

func TestReadAtIOTest(t *testing.T) {
	shapes := []struct {
		name            string
		pieceLen, total int64
	}{
		{"5-byte pieces", 5, 13},
		{"16 KiB pieces", BlockSize, 3*BlockSize + 5},
		{"empty torrent", BlockSize, 0},
	}
	for _, sh := range shapes {
		t.Run(sh.name, func(t *testing.T) {
			f := newFixture(t, sh.pieceLen, sh.total)
			w := newWrapper(t, f, nil, Config{})
			downloadAll(t, w, f)
			r := io.NewSectionReader(readerAt{w, t.Context()}, 0, sh.total)
			if err := iotest.TestReader(r, f.data); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestReadAtWakesReaders starts many readers before any data arrives, on
// overlapping ranges, then delivers the pieces last first: each reader
// returns exactly when its range is verified, with the right bytes, and
// releases its want.
func TestReadAtWakesReaders(t *testing.T) {
	f := newFixture(t, 5, 23)
	w := newWrapper(t, f, nil, Config{Now: fixedClock})
	ranges := []struct {
		off int64
		n   int
	}{{0, 23}, {0, 1}, {4, 2}, {5, 5}, {9, 11}, {20, 3}, {22, 10}, {12, 1}}
	var wg sync.WaitGroup
	var results []<-chan readResult
	for range 4 { // four readers per range
		for _, r := range ranges {
			results = append(results, startReader(t.Context(), &wg, w, r.off, r.n))
		}
	}
	waitWants(t, w, len(results))
	for _, want := range w.Wants() {
		if want.Priority != picker.Now || !want.Deadline.Equal(fixedTime) {
			t.Errorf("want %+v: not Now at the clock's time", want)
		}
	}
	for p := f.info.NumPieces() - 1; p >= 0; p-- {
		fetch(t, w, p, "a", f.block)
	}
	wg.Wait()
	for i, ch := range results {
		r := ranges[i%len(ranges)]
		got := <-ch
		end := min(r.off+int64(r.n), f.info.TotalLength)
		wantErr := error(nil)
		if r.off+int64(r.n) > f.info.TotalLength {
			wantErr = io.EOF
		}
		if got.err != wantErr || !slices.Equal(got.data, f.data[r.off:end]) {
			t.Errorf("reader of %d at %d: %d, %v", r.n, r.off, got.n, got.err)
		}
	}
	if got := w.Wants(); len(got) != 0 {
		t.Fatalf("wants left after the reads: %v", got)
	}
}

// TestReadAtWant checks the want a blocked reader registers: from the first
// missing byte of its range to its end, at Now.
func TestReadAtWant(t *testing.T) {
	f := newFixture(t, 5, 23)
	w := newWrapper(t, f, nil, Config{Now: fixedClock})
	fetch(t, w, 1, "a", f.block)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	ch := startReader(ctx, &wg, w, 6, 10) // [6,16): piece 1 had, 2 and 3 missing
	waitWants(t, w, 1)
	want := picker.Want{Start: 10, End: 16, Priority: picker.Now, Deadline: fixedTime}
	if got := w.Wants(); len(got) != 1 || got[0] != want {
		t.Fatalf("Wants = %+v, want [%+v]", got, want)
	}
	cancel()
	wg.Wait()
	if r := <-ch; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled read: %v", r.err)
	}
}

func TestReadAtContext(t *testing.T) {
	tests := []struct {
		name string
		ctx  func(t *testing.T) (context.Context, context.CancelFunc)
		want error
	}{
		{"cancelled while waiting", func(t *testing.T) (context.Context, context.CancelFunc) {
			return context.WithCancel(t.Context())
		}, context.Canceled},
		{"deadline already passed", func(t *testing.T) (context.Context, context.CancelFunc) {
			return context.WithDeadline(t.Context(), time.Unix(0, 0))
		}, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, 5, 13)
			w := newWrapper(t, f, nil, Config{})
			ctx, cancel := tt.ctx(t)
			defer cancel()
			var wg sync.WaitGroup
			ch := startReader(ctx, &wg, w, 3, 5)
			if ctx.Err() == nil {
				waitWants(t, w, 1)
				cancel()
			}
			wg.Wait()
			r := <-ch
			if !errors.Is(r.err, tt.want) || r.n != 0 {
				t.Fatalf("ReadAt = %d, %v; want %v", r.n, r.err, tt.want)
			}
			if got := w.Wants(); len(got) != 0 {
				t.Fatalf("want not released: %v", got)
			}
			// The data arriving later changes nothing for the gone reader.
			downloadAll(t, w, f)
		})
	}
}

func TestCloseFailsBlockedReaders(t *testing.T) {
	f := newFixture(t, 5, 13)
	w := newWrapper(t, f, nil, Config{})
	fetch(t, w, 0, "a", f.block)
	var wg sync.WaitGroup
	var results []<-chan readResult
	for off := range int64(10) {
		results = append(results, startReader(t.Context(), &wg, w, off, 4))
	}
	waitWants(t, w, 8) // offsets 0 and 1 are served at once from piece 0
	// Their readers may not have run yet on a loaded machine: their
	// answers are taken before Close, which would fail them too.
	for off, ch := range results[:2] {
		if r := <-ch; r.err != nil || r.n != 4 {
			t.Errorf("read at %d of a verified piece: %d, %v", off, r.n, r.err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for off, ch := range results {
		if off <= 1 {
			continue
		}
		r := <-ch
		if !errors.Is(r.err, ErrClosed) {
			t.Errorf("blocked read at %d: %v, want ErrClosed", off, r.err)
		}
	}
	if _, err := w.ReadAt(t.Context(), make([]byte, 1), 0); !errors.Is(err, ErrClosed) {
		t.Errorf("ReadAt after Close: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestNeverUnverifiedBytes blocks a reader on a piece whose first copy
// fails its hash: the reader keeps waiting (its piece's channel stays open)
// and returns the good bytes once they arrive.
func TestNeverUnverifiedBytes(t *testing.T) {
	for _, kind := range []string{"mem", "file"} {
		t.Run(kind, func(t *testing.T) {
			f := newFixture(t, 2*BlockSize, 4*BlockSize)
			var store Store = NewMemStore(f.info)
			if kind == "file" {
				ds, err := NewFileStore(t.TempDir(), f.info, false)
				if err != nil {
					t.Fatal(err)
				}
				store = ds
			}
			w := newWrapper(t, f, store, Config{})
			var wg sync.WaitGroup
			ch := startReader(t.Context(), &wg, w, BlockSize, 2*BlockSize) // pieces 0 and 1
			waitWants(t, w, 1)
			w.mu.Lock()
			waiter := w.waiters[0] // the reader waits on piece 0 first
			w.mu.Unlock()
			if waiter == nil {
				t.Fatal("no waiter on piece 0")
			}
			fetch(t, w, 1, "a", f.block)
			res := fetch(t, w, 0, "liar", func(b Block) []byte { return corrupt(f.block(b)) })
			if !res.HashFailed {
				t.Fatalf("bad piece: %+v", res)
			}
			select {
			case <-waiter:
				t.Fatal("the piece's readers were woken by a failed hash")
			default:
			}
			select {
			case r := <-ch:
				t.Fatalf("reader returned before the piece verified: %d, %v", r.n, r.err)
			default:
			}
			fetch(t, w, 0, "a", f.block)
			wg.Wait()
			r := <-ch
			if r.err != nil || !slices.Equal(r.data, f.data[BlockSize:3*BlockSize]) {
				t.Fatalf("reader: %d, %v, equal %v", r.n, r.err, slices.Equal(r.data, f.data[BlockSize:3*BlockSize]))
			}
		})
	}
}
