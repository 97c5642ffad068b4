package utp

import (
	"bytes"
	"crypto/rand"
	"expvar"
	"io"
	"net"
	"testing"
	"time"

	"btfs/internal/poll"
)

// TestLaggingReaderResumes: a reader that reads nothing until the sender
// has stopped on the closed window, then reads with buffers of different
// sizes (smaller than a packet, a typical 32 KiB, one larger than
// libutp's whole buffer), gets everything well before libutp's 29 s
// keep-alive would have reopened the window. Without the nudges the
// transfer stood still after the first buffer's worth.
func TestLaggingReaderResumes(t *testing.T) {
	tests := []struct {
		name string
		buf  int
	}{
		{"small reads", 1000},
		{"32 KiB reads", 32 << 10},
		{"reads larger than the window", 2 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := listen(t, "127.0.0.1:0", Config{})
			b := listen(t, "127.0.0.1:0", Config{})
			out, in := pair(t, a, b)
			const size = 6 << 20
			data := make([]byte, size)
			rand.Read(data)
			wrote := make(chan error, 1)
			go func() {
				out.SetWriteDeadline(time.Now().Add(wait))
				_, err := out.Write(data)
				wrote <- err
			}()
			waitForSilence(t)
			// 15 s tells a transfer from the 29 s stall, on any machine.
			in.SetReadDeadline(time.Now().Add(15 * time.Second))
			got := make([]byte, 0, size)
			buf := make([]byte, tt.buf)
			for len(got) < size {
				n, err := in.Read(buf)
				got = append(got, buf[:n]...)
				if err != nil {
					t.Fatalf("read %d of %d bytes after the window closed: %v", len(got), size, err)
				}
			}
			if !bytes.Equal(got, data) {
				t.Fatal("the bytes read differ from those written")
			}
			if err := <-wrote; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// waitForSilence waits until no uTP packet has reached any socket of the
// process for half a second: the sender stands on a closed window.
func waitForSilence(t *testing.T) {
	t.Helper()
	received := expvar.Get("utpSocketUtpPacketsReceived").(*expvar.Int)
	last, since := int64(-1), time.Now()
	poll.Until(t, wait, "the sender to stop on the closed window", func() bool {
		if n := received.Value(); n != last {
			last, since = n, time.Now()
		}
		return time.Since(since) > 500*time.Millisecond
	})
}

func TestSelfAddr(t *testing.T) {
	tests := []struct {
		bound string
		want  string
	}{
		{"0.0.0.0:7000", "127.0.0.1:7000"},
		{"[::]:7000", "127.0.0.1:7000"},
		{"127.0.0.5:7000", "127.0.0.5:7000"},
		{"[::1]:7000", "[::1]:7000"},
	}
	for _, tt := range tests {
		a, err := net.ResolveUDPAddr("udp", tt.bound)
		if err != nil {
			t.Fatal(err)
		}
		if got := selfAddr(a).String(); got != tt.want {
			t.Errorf("selfAddr(%s) = %s, want %s", tt.bound, got, tt.want)
		}
	}
}

var _ io.Reader = (*conn)(nil)

// TestLagNudges: which reads ask for a nudge. A read that filled its
// buffer may have drained libutp's exactly, so one follows it within
// trailingNudge; a read that drained the buffer after being behind asks
// at once; a reader that keeps up never asks.
func TestLagNudges(t *testing.T) {
	type read struct{ n, size int }
	tests := []struct {
		name     string
		reads    []read
		now      bool // a nudge is asked for by the last read itself
		trailing bool // one comes after trailingNudge
	}{
		{"keeping up", []read{{100, 32 << 10}, {5000, 32 << 10}}, false, false},
		{"nothing read", []read{{0, 32 << 10}}, false, false},
		{"drained after behind", []read{{32 << 10, 32 << 10}, {100, 32 << 10}}, true, false},
		{"a large drain", []read{{lagBytes, 2 << 20}}, true, false},
		{"full read, then nothing", []read{{32 << 10, 32 << 10}}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Socket{nudges: make(chan struct{}, 1)}
			var l lag
			defer l.stop()
			for _, r := range tt.reads {
				l.read(s, r.n, r.size)
			}
			select {
			case <-s.nudges:
				if !tt.now {
					t.Fatal("nudged at once")
				}
			default:
				if tt.now {
					t.Fatal("no nudge at once")
				}
			}
			if tt.trailing {
				poll.Until(t, wait, "the trailing nudge", func() bool { return len(s.nudges) == 1 })
				return
			}
			l.mu.Lock()
			armed := l.timer != nil && l.behind
			l.mu.Unlock()
			if armed {
				t.Fatal("a trailing nudge is armed")
			}
		})
	}
}
