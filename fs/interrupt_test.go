package fs

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"btfs/picker"
)

// stuckSpecs are aligned on 5-byte pieces so that the pieces of never.bin
// and never2.bin can be withheld without touching a.txt.
var stuckSpecs = []fileSpec{
	{path: "a.txt", size: 10},
	{path: "never.bin", size: 20},
	{path: "never2.bin", size: 20},
}

// newStuckEnv mounts stuckSpecs with the pieces of never*.bin withheld:
// reads of them wait for pieces that never come.
func newStuckEnv(t *testing.T, opts Options) *env {
	t.Helper()
	fx := newFixture(t, "stuck", 5, false, stuckSpecs)
	e := newEnv(t, fx, opts)
	e.dl.withhold(fx.fileOffset(t, "never.bin"), fx.mi.Info.TotalLength)
	return e
}

// nowWantIn returns a condition: a Now want inside the torrent range of
// file p (a read of it is blocked in ReadAt).
func (e *env) nowWantIn(t *testing.T, p string) func([]picker.Want) bool {
	start := e.fx.fileOffset(t, p)
	end := start + int64(len(e.fx.content[p]))
	return func(ws []picker.Want) bool {
		for _, w := range nowWants(ws) {
			if w.Start >= start && w.End <= end {
				return true
			}
		}
		return false
	}
}

// checkUsable reads a.txt through the mount.
func (e *env) checkUsable(t *testing.T) {
	t.Helper()
	got, err := os.ReadFile(e.path("a.txt"))
	if err != nil || !bytes.Equal(got, e.fx.content["a.txt"]) {
		t.Errorf("mount unusable: ReadFile(a.txt) = %d bytes, %v", len(got), err)
	}
}

// startBlocked starts a reader process on file p of the mount and waits
// until its read is blocked in the wrapper, waiting for a withheld piece.
func (e *env) startBlocked(t *testing.T, p string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", args, err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	e.dl.waitWants(t, args[0]+"'s read blocked on a missing piece", e.nowWantIn(t, p))
	return cmd
}

// TestInterrupt sends SIGINT to readers blocked on pieces that never come:
// they must die at once and leave the mount usable.
func TestInterrupt(t *testing.T) {
	t.Run("direct read: the kernel interrupts the request", func(t *testing.T) {
		e := newStuckEnv(t, Options{})
		cmd := e.startBlocked(t, "never.bin",
			"dd", "if="+e.path("never.bin"), "of=/dev/null", "bs=5", "count=1", "iflag=direct", "status=none")
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err == nil {
			t.Errorf("dd succeeded reading a piece that never comes")
		}
		// The request was interrupted: ReadAt returned and dropped its
		// Now want (it would stay while the read waited).
		e.dl.waitWants(t, "the interrupted read's want released", func(ws []picker.Want) bool {
			return len(nowWants(ws)) == 0
		})
		e.checkUsable(t)
	})
	t.Run("buffered read: the kernel's readahead request outlives the reader", func(t *testing.T) {
		// cat's read waits on the page cache, which a fatal signal ends at
		// once; the kernel's readahead request it started is not
		// interrupted and keeps waiting in the file system until Unmount
		// fails it (checked by newEnv's cleanup: no want survives).
		e := newStuckEnv(t, Options{})
		cmd := e.startBlocked(t, "never2.bin", "cat", e.path("never2.bin"))
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err == nil {
			t.Errorf("cat succeeded reading a piece that never comes")
		}
		e.checkUsable(t)
	})
}

// TestReadTimeout checks Options.ReadTimeout: a read waiting longer fails
// with EIO, and the mount stays usable.
func TestReadTimeout(t *testing.T) {
	e := newStuckEnv(t, Options{ReadTimeout: 50 * time.Millisecond})
	if _, err := os.ReadFile(e.path("never.bin")); !errors.Is(err, syscall.EIO) {
		t.Errorf("buffered read past the timeout: %v, want EIO", err)
	}
	f := openDirect(t, e.path("never2.bin"))
	defer f.Close()
	if _, err := f.ReadAt(make([]byte, 5), 0); !errors.Is(err, syscall.EIO) {
		t.Errorf("direct read past the timeout: %v, want EIO", err)
	}
	e.checkUsable(t)
	e.dl.waitWants(t, "the timed out reads' wants released", func(ws []picker.Want) bool {
		return len(nowWants(ws)) == 0
	})
}

// TestUnmountBusy unmounts while a file is open and a read of it waits for
// a piece that never comes: the read fails with EIO at once, Unmount
// detaches the mount lazily and returns, and Wait returns once the file is
// closed.
func TestUnmountBusy(t *testing.T) {
	e := newStuckEnv(t, Options{})
	f := openDirect(t, e.path("never.bin"))
	defer f.Close()
	readErr := make(chan error, 1)
	go func() {
		_, err := f.ReadAt(make([]byte, 5), 0)
		readErr <- err
	}()
	e.dl.waitWants(t, "the read blocked", e.nowWantIn(t, "never.bin"))
	if err := e.m.Unmount(); err != nil {
		t.Fatalf("Unmount with a busy mount: %v", err)
	}
	if err := <-readErr; !errors.Is(err, syscall.EIO) {
		t.Errorf("read waiting at unmount: %v, want EIO", err)
	}
	if mounted, err := isMountPoint(e.m.Mountpoint()); err != nil || mounted {
		t.Errorf("after Unmount, still a mount point: %v, %v", mounted, err)
	}
	// The handle stays open on the detached mount; its reads fail.
	if _, err := f.ReadAt(make([]byte, 5), 0); err == nil || errors.Is(err, io.EOF) {
		t.Errorf("read after Unmount: %v, want an error", err)
	}
	f.Close()
	e.m.Wait()
	if err := e.m.Unmount(); err != nil {
		t.Errorf("second Unmount: %v", err)
	}
}

// TestTorrentClosed closes the torrent under a waiting read: the read fails
// with EIO and the mount stays up (reads of verified data fail too: the
// store is gone).
func TestTorrentClosed(t *testing.T) {
	e := newStuckEnv(t, Options{})
	f := openDirect(t, e.path("never.bin"))
	defer f.Close()
	readErr := make(chan error, 1)
	go func() {
		_, err := f.ReadAt(make([]byte, 5), 0)
		readErr <- err
	}()
	e.dl.waitWants(t, "the read blocked", e.nowWantIn(t, "never.bin"))
	if err := e.w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-readErr; !errors.Is(err, syscall.EIO) {
		t.Errorf("read waiting when the torrent closed: %v, want EIO", err)
	}
	if _, err := os.Stat(e.path("a.txt")); err != nil {
		t.Errorf("stat after the torrent closed: %v", err)
	}
}
