package metadata

import (
	"bytes"
	"crypto/sha1"
	"testing"
	"time"

	"btfs/engine/wire"
	"btfs/metainfo"
)

func TestServerAnswer(t *testing.T) {
	info := makeInfo(t, 1000, 9) // 2 pieces, the last short
	s := NewServer(info)
	if s.Size() != int64(len(info)) {
		t.Fatalf("Size %d", s.Size())
	}
	tests := []struct {
		name  string
		piece int
		want  wire.MetadataMsg
	}{
		{"first", 0, wire.MetadataMsg{Type: wire.MetadataData, Piece: 0, TotalSize: int64(len(info)), Data: info[:wire.MetadataPieceSize]}},
		{"last short", 1, wire.MetadataMsg{Type: wire.MetadataData, Piece: 1, TotalSize: int64(len(info)), Data: info[wire.MetadataPieceSize:]}},
		{"beyond", 2, wire.MetadataMsg{Type: wire.MetadataReject, Piece: 2}},
		{"far beyond", 1 << 40, wire.MetadataMsg{Type: wire.MetadataReject, Piece: 1 << 40}},
		{"negative", -1, wire.MetadataMsg{Type: wire.MetadataReject, Piece: 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := s.Answer(tc.piece)
			if got.Type != tc.want.Type || got.Piece != tc.want.Piece || got.TotalSize != tc.want.TotalSize || !bytes.Equal(got.Data, tc.want.Data) {
				t.Fatalf("Answer(%d) = %v, want %v", tc.piece, got, tc.want)
			}
			if _, err := wire.EncodeMetadataMsg(got); err != nil {
				t.Fatalf("the answer does not encode: %v", err)
			}
		})
	}
}

// TestServerToFetcher moves a dictionary from a Server to a Fetcher
// through the wire codec, as two engines would.
func TestServerToFetcher(t *testing.T) {
	sizes := []int{200, wire.MetadataPieceSize, wire.MetadataPieceSize + 1, 3 * wire.MetadataPieceSize, 5*wire.MetadataPieceSize + 17}
	for _, size := range sizes {
		info := infoOfSize(t, size)
		s := NewServer(info)
		f := NewFetcher(metainfo.Hash(sha1.Sum(info)), 0)
		if err := f.SetSize("srv", s.Size()); err != nil {
			t.Fatal(err)
		}
		now := time.Unix(0, 0)
		done := false
		for round := 0; !done && round < 100; round++ {
			for _, p := range drain(f, "srv", now) {
				req, err := wire.EncodeMetadataMsg(wire.MetadataMsg{Type: wire.MetadataRequest, Piece: p})
				if err != nil {
					t.Fatal(err)
				}
				in, err := wire.ParseMetadataMsg(req, 0)
				if err != nil {
					t.Fatal(err)
				}
				reply, err := wire.EncodeMetadataMsg(s.Answer(in.Piece))
				if err != nil {
					t.Fatal(err)
				}
				m, err := wire.ParseMetadataMsg(reply, 0)
				if err != nil || m.Type != wire.MetadataData || m.TotalSize != f.Size() {
					t.Fatalf("reply %v: %v", m, err)
				}
				if done, err = f.Received("srv", m.Piece, m.Data); err != nil {
					t.Fatal(err)
				}
			}
		}
		if !done || !bytes.Equal(f.Result(), info) {
			t.Fatalf("%d-byte dictionary not fetched", len(info))
		}
	}
}
