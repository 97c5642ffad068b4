package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"testing"
	"time"

	"btfs/internal/poll"
	"btfs/storagewrapper"
)

// corrupt overwrites a few bytes of piece i's file in place, as a person or
// a broken program would.
func corrupt(t *testing.T, c *Store, i int) {
	t.Helper()
	fh, err := os.OpenFile(c.ds.PiecePath(i), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fh.WriteAt([]byte("garbage!"), 100); err != nil {
		t.Fatal(err)
	}
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
}

// downloadWhenNotBusy downloads piece i into w, waiting (bounded) while
// w answers that it is busy: a reader's miss is adopting the piece.
func downloadWhenNotBusy(t *testing.T, w *storagewrapper.Wrapper, f *fixture, i int) {
	t.Helper()
	poll.Until(t, waitFor, fmt.Sprintf("piece %d to be no longer busy", i), func() bool {
		return download(t, w, f, i) != storagewrapper.RequestBusy
	})
}

// readPiece reads piece i through w, fetching it (as the engine would)
// if it is not had; it fails the test unless the bytes are right.
func readPiece(t *testing.T, w *storagewrapper.Wrapper, f *fixture, i int) {
	t.Helper()
	read := make(chan error, 1)
	buf := make([]byte, f.info.PieceLen(i))
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		_, err := w.ReadAt(ctx, buf, f.info.PieceOffset(i))
		read <- err
	}()
	if !w.DoIHave(i) {
		downloadWhenNotBusy(t, w, f, i)
	}
	if err := <-read; err != nil || !bytes.Equal(buf, f.piece(i)) {
		t.Fatalf("read of piece %d: %v, right bytes %v", i, err, bytes.Equal(buf, f.piece(i)))
	}
}

// TestCorruptPiece: a piece file damaged by hand is detected — while the
// process has the piece (inotify), and at the next start (Resume) — removed,
// and fetched again; no reader sees its bytes.
func TestCorruptPiece(t *testing.T) {
	f := testFixture()
	dir := t.TempDir()
	c := openStore(t, dir, f, Options{PollInterval: time.Hour})
	w := newHost(t, f, c)
	run(t, c, w)
	for i := range 4 {
		download(t, w, f, i)
	}
	w.TakeChanges()

	corrupt(t, c, 2)
	waitChanges(t, w, "the damaged piece unverified", func(c changes) bool { return c.unverified[2] })
	poll.Until(t, waitFor, "the damaged piece file to be removed", func() bool {
		_, err := os.Stat(c.ds.PiecePath(2))
		return errors.Is(err, fs.ErrNotExist)
	})
	readPiece(t, w, f, 2)

	// Damage while no btfs runs: the next start verifies before serving.
	corrupt(t, c, 1)
	if err := os.Truncate(c.ds.PiecePath(3), 1000); err != nil {
		t.Fatal(err)
	}
	w.Close()
	c2 := openStore(t, dir, f, Options{})
	w2 := newHost(t, f, c2)
	if err := w2.Resume(context.Background()); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	for i, want := range []bool{true, false, true, false} {
		if w2.DoIHave(i) != want {
			t.Fatalf("after Resume, piece %d had = %v, want %v", i, !want, want)
		}
	}
	for _, i := range []int{1, 3} {
		if _, err := os.Stat(c2.ds.PiecePath(i)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("damaged piece %d still in the cache: %v", i, err)
		}
		readPiece(t, w2, f, i)
	}
}
