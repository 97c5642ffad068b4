package httpserve_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"btfs/fs"
	"btfs/httpserve"
	"btfs/internal/poll"
	"btfs/metainfo"
	"btfs/stream"
)

// smallBuffers is a listener whose connections have a small kernel send
// buffer, as the clients' receive buffers are: 1,000 stalled connections
// then hold about 40 MiB of kernel memory instead of loopback's autotuned
// megabytes each, while every handler still blocks in a write (a file is
// far larger than both buffers).
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(32 << 10)
	}
	return c, err
}

// heapInuse returns the heap in use after a collection.
func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// rss returns this process's resident set (VmRSS), for the log.
func rss() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "?"
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// TestSlowClients opens 1,000 connections that each ask for a whole 8 MiB
// file, read a few bytes and stall, against Serve with the torrent also
// mounted with FUSE in this process: the heap grows by a bounded amount
// (each stalled stream costs its buffers, not its file), a reader through
// the mount and an HTTP client both get the right bytes meanwhile, the
// server drops the stalled streams after StallTimeout, and their Readers
// and wants are gone.
func TestSlowClients(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 connections")
	}
	const clients, fileLen = 1000, 8 << 20
	tr := newTorrent(t, 256<<10, map[string]int64{"big.bin": fileLen}, []string{"big.bin"})
	tr.fill(t)
	reg := stream.NewRegistry()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httpserve.New(httpserve.Config{
		Torrents: httpserve.Static{tr.served()}, Readers: reg,
		MaxStreams: clients + 10, StallTimeout: 20 * time.Second, // longer than 1,000 dials take here under -race
	})
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- httpserve.Serve(ctx, smallBuffers{ln}, srv) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Error(err)
		}
	}()
	mp := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mp, 0o755); err != nil {
		t.Fatal(err)
	}
	m, err := fs.Mount(mp, &metainfo.MetaInfo{Info: tr.info, InfoHash: tr.ih}, tr.w, fs.Options{Readers: reg})
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	defer m.Unmount()

	addr := ln.Addr().String()
	target := "/t/" + tr.ih.String() + "/big.bin"
	before := heapInuse()
	rssBefore := rss()

	// The slow clients: a small receive buffer, a request for the whole
	// file, the status line read, then nothing.
	dialer := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		if err != nil {
			return err
		}
		return serr
	}}
	conns := make([]net.Conn, clients)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	sem := make(chan struct{}, 64)
	for i := range clients {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			c, err := dialer.DialContext(t.Context(), "tcp", addr)
			if err != nil {
				errs <- err
				return
			}
			conns[i] = c
			if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", target); err != nil {
				errs <- err
				return
			}
			line := make([]byte, 12)
			if _, err := io.ReadFull(c, line); err != nil || string(line) != "HTTP/1.1 200" {
				errs <- fmt.Errorf("client %d: %q, %v", i, line, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	httpReaders := func() int {
		n := 0
		for _, r := range reg.Readers() {
			if r.Kind == "http" {
				n++
			}
		}
		return n
	}
	poll.Until(t, 60*time.Second, "every slow client's stream open in the server", func() bool { return httpReaders() == clients })

	// Meanwhile: the whole file through the mount, and a range over HTTP.
	got, err := os.ReadFile(filepath.Join(mp, "big.bin"))
	if err != nil || !bytes.Equal(got, tr.data) {
		t.Fatalf("read through the mount beside %d stalled streams: %d bytes, %v, equal %v", clients, len(got), err, bytes.Equal(got, tr.data))
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Range", "bytes=5000000-5999999")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 206 || !bytes.Equal(body, tr.data[5000000:6000000]) {
		t.Fatalf("a range beside the stalled streams: %d, %d bytes, %v", resp.StatusCode, len(body), err)
	}

	during := heapInuse()
	grew := int64(during) - int64(before)
	t.Logf("heap in use %d KiB → %d KiB with %d stalled streams (%d KiB each); RSS %s → %s (-race inflates RSS)",
		before>>10, during>>10, clients, grew/clients>>10, rssBefore, rss())
	// Each stalled stream holds a goroutine or two, a 4 KiB reader and
	// writer, the copy buffer, a stream.Reader: tens of KiB, never its
	// file. 200 KiB each is a generous bound; 8 MiB each would be 8 GiB.
	if limit := int64(clients) * 200 << 10; grew > limit {
		t.Errorf("heap grew by %d MiB for %d stalled streams (bound %d MiB)", grew>>20, clients, limit>>20)
	}

	// The stalled streams are dropped after StallTimeout, with their
	// Readers and wants.
	poll.Until(t, 60*time.Second, "the stalled streams dropped", func() bool { return httpReaders() == 0 })
	poll.Until(t, 10*time.Second, "no want left", func() bool { return len(tr.w.Wants()) == 0 })
	// A dropped client sees its connection end before the file's end.
	c := conns[0]
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	n, err := io.Copy(io.Discard, bufio.NewReader(c))
	if err != nil || n >= fileLen {
		t.Errorf("a stalled client read %d more bytes, %v: want the connection closed early", n, err)
	}
	t.Logf("heap in use after the drop: %s KiB", strconv.FormatUint(heapInuse()>>10, 10))
}

// TestMaxStreams fills the server's streams with responses waiting for a
// piece nobody has: one more is refused with 503 and Retry-After, and a
// stream that ends makes room again.
func TestMaxStreams(t *testing.T) {
	tr := newTorrent(t, 16<<10, testFiles, testOrder) // nothing verified
	srv := httptest.NewServer(httpserve.New(httpserve.Config{Torrents: httpserve.Static{tr.served()}, MaxStreams: 2}))
	defer srv.Close()
	url := srv.URL + "/t/" + tr.ih.String() + "/b.txt"
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // before the Wait: the streams end
	first, firstCancel := context.WithCancel(ctx)
	for _, c := range []context.Context{first, ctx} {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(c, http.MethodGet, url, nil)
			if resp, err := srv.Client().Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	poll.Until(t, 10*time.Second, "two streams waiting", func() bool { return len(tr.w.Wants()) >= 2 })
	resp, err := srv.Client().Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("a third stream: %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	firstCancel()
	poll.Until(t, 10*time.Second, "a stream served again after one ended", func() bool {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodHead, url, nil)
		resp, err := srv.Client().Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}
