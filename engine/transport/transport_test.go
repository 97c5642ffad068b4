package transport

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"btfs/engine/mse"
	"btfs/engine/wire"
	"btfs/internal/poll"
	"btfs/metainfo"
)

var ih = metainfo.Hash{0xaa, 1, 2}

func handshake(id byte) wire.Handshake {
	h := wire.Handshake{InfoHash: ih, PeerID: [20]byte{id}}
	h.Reserved.SetExtensions()
	return h
}

// server accepts connections with tr until the test ends, sending each
// result on the returned channel and echoing what the peer sends.
func server(t *testing.T, tr *Transport) (netip.AddrPort, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	results := make(chan error, 16)
	ours := handshake('s')
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				c, err := tr.Accept(context.Background(), conn, func(h metainfo.Hash) (wire.Handshake, bool) {
					return ours, h == ih
				}, slices.Values([][20]byte{{9}, ih}))
				results <- err
				if err != nil {
					conn.Close()
					return
				}
				defer c.Close()
				io.Copy(c, c) // echo
			}()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String()), results
}

// TestPolicies dials between every pair of policies and checks the
// outcome, the encryption, that bytes flow, and the counters.
func TestPolicies(t *testing.T) {
	for _, tc := range []struct {
		dial, accept Policy
		want         mse.Method // 0 with ok: plain
		ok           bool
		dialStats    Stats // after two dials
		acceptStats  Stats
	}{
		{Prefer, Prefer, mse.RC4, true, Stats{EncryptedOut: 2}, Stats{EncryptedIn: 2}},
		{Prefer, Require, mse.RC4, true, Stats{EncryptedOut: 2}, Stats{EncryptedIn: 2}},
		{Require, Prefer, mse.RC4, true, Stats{EncryptedOut: 2}, Stats{EncryptedIn: 2}},
		{Require, Require, mse.RC4, true, Stats{EncryptedOut: 2}, Stats{EncryptedIn: 2}},
		// The fallback happens once: the second dial goes plain at once.
		{Prefer, Off, 0, true, Stats{PlainOut: 2, Fallbacks: 1}, Stats{PlainIn: 2, RefusedEncrypted: 1}},
		{Off, Prefer, 0, true, Stats{PlainOut: 2}, Stats{PlainIn: 2}},
		{Off, Off, 0, true, Stats{PlainOut: 2}, Stats{PlainIn: 2}},
		{Require, Off, 0, false, Stats{NoEncryption: 2}, Stats{RefusedEncrypted: 2}},
		{Off, Require, 0, false, Stats{PlainFailed: 2}, Stats{NoEncryption: 2}},
	} {
		t.Run(tc.dial.String()+"-"+tc.accept.String(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			acc := New(Config{Policy: tc.accept})
			addr, results := server(t, acc)
			dialer := New(Config{Policy: tc.dial})
			for range 2 {
				c, err := dialer.Dial(ctx, addr, handshake('d'))
				if !tc.ok {
					if err == nil {
						c.Close()
						t.Fatal("dial succeeded")
					}
					<-results
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				if c.Encryption != tc.want || c.Peer.PeerID[0] != 's' || c.Network != "tcp" || !c.Outgoing {
					t.Fatalf("conn %+v", c)
				}
				msg := []byte("ping through the layers")
				if _, err := c.Write(msg); err != nil {
					t.Fatal(err)
				}
				got := make([]byte, len(msg))
				if _, err := io.ReadFull(c, got); err != nil || string(got) != string(msg) {
					t.Fatalf("echo %q, %v", got, err)
				}
				c.Close()
				// The accepted side's outcome for the successful attempt
				// (a fallback leaves a refused one first).
				for err := range results {
					if err == nil {
						break
					}
					if tc.dial != Prefer || !errors.Is(err, ErrEncryptedRefused) {
						t.Fatalf("accept: %v", err)
					}
				}
			}
			if st := dialer.Stats(); st != tc.dialStats {
				t.Errorf("dialler stats %+v, want %+v", st, tc.dialStats)
			}
			if st := acc.Stats(); st != tc.acceptStats {
				t.Errorf("acceptor stats %+v, want %+v", st, tc.acceptStats)
			}
		})
	}
}

// TestWrongTorrentUnderMSE: an MSE handshake for one torrent followed by
// a BitTorrent handshake for another is refused.
func TestWrongTorrentUnderMSE(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	acc := New(Config{})
	addr, results := server(t, acc)
	conn, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	other := wire.Handshake{InfoHash: metainfo.Hash{9}}
	hs := other.Bytes()
	mc, err := mse.Initiate(ctx, conn, ih, mse.RC4, hs[:]) // MSE names ih, the handshake 09…
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wire.ReadHandshake(ctx, mc); err == nil {
		t.Fatal("the server answered a handshake for another torrent")
	}
	if err := <-results; !errors.Is(err, wire.ErrUnknownInfoHash) {
		t.Fatalf("accept: %v", err)
	}
}

func TestParsePolicy(t *testing.T) {
	for _, p := range []Policy{Prefer, Require, Off} {
		if got, err := ParsePolicy(p.String()); err != nil || got != p {
			t.Errorf("ParsePolicy(%q) = %v, %v", p, got, err)
		}
	}
	if _, err := ParsePolicy("forced"); err == nil {
		t.Error("ParsePolicy(forced) succeeded")
	}
}

// TestPolicyFailuresLogged: connections lost to the policy are logged,
// once a minute at most, with the counts.
func TestPolicyFailuresLogged(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var buf syncBuf
	acc := New(Config{Policy: Require, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	addr, results := server(t, acc)
	dialer := New(Config{Policy: Off})
	for range 3 {
		if c, err := dialer.Dial(ctx, addr, handshake('d')); err == nil {
			c.Close()
			t.Fatal("a plain dial to a server requiring encryption succeeded")
		}
		if err := <-results; !errors.Is(err, ErrPlainRefused) {
			t.Fatalf("accept: %v", err)
		}
	}
	out := buf.String()
	if n := strings.Count(out, "connections lost to the encryption policy"); n != 1 || !strings.Contains(out, "peer_without_encryption=1") {
		t.Fatalf("log (want one line, counting the first failure):\n%s", out)
	}
	if st := acc.Stats(); st.NoEncryption != 3 {
		t.Fatalf("stats %+v", st)
	}
}

// syncBuf is a log destination safe for the server's goroutines.
type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestAcceptCap: with MaxAccepting handshakes stalled, the next is refused
// at once; once they end, handshakes are taken again.
func TestAcceptCap(t *testing.T) {
	tr := New(Config{MaxAccepting: 2})
	serve := func(h metainfo.Hash) (wire.Handshake, bool) { return handshake('s'), h == ih }
	ihs := slices.Values([][20]byte{ih})
	errs := make(chan error, 2)
	var peers []net.Conn
	for range 2 {
		a, b := net.Pipe() // the peer sends nothing: the handshake stalls
		peers = append(peers, a)
		t.Cleanup(func() { a.Close(); b.Close() })
		go func() {
			_, err := tr.Accept(context.Background(), b, serve, ihs)
			errs <- err
		}()
	}
	poll.Until(t, 10*time.Second, "two handshakes under way", func() bool { return len(tr.accepting) == 2 })
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, err := tr.Accept(context.Background(), b, serve, ihs); !errors.Is(err, ErrBusy) {
		t.Fatalf("third handshake: %v, want ErrBusy", err)
	}
	for _, p := range peers {
		p.Close()
	}
	for range 2 {
		if err := <-errs; err == nil {
			t.Fatal("a handshake from a closed peer succeeded")
		}
	}
	addr, results := server(t, tr)
	c, err := New(Config{}).Dial(context.Background(), addr, handshake('d'))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := <-results; err != nil {
		t.Fatal(err)
	}
}
