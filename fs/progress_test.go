package fs

import (
	"strings"
	"testing"

	"btfs/bitfield"
	"btfs/metainfo"
)

// bits returns a bitfield of n pieces with the given ones set.
func bits(n int, set ...int) *bitfield.Bitfield {
	b := bitfield.New(n)
	for _, i := range set {
		b.Set(i)
	}
	return b
}

func TestVerifiedBytes(t *testing.T) {
	// 23 bytes in 5-byte pieces: 0-4 5-9 10-14 15-19 20-22.
	info := &metainfo.Info{PieceLength: 5, TotalLength: 23, Pieces: make([]metainfo.Hash, 5)}
	tests := []struct {
		name       string
		bf         *bitfield.Bitfield
		start, end int64
		want       int64
	}{
		{"nothing verified", bits(5), 0, 23, 0},
		{"all verified", bits(5, 0, 1, 2, 3, 4), 0, 23, 23},
		{"short last piece", bits(5, 4), 0, 23, 3},
		{"range inside one piece", bits(5, 1), 6, 8, 2},
		{"shared pieces count only their part", bits(5, 0, 1, 2), 3, 12, 9},
		{"gap", bits(5, 0, 2), 3, 12, 2 + 2},
		{"empty range", bits(5, 0, 1), 5, 5, 0},
		{"clipped to the torrent", bits(5, 0, 1, 2, 3, 4), -4, 100, 23},
		{"nil bitfield", nil, 0, 23, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := verifiedBytes(tt.bf, info, tt.start, tt.end); got != tt.want {
				t.Errorf("verifiedBytes(%v, %d, %d) = %d, want %d", tt.bf, tt.start, tt.end, got, tt.want)
			}
		})
	}
}

func TestPieceMap(t *testing.T) {
	tests := []struct {
		name        string
		bf          *bitfield.Bitfield
		first, last int
		want        string
	}{
		{"none", bits(5), 0, 5, "....."},
		{"some", bits(5, 1, 3), 0, 5, ".#.#."},
		{"sub-range", bits(5, 1, 3), 1, 4, "#.#"},
		{"empty", bits(5, 1), 2, 2, ""},
		{"runs", bits(3*maxPieceMap, 0, 1, 2, 4), 0, 3 * maxPieceMap, "#:" + strings.Repeat(".", maxPieceMap-2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pieceMap(tt.bf, tt.first, tt.last); got != tt.want {
				t.Errorf("pieceMap = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFill(t *testing.T) {
	value := []byte("abc")
	tests := []struct {
		name    string
		dest    int
		wantN   uint32
		wantErr bool
	}{
		{"size query", 0, 3, false},
		{"too small", 2, 3, true},
		{"exact", 3, 3, false},
		{"larger", 10, 3, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dest := make([]byte, tt.dest)
			n, errno := fill(dest, value)
			if n != tt.wantN || (errno != 0) != tt.wantErr {
				t.Errorf("fill(%d bytes) = %d, %v", tt.dest, n, errno)
			}
			if errno == 0 && tt.dest > 0 && string(dest[:n]) != "abc" {
				t.Errorf("fill copied %q", dest[:n])
			}
		})
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	tests := map[string]string{
		"/mnt/plain":         "/mnt/plain",
		`/mnt/with\040space`: "/mnt/with space",
		`/mnt/tab\011nl\012`: "/mnt/tab\tnl\n",
		`/mnt/back\134slash`: `/mnt/back\slash`,
		`/mnt/trailing\04`:   `/mnt/trailing\04`,
		`/mnt/not\999octal`:  `/mnt/not\999octal`,
	}
	for in, want := range tests {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
}
