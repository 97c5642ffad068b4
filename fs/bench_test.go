package fs

import (
	"os"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"
)

// deliverAll downloads every piece of the fixture into the env's wrapper.
func (e *env) deliverAll() {
	for p := range e.fx.mi.Info.NumPieces() {
		e.dl.deliver(p)
	}
}

// BenchmarkRead measures reading a fully verified 64 MiB file through the
// mount: the file system's own cost, with the data in RAM. The reader is
// dd in its own process, as in real use (a reader inside the serving
// process competes with it for the same threads). "buffered" goes through
// the page cache, dropped for the file before each pass, so every byte
// crosses FUSE behind the kernel's readahead; "direct" reads with O_DIRECT,
// one FUSE read per 1 MiB read.
//
//	go test -run '^$' -bench Read -benchtime 20x ./fs/
func BenchmarkRead(b *testing.B) {
	if _, err := exec.LookPath("dd"); err != nil {
		b.Skip("no dd")
	}
	const size = 64 << 20
	fx := newFixture(b, "bench.bin", 1<<20, true, []fileSpec{{path: "bench.bin", size: size}})
	e := newEnv(b, fx, Options{})
	e.deliverAll()
	p := e.path("bench.bin")
	dd := func(b *testing.B, flags ...string) {
		args := append([]string{"if=" + p, "of=/dev/null", "bs=1M", "status=none"}, flags...)
		if out, err := exec.Command("dd", args...).CombinedOutput(); err != nil {
			b.Fatalf("dd: %v: %s", err, out)
		}
	}
	b.Run("buffered", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			b.StopTimer()
			dropCache(b, p)
			b.StartTimer()
			dd(b)
		}
	})
	b.Run("direct", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			dd(b, "iflag=direct")
		}
	})
}

// dropCache drops the page cache of one file.
func dropCache(b *testing.B, p string) {
	f, err := os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		b.Fatal(err)
	}
}
