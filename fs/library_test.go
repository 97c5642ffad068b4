package fs

import (
	"strings"
	"testing"

	"btfs/metainfo"
)

// TestLibraryIno: a torrent's inode range depends on its info-hash alone,
// never overlaps the root's numbers, and its retries differ.
func TestLibraryIno(t *testing.T) {
	var a, zero metainfo.Hash
	for i := range a {
		a[i] = byte(i + 1)
	}
	tests := []struct {
		name string
		ih   metainfo.Hash
		try  int
		want uint64
	}{
		{"from the hash", a, 0, (0x0102030405 << 24)},
		{"zero hash: not the root's range", zero, 0, 1 << 24},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := libraryIno(tc.ih, tc.try); got != tc.want {
				t.Errorf("libraryIno = %#x, want %#x", got, tc.want)
			}
		})
	}
	if libraryIno(a, 1) == libraryIno(a, 0) || libraryIno(a, 1) != libraryIno(a, 1) || libraryIno(a, 1)%libraryInoSpan != 0 {
		t.Errorf("retries: %#x, %#x", libraryIno(a, 0), libraryIno(a, 1))
	}
}

// TestLibraryNames: names are cleaned, clashes get a suffix.
func TestLibraryNames(t *testing.T) {
	var ih metainfo.Hash
	ih[0] = 0xab
	tests := []struct{ in, want string }{
		{"Movie", "Movie"},
		{"a/b", "a_b"},
		{"nul\x00", "nul_"},
		{"", ih.String()},
		{".", ih.String()},
		{"..", ih.String()},
		{strings.Repeat("x", 300), ih.String()},
	}
	for _, tc := range tests {
		if got := cleanName(tc.in, ih); got != tc.want {
			t.Errorf("cleanName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	l := &libRoot{byName: map[string]*libEntry{}}
	for _, want := range []string{"x", "x (2)", "x (3)"} {
		got := l.freeName("x")
		if got != want {
			t.Fatalf("freeName = %q, want %q", got, want)
		}
		l.byName[got] = &libEntry{name: got}
	}
}
