package storagewrapper

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestDirStoreShared: stores with partial tags share a directory: their
// partial files never collide, both can publish the same piece (the last
// rename wins, with the same verified bytes), a private store opened on
// the directory removes only untagged leftovers, and AroundRename brackets
// the rename.
func TestDirStoreShared(t *testing.T) {
	f := newFixture(t, 4*BlockSize, 2*4*BlockSize)
	dir := t.TempDir()
	var renames []int
	a, err := NewDirStoreWith(dir, f.info, DirStoreOptions{PartialTag: "a", AroundRename: func(p int) func() {
		renames = append(renames, p)
		return func() { renames = append(renames, -p-1) }
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := NewDirStoreWith(dir, f.info, DirStoreOptions{PartialTag: "b"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, s := range []*DirStore{a, b} {
		if _, err := s.Piece(1).WriteAt(f.piece(1), 0); err != nil {
			t.Fatal(err)
		}
	}
	parts, _ := filepath.Glob(filepath.Join(dir, "partial", "*"))
	if want := []string{"000001.a.part", "000001.b.part"}; len(parts) != 2 ||
		filepath.Base(parts[0]) != want[0] || filepath.Base(parts[1]) != want[1] {
		t.Fatalf("partial files %v, want %v", parts, want)
	}
	// A leftover of a private store, and a private store opening the
	// directory: only the untagged leftover goes.
	if err := os.WriteFile(filepath.Join(dir, "partial", "000000.part"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	priv, err := NewDirStore(dir, f.info)
	if err != nil {
		t.Fatal(err)
	}
	priv.Close()
	if left, _ := filepath.Glob(filepath.Join(dir, "partial", "*")); len(left) != 2 {
		t.Fatalf("after a private store opened: %v", left)
	}
	for _, s := range []*DirStore{a, b} {
		if err := s.Piece(1).Publish(); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(a.PiecePath(1))
	if err != nil || !bytes.Equal(got, f.piece(1)) {
		t.Fatalf("published piece: %v", err)
	}
	if !slices.Equal(renames, []int{1, -2}) {
		t.Fatalf("AroundRename calls %v, want [1 -2] (before, after)", renames)
	}
	if _, err := NewDirStoreWith(dir, f.info, DirStoreOptions{PartialTag: "x.y"}); err == nil {
		t.Fatal("a tag with a dot was accepted")
	}
}

func TestPieceNames(t *testing.T) {
	tests := []struct {
		name  string
		piece int
		tag   string
		ok    bool
	}{
		{"000123.part", 123, "", true},
		{"000123.owner-1.part", 123, "owner-1", true},
		{"1234567.t.part", 1234567, "t", true},
		{"00012.part", 0, "", false},
		{"000123.a.b.part", 0, "", false},
		{"000123", 0, "", false},
		{"0001x3.part", 0, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, tag, ok := ParsePartialName(tc.name)
			if ok != tc.ok || (ok && (p != tc.piece || tag != tc.tag)) {
				t.Fatalf("ParsePartialName = %d, %q, %v", p, tag, ok)
			}
		})
	}
	for _, i := range []int{0, 7, 999999, 1000000} {
		if got, ok := ParsePieceName(PieceName(i)); !ok || got != i {
			t.Fatalf("ParsePieceName(PieceName(%d)) = %d, %v", i, got, ok)
		}
	}
}
