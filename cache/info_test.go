package cache

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestInfoRoundTrip: SaveInfo then LoadInfo gives the bytes back; saving
// other bytes replaces them; a missing file is fs.ErrNotExist and an
// oversized one an error, never a huge read.
func TestInfoRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadInfo(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("LoadInfo of an empty dir: %v, want ErrNotExist", err)
	}
	for _, info := range [][]byte{[]byte("d4:name1:ae"), []byte("d4:name1:be")} {
		if err := SaveInfo(dir, info); err != nil {
			t.Fatal(err)
		}
		got, err := LoadInfo(dir)
		if err != nil || !bytes.Equal(got, info) {
			t.Fatalf("LoadInfo: %q, %v; want %q", got, err, info)
		}
	}
	if err := os.Truncate(filepath.Join(dir, InfoName), maxInfoSize+1); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadInfo(dir); err == nil {
		t.Error("LoadInfo read an oversized info file")
	}
}
