package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"btfs/cache"
	"btfs/internal/poll"
	"btfs/internal/swarmtest"
)

// A full, read-only or vanished cache directory, end to end: a real mount
// reading from aria2c while the test breaks the cache under it (tmpfs, a
// read-only bind mount, a rename). Each case checks the errno the reader
// gets, that the log says it a bounded number of times, that the swarm
// stops sending (aria2c's uploadLength), and that btfs recovers by itself.
// The mounts are made in the test's mount namespace (CI runs the tests in
// unshare -m) and undone in cleanup.

// Bounds of the failed state, per case.
const (
	// maxFailureLines bounds the log lines (info and above) written from
	// the failure until just before the recovery: before the fix, tens of
	// thousands per second.
	maxFailureLines = 10
	// maxBytesAfterFailure bounds what the seeder sends once the reader
	// saw the failure: blocks in flight when the requests were cancelled,
	// at most a few pieces (before the fix: the whole swarm's rate).
	maxBytesAfterFailure = 1 << 20
	// quietWindow is how long the failed state is watched: the reads keep
	// failing at once, the log stays quiet, nothing more arrives.
	quietWindow = 2 * time.Second
)

// requireMounts skips unless the test may mount (root).
func requireMounts(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount tmpfs and bind mounts")
	}
}

// mountTmpfs mounts a tmpfs of size bytes on a fresh directory, unmounted
// in cleanup (after the btfs using it has stopped: cleanups run last
// registered first).
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unmountAll(t, dir) })
	return dir
}

// bindReadOnly mounts a read-only bind of dir over dir in one step
// (open_tree, mount_setattr, move_mount): `mount --bind` followed by a
// read-only remount fails with EBUSY when btfs opens a file for writing
// through the new bind in between. undo unmounts it; cleanup does too.
func bindReadOnly(t *testing.T, dir string) (undo func()) {
	t.Helper()
	fd, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		t.Fatalf("open_tree %s: %v", dir, err)
	}
	defer unix.Close(fd)
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
		t.Fatalf("mount_setattr: %v", err)
	}
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, dir, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		t.Fatalf("move_mount: %v", err)
	}
	undo = func() {
		for isMounted(dir) {
			if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
				t.Errorf("unmount %s: %v", dir, err)
				return
			}
		}
	}
	t.Cleanup(undo)
	return undo
}

// mountOnCache starts btfs on mp with cacheDir, logging at info (every
// line counts).
func mountOnCache(t *testing.T, s cacheSwarm, cacheDir, mp string, extra ...string) *proc {
	t.Helper()
	args := append([]string{"mount", "-listen", "127.0.0.1:0", "-cache-dir", cacheDir, "-log-level", "info"}, extra...)
	p := startBtfs(t, append(args, s.torrentPath, mp)...)
	waitMounted(t, p, mp)
	return p
}

// readResult is what a whole-file read got.
type readResult struct {
	data []byte
	err  error
}

// readFileAsync reads path whole in a goroutine (read(2) by read(2), as a
// player would, with the errno of the first failing read).
func readFileAsync(path string) <-chan readResult {
	done := make(chan readResult, 1)
	go func() {
		b, err := os.ReadFile(path)
		done <- readResult{b, err}
	}()
	return done
}

// waitRead waits for a read started by readFileAsync.
func waitRead(t *testing.T, done <-chan readResult, d time.Duration, what string) readResult {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(d):
		t.Fatalf("%s: the read still blocks after %v (it must fail or succeed, never hang)", what, d)
		return readResult{}
	}
}

// errnoOf returns the errno under err, 0 when none.
func errnoOf(err error) syscall.Errno {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return 0
}

// logLines counts the lines of out.
func logLines(out string) int { return strings.Count(out, "\n") }

