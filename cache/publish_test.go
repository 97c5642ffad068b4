package cache

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"btfs/storagewrapper"
)

// TestPublishAtomic: a piece's blocks are written under a partial name of
// this owner's; the final name appears only with Publish, whole.
func TestPublishAtomic(t *testing.T) {
	f := testFixture()
	dir := t.TempDir()
	c := openStore(t, dir, f, Options{})
	p := c.Piece(4)
	want := f.piece(4)
	for off := int64(0); off < int64(len(want)); off += storagewrapper.BlockSize {
		if _, err := p.WriteAt(want[off:off+storagewrapper.BlockSize], off); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(c.ds.PiecePath(4)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("after the block at %d the piece has a final name: %v", off, err)
		}
		if got, err := p.Completion(); got != storagewrapper.Missing || err != nil {
			t.Fatalf("Completion of a partial piece = %v, %v", got, err)
		}
	}
	partial := filepath.Join(dir, "partial", "000004."+c.me.String()+".part")
	if _, err := os.Stat(partial); err != nil {
		t.Fatalf("partial file: %v", err)
	}
	if err := p.Publish(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(c.ds.PiecePath(4))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("published piece: %v, equal %v", err, bytes.Equal(got, want))
	}
	if _, err := os.Stat(partial); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("partial file left after Publish: %v", err)
	}
}

// TestPublishRace: two processes publish every piece of the torrent, many
// times over, at the same moment: no error, one file per piece, right
// bytes, no partial file left.
func TestPublishRace(t *testing.T) {
	f := testFixture()
	dir := t.TempDir()
	const rounds = "20"
	a := startChild(t, "race", dir, rounds)
	b := startChild(t, "race", dir, rounds)
	a.stdin.Close() // go
	b.stdin.Close()
	a.finish(t)
	b.finish(t)
	ents, err := os.ReadDir(filepath.Join(dir, "pieces"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	want := make([]string, f.info.NumPieces())
	for i := range want {
		want[i] = storagewrapper.PieceName(i)
	}
	if !slices.Equal(names, want) {
		t.Fatalf("pieces/ holds %v, want %v", names, want)
	}
	for i := range f.info.NumPieces() {
		got, err := os.ReadFile(filepath.Join(dir, "pieces", storagewrapper.PieceName(i)))
		if err != nil || !bytes.Equal(got, f.piece(i)) {
			t.Fatalf("piece %d after the race: %v, right bytes %v", i, err, bytes.Equal(got, f.piece(i)))
		}
	}
	if left, _ := os.ReadDir(filepath.Join(dir, "partial")); len(left) != 0 {
		t.Fatalf("partial files left: %v", left)
	}
}

// TestDiscovery: a piece another process publishes is adopted (and so
// reported to the engine), by inotify or by the poll; a reader's miss
// adopts it even without Run.
func TestDiscovery(t *testing.T) {
	tests := []struct {
		name string
		// watch runs Run with these options; nil: no Run at all.
		watch *Options
	}{
		{"inotify", &Options{PollInterval: time.Hour}},
		{"poll", &Options{NoInotify: true, PollInterval: 50 * time.Millisecond}},
		{"read miss", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := testFixture()
			dir := t.TempDir()
			var opts Options
			if tc.watch != nil {
				opts = *tc.watch
			}
			c := openStore(t, dir, f, opts)
			w := newHost(t, f, c)
			if tc.watch != nil {
				run(t, c, w)
			}
			ch := startChild(t, "publish", dir, "6")
			ch.finish(t)
			if tc.watch != nil {
				waitChanges(t, w, "piece 6 adopted", func(c changes) bool { return c.verified[6] })
			}
			ctx, cancel := context.WithTimeout(context.Background(), waitFor)
			defer cancel()
			buf := make([]byte, 1000)
			off := f.info.PieceOffset(6) + 100
			if _, err := w.ReadAt(ctx, buf, off); err != nil {
				t.Fatalf("ReadAt of a piece another process published: %v", err)
			}
			if !bytes.Equal(buf, f.data[off:off+1000]) {
				t.Fatal("wrong bytes")
			}
		})
	}
}
