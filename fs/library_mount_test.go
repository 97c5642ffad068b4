package fs

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"btfs/storagewrapper"
)

// TestLibraryMount: an empty library; a torrent added shows its files in
// a directory of the given name with inode numbers from its info-hash;
// its removal fails the reads of a file still open (EIO) and its
// directory goes; added again it comes back with the same numbers; a
// torrent added without its metadata is listed at once, waits, and fills.
func TestLibraryMount(t *testing.T) {
	fx := newFixture(t, "fixture", 5, false, multiSpecs)
	dir := t.TempDir()
	e := newEnvWith(t, dir, fx, Options{ReadTimeout: 300 * time.Millisecond, Control: "/run/x.sock"}, func(_ *storagewrapper.Wrapper, opts Options) (*Mounted, error) {
		return MountLibrary(dir, opts)
	})
	if err := fx.fill(e.w); err != nil {
		t.Fatal(err)
	}
	if des, err := os.ReadDir(dir); err != nil || len(des) != 0 {
		t.Fatalf("an empty library lists %v, %v", des, err)
	}
	buf := make([]byte, 64)
	if n, err := unix.Getxattr(dir, XattrControl, buf); err != nil || string(buf[:n]) != "/run/x.sock" {
		t.Errorf("%s: %q, %v", XattrControl, buf[:n], err)
	}
	ih := fx.mi.InfoHash
	name, err := e.m.Add(ih, "Movie/1", fx.mi, e.w)
	if err != nil || name != "Movie_1" {
		t.Fatalf("Add: %q, %v", name, err)
	}
	file := filepath.Join(dir, name, "dir", "b.bin")
	got, err := os.ReadFile(file)
	if err != nil || !bytes.Equal(got, fx.content["dir/b.bin"]) {
		t.Fatalf("b.bin: %q, %v", got, err)
	}
	base := libraryIno(ih, 0)
	want := map[string]uint64{filepath.Join(dir, name): base + 1, file: base + 2 + 2} // Files[2] is dir/b.bin
	inos := func() map[string]uint64 {
		out := map[string]uint64{}
		for p := range want {
			var st syscall.Stat_t
			if err := syscall.Stat(p, &st); err != nil {
				t.Fatal(err)
			}
			out[p] = st.Ino
		}
		return out
	}
	if got := inos(); !equalMaps(got, want) {
		t.Errorf("inodes %v, want %v", got, want)
	}

	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(make([]byte, 4), 0); err != nil {
		t.Fatal(err)
	}
	if got, err := e.m.Remove(ih); err != nil || got != name {
		t.Fatalf("Remove: %q, %v", got, err)
	}
	if _, err := f.ReadAt(make([]byte, 4), 0); !errors.Is(err, syscall.EIO) {
		t.Errorf("a read of an open file of a removed torrent: %v, want EIO", err)
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat after Remove: %v", err)
	}
	if _, err := e.m.Remove(ih); err == nil {
		t.Error("a second Remove succeeded")
	}

	// Again: a fresh tree, the same numbers.
	if name, err = e.m.Add(ih, "Movie/1", fx.mi, e.w); err != nil || name != "Movie_1" {
		t.Fatalf("Add again: %q, %v", name, err)
	}
	if got := inos(); !equalMaps(got, want) {
		t.Errorf("inodes after a second Add %v, want %v", got, want)
	}
	if got, err := os.ReadFile(file); err != nil || !bytes.Equal(got, fx.content["dir/b.bin"]) {
		t.Fatalf("b.bin after a second Add: %q, %v", got, err)
	}
	if _, err := e.m.Add(ih, "other", fx.mi, e.w); err == nil {
		t.Error("the same torrent added twice")
	}

	// Pending: a second torrent whose metadata comes later, whose name
	// clashes.
	fx2 := newFixture(t, "second", 7, true, []fileSpec{{path: "second", size: 30}})
	w2, err := storagewrapper.New(fx2.mi.Info, storagewrapper.NewMemStore(fx2.mi.Info), storagewrapper.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	if err := fx2.fill(w2); err != nil {
		t.Fatal(err)
	}
	name2, err := e.m.Add(fx2.mi.InfoHash, "Movie_1", nil, nil)
	if err != nil || name2 != "Movie_1 (2)" {
		t.Fatalf("Add pending: %q, %v", name2, err)
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	if !slices.Equal(names, []string{"Movie_1", "Movie_1 (2)"}) {
		t.Errorf("the library lists %v", names)
	}
	if _, err := os.Stat(filepath.Join(dir, name2, "second")); !errors.Is(err, syscall.EAGAIN) {
		t.Errorf("a lookup in a pending directory: %v, want EAGAIN after the read timeout", err)
	}
	if err := e.m.Fill(fx2.mi.InfoHash, fx2.mi, w2); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, name2, "second")); err != nil || !bytes.Equal(got, fx2.data) {
		t.Errorf("the filled torrent's file: %q, %v", got, err)
	}
	if _, err := e.m.Remove(fx2.mi.InfoHash); err != nil {
		t.Fatal(err)
	}
}

func equalMaps(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