// checkFailedState watches the failed state for quietWindow: reads of the
// file fail at once with want, the log grows by at most maxFailureLines
// from logAt (its line count when the failure was seen) and the seeder
// sends at most maxBytesAfterFailure after upAt.
func checkFailedState(t *testing.T, s cacheSwarm, p *proc, path string, want syscall.Errno, logAt int, upAt int64) {
	t.Helper()
	end := time.Now().Add(quietWindow)
	reads := 0
	for time.Now().Before(end) {
		r := waitRead(t, readFileAsync(path), 30*time.Second, "a read in the failed state")
		if errnoOf(r.err) != want {
			t.Fatalf("a read in the failed state: %v, want %v", r.err, want)
		}
		reads++
		time.Sleep(100 * time.Millisecond) // pace the reads over the window
	}
	out := p.out.String()
	if n := logLines(out) - logAt; n > maxFailureLines {
		t.Fatalf("%d log lines in the failed state (> %d):\n%s", n, maxFailureLines, out)
	}
	if n := strings.Count(out, "cannot store block"); n > 5 {
		t.Fatalf("%d \"cannot store block\" lines", n)
	}
	sent := s.uploaded(t) - upAt
	if sent > maxBytesAfterFailure {
		t.Fatalf("the seeder sent %d bytes after the failure (> %d): the swarm still sends what we cannot keep", sent, maxBytesAfterFailure)
	}
	t.Logf("failed state: %d reads failed with %v; %d log lines and %d bytes from the seeder since the failure",
		reads, want, logLines(out)-logAt, sent)
}

// checkRecovers waits until a whole read of path gives the source's bytes.
func checkRecovers(t *testing.T, s cacheSwarm, p *proc, path string) {
	t.Helper()
	src := s.source(t, s.mi.Info.Files[0])
	poll.UntilNil(t, 90*time.Second, "a read after the disk recovered", func() error {
		r := waitRead(t, readFileAsync(path), 90*time.Second, "a read after the recovery")
		switch {
		case r.err != nil:
			return r.err
		case !bytes.Equal(r.data, src):
			t.Fatalf("the file read after the recovery differs from the source")
		}
		return nil
	})
	if !strings.Contains(p.out.String(), "the cache takes data again") {
		t.Fatalf("no recovery line in the log:\n%s", p.out.String())
	}
}

// TestCacheDiskFull: a cache on a tmpfs smaller than the torrent, no
// -cache-size. Reading the whole file evicts what was read and goes on; a
// read that cannot be stored at all (the disk full of something else)
// fails with ENOSPC at once, and the next one succeeds once there is room.
func TestCacheDiskFull(t *testing.T) {
	requireMounts(t)
	const size = 16<<20 + 5
	s := startCacheSwarm(t, swarmtest.TorrentOptions{Name: "full.bin", Size: size, PieceLength: 256 << 10, Seed: 31})

	t.Run("smaller than the torrent", func(t *testing.T) {
		cacheDir := mountTmpfs(t, 4<<20)
		mp := mountpoint(t)
		p := mountOnCache(t, s, cacheDir, mp)
		r := waitRead(t, readFileAsync(s.mounted(mp, s.mi.Info.Files[0])), 120*time.Second, "a whole read on a small disk")
		switch {
		case r.err == nil:
			if !bytes.Equal(r.data, s.source(t, s.mi.Info.Files[0])) {
				t.Fatal("the file read differs from the source")
			}
		case errnoOf(r.err) != syscall.ENOSPC:
			t.Fatalf("a whole read on a small disk: %v, want success or ENOSPC", r.err)
		}
		out := p.out.String()
		if n := strings.Count(out, "cannot store block"); n > 5 {
			t.Fatalf("%d \"cannot store block\" lines:\n%s", n, out)
		}
		if n := logLines(out); n > 3*maxFailureLines {
			t.Fatalf("%d log lines for one read:\n%s", n, out)
		}
		t.Logf("whole read on a 4 MiB cache: %v; %d log lines; the seeder sent %d bytes for %d", r.err, logLines(out), s.uploaded(t), size)
	})

	t.Run("nothing to evict", func(t *testing.T) {
		cacheDir := mountTmpfs(t, 4<<20)
		// Fill the disk but for 64 KiB, less than a piece: btfs can make
		// its directory and files, and has no piece of its own to evict.
		filler := filepath.Join(cacheDir, "filler")
		fillDisk(t, filler)
		if err := os.Truncate(filler, fileSize(t, filler)-64<<10); err != nil {
			t.Fatal(err)
		}
		mp := mountpoint(t)
		p := mountOnCache(t, s, cacheDir, mp)
		path := s.mounted(mp, s.mi.Info.Files[0])
		r := waitRead(t, readFileAsync(path), 60*time.Second, "a read on a full disk")
		if errnoOf(r.err) != syscall.ENOSPC {
			t.Fatalf("a read on a full disk: %v, want ENOSPC", r.err)
		}
		logAt, upAt := logLines(p.out.String()), s.uploaded(t)
		checkFailedState(t, s, p, path, syscall.ENOSPC, logAt, upAt)
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
		checkRecovers(t, s, p, path)
	})
}

