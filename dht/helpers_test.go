package dht

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"btfs/internal/poll"
)

// testLog is a logger whose output is shown only when the test fails. It
// writes to a buffer rather than t.Log: the library's goroutines may log
// a moment after the test ends.
func testLog(t *testing.T) *slog.Logger {
	var mu sync.Mutex
	var buf bytes.Buffer
	t.Cleanup(func() {
		if t.Failed() {
			mu.Lock()
			t.Logf("log:\n%s", buf.String())
			mu.Unlock()
		}
	})
	return slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type lockedWriter struct {
	mu  *sync.Mutex
	buf *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

// startNode starts a node on 127.0.0.1 (unless cfg says otherwise) and
// closes it in cleanup.
func startNode(t *testing.T, cfg Config) *Node {
	t.Helper()
	if cfg.Addr == "" && cfg.Conn == nil {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = testLog(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return n
}

// privateDHT starts count nodes on 127.0.0.1; every node after the first
// bootstraps from the first.
func privateDHT(t *testing.T, count int) []*Node {
	t.Helper()
	return privateDHTOn(t, count, "127.0.0.1:0")
}

// privateDHTOn is privateDHT with every node on addr ("[::1]:0").
func privateDHTOn(t *testing.T, count int, addr string) []*Node {
	t.Helper()
	nodes := []*Node{startNode(t, Config{Addr: addr})}
	for range count - 1 {
		nodes = append(nodes, startNode(t, Config{Addr: addr, Bootstrap: []string{nodes[0].Addr().String()}}))
	}
	// The first node learns the others from their queries, but hands them
	// out only once they answered its own (BEP 5's "good" nodes): wait for
	// that, so that the network is linked through it. Its own queries come
	// from its bootstrap traversal, which may be over before the last
	// nodes queried it (under load it was: a node stayed not good for
	// minutes), so it pings them itself.
	for _, n := range nodes[1:] {
		nodes[0].AddNode(n.Addr())
	}
	poll.UntilNil(t, 10*time.Second, "the private DHT to link up", func() error {
		if st := nodes[0].Stats(); st.GoodNodes < count-1 {
			return fmt.Errorf("first node has %+v, want %d good nodes", st, count-1)
		}
		return nil
	})
	return nodes
}

// findPeers runs one FindPeers and returns every address found.
func findPeers(ctx context.Context, n *Node, ih [20]byte, port int) ([]netip.AddrPort, error) {
	var mu sync.Mutex
	var out []netip.AddrPort
	err := n.FindPeers(ctx, ih, port, func(batch []netip.AddrPort) {
		mu.Lock()
		out = append(out, batch...)
		mu.Unlock()
	})
	mu.Lock()
	defer mu.Unlock()
	return out, err
}

// waitFound repeats FindPeers on n until every address of want is found
// or ctx ends: an announce_peer is stored by the receiving node a moment
// after it replies, so a lookup right after an announce may miss it.
func waitFound(t *testing.T, ctx context.Context, n *Node, ih [20]byte, want ...netip.AddrPort) []netip.AddrPort {
	t.Helper()
	for {
		got, err := findPeers(ctx, n, ih, 0)
		if err == nil && containsAll(got, want) {
			return got
		}
		if ctx.Err() != nil {
			t.Fatalf("FindPeers(%x) = %v, %v; want it to contain %v", ih[:4], got, err, want)
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func containsAll(got, want []netip.AddrPort) bool {
	set := map[netip.AddrPort]bool{}
	for _, a := range got {
		set[a] = true
	}
	for _, a := range want {
		if !set[a] {
			return false
		}
	}
	return true
}

// waitLibraryStopped fails t if goroutines of the library are still alive
// a few seconds after every node closed. leakcheck counts only goroutines
// that name btfs or the network; this looks at the library's own.
func waitLibraryStopped(t *testing.T) {
	t.Helper()
	poll.UntilNil(t, 5*time.Second, "the library's goroutines to end after Close", func() error {
		var lib []string
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "github.com/anacrolix/") {
				lib = append(lib, g)
			}
		}
		if len(lib) > 0 {
			return fmt.Errorf("%d library goroutine(s) outlived Close:\n\n%s", len(lib), strings.Join(lib, "\n\n"))
		}
		return nil
	})
}
