package fs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"testing"
)

// openDirect opens a file of the mount with O_DIRECT: every read reaches
// the file system at exactly its offset and length, bypassing the page
// cache, so a test controls what the handle sees.
func openDirect(t testing.TB, p string) *os.File {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		t.Fatalf("open %s O_DIRECT: %v", p, err)
	}
	return f
}

// checkReadAt reads n bytes at off from f and compares with want's bytes:
// a full read inside the file, a short read with io.EOF only at its end.
func checkReadAt(t *testing.T, f *os.File, want []byte, off int64, n int) {
	t.Helper()
	buf := make([]byte, n)
	got, err := f.ReadAt(buf, off)
	end := max(min(off+int64(n), int64(len(want))), off)
	wantN := int(end - off)
	switch {
	case got != wantN:
		t.Errorf("ReadAt(%d bytes at %d) = %d bytes, %v; want %d", n, off, got, err, wantN)
	case wantN < n && !errors.Is(err, io.EOF):
		t.Errorf("ReadAt(%d bytes at %d) past the end: err %v, want io.EOF", n, off, err)
	case wantN == n && err != nil:
		t.Errorf("ReadAt(%d bytes at %d): %v", n, off, err)
	case wantN > 0 && !bytes.Equal(buf[:got], want[off:end]):
		t.Errorf("ReadAt(%d bytes at %d): bytes differ from the source", n, off)
	}
}

// TestReadBoundaries reads every file at every offset with lengths that
// cross 5-byte piece boundaries, file ends and the torrent's end.
func TestReadBoundaries(t *testing.T) {
	fixtures := map[string]*fixture{
		"multi":  newFixture(t, "fixture", 5, false, multiSpecs),
		"single": newFixture(t, "one.bin", 5, true, []fileSpec{{path: "one.bin", size: 23}}),
	}
	for name, fx := range fixtures {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, fx, Options{})
			for p, want := range fx.content {
				t.Run(p, func(t *testing.T) {
					f := openDirect(t, e.path(p))
					defer f.Close()
					size := int64(len(want))
					for off := int64(0); off <= size+1; off++ {
						for _, n := range []int{1, 2, 4, 5, 6, 11, int(size - off), int(size-off) + 3, int(size) + 10} {
							if n > 0 {
								checkReadAt(t, f, want, off, n)
							}
						}
					}
				})
			}
			// Through the page cache, as programs read.
			for p, want := range fx.content {
				got, err := os.ReadFile(e.path(p))
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("ReadFile(%s): %d bytes, %v; want the source's %d", p, len(got), err, len(want))
				}
			}
		})
	}
}

// TestConcurrentReaders runs 8 readers at different offsets of one file at
// once, each with its own handle, while the pieces are still being
// "downloaded": every read waits for its pieces, none gets wrong bytes.
func TestConcurrentReaders(t *testing.T) {
	const size = 256 << 10
	fx := newFixture(t, "big.bin", 4<<10, true, []fileSpec{{path: "big.bin", size: size}})
	e := newEnv(t, fx, Options{ReadaheadMin: 8 << 10, ReadaheadMax: 32 << 10})
	want := fx.content["big.bin"]
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			var f *os.File
			var err error
			if i%2 == 0 {
				f, err = os.Open(e.path("big.bin"))
			} else {
				f, err = os.OpenFile(e.path("big.bin"), os.O_RDONLY|syscall.O_DIRECT, 0)
			}
			if err != nil {
				errs <- err
				return
			}
			defer f.Close()
			for k := range 4 {
				off := int64(i)*size/8 + int64(k)*5003 + 3 // spread, unaligned to pieces
				n := 5000 + 1000*k
				buf := make([]byte, n)
				got, err := f.ReadAt(buf, off)
				end := min(off+int64(n), size)
				if int64(got) != end-off || (err != nil && !errors.Is(err, io.EOF)) {
					errs <- fmt.Errorf("reader %d: ReadAt(%d at %d) = %d, %v", i, n, off, got, err)
					return
				}
				if !bytes.Equal(buf[:got], want[off:end]) {
					errs <- fmt.Errorf("reader %d: bytes at %d differ", i, off)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
