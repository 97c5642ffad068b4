package wire

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"btfs/metainfo"
)

// connPair returns two connected ends: an in-memory pipe or a real TCP
// connection on 127.0.0.1. Both are closed at cleanup.
type connPair func(t *testing.T) (a, b net.Conn)

func pipePair(t *testing.T) (net.Conn, net.Conn) {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		c   net.Conn
		err error
	}
	accepted := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		accepted <- result{c, err}
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-accepted
	if r.err != nil {
		a.Close()
		t.Fatal(r.err)
	}
	t.Cleanup(func() { a.Close(); r.c.Close() })
	return a, r.c
}

var transports = []struct {
	name string
	pair connPair
}{
	{"pipe", pipePair},
	{"tcp", tcpPair},
}

func testHandshake(ih byte, peer byte, ext bool) Handshake {
	var h Handshake
	for i := range h.InfoHash {
		h.InfoHash[i] = ih
	}
	for i := range h.PeerID {
		h.PeerID[i] = peer
	}
	h.Reserved.SetFast()
	if ext {
		h.Reserved.SetExtensions()
	}
	return h
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// async runs f in a goroutine and returns a function that waits for it.
func async[T any](f func() (T, error)) func() (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := f()
		ch <- result{v, err}
	}()
	return func() (T, error) {
		r := <-ch
		return r.v, r.err
	}
}

func TestInitiateAccept(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			dialer, listener := tr.pair(t)
			ctx := testCtx(t)
			ours := testHandshake(0xaa, 'd', true)
			theirs := testHandshake(0xaa, 'l', false)
			lookups := 0
			accept := async(func() ([2]Handshake, error) {
				peer, mine, err := Accept(ctx, listener, func(ih metainfo.Hash) (Handshake, bool) {
					lookups++
					return theirs, ih == theirs.InfoHash
				})
				return [2]Handshake{peer, mine}, err
			})
			gotPeer, err := Initiate(ctx, dialer, ours)
			if err != nil {
				t.Fatalf("Initiate: %v", err)
			}
			acc, err := accept()
			if err != nil {
				t.Fatalf("Accept: %v", err)
			}
			if gotPeer != theirs {
				t.Errorf("dialler saw %+v, want %+v", gotPeer, theirs)
			}
			if acc[0] != ours || acc[1] != theirs || lookups != 1 {
				t.Errorf("listener saw %+v and answered %+v after %d lookups", acc[0], acc[1], lookups)
			}
			if !gotPeer.Reserved.SupportsFast() || gotPeer.Reserved.SupportsExtensions() {
				t.Errorf("reserved bits of the listener: %x", gotPeer.Reserved)
			}
			// The connection is clean for messages afterwards, both ways.
			go func() {
				w := NewWriter(dialer)
				w.WriteMessage(Message{ID: Interested})
				w.Flush()
			}()
			m, err := NewReader(listener, Limits{}).ReadMessage()
			if err != nil || m.ID != Interested {
				t.Fatalf("first message: %v, %v", m, err)
			}
		})
	}
}

func TestHandshakeSequential(t *testing.T) {
	// The plain functions, one side at a time: a dialler that writes then
	// reads, against a listener that reads it all and then writes.
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			a, b := tr.pair(t)
			ctx := testCtx(t)
			ha, hb := testHandshake(1, 'a', true), testHandshake(1, 'b', false)
			hb.Reserved.SetDHT()
			wait := async(func() (Handshake, error) {
				got, err := ReadHandshake(ctx, b)
				if err != nil {
					return got, err
				}
				return got, WriteHandshake(ctx, b, hb)
			})
			if err := WriteHandshake(ctx, a, ha); err != nil {
				t.Fatal(err)
			}
			got, err := ReadHandshake(ctx, a)
			if err != nil || got != hb {
				t.Fatalf("a read %+v, %v; want %+v", got, err, hb)
			}
			if got, err := wait(); err != nil || got != ha {
				t.Fatalf("b read %+v, %v; want %+v", got, err, ha)
			}
			if !got.Reserved.SupportsDHT() {
				t.Fatal("DHT bit lost")
			}
		})
	}
}

