package cache

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"btfs/storagewrapper"
)

// TestMakeRoom: on a full disk the storagewrapper asks the cache for room:
// the least recently read pieces go first, never a pinned one, and the
// process stops having them.
func TestMakeRoom(t *testing.T) {
	f := testFixture()
	dir := t.TempDir()
	c := openStore(t, dir, f, Options{PollInterval: time.Hour})
	w := newHost(t, f, c)
	run(t, c, w)
	for i := range 7 {
		download(t, w, f, i)
	}
	base := time.Now().Add(-time.Hour)
	for i := range 7 {
		setRead(t, c, i, base.Add(time.Duration(7-i)*time.Minute)) // piece 6 read first
	}
	unpin := c.Pin(6, 6) // the oldest, but in use
	defer unpin()
	// Room for one piece and the slack: 7 - 1 - roomSlack = 2 pieces stay.
	freed, err := c.MakeRoom(fxPieceLen)
	if err != nil {
		t.Fatal(err)
	}
	if freed != 5*fxPieceLen {
		t.Fatalf("freed %d bytes, want %d", freed, 5*fxPieceLen)
	}
	got, _ := piecesIn(t, dir)
	if len(got) != 2 || got[0] != 0 || got[1] != 6 {
		t.Fatalf("pieces left %v, want [0 6] (the most recently read, and the pinned one)", got)
	}
	for i := range 7 {
		if want := i == 0 || i == 6; w.DoIHave(i) != want {
			t.Fatalf("piece %d had = %v after the eviction, want %v", i, !want, want)
		}
	}
}

// TestProbeRecreatesLayout: the torrent's directory removed while in use
// is made again by Probe once its parent can hold it (not while a file
// stands in the way), with our pins taken again on the new pins file, and
// pieces are stored again.
func TestProbeRecreatesLayout(t *testing.T) {
	f := testFixture()
	parent := filepath.Join(t.TempDir(), "cache")
	dir := filepath.Join(parent, "torrent")
	c := openStore(t, dir, f, Options{PollInterval: time.Hour})
	w := newHost(t, f, c)
	run(t, c, w)
	download(t, w, f, 1)
	unpin := c.Pin(2, 2)
	defer unpin()

	if err := os.RemoveAll(parent); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(parent, nil, 0o644); err != nil { // in the way
		t.Fatal(err)
	}
	err := c.Probe(fxPieceLen)
	if storagewrapper.FaultOf(err) != storagewrapper.FaultGone {
		t.Fatalf("Probe with a file where the directory was: %v (%v), want %v", err, storagewrapper.FaultOf(err), storagewrapper.FaultGone)
	}
	if err := os.Remove(parent); err != nil {
		t.Fatal(err)
	}
	if err := c.Probe(fxPieceLen); err != nil {
		t.Fatalf("Probe with the parent back: %v", err)
	}
	for _, name := range []string{dataDir, "claims", "urgent", lockName, pinsName, recordName} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Fatalf("not recreated: %v", err)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, probeName+"*")); len(left) != 0 {
		t.Fatalf("the probe left %s", left[0])
	}
	// Our pin of piece 2 holds on the new pins file: an eviction's probe
	// (another open file description) cannot take the piece.
	other, err := os.OpenFile(filepath.Join(dir, pinsName), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := lockByte(other, 2, unix.F_WRLCK, false); !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("write lock on a pinned piece's byte: %v, want EAGAIN", err)
	}
	// Piece 1 went with the directory: once the wrapper lets it go, it is
	// downloaded and published again into the new layout.
	w.Unverify(1)
	if st := download(t, w, f, 1); st != storagewrapper.RequestGranted {
		t.Fatalf("download after the recreation: %v", st)
	}
	if got, _ := piecesIn(t, dir); len(got) != 1 || got[0] != 1 {
		t.Fatalf("pieces after the recreation: %v", got)
	}
}
