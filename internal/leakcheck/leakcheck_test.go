package leakcheck

import (
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) { Main(m) }

// parkForever is a named function so its frame shows in the stack.
func parkForever(stop chan struct{}) { <-stop }

func TestWaitSeesALeakUntilItEnds(t *testing.T) {
	before := Snapshot()
	stop := make(chan struct{})
	go parkForever(stop)
	leaked := Wait(before, 50*time.Millisecond)
	if len(leaked) != 1 || !strings.Contains(leaked[0], "parkForever") {
		t.Fatalf("leaked = %q, want the parked goroutine", leaked)
	}
	close(stop)
	if leaked := Wait(before, 5*time.Second); len(leaked) != 0 {
		t.Fatalf("after it ended, still reported: %q", leaked)
	}
}

func TestIgnored(t *testing.T) {
	tests := []struct {
		stack string
		want  bool
	}{
		{"goroutine 5 [chan receive]:\nbtfs/engine.(*Torrent).run(...)", false},
		{"goroutine 6 [IO wait]:\nnet/http.(*persistConn).readLoop(...)", false},
		{"goroutine 7 [syscall]:\nos/signal.signal_recv()", true},
		{"goroutine 8 [running]:\ntesting.(*M).Run(...)\nbtfs/x.TestMain", true},
		{"goroutine 9 [select]:\nbtfs/internal/leakcheck.Wait(...)", true},
		{"goroutine 10 [chan receive]:\nbtfs/internal/leakcheck.parkForever(...)", false},
	}
	for _, tc := range tests {
		if got := ignored(tc.stack); got != tc.want {
			t.Errorf("ignored(%q) = %v, want %v", tc.stack, got, tc.want)
		}
	}
}
