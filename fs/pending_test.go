package fs

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"btfs/internal/poll"
	"btfs/storagewrapper"
)

// newPendingEnv mounts fx with MountPending: the wrapper and the
// downloader exist, the mount does not know the torrent until e.m.Ready.
func newPendingEnv(t *testing.T, fx *fixture, opts Options) *env {
	t.Helper()
	dir := t.TempDir()
	return newEnvWith(t, dir, fx, opts, func(_ *storagewrapper.Wrapper, opts Options) (*Mounted, error) {
		return MountPending(dir, fx.mi.InfoHash, opts)
	})
}

// TestPendingTimesOutThenFills: before Ready, a lookup and a listing of the
// root fail with EAGAIN after the read timeout, while the root itself, its
// info-hash attribute and statfs answer at once; after Ready the files are
// there with their bytes.
func TestPendingTimesOutThenFills(t *testing.T) {
	fx := newFixture(t, "fixture", 5, false, multiSpecs)
	e := newPendingEnv(t, fx, Options{ReadTimeout: 200 * time.Millisecond})

	fi, err := os.Stat(e.dir)
	if err != nil || !fi.IsDir() {
		t.Fatalf("stat of the pending root: %v, %v", fi, err)
	}
	if _, err := os.ReadDir(e.dir); !errors.Is(err, syscall.EAGAIN) {
		t.Errorf("listing before Ready: %v, want EAGAIN", err)
	}
	if _, err := os.Stat(e.path("a.txt")); !errors.Is(err, syscall.EAGAIN) {
		t.Errorf("lookup before Ready: %v, want EAGAIN", err)
	}
	buf := make([]byte, 64)
	n, err := unix.Getxattr(e.dir, xattrInfohash, buf)
	if err != nil || string(buf[:n]) != fx.mi.InfoHash.String() {
		t.Errorf("infohash xattr before Ready: %q, %v", buf[:n], err)
	}
	if _, err := unix.Getxattr(e.dir, xattrProgress, buf); !errors.Is(err, unix.ENODATA) {
		t.Errorf("progress xattr before Ready: %v, want ENODATA", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(e.dir, &st); err != nil || st.Blocks != 0 {
		t.Errorf("statfs before Ready: blocks %d, %v", st.Blocks, err)
	}

	if err := e.m.Ready(fx.mi, e.w); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	if err := e.m.Ready(fx.mi, e.w); err == nil {
		t.Error("a second Ready succeeded")
	}
	entries, err := os.ReadDir(e.dir)
	if err != nil {
		t.Fatalf("listing after Ready: %v", err)
	}
	var names []string
	for _, de := range entries {
		names = append(names, de.Name())
	}
	if want := []string{"a.txt", "dir", "empty", "x.mp4", "z.bin"}; !slices.Equal(names, want) {
		t.Errorf("root lists %v, want %v", names, want)
	}
	for p, want := range fx.content {
		got, err := os.ReadFile(e.path(p))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes, %v; want %d bytes", p, len(got), err, len(want))
		}
	}
	if _, err := os.Stat(e.path("nope")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing name after Ready: %v, want ENOENT", err)
	}
}

// TestPendingLookupWaitsForReady: a lookup issued before Ready, with no
// timeout, is answered once Ready comes.
func TestPendingLookupWaitsForReady(t *testing.T) {
	fx := newFixture(t, "single.bin", 5, true, []fileSpec{{path: "single.bin", size: 12}})
	e := newPendingEnv(t, fx, Options{})
	got := make(chan error, 1)
	go func() {
		data, err := os.ReadFile(filepath.Join(e.dir, "single.bin"))
		if err == nil && !bytes.Equal(data, fx.content["single.bin"]) {
			err = errors.New("wrong bytes")
		}
		got <- err
	}()
	waitInFUSE(t, "the lookup to wait in the pending root")
	select {
	case err := <-got:
		t.Fatalf("the read finished before Ready: %v", err)
	default:
	}
	if err := e.m.Ready(fx.mi, e.w); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	if err := <-got; err != nil {
		t.Errorf("read after Ready: %v", err)
	}
}

// TestPendingUnmountFailsWaiters: Unmount ends a lookup waiting for the
// metadata with EIO instead of leaving it hanging.
func TestPendingUnmountFailsWaiters(t *testing.T) {
	fx := newFixture(t, "single.bin", 5, true, []fileSpec{{path: "single.bin", size: 12}})
	e := newPendingEnv(t, fx, Options{})
	got := make(chan error, 1)
	go func() {
		_, err := os.Stat(filepath.Join(e.dir, "single.bin"))
		got <- err
	}()
	waitInFUSE(t, "the lookup to wait in the pending root")
	if err := e.m.Unmount(); err != nil {
		t.Fatalf("Unmount: %v", err)
	}
	select {
	case err := <-got:
		if !errors.Is(err, syscall.EIO) {
			t.Errorf("the waiting lookup on an unmounted pending mount: %v, want EIO", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting lookup still waits after Unmount")
	}
}

// waitInFUSE waits until a thread of this process is blocked in a FUSE
// request, waiting for the server's answer (its wchan, the kernel function
// it sleeps in, is request_wait_answer): a request that has reached the
// server and waits there, observed from outside the file system.
func waitInFUSE(t *testing.T, what string) {
	t.Helper()
	poll.Until(t, 10*time.Second, what, func() bool {
		tasks, _ := os.ReadDir("/proc/self/task")
		for _, task := range tasks {
			wchan, _ := os.ReadFile(filepath.Join("/proc/self/task", task.Name(), "wchan"))
			if string(wchan) == "request_wait_answer" {
				return true
			}
		}
		return false
	})
}
