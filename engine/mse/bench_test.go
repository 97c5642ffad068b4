package mse

import (
	"bytes"
	"io"
	"testing"

	"btfs/engine/wire"
	cryptoRand "crypto/rand"
)

// discardConn swallows writes (the cost measured is ours, not a socket's).
type discardConn struct{ bufConn }

func (discardConn) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkSendPieces: PIECE messages of one block framed by wire.Writer
// and RC4-encrypted by a Conn, on one core (run with -cpu 1).
func BenchmarkSendPieces(b *testing.B) {
	var s [KeyLen]byte
	c := &Conn{Conn: &discardConn{}, enc: newCipher("keyA", s[:], ihA), method: RC4, decLeft: -1}
	w := wire.NewWriter(c)
	block := make([]byte, wire.BlockSize)
	b.SetBytes(int64(len(block)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := w.WriteMessage(wire.Message{ID: wire.Piece, Index: uint32(i), Begin: 0, Block: block}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReceivePieces: an RC4 stream of PIECE messages decrypted by a
// Conn and parsed by wire.Reader, on one core (run with -cpu 1).
func BenchmarkReceivePieces(b *testing.B) {
	const perStream = 256
	var s [KeyLen]byte
	var plain bytes.Buffer
	w := wire.NewWriter(&plain)
	block := make([]byte, wire.BlockSize)
	for i := range perStream {
		w.WriteMessage(wire.Message{ID: wire.Piece, Index: uint32(i), Block: block})
	}
	w.Flush()
	stream := plain.Bytes()
	newCipher("keyB", s[:], ihA).XORKeyStream(stream, stream)
	b.SetBytes(int64(len(block)))
	b.ReportAllocs()
	var r *wire.Reader
	for i := 0; b.Loop(); i++ {
		if i%perStream == 0 {
			src := &bufConn{r: bytes.NewReader(stream)}
			r = wire.NewReader(&Conn{Conn: src, dec: newCipher("keyB", s[:], ihA), method: RC4, decLeft: -1}, wire.Limits{})
		}
		m, err := r.ReadMessage()
		if err != nil && err != io.EOF {
			b.Fatal(err)
		}
		if m.ID != wire.Piece || len(m.Block) != wire.BlockSize {
			b.Fatalf("message %v", m.ID)
		}
	}
}

// BenchmarkHandshakeKeys: one side's Diffie-Hellman work (key and S).
func BenchmarkHandshakeKeys(b *testing.B) {
	peer, _ := newKeyPair(randReader{})
	for b.Loop() {
		k, err := newKeyPair(randReader{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := k.secret(peer.y[:]); err != nil {
			b.Fatal(err)
		}
	}
}

// randReader is crypto/rand for the benchmark's keys.
type randReader struct{}

func (randReader) Read(p []byte) (int, error) { return cryptoRand.Read(p) }
