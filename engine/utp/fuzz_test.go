package utp

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// FuzzDatagram feeds arbitrary datagrams to a listening socket: libutp's
// packet parser (C, with its asserts compiled in) must neither crash nor
// wedge the socket. After each datagram a probe that is not uTP must come
// out of the PacketConn view (the socket processes datagrams in order, so
// the fuzzed one was handled), and a real connection must still work at
// the end.
func FuzzDatagram(f *testing.F) {
	for _, seed := range [][]byte{
		{},
		{0x01},
		header(stSyn, 1, 1, 0),
		header(stData, 2, 5000, 0),
		append(header(stData, 2, 1, 0), 1, 200, 1),
		append(header(stState, 2, 1, 0), 1, 4, 0xff, 0xff, 0xff, 0xff), // selective ACK extension
		append(header(stSyn, 3, 1, 0), 2, 8, 0, 0, 0, 0, 0, 0, 0, 0),
		header(3, 4, 0, 0), // reset
		header(1, 5, 0, 0), // fin
		[]byte("d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe"),
	} {
		f.Add(seed)
	}
	s, err := Listen("127.0.0.1:0", Config{})
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	view := s.PacketConn()
	defer view.Close()
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 5)})
	if err != nil {
		f.Fatal(err)
	}
	defer peer.Close()
	probe := []byte("probe: not uTP")
	buf := make([]byte, 1<<16)
	f.Fuzz(func(t *testing.T, b []byte) {
		peer.WriteTo(b, s.Addr())
		peer.WriteTo(probe, s.Addr())
		view.SetReadDeadline(time.Now().Add(wait))
		for {
			n, _, err := view.ReadFrom(buf)
			if err != nil {
				t.Fatalf("the socket stopped handing out datagrams: %v", err)
			}
			if bytes.Equal(buf[:n], probe) {
				return
			}
		}
	})
	// Then a real peer: it connects and the two exchange bytes, the
	// dialler first (as a BitTorrent handshake goes; libutp lets an
	// accepted connection write only once the dialler's first packet came).
	good, err := Listen("127.0.0.6:0", Config{})
	if err != nil {
		f.Fatal(err)
	}
	defer good.Close()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	go func() {
		for { // the fuzzed SYNs may be waiting first: close them
			c, err := s.Accept(ctx)
			if err != nil {
				return
			}
			if addrOf(c.RemoteAddr()).Addr().String() != "127.0.0.6" {
				c.Close()
				continue
			}
			defer c.Close()
			io.Copy(c, io.LimitReader(c, 5)) // echo
			<-ctx.Done()
			return
		}
	}()
	c, err := good.Dial(ctx, s.Addr().String())
	if err != nil {
		f.Fatalf("a real peer cannot connect after the fuzzing: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wait))
	got := make([]byte, 5)
	if _, err := c.Write([]byte("hello")); err != nil {
		f.Fatal(err)
	}
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "hello" {
		f.Fatalf("a real connection after the fuzzing: %q, %v", got, err)
	}
	cancel()
}
