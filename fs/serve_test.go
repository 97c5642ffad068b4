package fs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// In tests the reads come from this very process: make the kernel learn,
// once per mount and before any test goroutine opens a file through
// os.Open, that POLL is not implemented (see startServer). This is
// go-fuse's own poll hack, kept out of the production path: go-fuse
// answers the lookup of this name in the root itself, whatever the tree.
// syscall.Open and unix.Poll release their P while they wait, unlike the
// runtime's epoll registration.
func init() {
	testHookMounted = func(dir string) {
		fd, err := syscall.Open(filepath.Join(dir, ".go-fuse-epoll-hack"), syscall.O_RDONLY, 0)
		if err != nil {
			return
		}
		_, _ = unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLPRI | unix.POLLOUT}}, 0)
		syscall.Close(fd)
	}
}

// mountDevice, read from mountinfo, names the same device as a stat of the
// mount point (which the mount itself must never do: see startServer).
func TestMountDevice(t *testing.T) {
	fx := newFixture(t, "fixture", 5, false, multiSpecs)
	e := newEnv(t, fx, Options{})
	major, minor, err := mountDevice(e.dir)
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(e.dir, &st); err != nil {
		t.Fatal(err)
	}
	if major != unix.Major(st.Dev) || minor != unix.Minor(st.Dev) {
		t.Fatalf("mountDevice = %d:%d, stat says %d:%d", major, minor, unix.Major(st.Dev), unix.Minor(st.Dev))
	}
	if _, _, err := mountDevice(t.TempDir()); err == nil {
		t.Fatalf("mountDevice of a plain directory: no error")
	}
}

// TestKillRightAfterMount kills a mounting server (this test binary, see
// TestMain) with SIGKILL the moment its mount appears, when go-fuse's poll
// hack or a stat of the mount point would have one of its threads waiting
// in the kernel for an answer that only the dying server could give: the
// process must die all the same, leaving a stale mount that Recover
// detaches.
func TestKillRightAfterMount(t *testing.T) {
	for i := range 20 {
		dir := t.TempDir()
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envServe+"="+dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if mounted, _ := isMountPoint(dir); mounted {
				if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
					t.Errorf("cleanup: umount -l %s: %v", dir, err)
				}
			}
		})
		deadline := time.Now().Add(10 * time.Second)
		for {
			if mounted, _ := isMountPoint(dir); mounted {
				break
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("round %d: the child never mounted", i)
			}
			time.Sleep(100 * time.Microsecond)
		}
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			// Its thread is stuck in the kernel: abort the connection so
			// that the test can end.
			abortFuse(t, dir)
			<-done
			t.Fatalf("round %d: the server killed with SIGKILL right after mounting did not die", i)
		}
		if _, err := Recover(dir); err != nil {
			t.Fatalf("round %d: Recover: %v", i, err)
		}
	}
}

// abortFuse aborts the FUSE connection mounted at dir, through
// /sys/fs/fuse/connections (named by the mount's minor device number):
// the only way out for a process stuck waiting for its own mount.
func abortFuse(t *testing.T, dir string) {
	_, minor, err := mountDevice(dir)
	if err != nil {
		t.Errorf("abort: %v", err)
		return
	}
	const ctl = "/sys/fs/fuse/connections"
	abort := fmt.Sprintf("%s/%d/abort", ctl, minor)
	if _, err := os.Stat(abort); err != nil {
		// fusectl is not mounted: mount it for the abort, then leave.
		if err := unix.Mount("fusectl", ctl, "fusectl", 0, ""); err != nil {
			t.Errorf("abort: mount fusectl: %v", err)
			return
		}
		defer unix.Unmount(ctl, 0)
	}
	if err := os.WriteFile(abort, []byte("1"), 0); err != nil {
		t.Errorf("abort: %v", err)
	}
}
