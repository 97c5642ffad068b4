package cache

import (
	"bufio"
	"context"
	"crypto/sha1"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"btfs/internal/leakcheck"
	"btfs/metainfo"
	"btfs/storagewrapper"
)

// The multi-process tests run this test binary again as a child process
// (childEnv names its role): real processes, with their own pids, open file
// descriptions and deaths.
const (
	childEnv    = "BTFS_CACHE_TEST_CHILD"
	childDirEnv = "BTFS_CACHE_TEST_DIR"
	childArgEnv = "BTFS_CACHE_TEST_ARG"
)

func TestMain(m *testing.M) {
	if role := os.Getenv(childEnv); role != "" {
		os.Exit(runChild(role, os.Getenv(childDirEnv), os.Getenv(childArgEnv)))
	}
	leakcheck.Main(m)
}

// waitFor bounds every wait of these tests for an event that must come; it
// is a failure guard, not a measurement.
const waitFor = 20 * time.Second

// fixture is a torrent whose bytes the test knows.
type fixture struct {
	// info describes it; data is the whole torrent.
	info *metainfo.Info
	data []byte
}

// newFixture makes a torrent of total bytes in pieces of pieceLen, with
// pseudo-random bytes that depend only on the two lengths (a child process
// builds the same one).
func newFixture(pieceLen, total int64) *fixture {
	data := make([]byte, total)
	_, _ = rand.NewChaCha8([32]byte{byte(pieceLen >> 10), byte(total >> 10)}).Read(data)
	n := int((total + pieceLen - 1) / pieceLen)
	info := &metainfo.Info{Name: "fixture", PieceLength: pieceLen, TotalLength: total, Pieces: make([]metainfo.Hash, n)}
	for p := range n {
		info.Pieces[p] = sha1.Sum(data[int64(p)*pieceLen : min(int64(p+1)*pieceLen, total)])
	}
	info.Files = []metainfo.File{{Path: []string{"fixture"}, Length: total}}
	return &fixture{info: info, data: data}
}

// The fixture of every test: 8 pieces of 64 KiB (4 blocks each) and a
// short last one.
const (
	fxPieceLen = 64 << 10
	fxTotal    = 8*fxPieceLen + 5000
)

func testFixture() *fixture { return newFixture(fxPieceLen, fxTotal) }

// piece returns piece p's bytes.
func (f *fixture) piece(p int) []byte {
	off := f.info.PieceOffset(p)
	return f.data[off : off+f.info.PieceLen(p)]
}

