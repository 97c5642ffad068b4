package cache

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"btfs/storagewrapper"
)

// TestPublishMarks: a piece's blocks are written in place in the data
// file; the piece counts (Completion) only once Publish marked it, for
// this Store and for the next process's, which trusts the mark: its
// storagewrapper serves the piece without hashing it.
func TestPublishMarks(t *testing.T) {
	f := testFixture()
	dir := t.TempDir()
	c := openStore(t, dir, f, Options{})
	if ok, err := c.Claim(4); !ok || err != nil {
		t.Fatalf("Claim: %v, %v", ok, err)
	}
	defer c.Release(4)
	p := c.Piece(4)
	want := f.piece(4)
	for off := int64(0); off < int64(len(want)); off += storagewrapper.BlockSize {
		if _, err := p.WriteAt(want[off:off+storagewrapper.BlockSize], off); err != nil {
			t.Fatal(err)
		}
		if got, err := p.Completion(); got != storagewrapper.Missing || err != nil {
			t.Fatalf("Completion of a partial piece = %v, %v", got, err)
		}
	}
	if err := p.Publish(); err != nil {
		t.Fatal(err)
	}
	if got, err := p.Completion(); got != storagewrapper.Verified || err != nil {
		t.Fatalf("Completion of a published piece = %v, %v", got, err)
	}
	data, err := os.ReadFile(dataFile(c))
	if err != nil {
		t.Fatal(err)
	}
	off := f.info.PieceOffset(4)
	if !bytes.Equal(data[off:off+int64(len(want))], want) {
		t.Fatal("the data file does not hold the piece at its offset")
	}
	// Another process: the mark is trusted, the piece not hashed again.
	c2 := openStore(t, dir, f, Options{})
	w2 := newHost(t, f, c2)
	if err := w2.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !w2.DoIHave(4) || w2.Stats().VerifiedPieces != 1 {
		t.Fatalf("after Resume: had 4 %v, %d verified", w2.DoIHave(4), w2.Stats().VerifiedPieces)
	}
	buf := make([]byte, len(want))
	if _, err := w2.ReadAt(context.Background(), buf, off); err != nil || !bytes.Equal(buf, want) {
		t.Fatalf("read of the marked piece: %v, right bytes %v", err, bytes.Equal(buf, want))
	}
	if n := w2.Stats().Hashed; n != 0 {
		t.Fatalf("the second process hashed %d pieces; the record vouched for them", n)
	}
}

// TestPublishRace: two processes claim and publish every piece of the
// torrent at the same moment, each taking what the other did not: no
// error, every piece marked, right bytes.
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
	got, _ := piecesIn(t, dir)
	want := make([]int, f.info.NumPieces())
	for i := range want {
		want[i] = i
	}
	if !slices.Equal(got, want) {
		t.Fatalf("marked %v, want %v", got, want)
	}
	c := openStore(t, dir, f, Options{})
	data, err := os.ReadFile(dataFile(c))
	if err != nil || !bytes.Equal(data, f.data) {
		t.Fatalf("the data file after the race: %v, right bytes %v", err, bytes.Equal(data, f.data))
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
			if n := w.Stats().Hashed; n != 0 {
				t.Fatalf("%d pieces hashed to adopt a piece another process marked", n)
			}
		})
	}
}

// TestOldLayoutDiscarded: a cache directory in the layout of older btfs
// (one file per piece) is removed at Open with one line in the log, and
// none of its bytes is taken for a piece.
func TestOldLayoutDiscarded(t *testing.T) {
	f := testFixture()
	dir := t.TempDir()
	for _, sub := range []string{"pieces", "partial"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "pieces", "000003"), f.piece(3), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	c := openStore(t, dir, f, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	for _, sub := range []string{"pieces", "partial"} {
		if _, err := os.Stat(filepath.Join(dir, sub)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s/ of the old layout still there: %v", sub, err)
		}
	}
	if n := strings.Count(logs.String(), "old one-file-per-piece layout"); n != 1 {
		t.Fatalf("%d lines about the old layout, want 1:\n%s", n, logs.String())
	}
	if got, err := c.Piece(3).Completion(); got != storagewrapper.Missing || err != nil {
		t.Fatalf("a piece of the old layout: Completion = %v, %v; want missing", got, err)
	}
}
