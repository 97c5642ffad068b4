package fs

import (
	"bytes"
	"io"
	"os"
	"testing"
	"time"

	"btfs/internal/poll"
	"btfs/storagewrapper"
)

// TestPassthrough: a file complete at open is read by the kernel from the
// store's file (no READ request reaches btfs); a file opened while still
// downloading is read through btfs, and the next open after it completed
// gets passthrough.
func TestPassthrough(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("FUSE passthrough needs CAP_SYS_ADMIN")
	}
	const piece = 64 << 10
	fx := newFixture(t, "pt", piece, false, []fileSpec{{path: "done", size: 3 * piece}, {path: "later", size: 3*piece + 100}})
	st, err := storagewrapper.NewFileStore(t.TempDir(), fx.mi.Info, false)
	if err != nil {
		t.Fatal(err)
	}
	w, err := storagewrapper.New(fx.mi.Info, st, storagewrapper.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	deliver := func(p int) {
		t.Helper()
		for {
			b, s := w.NewRequest(p)
			if !s.OK() {
				return
			}
			off := fx.mi.Info.PieceOffset(p) + b.Begin
			if _, err := w.PieceCameIn(p, b.Begin, fx.data[off:off+int64(b.Length)], "seed"); err != nil {
				t.Fatal(err)
			}
		}
	}
	for p := range 3 {
		deliver(p)
	}
	dir := t.TempDir()
	m, err := Mount(dir, fx.mi, w, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Mount: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Unmount(); err != nil {
			t.Errorf("Unmount: %v", err)
			forceUnmount(t, dir)
		}
		m.Wait()
	})
	want := func(path string) []byte {
		b, ok := fx.content["pt/"+path]
		if !ok {
			b, ok = fx.content[path]
		}
		if !ok {
			t.Fatalf("no file %s in %v", path, fx.content)
		}
		return b
	}
	opens, reads := passthroughOpens.Load(), passthroughReads.Load()
	readAll := func(f *os.File, path string) {
		t.Helper()
		got, err := io.ReadAll(f)
		if err != nil || !bytes.Equal(got, want(path)) {
			t.Fatalf("%s: %v, right bytes %v", path, err, bytes.Equal(got, want(path)))
		}
	}

	done, err := os.Open(dir + "/done")
	if err != nil {
		t.Fatal(err)
	}
	readAll(done, "done")
	done.Close()
	if got := passthroughOpens.Load() - opens; got != 1 {
		t.Fatalf("%d passthrough opens for a complete file, want 1", got)
	}
	if got := passthroughReads.Load() - reads; got != 0 {
		t.Fatalf("the kernel sent %d reads for a file in passthrough", got)
	}

	// Still downloading at open: read through btfs, even once complete.
	later, err := os.Open(dir + "/later")
	if err != nil {
		t.Fatal(err)
	}
	if got := passthroughOpens.Load() - opens; got != 1 {
		t.Fatalf("an incomplete file was opened in passthrough")
	}
	for p := 3; p < fx.mi.Info.NumPieces(); p++ {
		deliver(p)
	}
	readAll(later, "later")
	// Opened again while the first handle is open (page cache mode): not
	// in passthrough either, the kernel would refuse the mix.
	again, err := os.Open(dir + "/later")
	if err != nil {
		t.Fatal(err)
	}
	readAll(again, "later")
	again.Close()
	later.Close()
	if got := passthroughOpens.Load() - opens; got != 1 {
		t.Fatalf("%d passthrough opens while the file was open in page cache mode, want 1", got)
	}
	// The next open after completion: passthrough, once the kernel sent
	// the releases of the handles closed (asynchronous to close(2)).
	poll.Until(t, 5*time.Second, "the page cache mode handles released", func() bool {
		m.state.mu.Lock()
		defer m.state.mu.Unlock()
		return len(m.state.cachedOpens) == 0
	})
	later, err = os.Open(dir + "/later")
	if err != nil {
		t.Fatal(err)
	}
	readAll(later, "later")
	later.Close()
	if got := passthroughOpens.Load() - opens; got != 2 {
		t.Fatalf("%d passthrough opens, want 2 (the reopened complete file)", got)
	}
	if got := passthroughReads.Load() - reads; got != 0 {
		t.Fatalf("the kernel sent %d reads for files in passthrough", got)
	}
}
