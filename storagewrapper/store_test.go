package storagewrapper

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"testing/iotest"

	"btfs/metainfo"
)

// storeKinds builds each Store implementation for a contract test.
var storeKinds = []struct {
	name string
	open func(t *testing.T, f *fixture) Store
}{
	{"mem", func(t *testing.T, f *fixture) Store { return NewMemStore(f.info) }},
}

// TestStoreContract runs the Piece contract against every Store.
func TestStoreContract(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind.name, func(t *testing.T) {
			// Small pieces: iotest reads byte by byte.
			const chunk = 1000
			f := newFixture(t, 3*chunk, 5*chunk+7)
			s := kind.open(t, f)
			p := s.Piece(1)
			want := f.piece(1)
			check := func(step string, c Completion) {
				t.Helper()
				if got, err := p.Completion(); got != c || err != nil {
					t.Fatalf("%s: Completion = %v, %v; want %v", step, got, err, c)
				}
			}
			check("empty", Missing)
			if _, err := p.ReadAt(make([]byte, 1), 0); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("read of an empty piece: %v", err)
			}
			// Blocks out of order; partial data reads back but is not
			// published.
			for _, begin := range []int64{2 * chunk, 0, chunk} {
				blk := want[begin:min(begin+chunk, int64(len(want)))]
				if n, err := p.WriteAt(blk, begin); n != len(blk) || err != nil {
					t.Fatalf("WriteAt(%d) = %d, %v", begin, n, err)
				}
			}
			check("partial", Missing)
			if s.Piece(2) == nil {
				t.Fatal("nil piece")
			}
			if err := iotest.TestReader(io.NewSectionReader(p, 0, int64(len(want))), want); err != nil {
				t.Fatalf("partial data: %v", err)
			}
			if err := p.Publish(); err != nil {
				t.Fatal(err)
			}
			check("published", Complete)
			if err := iotest.TestReader(io.NewSectionReader(p, 0, int64(len(want))), want); err != nil {
				t.Fatalf("published data: %v", err)
			}
			// Bounds.
			for _, c := range []struct {
				off int64
				n   int
			}{{-1, 1}, {int64(len(want)) - 1, 2}, {int64(len(want)) + 1, 0}} {
				if _, err := p.WriteAt(make([]byte, c.n), c.off); !errors.Is(err, ErrOutOfRange) {
					t.Errorf("WriteAt(%d bytes at %d): %v, want ErrOutOfRange", c.n, c.off, err)
				}
			}
			if _, err := p.ReadAt(make([]byte, 1), -1); !errors.Is(err, ErrOutOfRange) {
				t.Errorf("ReadAt(-1): %v", err)
			}
			for _, i := range []int{-1, f.info.NumPieces()} {
				bad := s.Piece(i)
				_, rerr := bad.ReadAt(make([]byte, 1), 0)
				_, werr := bad.WriteAt(make([]byte, 1), 0)
				_, cerr := bad.Completion()
				for _, err := range []error{rerr, werr, cerr, bad.Publish(), bad.Discard()} {
					if !errors.Is(err, ErrOutOfRange) {
						t.Errorf("piece %d: %v, want ErrOutOfRange", i, err)
					}
				}
			}
			// Publishing nothing fails.
			if err := s.Piece(0).Publish(); err == nil {
				t.Error("Publish without partial data succeeded")
			}
			check("after a failed publish elsewhere", Complete)
			if err := p.Discard(); err != nil {
				t.Fatal(err)
			}
			check("discarded", Missing)
			if err := p.Discard(); err != nil {
				t.Fatalf("second Discard: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			_, rerr := p.ReadAt(make([]byte, 1), 0)
			_, werr := p.WriteAt(make([]byte, 1), 0)
			_, cerr := p.Completion()
			for _, err := range []error{rerr, werr, cerr, p.Publish(), p.Discard()} {
				if !errors.Is(err, ErrClosed) {
					t.Errorf("after Close: %v, want ErrClosed", err)
				}
			}
		})
	}
}

// TestFilePoolBound writes and reads many pieces through a FileStore of
// 40 files with a small pool: the open handles stay within the cap.
func TestFilePoolBound(t *testing.T) {
	f := newFixture(t, 5, 200)
	f.info.MultiFile = true
	f.info.Files = nil
	for k := range 40 {
		f.info.Files = append(f.info.Files, metainfo.File{Path: []string{fmt.Sprintf("f%02d", k)}, Length: 5, Offset: int64(5 * k)})
	}
	s, err := NewFileStore(t.TempDir(), f.info, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	s.pool.max = 4
	for p := range f.info.NumPieces() {
		if _, err := s.Piece(p).WriteAt(f.piece(p), 0); err != nil {
			t.Fatal(err)
		}
		if p%2 == 0 {
			if err := s.Piece(p).Publish(); err != nil {
				t.Fatal(err)
			}
		}
		if n := s.pool.open(); n > 4 {
			t.Fatalf("after piece %d: %d open files, cap 4", p, n)
		}
	}
	buf := make([]byte, 5)
	for p := range f.info.NumPieces() {
		if _, err := s.Piece(p).ReadAt(buf, 0); err != nil || !slices.Equal(buf, f.piece(p)) {
			t.Fatalf("piece %d: %v", p, err)
		}
		if n := s.pool.open(); n > 4 {
			t.Fatalf("reading piece %d: %d open files, cap 4", p, n)
		}
	}
}

// TestFilePoolInUse checks that handles in use are never closed under their
// user: the pool goes over its cap and comes back on release.
func TestFilePoolInUse(t *testing.T) {
	dir := t.TempDir()
	pool := newFilePool(2)
	var held []*poolEntry
	for i := range 4 {
		e, err := pool.acquire(filepath.Join(dir, string(rune('a'+i))), os.O_RDWR|os.O_CREATE)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, e)
	}
	if n := pool.open(); n != 4 {
		t.Fatalf("%d open with 4 in use", n)
	}
	for _, e := range held {
		if _, err := e.f.WriteAt([]byte("x"), 0); err != nil {
			t.Fatalf("handle in use closed: %v", err)
		}
	}
	pool.forget(held[0].path)
	if _, err := held[0].f.WriteAt([]byte("y"), 0); err != nil {
		t.Fatalf("forgotten handle in use closed: %v", err)
	}
	for _, e := range held {
		pool.release(e)
	}
	if n := pool.open(); n != 2 {
		t.Fatalf("%d open after release, cap 2", n)
	}
	if _, err := held[0].f.WriteAt([]byte("z"), 0); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("forgotten handle still open after its release: %v", err)
	}
	pool.closeAll()
	if n := pool.open(); n != 0 {
		t.Fatalf("%d open after closeAll", n)
	}
	if _, err := pool.acquire(filepath.Join(dir, "a"), os.O_RDWR); !errors.Is(err, ErrClosed) {
		t.Fatalf("acquire after closeAll: %v", err)
	}
}
