package wire

import (
	"io"
	"net"
	"testing"
)

// reportMsgs adds a messages/s figure next to the MB/s that SetBytes gives.
func reportMsgs(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

func BenchmarkReadPiece(b *testing.B) {
	msg := encode(b, Message{ID: Piece, Index: 1, Begin: 0x4000, Block: make([]byte, BlockSize)})
	r := NewReader(&repeatReader{data: msg}, Limits{NumPieces: 1000})
	b.SetBytes(BlockSize)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.ReadMessage(); err != nil {
			b.Fatal(err)
		}
	}
	reportMsgs(b)
}

func BenchmarkWritePiece(b *testing.B) {
	w := NewWriter(io.Discard)
	m := Message{ID: Piece, Index: 1, Begin: 0x4000, Block: make([]byte, BlockSize)}
	b.SetBytes(BlockSize)
	b.ReportAllocs()
	for b.Loop() {
		if err := w.WriteMessage(m); err != nil {
			b.Fatal(err)
		}
	}
	reportMsgs(b)
}

func BenchmarkReadHave(b *testing.B) {
	r := NewReader(&repeatReader{data: encode(b, Message{ID: Have, Index: 7})}, Limits{NumPieces: 1000})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.ReadMessage(); err != nil {
			b.Fatal(err)
		}
	}
	reportMsgs(b)
}

func BenchmarkWriteRequest(b *testing.B) {
	w := NewWriter(io.Discard)
	m := Message{ID: Request, Index: 1, Begin: 0x4000, Length: BlockSize}
	b.ReportAllocs()
	for b.Loop() {
		if err := w.WriteMessage(m); err != nil {
			b.Fatal(err)
		}
	}
	w.Flush()
	reportMsgs(b)
}

// BenchmarkPieceTCP sends piece messages over a real 127.0.0.1 connection:
// the Writer's vectored write and the Reader's direct reads together, with
// the kernel in the loop. The writer flushes every 16 messages, as a peer
// answering a pipeline would.
func BenchmarkPieceTCP(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	src, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	dst := <-accepted
	if dst == nil {
		b.Fatal("accept failed")
	}
	defer dst.Close()

	n := b.N
	werr := make(chan error, 1)
	go func() {
		w := NewWriter(src)
		m := Message{ID: Piece, Index: 1, Block: make([]byte, BlockSize)}
		for i := range n {
			if err := w.WriteMessage(m); err != nil {
				werr <- err
				return
			}
			if i%16 == 15 {
				if err := w.Flush(); err != nil {
					werr <- err
					return
				}
			}
		}
		werr <- w.Flush()
	}()
	r := NewReader(dst, Limits{})
	b.SetBytes(BlockSize)
	b.ReportAllocs()
	b.ResetTimer()
	for range n {
		if _, err := r.ReadMessage(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if err := <-werr; err != nil {
		b.Fatal(err)
	}
	reportMsgs(b)
}
