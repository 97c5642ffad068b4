package wire

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// equalMetadata compares messages treating nil and empty Data alike.
func equalMetadata(a, b MetadataMsg) bool {
	return a.Type == b.Type && a.Piece == b.Piece && a.TotalSize == b.TotalSize && bytes.Equal(a.Data, b.Data)
}

func TestMetadataPieceLen(t *testing.T) {
	tests := []struct {
		size   int64
		piece  int
		want   int
		pieces int
	}{
		{1, 0, 1, 1},
		{16383, 0, 16383, 1},
		{16384, 0, 16384, 1},
		{16384, 1, 0, 1},
		{16385, 0, 16384, 2},
		{16385, 1, 1, 2},
		{3 * 16384, 2, 16384, 3},
		{0, 0, 0, 0},
		{-5, 0, 0, 0},
		{100, -1, 0, 1},
	}
	for _, tc := range tests {
		if got := MetadataPieceLen(tc.size, tc.piece); got != tc.want {
			t.Errorf("MetadataPieceLen(%d, %d) = %d, want %d", tc.size, tc.piece, got, tc.want)
		}
		if got := MetadataPieces(tc.size); got != tc.pieces {
			t.Errorf("MetadataPieces(%d) = %d, want %d", tc.size, got, tc.pieces)
		}
	}
}

func TestEncodeMetadataMsg(t *testing.T) {
	full := bytes.Repeat([]byte{'x'}, MetadataPieceSize)
	tests := []struct {
		name string
		m    MetadataMsg
		want string
	}{
		{"request", MetadataMsg{Type: MetadataRequest, Piece: 0}, "d8:msg_typei0e5:piecei0ee"},
		{"reject", MetadataMsg{Type: MetadataReject, Piece: 7}, "d8:msg_typei2e5:piecei7ee"},
		{"tiny data", MetadataMsg{Type: MetadataData, Piece: 0, TotalSize: 3, Data: []byte("abc")}, "d8:msg_typei1e5:piecei0e10:total_sizei3eeabc"},
		{"full first piece", MetadataMsg{Type: MetadataData, Piece: 0, TotalSize: 16385, Data: full}, "d8:msg_typei1e5:piecei0e10:total_sizei16385ee" + string(full)},
		{"short last piece", MetadataMsg{Type: MetadataData, Piece: 1, TotalSize: 16385, Data: []byte("z")}, "d8:msg_typei1e5:piecei1e10:total_sizei16385eez"},
		{"full last piece", MetadataMsg{Type: MetadataData, Piece: 1, TotalSize: 32768, Data: full}, "d8:msg_typei1e5:piecei1e10:total_sizei32768ee" + string(full)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := EncodeMetadataMsg(tc.m)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("encoded %.80q, want %.80q", got, tc.want)
			}
			back, err := ParseMetadataMsg(got, 0)
			if err != nil {
				t.Fatalf("parsing our own encoding: %v", err)
			}
			if !equalMetadata(back, tc.m) {
				t.Fatalf("round trip %v, want %v", back, tc.m)
			}
		})
	}
}