func TestReadHandshakeStartThenPeerID(t *testing.T) {
	a, b := tcpPair(t)
	ctx := testCtx(t)
	h := testHandshake(7, 'x', true)
	if err := WriteHandshake(ctx, a, h); err != nil {
		t.Fatal(err)
	}
	start, err := ReadHandshakeStart(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if start.InfoHash != h.InfoHash || start.Reserved != h.Reserved || start.PeerID != ([20]byte{}) {
		t.Fatalf("start %+v", start)
	}
	id, err := ReadPeerID(ctx, b)
	if err != nil || id != h.PeerID {
		t.Fatalf("peer id %q, %v", id, err)
	}
}

func TestHandshakeRejects(t *testing.T) {
	good := testHandshake(0xaa, 'p', false)
	goodBytes := good.Bytes()
	badProto := goodBytes
	badProto[19] = 'X'
	badLen := goodBytes
	badLen[0] = 18
	other := testHandshake(0xbb, 'p', false).Bytes()
	tests := []struct {
		name string
		send []byte // what the remote side sends, then it closes
		run  func(ctx context.Context, c net.Conn) error
		want error
	}{
		{"initiate: wrong protocol string", badProto[:], initiate, ErrBadProtocol},
		{"initiate: wrong length byte", badLen[:], initiate, ErrBadProtocol},
		{"initiate: http", []byte("GET /announce HTTP/1.1\r\nHost: x\r\n\r\n" + string(make([]byte, 40))), initiate, ErrBadProtocol},
		{"initiate: wrong info-hash", other[:], initiate, ErrInfoHashMismatch},
		{"initiate: truncated", goodBytes[:60], initiate, io.ErrUnexpectedEOF},
		{"initiate: truncated in protocol", goodBytes[:5], initiate, io.ErrUnexpectedEOF},
		{"accept: unknown info-hash", other[:], accept, ErrUnknownInfoHash},
		{"accept: wrong protocol string", badProto[:], accept, ErrBadProtocol},
		{"accept: truncated peer id", goodBytes[:50], accept, io.ErrUnexpectedEOF},
		{"read: truncated", goodBytes[:30], readHS, io.ErrUnexpectedEOF},
	}
	for _, tc := range tests {
		for _, tr := range transports {
			t.Run(tc.name+"/"+tr.name, func(t *testing.T) {
				c, remote := tr.pair(t)
				// The remote sends its bytes and reads whatever we send,
				// then goes away.
				done, copied := make(chan struct{}), make(chan struct{})
				go func() {
					defer close(copied)
					io.Copy(io.Discard, remote)
				}()
				go func() {
					defer close(done)
					remote.Write(tc.send)
					if tcp, ok := remote.(*net.TCPConn); ok {
						tcp.CloseWrite() // EOF for us, but keep reading: no RST
					} else {
						remote.Close()
					}
				}()
				err := tc.run(testCtx(t), c)
				c.Close() // unblocks the remote's write on a pipe, ends its copy
				<-done
				<-copied
				if !errors.Is(err, tc.want) {
					t.Fatalf("err %v, want %v", err, tc.want)
				}
			})
		}
	}
}

func initiate(ctx context.Context, c net.Conn) error {
	_, err := Initiate(ctx, c, testHandshake(0xaa, 'i', false))
	return err
}

func accept(ctx context.Context, c net.Conn) error {
	_, _, err := Accept(ctx, c, func(ih metainfo.Hash) (Handshake, bool) {
		h := testHandshake(0xaa, 'a', false)
		return h, ih == h.InfoHash
	})
	return err
}

func readHS(ctx context.Context, c net.Conn) error {
	_, err := ReadHandshake(ctx, c)
	return err
}

func TestAcceptUnknownSendsNothing(t *testing.T) {
	c, remote := tcpPair(t)
	other := testHandshake(0xbb, 'p', false).Bytes()
	// Only the part Accept reads: nothing is left unread when it closes,
	// so the close is a FIN, not an RST that could discard what it sent.
	remote.Write(other[:handshakeStartLen])
	err := accept(testCtx(t), c)
	if !errors.Is(err, ErrUnknownInfoHash) {
		t.Fatalf("err %v", err)
	}
	c.Close()
	got, err := io.ReadAll(remote)
	if err != nil || len(got) != 0 {
		t.Fatalf("the listener sent %d bytes (%v) to a peer of an unknown torrent", len(got), err)
	}
}

func TestHandshakeContext(t *testing.T) {
	t.Run("deadline", func(t *testing.T) {
		for _, tr := range transports {
			t.Run(tr.name, func(t *testing.T) {
				c, remote := tr.pair(t)
				go io.Copy(io.Discard, remote) // reads, never answers
				ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
				defer cancel()
				_, err := Initiate(ctx, c, testHandshake(1, 'i', false))
				if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("err %v, want the context's and the connection's deadline", err)
				}
			})
		}
	})
	t.Run("cancel", func(t *testing.T) {
		for _, tr := range transports {
			t.Run(tr.name, func(t *testing.T) {
				c, remote := tr.pair(t)
				go io.Copy(io.Discard, remote)
				ctx, cancel := context.WithCancel(t.Context())
				wait := async(func() (Handshake, error) { return ReadHandshake(ctx, c) })
				cancel()
				if _, err := wait(); !errors.Is(err, context.Canceled) {
					t.Fatalf("err %v, want context.Canceled", err)
				}
			})
		}
	})
	t.Run("already cancelled", func(t *testing.T) {
		c, _ := pipePair(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := WriteHandshake(ctx, c, Handshake{}); !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v, want context.Canceled", err)
		}
	})
	t.Run("deadline cleared after success", func(t *testing.T) {
		a, b := tcpPair(t)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		h := testHandshake(1, 'x', false)
		if err := WriteHandshake(ctx, a, h); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadHandshake(ctx, b); err != nil {
			t.Fatal(err)
		}
		cancel() // must not reach the connection any more
		go a.Write([]byte{0, 0, 0, 0})
		if m, err := NewReader(b, Limits{}).ReadMessage(); err != nil || !m.KeepAlive {
			t.Fatalf("after the handshake: %v, %v", m, err)
		}
	})
}