// openStore opens a Store on dir, closed at the end of the test.
func openStore(t testing.TB, dir string, f *fixture, opts Options) *Store {
	t.Helper()
	c, err := Open(dir, f.info, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// newHost returns a Wrapper over c (one process's storagewrapper), closed
// at the end of the test.
func newHost(t testing.TB, f *fixture, c *Store) *storagewrapper.Wrapper {
	t.Helper()
	w, err := storagewrapper.New(f.info, c, storagewrapper.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// run runs c.Run(host) until the end of the test.
func run(t testing.TB, c *Store, host Host) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := c.Run(ctx, host); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// download fetches piece p into w as the engine would, block by block from
// the fixture; it returns NewRequest's first status when it did not grant.
func download(t testing.TB, w *storagewrapper.Wrapper, f *fixture, p int) storagewrapper.RequestStatus {
	t.Helper()
	var blocks []storagewrapper.Block
	for {
		b, st := w.NewRequest(p)
		if st != storagewrapper.RequestGranted {
			if len(blocks) == 0 {
				return st
			}
			break
		}
		blocks = append(blocks, b)
	}
	for _, b := range blocks {
		data := f.piece(p)[b.Begin : b.Begin+int64(b.Length)]
		res, err := w.PieceCameIn(p, b.Begin, data, "127.0.0.1:1")
		if err != nil {
			t.Fatalf("PieceCameIn %v: %v", b, err)
		}
		if res.Completed && !res.Verified {
			t.Fatalf("piece %d did not verify: %+v", p, res)
		}
	}
	return storagewrapper.RequestGranted
}

// changes accumulates a Wrapper's TakeChanges.
type changes struct {
	verified, unverified, elsewhere map[int]bool
}

// waitChanges drains w's changes (woken by its Kick) until ok says the
// accumulated ones are what the test waits for.
func waitChanges(t testing.TB, w *storagewrapper.Wrapper, what string, ok func(changes) bool) changes {
	t.Helper()
	acc := changes{verified: map[int]bool{}, unverified: map[int]bool{}, elsewhere: map[int]bool{}}
	deadline := time.After(waitFor)
	for {
		ch := w.TakeChanges()
		for _, i := range ch.Verified {
			acc.verified[i] = true
		}
		for _, i := range ch.Unverified {
			acc.unverified[i] = true
		}
		for _, i := range ch.ClaimedElsewhere {
			acc.elsewhere[i] = true
		}
		if ok(acc) {
			return acc
		}
		select {
		case <-w.Kick():
		case <-time.After(50 * time.Millisecond): // a change taken by a concurrent reader of Kick
		case <-deadline:
			t.Fatalf("waiting for %s: gave up after %v; changes so far: %+v", what, waitFor, acc)
		}
	}
}

// child is a running child process of the test binary.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *bufio.Reader
	waited chan struct{}
	err    error
}

// startChild runs this test binary as a child in role, on dir with arg,
// and waits for its first line ("ready" or an error).
func startChild(t *testing.T, role, dir, arg string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	// GORACE: a race-enabled child would sleep a second at exit.
	cmd.Env = append(os.Environ(), childEnv+"="+role, childDirEnv+"="+dir, childArgEnv+"="+arg, "GORACE=atexit_sleep_ms=0")
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ch := &child{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout), waited: make(chan struct{})}
	lines := make(chan string, 1)
	go func() {
		line, _ := ch.out.ReadString('\n')
		lines <- strings.TrimSpace(line)
		io.Copy(io.Discard, ch.out) // until it exits
		ch.err = cmd.Wait()
		close(ch.waited)
	}()
	t.Cleanup(func() { ch.kill() })
	select {
	case line := <-lines:
		if line != "ready" {
			t.Fatalf("child %s: %q", role, line)
		}
	case <-time.After(waitFor):
		t.Fatalf("child %s not ready after %v", role, waitFor)
	}
	return ch
}

// finish closes the child's stdin (it then exits cleanly) and waits.
func (ch *child) finish(t *testing.T) {
	t.Helper()
	ch.stdin.Close()
	select {
	case <-ch.waited:
		if ch.err != nil {
			t.Fatalf("child: %v", ch.err)
		}
	case <-time.After(waitFor):
		t.Fatal("child did not exit")
	}
}

// kill is kill -9, then wait (the child is reaped: its pid is gone).
func (ch *child) kill() {
	ch.cmd.Process.Kill()
	<-ch.waited
}

// runChild is the child's side: it opens a Store on dir and does role;
// "ready" on stdout says it did, and it then waits for stdin to close.
func runChild(role, dir, arg string) int {
	f := testFixture()
	fail := func(err error) int {
		fmt.Println("error:", err)
		fmt.Fprintln(os.Stderr, "child", role, "error:", err)
		return 1
	}
	c, err := Open(dir, f.info, Options{})
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	n, _ := strconv.Atoi(arg)
	switch role {
	case "claim": // claim piece n and hold it
		ok, err := c.Claim(n)
		if err != nil || !ok {
			return fail(fmt.Errorf("claim %d: %v %v", n, ok, err))
		}
	case "owner": // claim piece n through a storagewrapper, with Run going (markers acknowledged)
		w, err := storagewrapper.New(f.info, c, storagewrapper.Config{})
		if err != nil {
			return fail(err)
		}
		defer w.Close()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); c.Run(ctx, w) }()
		defer func() { cancel(); <-done }()
		if _, st := w.NewRequest(n); st != storagewrapper.RequestGranted {
			return fail(fmt.Errorf("NewRequest(%d) = %v", n, st))
		}
	case "pin": // pin piece n, as a reader would
		defer c.Pin(n, n)()
	case "partial": // claim piece n and write half of it, then be killed
		if ok, err := c.Claim(n); err != nil || !ok {
			return fail(fmt.Errorf("claim %d: %v %v", n, ok, err))
		}
		if _, err := c.Piece(n).WriteAt(f.piece(n)[:fxPieceLen/2], 0); err != nil {
			return fail(err)
		}
	case "publish": // publish piece n, then exit
		if ok, err := c.Claim(n); err != nil || !ok {
			return fail(fmt.Errorf("claim %d: %v %v", n, ok, err))
		}
		defer c.Release(n)
		p := c.Piece(n)
		if _, err := p.WriteAt(f.piece(n), 0); err != nil {
			return fail(err)
		}
		if err := p.Publish(); err != nil {
			return fail(err)
		}
	case "race": // claim and publish every piece not marked yet, arg times over, as fast as possible
		fmt.Println("ready")
		io.ReadAll(os.Stdin) // the start signal: stdin closed
		for range n {
			for i := range f.info.NumPieces() {
				ok, err := c.Claim(i)
				if err != nil {
					return fail(err)
				}
				if !ok {
					continue // the other's, or marked
				}
				p := c.Piece(i)
				if _, err := p.WriteAt(f.piece(i), 0); err != nil {
					return fail(err)
				}
				if err := p.Publish(); err != nil {
					return fail(err)
				}
				c.Release(i)
			}
		}
		fmt.Println("done")
		return 0
	default:
		return fail(fmt.Errorf("unknown role %q", role))
	}
	fmt.Println("ready")
	io.ReadAll(os.Stdin)
	return 0
}
