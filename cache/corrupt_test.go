package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"btfs/internal/poll"
	"btfs/storagewrapper"
)

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

// TestCorruptPiece: a marked piece damaged by hand in the data file is
// detected — while the process has it (the file's stamp differs at the
// next scan: its pieces are hashed again), and at the next start (Open
// checks the stamps, Resume hashes the suspect pieces) — unmarked, and
// fetched again; no reader sees its bytes, and the pieces of the file that
// were right are marked again.
func TestCorruptPiece(t *testing.T) {
	f := testFixture()
	dir := t.TempDir()
	c := openStore(t, dir, f, Options{PollInterval: 20 * time.Millisecond})
	w := newHost(t, f, c)
	run(t, c, w)
	for i := range 4 {
		download(t, w, f, i)
	}
	w.TakeChanges()

	corrupt(t, c, 2)
	waitChanges(t, w, "the damaged piece unverified", func(c changes) bool { return c.unverified[2] })
	poll.Until(t, waitFor, "the damaged piece to be unmarked, the others marked again", func() bool {
		return stateOf(t, c, 2) == stateNone && stateOf(t, c, 0) == stateMarked && stateOf(t, c, 3) == stateMarked
	})
	readPiece(t, w, f, 2)

	// Damage while no btfs runs: the next start verifies before serving.
	w.Close()
	c.Close()
	corrupt(t, c, 1)
	corrupt(t, c, 3)
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
		if s := stateOf(t, c2, i); s != stateNone {
			t.Fatalf("damaged piece %d still marked: state %d", i, s)
		}
		readPiece(t, w2, f, i)
	}
}

// TestUnmarkedBytesNeverServed: bytes in the data file under no mark —
// what a process killed in the middle of a download wrote, or anything
// else — are never served nor taken for the piece: Resume leaves the
// piece unverified without reading it, a reader waits for a download, and
// gets the right bytes.
func TestUnmarkedBytesNeverServed(t *testing.T) {
	f := testFixture()
	dir := t.TempDir()
	ch := startChild(t, "partial", dir, "5") // half of piece 5, then kill -9
	ch.kill()
	c := openStore(t, dir, f, Options{PollInterval: 20 * time.Millisecond})
	// The rest of the piece, right bytes even, written behind its back.
	fh, err := os.OpenFile(dataFile(c), os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fh.WriteAt(f.piece(5), f.info.PieceOffset(5)); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	w := newHost(t, f, c)
	run(t, c, w)
	if err := w.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	if w.DoIHave(5) || w.Stats().Hashed != 0 {
		t.Fatalf("unmarked piece: had %v, %d hashed", w.DoIHave(5), w.Stats().Hashed)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := w.ReadAt(ctx, make([]byte, 100), f.info.PieceOffset(5)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read of an unmarked piece nobody fetches: %v, want a timeout", err)
	}
	readPiece(t, w, f, 5)
}
