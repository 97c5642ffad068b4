package stream

import (
	"slices"
	"testing"
)

func TestIsMedia(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"movie.mkv", true},
		{"Movie.MP4", true},
		{"song.flac", true},
		{"a.b.opus", true},
		{"clip.m2ts", true},
		{"notes.txt", false},
		{"mkv", false},
		{"archive.mkv.zip", false},
		{"", false},
		{".mp4", true},
	}
	for _, tt := range tests {
		if got := IsMedia(tt.name); got != tt.want {
			t.Errorf("IsMedia(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestHeadTail(t *testing.T) {
	tests := []struct {
		name                   string
		size, pieceLen, minLen int64
		want                   []span
	}{
		{"empty file", 0, 5, 10, nil},
		{"both ends", 100, 5, 10, []span{{0, 10}, {90, 100}}},
		{"piece longer than minimum", 100, 16, 10, []span{{0, 16}, {84, 100}}},
		{"ends meet", 20, 5, 10, []span{{0, 20}}},
		{"ends overlap", 15, 5, 10, []span{{0, 15}}},
		{"one byte apart", 21, 5, 10, []span{{0, 10}, {11, 21}}},
		{"tiny", 1, 5, 10, []span{{0, 1}}},
		{"defaults", 1 << 30, 1 << 20, DefaultMediaHeadTail, []span{{0, 4 << 20}, {1<<30 - 4<<20, 1 << 30}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := headTail(tt.size, tt.pieceLen, tt.minLen); !slices.Equal(got, tt.want) {
				t.Errorf("headTail(%d, %d, %d) = %v, want %v", tt.size, tt.pieceLen, tt.minLen, got, tt.want)
			}
		})
	}
}
