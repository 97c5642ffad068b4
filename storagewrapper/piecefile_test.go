package storagewrapper

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"btfs/internal/poll"
)

// gather collects what ReadFiles hands out by reading each file range.
func gather(t *testing.T, w *Wrapper, off int64, n int) ([]byte, bool, error) {
	t.Helper()
	var got []byte
	ok, err := w.ReadFiles(off, n, func(f *os.File, at int64, m int) error {
		b := make([]byte, m)
		if _, err := f.ReadAt(b, at); err != nil {
			return err
		}
		got = append(got, b...)
		return nil
	})
	return got, ok, err
}

func TestReadFiles(t *testing.T) {
	const pieceLen = 16 << 10
	f := newFixture(t, pieceLen, 5*pieceLen+777)
	dir := t.TempDir()
	ds, err := NewFileStore(dir, f.info, false)
	if err != nil {
		t.Fatal(err)
	}
	w := newWrapper(t, f, ds, Config{})
	total := f.info.TotalLength

	// Nothing verified: nothing handed out.
	if _, ok, err := gather(t, w, 0, 10); ok || err != nil {
		t.Fatalf("before any piece: ok %v err %v, want false, nil", ok, err)
	}
	downloadAll(t, w, f)
	for _, c := range []struct {
		name string
		off  int64
		n    int
	}{
		{"inside one piece", 100, 1000},
		{"one whole piece", pieceLen, pieceLen},
		{"across three pieces", pieceLen - 5, pieceLen + 10},
		{"unaligned to the end", 3, int(total - 3)},
		{"the short last piece", 5 * pieceLen, 777},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok, err := gather(t, w, c.off, c.n)
			if !ok || err != nil {
				t.Fatalf("ok %v err %v, want true, nil", ok, err)
			}
			if !bytes.Equal(got, f.data[c.off:c.off+int64(c.n)]) {
				t.Fatalf("bytes differ from the torrent's")
			}
		})
	}
	for _, c := range []struct {
		name string
		off  int64
		n    int
	}{
		{"past the end", total - 1, 2},
		{"negative offset", -1, 2},
		{"empty", 0, 0},
	} {
		if _, ok, err := gather(t, w, c.off, c.n); ok || err != nil {
			t.Errorf("%s: ok %v err %v, want false, nil", c.name, ok, err)
		}
	}

	// fn's error stops it and comes back.
	boom := errors.New("boom")
	if ok, err := w.ReadFiles(0, 10, func(*os.File, int64, int) error { return boom }); ok || !errors.Is(err, boom) {
		t.Fatalf("fn failing: ok %v err %v, want false, boom", ok, err)
	}
	// A file that disappeared (removed behind our back): not ok, no
	// error, so that the caller reads through ReadAt, which notices and
	// fetches it again.
	ds.ForgetAll()
	if err := os.Remove(filepath.Join(dir, f.info.Name)); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := gather(t, w, pieceLen, 3*pieceLen); ok || err != nil {
		t.Fatalf("piece file gone: ok %v err %v, want false, nil", ok, err)
	}
}

// A store without piece files never hands any out.
func TestReadFilesMemStore(t *testing.T) {
	f := newFixture(t, 16<<10, 64<<10)
	w := newWrapper(t, f, nil, Config{})
	downloadAll(t, w, f)
	if _, ok, err := gather(t, w, 0, 100); ok || err != nil {
		t.Fatalf("ok %v err %v, want false, nil", ok, err)
	}
}

// resident reports how many pages of [off, off+n) of the file at path are
// in the page cache.
func resident(t testing.TB, path string, off, n int64) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (len(m)+4095)/4096)
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatal(e)
	}
	pages := 0
	for k, v := range vec {
		if at := int64(k) * 4096; at+4096 > off && at < off+n {
			pages += int(v & 1)
		}
	}
	return pages
}

// evict drops the file at path from the page cache.
func evict(t testing.TB, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
}

// Prefetch reads the verified pieces' files into the page cache, in the
// background.
func TestPrefetch(t *testing.T) {
	const pieceLen = 64 << 10
	f := newFixture(t, pieceLen, 4*pieceLen)
	dir := t.TempDir()
	ds, err := NewFileStore(dir, f.info, false)
	if err != nil {
		t.Fatal(err)
	}
	w := newWrapper(t, f, ds, Config{})
	downloadAll(t, w, f)
	path := filepath.Join(dir, f.info.Name)
	if err := ds.SyncPiece(0); err != nil { // dirty pages cannot be dropped
		t.Fatal(err)
	}
	evict(t, path)
	if resident(t, path, 2*pieceLen, pieceLen) != 0 {
		t.Skip("this file system keeps evicted pages: cannot tell")
	}
	w.Prefetch(pieceLen+100, 2*pieceLen) // pieces 1, 2 and the start of 3
	poll.UntilNil(t, 5*time.Second, "piece 2 to be read into the page cache", func() error {
		if n := resident(t, path, 2*pieceLen, pieceLen); n < pieceLen/4096 {
			return fmt.Errorf("%d pages resident", n)
		}
		return nil
	})
	if n := resident(t, path, 0, pieceLen); n != 0 {
		t.Errorf("piece 0, outside the range, has %d pages resident", n)
	}
}