// fillDisk writes path until the disk is full.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if errnoOf(err) != syscall.ENOSPC {
				t.Fatal(err)
			}
			return
		}
	}
}

// fileSize is path's length.
func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// startReadingMidDownload mounts with a capped rate (so that the download
// is under way for seconds), starts a whole read, and returns once part of
// the torrent is cached.
func startReadingMidDownload(t *testing.T, s cacheSwarm, cacheDir string) (p *proc, path string, done <-chan readResult) {
	t.Helper()
	mp := mountpoint(t)
	p = mountOnCache(t, s, cacheDir, mp, "-max-download-rate", "2MB")
	path = s.mounted(mp, s.mi.Info.Files[0])
	done = readFileAsync(path)
	poll.Until(t, 60*time.Second, "2 MiB downloaded", func() bool { return verifiedBytes(t, path) >= 2<<20 })
	return p, path, done
}

// TestCacheDirReadOnly: the torrent's cache directory turns read-only
// mid-download (a read-only bind mount over it) and back.
func TestCacheDirReadOnly(t *testing.T) {
	requireMounts(t)
	s := startCacheSwarm(t, swarmtest.TorrentOptions{Name: "ro.bin", Size: 16<<20 + 7, PieceLength: 256 << 10, Seed: 32})
	cacheDir := t.TempDir()
	p, path, done := startReadingMidDownload(t, s, cacheDir)
	undo := bindReadOnly(t, torrentDir(cacheDir, s.mi))
	r := waitRead(t, done, 60*time.Second, "the read under way when the cache turned read-only")
	if errnoOf(r.err) != syscall.EIO {
		t.Fatalf("the read under way: %v, want EIO", r.err)
	}
	logAt, upAt := logLines(p.out.String()), s.uploaded(t)
	checkFailedState(t, s, p, path, syscall.EIO, logAt, upAt)
	undo()
	checkRecovers(t, s, p, path)
}

// TestCacheDirRemoved: the torrent's cache directory is removed while in
// use (moved away, then deleted) and cannot be made again (the cache
// directory above it is read-only) until it can: btfs stops, fails the
// reads, then recreates the layout by itself and goes on. The removed
// directory can be deleted meanwhile (btfs no longer writes into it).
func TestCacheDirRemoved(t *testing.T) {
	requireMounts(t)
	s := startCacheSwarm(t, swarmtest.TorrentOptions{Name: "gone.bin", Size: 16<<20 + 9, PieceLength: 256 << 10, Seed: 33})
	base := t.TempDir()
	cacheDir := filepath.Join(base, "cache")
	p, path, done := startReadingMidDownload(t, s, cacheDir)
	dir, trash := torrentDir(cacheDir, s.mi), filepath.Join(base, "trash")
	if err := os.Rename(dir, trash); err != nil {
		t.Fatal(err)
	}
	undo := bindReadOnly(t, cacheDir)
	r := waitRead(t, done, 60*time.Second, "the read under way when the cache directory went")
	if errnoOf(r.err) != syscall.EIO {
		t.Fatalf("the read under way: %v, want EIO", r.err)
	}
	logAt, upAt := logLines(p.out.String()), s.uploaded(t)
	checkFailedState(t, s, p, path, syscall.EIO, logAt, upAt)
	if err := os.RemoveAll(trash); err != nil {
		t.Fatalf("removing the old cache directory: %v", err)
	}
	undo()
	checkRecovers(t, s, p, path)
	if _, err := os.Stat(cache.DataDir(dir)); err != nil {
		t.Fatalf("the cache layout was not recreated: %v", err)
	}
	if !strings.Contains(p.out.String(), "recreated it") {
		t.Fatalf("no line about the recreated directory:\n%s", p.out.String())
	}
}
