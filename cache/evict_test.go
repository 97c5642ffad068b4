package cache

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"btfs/internal/poll"
)

// TestEviction: under a cap, publishing evicts the least recently read
// pieces first, never a piece pinned by another process or by this one;
// the process that had an evicted piece fetches it again for a reader.
func TestEviction(t *testing.T) {
	f := testFixture()
	dir := t.TempDir()
	const plen = fxPieceLen
	limit := int64(6 * plen)
	c := openStore(t, dir, f, Options{MaxBytes: limit, PollInterval: time.Hour})
	w := newHost(t, f, c)
	run(t, c, w)
	for i := range 6 {
		download(t, w, f, i)
	}
	if got, _ := piecesIn(t, dir); !slices.Equal(got, []int{0, 1, 2, 3, 4, 5}) {
		t.Fatalf("under the cap, pieces %v", got)
	}
	// Read times: piece k read k minutes after base, piece 1 an hour
	// after; piece 0, the oldest, is pinned by another process.
	base := time.Now().Add(-2 * time.Hour)
	for i := range 6 {
		setRead(t, c, i, base.Add(time.Duration(i)*time.Minute))
	}
	setRead(t, c, 1, base.Add(time.Hour))
	startChild(t, "pin", dir, "0")

	steps := []struct {
		publish int
		// pin is a piece pinned in this process meanwhile, -1 for none.
		pin  int
		want []int
	}{
		// 6 pieces + 1 > cap: down to cap-slack-1 piece (4.25 pieces):
		// 0 is pinned, 2 and 3 are the least recently read.
		{publish: 6, pin: -1, want: []int{0, 1, 4, 5, 6}},
		{publish: 7, pin: -1, want: []int{0, 1, 4, 5, 6, 7}},
		// Over again: 0 (another process) and 4 (a reader here) are
		// pinned: 5 goes.
		{publish: 8, pin: 4, want: []int{0, 1, 4, 6, 7, 8}},
	}
	for _, st := range steps {
		unpin := func() {}
		if st.pin >= 0 {
			unpin = c.Pin(st.pin, st.pin)
		}
		download(t, w, f, st.publish)
		unpin()
		got, total := piecesIn(t, dir)
		if !slices.Equal(got, st.want) {
			t.Fatalf("after publishing %d: pieces %v, want %v", st.publish, got, st.want)
		}
		if total > limit {
			t.Fatalf("after publishing %d: %d bytes over the cap of %d", st.publish, total, limit)
		}
		if u := c.Usage(); u.Bytes != total || u.Cap != limit {
			t.Fatalf("after publishing %d: Usage %+v, on disk %d bytes", st.publish, u, total)
		}
	}
	if u := c.Usage(); u.Evictions != 3 { // 2, 3, then 5
		t.Fatalf("Usage %+v: want 3 evictions", u)
	}
	// This process had 2, 3 and 5: they are unverified, and a reader
	// gets them again (fetched anew).
	waitChanges(t, w, "evicted pieces unverified", func(c changes) bool {
		return c.unverified[2] && c.unverified[3] && c.unverified[5]
	})
	for _, i := range []int{2, 3, 5} {
		if w.DoIHave(i) {
			t.Fatalf("piece %d evicted but still had", i)
		}
	}
	read := make(chan error, 1)
	buf := make([]byte, 3000)
	off := f.info.PieceOffset(3) - 1000 // across pieces 2 and 3
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		_, err := w.ReadAt(ctx, buf, off)
		read <- err
	}()
	for _, i := range []int{2, 3} {
		downloadWhenNotBusy(t, w, f, i)
	}
	if err := <-read; err != nil || !bytes.Equal(buf, f.data[off:off+3000]) {
		t.Fatalf("read of evicted pieces: %v, right bytes %v", err, bytes.Equal(buf, f.data[off:off+3000]))
	}
}

// TestEvictionByWatcher: pieces published by a process without a cap are
// evicted by one with a cap, down below it.
func TestEvictionByWatcher(t *testing.T) {
	f := testFixture()
	dir := t.TempDir()
	limit := int64(4 * fxPieceLen)
	capped := openStore(t, dir, f, Options{MaxBytes: limit, PollInterval: time.Hour})
	run(t, capped, newHost(t, f, capped))
	free := openStore(t, dir, f, Options{})
	w := newHost(t, f, free)
	for i := range f.info.NumPieces() {
		download(t, w, f, i)
	}
	poll.UntilNil(t, waitFor, "the cache to shrink below its cap", func() error {
		if _, total := piecesIn(t, dir); total > limit {
			return fmt.Errorf("still %d bytes, over the cap of %d", total, limit)
		}
		return nil
	})
}

// logBuffer is a log destination safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestLostPinnedReported: eviction never removes a pinned piece, so a
// pinned piece whose file disappears was removed outside the protocol, and
// that is reported as an error; a piece gone before it was pinned (evicted
// before the reader came) is an ordinary miss.
func TestLostPinnedReported(t *testing.T) {
	f := testFixture()
	dir := t.TempDir()
	var logs logBuffer
	c := openStore(t, dir, f, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil)), PollInterval: time.Hour})
	w := newHost(t, f, c)
	for i := range 3 {
		download(t, w, f, i)
	}
	// Piece 1 is unmarked before a reader pins it; piece 2 while
	// pinned (by hand, not by the eviction protocol).
	unmark := func(i int) {
		t.Helper()
		if err := c.lockDir(); err != nil {
			t.Fatal(err)
		}
		defer c.unlockDir()
		if err := c.setState(i, stateNone); err != nil {
			t.Fatal(err)
		}
	}
	unmark(1)
	defer c.Pin(1, 2)()
	run(t, c, w) // its first scan finds piece 1 gone
	unmark(2)
	waitChanges(t, w, "pieces 1 and 2 unverified", func(c changes) bool { return c.unverified[1] && c.unverified[2] })
	var errs []string
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "a piece in use left the cache") {
			errs = append(errs, line)
		}
	}
	if len(errs) != 1 || !strings.Contains(errs[0], "piece=2") {
		t.Fatalf("want one error, for piece 2; got %q; log:\n%s", errs, logs.String())
	}
}
