package mse

import (
	"bytes"
	"context"
	stdrc4 "crypto/rc4"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"testing"
	"time"

	"btfs/internal/poll"
)

var (
	ihA = [20]byte{1, 2, 3}
	ihB = [20]byte{4, 5, 6}
	ihC = [20]byte{7, 8, 9}
)

// tcpPair returns the two ends of a loopback TCP connection, closed in
// cleanup.
func tcpPair(t testing.TB) (dialled, accepted net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		a.Close()
		t.Fatal(r.err)
	}
	t.Cleanup(func() { a.Close(); r.c.Close() })
	return a, r.c
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestHandshake runs both sides against each other over TCP for every
// combination of what is provided and allowed, and checks the chosen
// method, the initial payload and the payload in both directions.
func TestHandshake(t *testing.T) {
	for _, tc := range []struct {
		name           string
		provide, allow Method
		want           Method // 0: no method in common
	}{
		{"both-both", Both, Both, RC4},
		{"both-plain", Both, Plaintext, Plaintext},
		{"plain-both", Plaintext, Both, Plaintext},
		{"rc4-both", RC4, Both, RC4},
		{"rc4-rc4", RC4, RC4, RC4},
		{"plain-rc4", Plaintext, RC4, 0},
		{"rc4-plain", RC4, Plaintext, 0},
		{"extra-bits", Both | 0x80, RC4, RC4},
	} {
		for _, iaLen := range []int{0, 68, MaxIA} {
			t.Run(tc.name+"/ia"+string(rune('0'+iaLen%10)), func(t *testing.T) {
				ctx := ctxT(t, 20*time.Second)
				a, b := tcpPair(t)
				ia := make([]byte, iaLen)
				for i := range ia {
					ia[i] = byte(i * 7)
				}
				type res struct {
					c   *Conn
					err error
				}
				ch := make(chan res, 1)
				go func() {
					c, err := Accept(ctx, b, nil, slices.Values([][20]byte{ihA, ihB, ihC}), tc.allow)
					if err != nil {
						b.Close() // the initiator sees the end
					}
					ch <- res{c, err}
				}()
				ca, errA := Initiate(ctx, a, ihB, tc.provide, ia)
				rb := <-ch
				if tc.want == 0 {
					if !errors.Is(rb.err, ErrNoMethod) {
						t.Fatalf("accept: %v, want ErrNoMethod", rb.err)
					}
					if errA == nil {
						t.Fatal("initiate succeeded without a method in common")
					}
					return
				}
				if errA != nil || rb.err != nil {
					t.Fatalf("initiate: %v, accept: %v", errA, rb.err)
				}
				cb := rb.c
				if ca.Method() != tc.want || cb.Method() != tc.want {
					t.Fatalf("methods %v/%v, want %v", ca.Method(), cb.Method(), tc.want)
				}
				if cb.SKey() != ihB || ca.SKey() != ihB {
					t.Fatalf("skey %x / %x", cb.SKey(), ca.SKey())
				}
				// B reads IA then A's payload; A reads B's payload.
				msgA := bytes.Repeat([]byte("from A "), 10000)
				msgB := bytes.Repeat([]byte("from B "), 10000)
				go func() { ca.Write(msgA) }()
				go func() { cb.Write(msgB) }()
				got := make([]byte, len(ia)+len(msgA))
				if _, err := io.ReadFull(cb, got); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got[:len(ia)], ia) || !bytes.Equal(got[len(ia):], msgA) {
					t.Fatal("B read wrong bytes")
				}
				got = make([]byte, len(msgB))
				if _, err := io.ReadFull(ca, got); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, msgB) {
					t.Fatal("A read wrong bytes")
				}
			})
		}
	}
}

