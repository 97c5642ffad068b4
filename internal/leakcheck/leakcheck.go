// Package leakcheck fails a test binary that leaves goroutines running after
// its tests end. A leaked goroutine in a torrent client is a peer, a timer or
// a waiting reader that nobody will ever stop; catching it at the package's
// TestMain is cheaper than finding it in a long-running mount.
//
// It is a small hand-written check rather than a dependency: it compares the
// goroutines alive after m.Run with the ones alive before, ignoring the
// runtime's and the testing package's own, and retries for a grace period
// because goroutines that were told to stop may still be on their way out.
package leakcheck

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"
)

// Grace is how long Main waits for goroutines to finish after the tests.
var Grace = 5 * time.Second

// Main runs the tests, then exits non-zero if goroutines started by them are
// still alive after Grace. Use it as: func TestMain(m *testing.M) { leakcheck.Main(m) }
func Main(m *testing.M) { os.Exit(Run(m)) }

// Run is Main without the exit: it returns the exit code, so that a
// TestMain with something to clean up after the tests (a binary it built,
// a temporary directory) can do it before it calls os.Exit, which runs no
// deferred call.
func Run(m *testing.M) int {
	before := snapshot()
	code := m.Run()
	if code == 0 {
		if leaked := Wait(before, Grace); len(leaked) > 0 {
			fmt.Fprintf(os.Stderr, "leakcheck: %d goroutine(s) outlived the tests:\n\n%s\n",
				len(leaked), strings.Join(leaked, "\n\n"))
			code = 1
		}
	}
	return code
}

// Wait polls until no goroutine outside before (and outside the ignore list)
// is alive, or until grace has passed; it returns the stacks of the leaked ones.
func Wait(before map[string]bool, grace time.Duration) []string {
	deadline := time.Now().Add(grace)
	for {
		leaked := diff(before, snapshot())
		if len(leaked) == 0 || time.Now().After(deadline) {
			return leaked
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Snapshot returns the identities of the goroutines alive now, for Wait.
func Snapshot() map[string]bool { return snapshot() }

func snapshot() map[string]bool {
	set := map[string]bool{}
	for _, g := range stacks() {
		set[goroutineID(g)] = true
	}
	return set
}

func diff(before map[string]bool, _ map[string]bool) []string {
	var out []string
	for _, g := range stacks() {
		if before[goroutineID(g)] || ignored(g) {
			continue
		}
		out = append(out, g)
	}
	sort.Strings(out)
	return out
}

func stacks() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	return strings.Split(strings.TrimSpace(string(buf)), "\n\n")
}

// goroutineID is the "goroutine N" header word, stable for a goroutine's life.
func goroutineID(stack string) string {
	head, _, _ := strings.Cut(stack, " [")
	return head
}

// ignored reports goroutines that are not the tests' business: the runtime's,
// the test harness's and this check's own. A goroutine counts as ours when its
// stack names btfs code, or a standard-library worker that only our code
// starts (HTTP transports, exec pipes, network I/O).
func ignored(stack string) bool {
	for _, harness := range []string{"btfs/internal/leakcheck.Wait(", "btfs/internal/leakcheck.Main(", "btfs/internal/leakcheck.Run(", "testing.(*M).", "\nmain.main("} {
		if strings.Contains(stack, harness) {
			return true
		}
	}
	for _, ours := range []string{"btfs/", "net/http.", "os/exec.", "net.(*"} {
		if strings.Contains(stack, ours) {
			return false
		}
	}
	return true
}
