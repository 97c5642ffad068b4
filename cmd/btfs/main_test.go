package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"btfs/internal/leakcheck"
	"btfs/internal/swarmtest"
)

// btfsBin is the btfs binary built once for the end-to-end tests: they run
// it as a user would, as a separate process that can be signalled and
// killed.
var btfsBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "btfs-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	btfsBin = filepath.Join(dir, "btfs")
	out, err := exec.Command("go", "build", "-race", "-o", btfsBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building btfs: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := leakcheck.Run(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a btfs process started by a test.
type proc struct {
	cmd    *exec.Cmd
	out    *syncBuffer
	waited chan struct{}
	err    error
}

func startBtfs(t *testing.T, args ...string) *proc {
	t.Helper()
	args = noPublicDHT(args)
	return startBtfsCmd(t, exec.Command(btfsBin, args...), args)
}

// startBtfsCmd starts cmd, a run of btfsBin with args (in a network
// namespace of the test, for one).
func startBtfsCmd(t *testing.T, cmd *exec.Cmd, args []string) *proc {
	t.Helper()
	p := &proc{cmd: cmd, out: &syncBuffer{mu: make(chan struct{}, 1)}, waited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.waited) }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.waited:
		case <-time.After(15 * time.Second):
			p.cmd.Process.Kill()
			select {
			case <-p.waited:
			case <-time.After(10 * time.Second):
				t.Errorf("btfs (pid %d) survives SIGKILL: stuck in the kernel", p.cmd.Process.Pid)
			}
		}
		if t.Failed() {
			t.Logf("btfs %s output:\n%s", strings.Join(args, " "), p.out.String())
		}
	})
	return p
}

// noPublicDHT adds -no-dht to a command that joins a swarm unless the test
// points it at its own DHT with -dht-bootstrap: the DHT's default bootstrap
// nodes are the public routers, which no test may contact.
func noPublicDHT(args []string) []string {
	if len(args) == 0 || !slices.Contains([]string{"mount", "get", "seed"}, args[0]) || slices.Contains(args, "-dht-bootstrap") {
		return args
	}
	return append([]string{args[0], "-no-dht"}, args[1:]...)
}

// wait waits for the process to exit and returns its error.
func (p *proc) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case <-p.waited:
		return p.err
	case <-time.After(d):
		t.Fatalf("btfs did not exit within %v; output:\n%s", d, p.out.String())
		return nil
	}
}

// mountpoint makes a fresh mount point whose cleanup unmounts whatever is
// left there before the temp dir is removed (never rm -rf a live mount).
func mountpoint(t *testing.T) string {
	t.Helper()
	mp := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mp, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unmountAll(t, mp) })
	return mp
}

// unmountAll removes any mount at mp: fusermount3 -u, then a lazy umount.
func unmountAll(t *testing.T, mp string) {
	for isMounted(mp) {
		if exec.Command("fusermount3", "-u", mp).Run() == nil {
			continue
		}
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil {
			t.Errorf("cannot unmount %s: %v", mp, err)
			return
		}
	}
}

// isMounted reports whether mp is a mount point (per /proc/self/mountinfo).
func isMounted(mp string) bool {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == mp {
			return true
		}
	}
	return false
}

// waitMounted waits until mp is a btfs mount showing entries.
func waitMounted(t *testing.T, p *proc, mp string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		// "mounted at" is printed once fs.Mount has returned: before that,
		// go-fuse's start-up probe of its own mount is in flight, and a
		// kill -9 landing then leaves the process unkillable (a FUSE
		// server blocked on a request to itself; see the closing note).
		if isMounted(mp) && strings.Contains(p.out.String(), "mounted at") {
			if ents, err := os.ReadDir(mp); err == nil && len(ents) > 0 {
				return
			}
		}
		select {
		case <-p.waited:
			t.Fatalf("btfs exited before mounting: %v\n%s", p.err, p.out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("%s not mounted after 30s; output:\n%s", mp, p.out.String())
}

// syncBuffer collects a process's output for the test to read while the
// process runs; mu is a one-slot semaphore (make it with capacity 1).
type syncBuffer struct {
	mu  chan struct{}
	buf bytes.Buffer
}

func (b *syncBuffer) lock() { b.mu <- struct{}{} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.lock()
	defer func() { <-b.mu }()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.lock()
	defer func() { <-b.mu }()
	return b.buf.String()
}

func TestUsage(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage:"},
		{[]string{"nope"}, 2, "unknown command"},
		{[]string{"info"}, 2, "usage: btfs info"},
		{[]string{"info", "/does/not/exist.torrent"}, 1, "no such file"},
		{[]string{"mount", "x.torrent"}, 2, "usage: btfs mount"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(tc.args, &out, &errb); code != tc.code {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tc.code, errb.String())
			}
			if !strings.Contains(out.String()+errb.String(), tc.want) {
				t.Fatalf("output %q lacks %q", out.String()+errb.String(), tc.want)
			}
		})
	}
}

func TestCreateAndInfo(t *testing.T) {
	dir := t.TempDir()
	_, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Files: swarmtest.MultiFile, PieceLength: 64 << 10})
	out := filepath.Join(t.TempDir(), "x.torrent")
	var so, se bytes.Buffer
	if code := run([]string{"create", filepath.Join(dir, mi.Info.Name), "-o", out, "-piece-length", "64KiB", "-t", "http://127.0.0.1:1/announce"}, &so, &se); code != 0 {
		t.Fatalf("create: exit %d: %s", code, se.String())
	}
	so.Reset()
	if code := run([]string{"info", out}, &so, &se); code != 0 {
		t.Fatalf("info: exit %d: %s", code, se.String())
	}
	// Same content, same piece length: the same info-hash as the fixture's
	// own torrent (the creation date and tracker are outside the info dict).
	for _, want := range []string{mi.InfoHash.String(), "sub/deeper/c.txt", "http://127.0.0.1:1/announce", "64 KiB"} {
		if !strings.Contains(so.String(), want) {
			t.Errorf("info output lacks %q:\n%s", want, so.String())
		}
	}
	if code := run([]string{"create", dir, "-o", out}, &so, &se); code != 1 || !strings.Contains(se.String(), "exists") {
		t.Errorf("create over an existing file: exit %d, %s", code, se.String())
	}
}