// TestUnknownSKey: a peer asking for a torrent we do not serve is refused.
func TestUnknownSKey(t *testing.T) {
	ctx := ctxT(t, 20*time.Second)
	a, b := tcpPair(t)
	errc := make(chan error, 1)
	go func() {
		_, err := Accept(ctx, b, nil, slices.Values([][20]byte{ihA}), Both)
		b.Close()
		errc <- err
	}()
	if _, err := Initiate(ctx, a, ihC, Both, nil); err == nil {
		t.Fatal("initiate succeeded for an unknown torrent")
	}
	if err := <-errc; !errors.Is(err, ErrUnknownSKey) {
		t.Fatalf("accept: %v, want ErrUnknownSKey", err)
	}
}

// scripted is an initiator written by hand from the specification (not
// with this package's initiate), so that the tests can send what a
// hostile or broken peer sends after a correct key exchange.
type scripted struct {
	conn net.Conn
	s    [KeyLen]byte
	enc  interface{ XORKeyStream(dst, src []byte) }
	dec  interface{ XORKeyStream(dst, src []byte) }
}

// startScripted sends Ya and PadA and reads Yb: S is then known.
func startScripted(t *testing.T, conn net.Conn, skey [20]byte, padA int) *scripted {
	t.Helper()
	key, err := newKeyPair(rand.NewChaCha8([32]byte{9}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(append(key.y[:], make([]byte, padA)...)); err != nil {
		t.Fatal(err)
	}
	var yb [KeyLen]byte
	if _, err := io.ReadFull(conn, yb[:]); err != nil {
		t.Fatal(err)
	}
	s, err := key.secret(yb[:])
	if err != nil {
		t.Fatal(err)
	}
	return &scripted{conn: conn, s: s, enc: newCipher("keyA", s[:], skey), dec: newCipher("keyB", s[:], skey)}
}

// step3 sends the hashes and the encrypted header with the given fields
// (padClaim is the len(PadC) claimed, padC the bytes actually sent).
func (p *scripted) step3(t *testing.T, skey [20]byte, vc [8]byte, provide uint32, padClaim uint16, padC int, ia []byte) {
	t.Helper()
	req1 := hash([]byte("req1"), p.s[:])
	req2 := hash([]byte("req2"), skey[:])
	req3 := hash([]byte("req3"), p.s[:])
	msg := append([]byte{}, req1[:]...)
	for i := range req2 {
		msg = append(msg, req2[i]^req3[i])
	}
	enc := append([]byte{}, vc[:]...)
	enc = binary.BigEndian.AppendUint32(enc, provide)
	enc = binary.BigEndian.AppendUint16(enc, padClaim)
	enc = append(enc, make([]byte, padC)...)
	enc = binary.BigEndian.AppendUint16(enc, uint16(len(ia)))
	enc = append(enc, ia...)
	p.enc.XORKeyStream(enc, enc)
	if _, err := p.conn.Write(append(msg, enc...)); err != nil {
		t.Fatal(err)
	}
}

// TestAcceptHostile: each malformed initiator ends in an error (and so a
// dropped connection), never in a long wait or a large read.
func TestAcceptHostile(t *testing.T) {
	for _, tc := range []struct {
		name string
		send func(t *testing.T, c net.Conn) // plays the initiator
		want error
	}{
		{"garbage after the key", func(t *testing.T, c net.Conn) {
			startScripted(t, c, ihA, 0)
			c.Write(bytes.Repeat([]byte{0xAB}, 4096))
		}, ErrNoSync},
		{"pad claim 65535", func(t *testing.T, c net.Conn) {
			p := startScripted(t, c, ihA, 100)
			p.step3(t, ihA, [8]byte{}, uint32(Both), 65535, 0, nil)
			c.Write(make([]byte, 70000)) // what the claim asks for: not read
		}, ErrPadTooLong},
		{"pad claim 513", func(t *testing.T, c net.Conn) {
			p := startScripted(t, c, ihA, MaxPad)
			p.step3(t, ihA, [8]byte{}, uint32(Both), MaxPad+1, MaxPad+1, nil)
		}, ErrPadTooLong},
		{"padA too long", func(t *testing.T, c net.Conn) {
			p := startScripted(t, c, ihA, MaxPad+1)
			p.step3(t, ihA, [8]byte{}, uint32(Both), 0, 0, nil)
		}, ErrNoSync},
		{"bad vc", func(t *testing.T, c net.Conn) {
			p := startScripted(t, c, ihA, 0)
			p.step3(t, ihA, [8]byte{1}, uint32(Both), 0, 0, nil)
		}, ErrBadVC},
		{"no method", func(t *testing.T, c net.Conn) {
			p := startScripted(t, c, ihA, 0)
			p.step3(t, ihA, [8]byte{}, 0x40, 0, 0, nil)
		}, ErrNoMethod},
		{"unknown torrent", func(t *testing.T, c net.Conn) {
			p := startScripted(t, c, ihC, 0)
			p.step3(t, ihC, [8]byte{}, uint32(Both), 0, 0, nil)
		}, ErrUnknownSKey},
		{"key zero", func(t *testing.T, c net.Conn) { c.Write(make([]byte, KeyLen)) }, ErrBadKey},
		{"key p", func(t *testing.T, c net.Conn) {
			var y [KeyLen]byte
			c.Write(prime.FillBytes(y[:]))
		}, ErrBadKey},
		{"key p-1", func(t *testing.T, c net.Conn) {
			var y [KeyLen]byte
			c.Write(primeLess1.FillBytes(y[:]))
		}, ErrBadKey},
		{"short key then close", func(t *testing.T, c net.Conn) { c.Write(make([]byte, 50)); c.Close() }, io.ErrUnexpectedEOF},
		{"stall after the key", func(t *testing.T, c net.Conn) { startScripted(t, c, ihA, 10) }, context.DeadlineExceeded},
		{"stall mid-header", func(t *testing.T, c net.Conn) {
			p := startScripted(t, c, ihA, 10)
			req1 := hash([]byte("req1"), p.s[:])
			c.Write(req1[:])
		}, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := tcpPair(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			errc := make(chan error, 1)
			go func() {
				_, err := Accept(ctx, b, nil, slices.Values([][20]byte{ihA, ihB}), Both)
				b.Close()
				errc <- err
			}()
			tc.send(t, a)
			if err := <-errc; !errors.Is(err, tc.want) {
				t.Fatalf("accept: %v, want %v", err, tc.want)
			}
		})
	}
}

// scriptedB is a receiver written by hand: it reads Ya, sends Yb and
// PadB, then whatever the case sends as step 4 (after reading step 3).
func scriptedB(t *testing.T, conn net.Conn, skey [20]byte, padB int, step4 func(p *scripted)) {
	key, err := newKeyPair(rand.NewChaCha8([32]byte{7}))
	if err != nil {
		t.Error(err)
		return
	}
	var ya [KeyLen]byte
	if _, err := io.ReadFull(conn, ya[:]); err != nil {
		t.Error(err)
		return
	}
	s, err := key.secret(ya[:])
	if err != nil {
		t.Error(err)
		return
	}
	conn.Write(append(key.y[:], make([]byte, padB)...))
	step4(&scripted{conn: conn, s: s, enc: newCipher("keyB", s[:], skey), dec: newCipher("keyA", s[:], skey)})
}

// TestInitiateHostile: a receiver that breaks the rules ends the
// handshake with an error.
func TestInitiateHostile(t *testing.T) {
	header := func(vc [8]byte, sel uint32, padClaim uint16, pad int) []byte {
		b := append([]byte{}, vc[:]...)
		b = binary.BigEndian.AppendUint32(b, sel)
		b = binary.BigEndian.AppendUint16(b, padClaim)
		return append(b, make([]byte, pad)...)
	}
	for _, tc := range []struct {
		name  string
		padB  int
		step4 func(p *scripted)
		want  error
	}{
		{"garbage", 0, func(p *scripted) { p.conn.Write(bytes.Repeat([]byte{0x55}, 4096)) }, ErrNoSync},
		{"padB too long", MaxPad + 1, func(p *scripted) {
			b := header([8]byte{}, uint32(RC4), 0, 0)
			p.enc.XORKeyStream(b, b)
			p.conn.Write(b)
		}, ErrNoSync},
		{"pad claim 65535", 0, func(p *scripted) {
			b := header([8]byte{}, uint32(RC4), 65535, 0)
			p.enc.XORKeyStream(b, b)
			p.conn.Write(append(b, make([]byte, 70000)...))
		}, ErrPadTooLong},
		{"selects both", 0, func(p *scripted) {
			b := header([8]byte{}, uint32(Both), 0, 0)
			p.enc.XORKeyStream(b, b)
			p.conn.Write(b)
		}, ErrNoMethod},
		{"selects what we did not provide", 0, func(p *scripted) {
			b := header([8]byte{}, uint32(Plaintext), 0, 0)
			p.enc.XORKeyStream(b, b)
			p.conn.Write(b)
		}, ErrNoMethod},
		{"stall", 10, func(p *scripted) {}, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := tcpPair(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			done := make(chan struct{})
			go func() {
				defer close(done)
				scriptedB(t, b, ihA, tc.padB, tc.step4)
			}()
			_, err := Initiate(ctx, a, ihA, RC4, []byte("ia"))
			a.Close()
			<-done
			if !errors.Is(err, tc.want) {
				t.Fatalf("initiate: %v, want %v", err, tc.want)
			}
		})
	}
}

// TestCancel: cancelling the context interrupts a handshake at once.
func TestCancel(t *testing.T) {
	a, _ := tcpPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := Initiate(ctx, a, ihA, Both, nil)
		errc <- err
	}()
	cancel()
	var err error
	poll.Until(t, 10*time.Second, "the handshake returns", func() bool {
		select {
		case err = <-errc:
			return true
		default:
			return false
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
}

// TestShortWriteBreaks: after a failed write the cipher is out of step,
// so every later write fails.
func TestShortWriteBreaks(t *testing.T) {
	ctx := ctxT(t, 10*time.Second)
	a, b := tcpPair(t)
	go func() {
		if c, err := Accept(ctx, b, nil, slices.Values([][20]byte{ihA}), Both); err == nil {
			_ = c // never read: A's writes fill the buffers
		}
	}()
	c, err := Initiate(ctx, a, ihA, RC4, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	big := make([]byte, 64<<20)
	if _, err := c.Write(big); err == nil {
		t.Fatal("a 64 MiB write to a peer that does not read succeeded")
	}
	a.SetWriteDeadline(time.Time{})
	if _, err := c.Write([]byte("x")); err == nil {
		t.Fatal("a write after a short write succeeded")
	}
}

// TestRC4MatchesCryptoRC4: our RC4 is crypto/rc4's keystream, for keys of
// several lengths, in place and not, across calls of odd sizes.
func TestRC4MatchesCryptoRC4(t *testing.T) {
	for _, keyLen := range []int{1, 5, 20, 256} {
		key := make([]byte, keyLen)
		for i := range key {
			key[i] = byte(i*31 + keyLen)
		}
		want, err := stdrc4.NewCipher(key)
		if err != nil {
			t.Fatal(err)
		}
		got := newRC4(key)
		for _, n := range []int{0, 1, 7, 1024, 4093, 65536} {
			a := make([]byte, n)
			b := make([]byte, n)
			for i := range a {
				a[i] = byte(i)
				b[i] = byte(i)
			}
			want.XORKeyStream(a, a)
			if n%2 == 0 {
				got.XORKeyStream(b, b)
			} else {
				out := make([]byte, n)
				got.XORKeyStream(out, b)
				b = out
			}
			if !bytes.Equal(a, b) {
				t.Fatalf("key of %d bytes, call of %d bytes: keystreams differ", keyLen, n)
			}
		}
	}
}
