package fs

import (
	"os"
	"slices"
	"testing"
	"time"

	"btfs/picker"
)

// TestReadaheadThroughMount drives one handle with O_DIRECT reads (so that
// every read reaches it as issued) and watches its Readahead want in the
// real wrapper: sequential reads grow the window to the maximum, a seek
// resets it, a reader that keeps seeking loses it, and closing the file
// releases everything.
func TestReadaheadThroughMount(t *testing.T) {
	const size = 400
	fx := newFixture(t, "seq.bin", 5, true, []fileSpec{{path: "seq.bin", size: size}})
	e := newEnv(t, fx, Options{ReadaheadMin: 10, ReadaheadMax: 80})
	f := openDirect(t, e.path("seq.bin"))
	buf := make([]byte, 5)
	read := func(off int64) []picker.Want {
		t.Helper()
		if _, err := f.ReadAt(buf, off); err != nil {
			t.Fatalf("ReadAt(5 at %d): %v", off, err)
		}
		if !slices.Equal(buf, fx.content["seq.bin"][off:off+5]) {
			t.Fatalf("ReadAt(5 at %d): bytes differ", off)
		}
		// The handle moved its want before it read: no waiting needed.
		return readaheadWants(e.w.Wants())
	}

	var prev int64
	for off := int64(0); off < 200; off += 5 {
		ws := read(off)
		if len(ws) != 1 {
			t.Fatalf("after a sequential read at %d: readahead wants %v, want one", off, ws)
		}
		w := ws[0]
		length, pos := w.End-w.Start, off+5
		if length < prev || length > 80 || w.Start > pos || w.End <= pos || w.End > size {
			t.Fatalf("after a sequential read at %d: window %v (length %d, previous %d): want it ahead of %d, growing, at most 80",
				off, w, length, prev, pos)
		}
		prev = length
	}
	if prev != 80 {
		t.Errorf("window after 200 sequential bytes: %d, want the maximum 80", prev)
	}

	if ws := read(300); len(ws) != 1 || ws[0].Start != 305 || ws[0].End != 315 {
		t.Errorf("after a seek to 300: readahead wants %v, want [305, 315): the minimum window", ws)
	}
	if ws := read(100); len(ws) != 1 || ws[0].Start != 105 || ws[0].End != 115 {
		t.Errorf("after a second seek: readahead wants %v, want [105, 115)", ws)
	}
	if ws := read(200); len(ws) != 0 {
		t.Errorf("after three seeks in a row: readahead wants %v, want none (a random reader)", ws)
	}
	if ws := read(205); len(ws) != 1 {
		t.Errorf("streaming again: readahead wants %v, want one", ws)
	}

	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// RELEASE reaches the file system after close(2) returns.
	e.dl.waitWants(t, "no wants once the file is closed", func(ws []picker.Want) bool { return len(ws) == 0 })
}

// TestReadaheadClippedToFile checks that the window never reaches into the
// next file of the torrent.
func TestReadaheadClippedToFile(t *testing.T) {
	fx := newFixture(t, "fixture", 5, false, multiSpecs)
	e := newEnv(t, fx, Options{ReadaheadMin: 100, ReadaheadMax: 100})
	f := openDirect(t, e.path("a.txt"))
	defer f.Close()
	if _, err := f.ReadAt(make([]byte, 2), 0); err != nil {
		t.Fatal(err)
	}
	start := fx.fileOffset(t, "a.txt")
	ws := readaheadWants(e.w.Wants())
	if len(ws) != 1 || ws[0].Start != start+2 || ws[0].End != start+7 {
		t.Errorf("readahead wants %v, want [%d, %d): the rest of a.txt only", ws, start+2, start+7)
	}
}

// TestMediaHeadTailWants opens media files without reading: their head and
// tail are wanted at once, for as long as the handle is open.
func TestMediaHeadTailWants(t *testing.T) {
	specs := []fileSpec{
		{path: "a.txt", size: 7},
		{path: "x.mp4", size: 43},
		{path: "y.MKV", size: 8},
	}
	fx := newFixture(t, "fixture", 5, false, specs)
	e := newEnv(t, fx, Options{MediaHeadTail: 10})
	x, y := fx.fileOffset(t, "x.mp4"), fx.fileOffset(t, "y.MKV")

	plain, err := os.Open(e.path("a.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if ws := e.w.Wants(); len(ws) != 0 {
		t.Errorf("after opening a.txt: wants %v, want none", ws)
	}

	f1, err := os.Open(e.path("x.mp4"))
	if err != nil {
		t.Fatal(err)
	}
	want := []picker.Want{
		{Start: x, End: x + 10, Priority: picker.Readahead},
		{Start: x + 33, End: x + 43, Priority: picker.Readahead},
	}
	if ws := stripDeadlines(e.w.Wants()); !slices.Equal(ws, want) {
		t.Errorf("after opening x.mp4: wants %v, want head and tail %v", ws, want)
	}
	f2, err := os.Open(e.path("x.mp4"))
	if err != nil {
		t.Fatal(err)
	}
	if ws := e.w.Wants(); len(ws) != 4 {
		t.Errorf("two handles: %d wants, want 4", len(ws))
	}
	f1.Close()
	e.dl.waitWants(t, "the first handle's wants released", func(ws []picker.Want) bool { return len(ws) == 2 })
	f2.Close()
	e.dl.waitWants(t, "no wants once closed", func(ws []picker.Want) bool { return len(ws) == 0 })

	// A media file shorter than head plus tail is wanted whole.
	g, err := os.Open(e.path("y.MKV"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if ws := stripDeadlines(e.w.Wants()); !slices.Equal(ws, []picker.Want{{Start: y, End: y + 8, Priority: picker.Readahead}}) {
		t.Errorf("after opening y.MKV: wants %v, want the whole file", ws)
	}
}

// stripDeadlines returns ws without their deadlines, for comparisons.
func stripDeadlines(ws []picker.Want) []picker.Want {
	out := slices.Clone(ws)
	for i := range out {
		out[i].Deadline = time.Time{}
	}
	return out
}
