package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"btfs/internal/poll"
	"btfs/internal/swarmtest"
)

// TestSignalsUnmount sends btfs the signals a user's session sends it —
// SIGHUP when the terminal closes, SIGQUIT (Ctrl-\), two stop signals back
// to back — while a reader waits for a piece nobody has. Each must leave no
// mount behind, fail the waiting read with EIO, and exit with its status.
func TestSignalsUnmount(t *testing.T) {
	swarmtest.Require(t, "fusermount3", "dd")
	// No tracker, no peer: every read of the content waits forever.
	torrent, _ := swarmtest.MakeTorrent(t, t.TempDir(), swarmtest.TorrentOptions{Name: "lonely.bin", Size: 1 << 20, PieceLength: 256 << 10, Seed: 11})

	tests := []struct {
		name string
		sigs []syscall.Signal
		// runs: how many times; a race shows in some runs only.
		runs int
		// forced: the second signal may win the race with the graceful
		// stop (status exitForced, saying so) or lose it (status 0).
		forced bool
		code   int
		out    string
	}{
		{name: "SIGHUP", sigs: []syscall.Signal{syscall.SIGHUP}, runs: 1, code: 0},
		{name: "SIGQUIT", sigs: []syscall.Signal{syscall.SIGQUIT}, runs: 1, code: exitQuit, out: "goroutine "},
		{name: "SIGINT then SIGTERM", sigs: []syscall.Signal{syscall.SIGINT, syscall.SIGTERM}, runs: 10, forced: true},
		{name: "SIGTERM then SIGINT", sigs: []syscall.Signal{syscall.SIGTERM, syscall.SIGINT}, runs: 5, forced: true},
		{name: "SIGHUP twice", sigs: []syscall.Signal{syscall.SIGHUP, syscall.SIGHUP}, runs: 5, forced: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for i := range tc.runs {
				t.Run(fmt.Sprint(i), func(t *testing.T) {
					mp := mountpoint(t)
					p := startBtfs(t, mountArgs(t, "-no-trackers", torrent, mp)...)
					waitMounted(t, p, mp)
					out, done := blockedReader(t, filepath.Join(mp, "lonely.bin"), 512<<10)
					for _, s := range tc.sigs {
						if err := p.cmd.Process.Signal(s); err != nil {
							t.Fatal(err)
						}
					}
					p.wait(t, 30*time.Second)
					code := p.cmd.ProcessState.ExitCode()
					switch {
					case tc.forced && code == exitForced && strings.Contains(p.out.String(), "second signal"):
					case tc.forced && code == 0:
					case !tc.forced && code == tc.code:
					default:
						t.Errorf("exit status %d (%v)", code, p.err)
					}
					if !strings.Contains(p.out.String(), tc.out) {
						t.Errorf("the output lacks %q", tc.out)
					}
					if isMounted(mp) {
						t.Errorf("%s left a mount behind", tc.name)
					}
					if err := waitErr(t, done, 10*time.Second, "the waiting reader"); err == nil || !strings.Contains(out.String(), "Input/output error") {
						t.Errorf("the waiting reader: %v, %q; want EIO", err, out.String())
					}
				})
			}
		})
	}
}

// blockedReader starts dd reading path at off and returns once it waits in
// read(2) (per /proc/PID/syscall) for bytes nobody has.
func blockedReader(t *testing.T, path string, off int64) (out interface{ String() string }, done chan error) {
	t.Helper()
	cmd, buf, done := readerProc(t, path, off)
	poll.Until(t, 10*time.Second, "dd waiting in read(2) on the mount", func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/syscall", cmd.Process.Pid))
		nr, _, _ := strings.Cut(string(b), " ")
		return err == nil && (nr == fmt.Sprint(syscall.SYS_READ) || nr == fmt.Sprint(syscall.SYS_PREAD64))
	})
	return buf, done
}