func TestEncodeMetadataMsgRefuses(t *testing.T) {
	tests := []struct {
		name string
		m    MetadataMsg
		want error
	}{
		{"negative piece", MetadataMsg{Type: MetadataRequest, Piece: -1}, ErrBadMetadataMsg},
		{"unknown type", MetadataMsg{Type: 3}, ErrUnknownMetadataMsg},
		{"request with data", MetadataMsg{Type: MetadataRequest, Data: []byte("x")}, ErrBadMetadataMsg},
		{"reject with total", MetadataMsg{Type: MetadataReject, TotalSize: 5}, ErrBadMetadataMsg},
		{"data without total", MetadataMsg{Type: MetadataData, Data: []byte("x")}, ErrBadMetadataMsg},
		{"data short", MetadataMsg{Type: MetadataData, TotalSize: 20000, Data: []byte("x")}, ErrBadMetadataMsg},
		{"data long", MetadataMsg{Type: MetadataData, TotalSize: 1, Data: []byte("xy")}, ErrBadMetadataMsg},
		{"piece beyond total", MetadataMsg{Type: MetadataData, Piece: 1, TotalSize: 16384, Data: []byte("x")}, ErrBadMetadataMsg},
		{"huge piece", MetadataMsg{Type: MetadataData, Piece: 1 << 62, TotalSize: 16384, Data: []byte("x")}, ErrBadMetadataMsg},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := EncodeMetadataMsg(tc.m); !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
}

func TestParseMetadataMsg(t *testing.T) {
	full := strings.Repeat("x", MetadataPieceSize)
	tests := []struct {
		name    string
		payload string
		max     int64
		want    MetadataMsg
		wantErr error
	}{
		{"request", "d8:msg_typei0e5:piecei3ee", 0, MetadataMsg{Type: MetadataRequest, Piece: 3}, nil},
		{"reject", "d8:msg_typei2e5:piecei0ee", 0, MetadataMsg{Type: MetadataReject}, nil},
		{"keys out of order", "d5:piecei1e8:msg_typei0ee", 0, MetadataMsg{Type: MetadataRequest, Piece: 1}, nil},
		{"unknown keys", "d1:xli1ed1:ai2eee8:msg_typei0e5:piecei1e1:z3:abce", 0, MetadataMsg{Type: MetadataRequest, Piece: 1}, nil},
		{"total_size in a reject is ignored", "d8:msg_typei2e5:piecei0e10:total_sizei5ee", 0, MetadataMsg{Type: MetadataReject}, nil},
		{"data", "d8:msg_typei1e5:piecei0e10:total_sizei5eehello", 0, MetadataMsg{Type: MetadataData, TotalSize: 5, Data: []byte("hello")}, nil},
		{"data full piece", "d8:msg_typei1e5:piecei0e10:total_sizei20000ee" + full, 0, MetadataMsg{Type: MetadataData, TotalSize: 20000, Data: []byte(full)}, nil},
		{"data last piece", "d8:msg_typei1e5:piecei1e10:total_sizei16390eeabcdef", 0, MetadataMsg{Type: MetadataData, Piece: 1, TotalSize: 16390, Data: []byte("abcdef")}, nil},
		{"data that looks like bencode", "d8:msg_typei1e5:piecei0e10:total_sizei4eei1ee", 0, MetadataMsg{Type: MetadataData, TotalSize: 4, Data: []byte("i1ee")}, nil},
		{"total at cap", "d8:msg_typei1e5:piecei0e10:total_sizei3eeabc", 3, MetadataMsg{Type: MetadataData, TotalSize: 3, Data: []byte("abc")}, nil},
		{"request last piece under cap", "d8:msg_typei0e5:piecei1ee", 16385, MetadataMsg{Type: MetadataRequest, Piece: 1}, nil},

		{"unknown type", "d8:msg_typei3e5:piecei0ee", 0, MetadataMsg{}, ErrUnknownMetadataMsg},
		{"negative type", "d8:msg_typei-1e5:piecei0ee", 0, MetadataMsg{}, ErrUnknownMetadataMsg},
		{"total over cap", "d8:msg_typei1e5:piecei0e10:total_sizei4eeabcd", 3, MetadataMsg{}, ErrMetadataTooLarge},
		{"total 10^9", "d8:msg_typei1e5:piecei0e10:total_sizei1000000000eeabcd", 0, MetadataMsg{}, ErrMetadataTooLarge},
		{"total 2^63-1", "d8:msg_typei1e5:piecei0e10:total_sizei9223372036854775807eeabcd", 0, MetadataMsg{}, ErrMetadataTooLarge},
		{"request beyond cap", "d8:msg_typei0e5:piecei2ee", 16385, MetadataMsg{}, ErrBadMetadataMsg},
		{"request piece 2^62", "d8:msg_typei0e5:piecei4611686018427387904ee", 0, MetadataMsg{}, ErrBadMetadataMsg},
		{"data piece 2^62", "d8:msg_typei1e5:piecei4611686018427387904e10:total_sizei5eehello", 0, MetadataMsg{}, ErrBadMetadataMsg},
		{"total zero", "d8:msg_typei1e5:piecei0e10:total_sizei0ee", 0, MetadataMsg{}, ErrBadMetadataMsg},
		{"total negative", "d8:msg_typei1e5:piecei0e10:total_sizei-5eehello", 0, MetadataMsg{}, ErrBadMetadataMsg},
		{"data without total", "d8:msg_typei1e5:piecei0eehello", 0, MetadataMsg{}, ErrBadMetadataMsg},
		{"data short", "d8:msg_typei1e5:piecei0e10:total_sizei6eehello", 0, MetadataMsg{}, ErrBadMetadataMsg},
		{"data long", "d8:msg_typei1e5:piecei0e10:total_sizei4eehello", 0, MetadataMsg{}, ErrBadMetadataMsg},
		{"first piece short", "d8:msg_typei1e5:piecei0e10:total_sizei20000eehello", 0, MetadataMsg{}, ErrBadMetadataMsg},
		{"piece beyond total", "d8:msg_typei1e5:piecei1e10:total_sizei5eehello", 0, MetadataMsg{}, ErrBadMetadataMsg},
		{"negative piece", "d8:msg_typei0e5:piecei-1ee", 0, MetadataMsg{}, ErrBadMetadataMsg},
		{"no piece", "d8:msg_typei0ee", 0, MetadataMsg{}, ErrBadMetadataMsg},
		{"no type", "d5:piecei0ee", 0, MetadataMsg{}, ErrBadMetadataMsg},
		{"type a string", "d8:msg_type1:05:piecei0ee", 0, MetadataMsg{}, ErrBadMetadataMsg},
		{"piece a list", "d8:msg_typei0e5:pieceli0eee", 0, MetadataMsg{}, ErrBadMetadataMsg},
		{"total a string", "d8:msg_typei1e5:piecei0e10:total_size1:5ehello", 0, MetadataMsg{}, ErrBadMetadataMsg},
		{"request with trailing bytes", "d8:msg_typei0e5:piecei0eeXX", 0, MetadataMsg{}, ErrBadMetadataMsg},
		{"not a dict", "li0ei0ee", 0, MetadataMsg{}, ErrBadMetadataMsg},
		{"empty", "", 0, MetadataMsg{}, ErrBadMetadataMsg},
		{"truncated dict", "d8:msg_typei0e5:piecei0e", 0, MetadataMsg{}, ErrBadMetadataMsg},
		{"duplicate key", "d8:msg_typei0e8:msg_typei1e5:piecei0ee", 0, MetadataMsg{}, ErrBadMetadataMsg},
		{"declared string of 10^12 bytes", "d8:msg_typei0e1:x999999999999:e", 0, MetadataMsg{}, ErrBadMetadataMsg},
		{"dict over 4 KiB", "d1:x5000:" + strings.Repeat("x", 5000) + "8:msg_typei0e5:piecei0ee", 0, MetadataMsg{}, ErrBadMetadataMsg},
		{"nesting 10000 deep", "d1:x" + strings.Repeat("l", 10000) + strings.Repeat("e", 10000) + "8:msg_typei0e5:piecei0ee", 0, MetadataMsg{}, ErrBadMetadataMsg},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseMetadataMsg([]byte(tc.payload), tc.max)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if !equalMetadata(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestParseMetadataMsgAliases pins down the documented aliasing: the data
// is not copied, so a caller that keeps it must copy it.
func TestParseMetadataMsgAliases(t *testing.T) {
	payload := []byte("d8:msg_typei1e5:piecei0e10:total_sizei5eehello")
	m, err := ParseMetadataMsg(payload, 0)
	if err != nil {
		t.Fatal(err)
	}
	if &m.Data[0] != &payload[len(payload)-5] {
		t.Fatal("Data does not alias the payload")
	}
}

func TestParseMetadataMsgHostileAllocations(t *testing.T) {
	payload := []byte("d8:msg_typei1e5:piecei0e10:total_sizei5e1:x4294967295:e")
	per := bytesAllocated(20, func() {
		if _, err := ParseMetadataMsg(payload, 0); !errors.Is(err, ErrBadMetadataMsg) {
			t.Fatalf("err %v", err)
		}
	})
	if per > 4<<10 {
		t.Fatalf("%d bytes allocated for a 4 GiB string claim", per)
	}
}