func TestReservedBits(t *testing.T) {
	tests := []struct {
		name       string
		set        func(*Reserved)
		want       Reserved
		ext, f, dh bool
	}{
		{"none", func(*Reserved) {}, Reserved{}, false, false, false},
		{"extensions", (*Reserved).SetExtensions, Reserved{5: 0x10}, true, false, false},
		{"fast", (*Reserved).SetFast, Reserved{7: 0x04}, false, true, false},
		{"dht", (*Reserved).SetDHT, Reserved{7: 0x01}, false, false, true},
		{"all", func(r *Reserved) { r.SetDHT(); r.SetFast(); r.SetExtensions() }, Reserved{5: 0x10, 7: 0x05}, true, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r Reserved
			tc.set(&r)
			if r != tc.want {
				t.Fatalf("bytes %x, want %x", r, tc.want)
			}
			if r.SupportsExtensions() != tc.ext || r.SupportsFast() != tc.f || r.SupportsDHT() != tc.dh {
				t.Fatalf("Supports* = %v %v %v", r.SupportsExtensions(), r.SupportsFast(), r.SupportsDHT())
			}
		})
	}
	// Other clients' bits do not confuse ours.
	if (Reserved{0xff, 0xff, 0xff, 0xff, 0xff, 0xef, 0xff, 0xfa}).SupportsExtensions() {
		t.Fatal("extension bit read from the wrong place")
	}
}

func TestHandshakeBytes(t *testing.T) {
	h := Handshake{InfoHash: metainfo.Hash{0: 0x11, 19: 0x22}, PeerID: [20]byte{0: '-', 19: 'z'}}
	h.Reserved.SetExtensions()
	b := h.Bytes()
	want := append([]byte("\x13BitTorrent protocol\x00\x00\x00\x00\x00\x10\x00\x00"), h.InfoHash[:]...)
	want = append(want, h.PeerID[:]...)
	if !bytes.Equal(b[:], want) {
		t.Fatalf("wire form\n%q\nwant\n%q", b, want)
	}
}

func TestNewPeerID(t *testing.T) {
	a, b := NewPeerID(), NewPeerID()
	if string(a[:8]) != "-BT0001-" || string(b[:8]) != "-BT0001-" {
		t.Fatalf("prefixes %q %q", a[:8], b[:8])
	}
	if a == b {
		t.Fatal("two peer IDs are equal")
	}
}
