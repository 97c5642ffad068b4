package fs

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"btfs/storagewrapper"
)

// newDirEnv mounts fx over a wrapper on a FileStore (the torrent's own
// files, as the shared cache keeps them) with every piece verified, so
// that reads can be spliced from the files; without passthrough, which
// would leave no read to btfs.
func newDirEnv(t testing.TB, fx *fixture, opts Options) (dir string, ds *storagewrapper.FileStore) {
	t.Helper()
	opts.NoPassthrough = true
	ds, err := storagewrapper.NewFileStore(t.TempDir(), fx.mi.Info, false)
	if err != nil {
		t.Fatal(err)
	}
	w, err := storagewrapper.New(fx.mi.Info, ds, storagewrapper.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("wrapper Close: %v", err)
		}
	})
	if err := fx.fill(w); err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	opts.Logger = testLogger(t)
	m, err := Mount(dir, fx.mi, w, opts)
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
	return dir, ds
}

// TestSpliceRead reads verified data that lives in piece files: whole
// files (the kernel's readahead, reads of max_read), O_DIRECT reads of
// every size and offset class, files that start off page and piece
// boundaries, and a read larger than a pipe holds. Every byte must be the
// torrent's, and the splice path must actually have served reads.
func TestSpliceRead(t *testing.T) {
	const piece = 64 << 10
	specs := []fileSpec{
		{path: "small", size: 5000},
		{path: "odd", size: 3*piece + 4099},
		{path: "big", size: 2<<20 + 12345},
		{path: "tiny", size: 3},
	}
	fx := newFixture(t, "splice", piece, false, specs)
	dir, _ := newDirEnv(t, fx, Options{})
	before := spliced.Load()
	for _, s := range specs {
		got, err := os.ReadFile(dir + "/" + s.path)
		if err != nil || !bytes.Equal(got, fx.content[s.path]) {
			t.Fatalf("ReadFile %s: err %v, same bytes %v", s.path, err, bytes.Equal(got, fx.content[s.path]))
		}
	}
	if spliced.Load() == before {
		t.Fatalf("no read was spliced")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, s := range specs {
		f, err := os.OpenFile(dir+"/"+s.path, os.O_RDONLY|0o40000 /* O_DIRECT */, 0)
		if err != nil {
			t.Fatal(err)
		}
		want := fx.content[s.path]
		for range 40 {
			off := rng.Int64N(int64(len(want)))
			n := 1 + rng.IntN(1<<20+4096)
			buf := make([]byte, n)
			got, err := f.ReadAt(buf, off)
			if err != nil && err != io.EOF {
				t.Fatalf("%s: ReadAt(%d, %d): %v", s.path, n, off, err)
			}
			if end := min(off+int64(n), int64(len(want))); !bytes.Equal(buf[:got], want[off:end]) {
				t.Fatalf("%s: ReadAt(%d, %d): %d bytes, want %d, or different bytes", s.path, n, off, got, end-off)
			}
		}
		f.Close()
	}
}

// A file truncated behind the mount's back: the read does not fail; it
// takes the copy path, whose ReadAt notices the missing piece and waits for it to be fetched again. Here
// nobody fetches it, so the read must time out with EIO, not return
// garbage or zeros.
func TestSpliceReadPieceGone(t *testing.T) {
	const piece = 64 << 10
	fx := newFixture(t, "gone", piece, true, []fileSpec{{path: "f", size: 4 * piece}})
	dir, ds := newDirEnv(t, fx, Options{ReadTimeout: 300 * time.Millisecond})
	if err := os.Truncate(ds.Path(0), 2*piece+100); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(dir+"/gone", os.O_RDONLY|0o40000, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, piece)
	if _, err := f.ReadAt(buf, piece); err != nil || !bytes.Equal(buf, fx.data[piece:2*piece]) {
		t.Fatalf("read of a piece still there: %v", err)
	}
	if _, err := f.ReadAt(buf, 2*piece); !errors.Is(err, syscall.EIO) {
		t.Fatalf("read of the piece that is gone: %v, want EIO (read timeout)", err)
	}
}

func TestSpliceArithmetic(t *testing.T) {
	if pageSize != 4096 {
		t.Skipf("the cases assume 4 KiB pages, not %d", pageSize)
	}
	for _, c := range []struct {
		at   int64
		n    int
		want int
	}{
		{0, 1, 1}, {0, 4096, 1}, {0, 4097, 2}, {4095, 2, 2}, {100, 4096, 2}, {8192, 1 << 20, 256},
	} {
		if got := spliceSlots(c.at, c.n); got != c.want {
			t.Errorf("spliceSlots(%d, %d) = %d, want %d", c.at, c.n, got, c.want)
		}
	}
	// The largest spliceable read with 1 MiB pipes: 254 pages, leaving
	// go-fuse's 256-slot pipe one slot for the header and one for a read
	// that starts off a page boundary.
	if got := maxSpliceRead(1 << 20); got != 254*4096 {
		t.Errorf("maxSpliceRead(1 MiB) = %d, want %d", got, 254*4096)
	}
	for _, c := range []struct{ n, want int }{{254 * 4096, 256}, {4096, 4}, {128 << 10, 64}, {1, 2}} {
		if got := spliceCap(c.n); got != c.want {
			t.Errorf("spliceCap(%d) = %d, want %d", c.n, got, c.want)
		}
	}
}

// BenchmarkSpliceRead reads a fully verified 64 MiB file whose pieces are
// files (a FileStore, as in the shared cache) through the mount with dd in
// its own process, copying (pread into memory, then write to /dev/fuse)
// or splicing (spliceRead). "direct" reads with O_DIRECT, 1 MiB at a time,
// the piece files in the page cache: the server's cost per byte. "cold"
// first drops the page cache of the piece files and of the mounted file:
// a re-read of complete data after the caches were dropped. cpu-ms/op is
// this process's CPU time (the server's: dd is a child) per pass.
//
//	go test -run '^$' -bench SpliceRead -benchtime 10x ./fs/
func BenchmarkSpliceRead(b *testing.B) {
	if _, err := exec.LookPath("dd"); err != nil {
		b.Skip("no dd")
	}
	const size = 64 << 20
	fx := newFixture(b, "bench.bin", 1<<20, true, []fileSpec{{path: "bench.bin", size: size}})
	dir, ds := newDirEnv(b, fx, Options{})
	p := dir + "/bench.bin"
	dropAll := func(b *testing.B) {
		dropCache(b, p)
		for k := range fx.mi.Info.Files {
			dropCache(b, ds.Path(k))
		}
	}
	for _, mode := range []string{"direct", "cold"} {
		for _, how := range []string{"copy", "splice"} {
			b.Run(mode+"/"+how, func(b *testing.B) {
				spliceReads.Store(how == "splice")
				defer spliceReads.Store(true)
				args := []string{"if=" + p, "of=/dev/null", "bs=1M", "status=none"}
				if mode == "direct" {
					args = append(args, "iflag=direct")
				}
				b.SetBytes(size)
				var cpu time.Duration
				for b.Loop() {
					if mode == "cold" {
						b.StopTimer()
						dropAll(b)
						b.StartTimer()
					}
					before := cpuTime(b)
					if out, err := exec.Command("dd", args...).CombinedOutput(); err != nil {
						b.Fatalf("dd: %v: %s", err, out)
					}
					cpu += cpuTime(b) - before
				}
				b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op")
			})
		}
	}
}

// cpuTime is this process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
