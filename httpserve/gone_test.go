package httpserve_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"btfs/httpserve"
	"btfs/internal/poll"
	"btfs/stream"
)

// mutableList is a Lister whose torrents change while it serves, as a
// client's do.
type mutableList struct {
	mu sync.Mutex
	ts []httpserve.Torrent
}

func (l *mutableList) Torrents() []httpserve.Torrent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]httpserve.Torrent(nil), l.ts...)
}

func (l *mutableList) set(ts ...httpserve.Torrent) {
	l.mu.Lock()
	l.ts = ts
	l.mu.Unlock()
}

// TestRemovedTorrentEndsStreams removes a torrent (its Gone closed, the
// Lister without it) while a stream of it runs: the stream ends at once
// with a body cut short, its Reader leaves the registry and its wants are
// released, whether it was waiting for a piece or writing verified bytes
// to a client that stopped reading (which StallTimeout alone would end
// only minutes later); then the torrent's URLs answer 404.
func TestRemovedTorrentEndsStreams(t *testing.T) {
	tests := []struct {
		name string
		// size of the file streamed; all: every piece verified, else
		// only the first.
		size int64
		all  bool
	}{
		{"waiting for a piece", 100_000, false},
		{"client not reading, every byte there", 16 << 20, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTorrent(t, 64<<10, map[string]int64{"f.mkv": tc.size}, []string{"f.mkv"})
			if tc.all {
				tr.fill(t)
			} else {
				tr.deliver(t, 0)
			}
			gone := make(chan struct{})
			served := tr.served()
			served.Gone = gone
			list := &mutableList{}
			list.set(served)
			reg := stream.NewRegistry()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			var wg sync.WaitGroup
			defer wg.Wait()
			defer cancel()
			wg.Go(func() {
				_ = httpserve.Serve(ctx, smallBuffers{ln}, httpserve.New(httpserve.Config{Torrents: list, Readers: reg}))
			})

			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.(*net.TCPConn).SetReadBuffer(32 << 10)
			target := "/t/" + tr.ih.String() + "/f.mkv"
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", target)
			br := bufio.NewReaderSize(c, 4096)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			first := make([]byte, 4096)
			if _, err := io.ReadFull(resp.Body, first); err != nil {
				t.Fatalf("first bytes: %v", err)
			}
			poll.Until(t, 10*time.Second, "the stream's Reader registered", func() bool { return len(reg.Readers()) == 1 })
			if !tc.all {
				poll.Until(t, 10*time.Second, "the stream waiting on piece 1", func() bool { return len(tr.w.Wants()) > 0 })
			}

			list.set()
			close(gone)
			poll.Until(t, 20*time.Second, "the removed torrent's stream ended and its Reader left the registry", func() bool {
				return len(reg.Readers()) == 0
			})
			if ws := tr.w.Wants(); len(ws) != 0 {
				t.Errorf("wants left after the stream ended: %v", ws)
			}
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
			n, err := io.Copy(io.Discard, resp.Body)
			if err == nil || int64(len(first))+n >= tc.size {
				t.Errorf("the client read %d more bytes of %d, then %v: want a body cut short", n, tc.size, err)
			}
			get, err := http.Get("http://" + ln.Addr().String() + target)
			if err != nil {
				t.Fatal(err)
			}
			get.Body.Close()
			if get.StatusCode != http.StatusNotFound {
				t.Errorf("a removed torrent's file: %d, want 404", get.StatusCode)
			}
		})
	}
}
