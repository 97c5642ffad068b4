package stream_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"btfs/internal/leakcheck"
	"btfs/internal/memtorrent"
	"btfs/internal/poll"
	"btfs/metainfo"
	"btfs/picker"
	"btfs/storagewrapper"
	"btfs/stream"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// torrent is a real storagewrapper.Wrapper over a MemStore, with the bytes
// the test knows.
type torrent struct {
	info *metainfo.Info
	data []byte
	w    *storagewrapper.Wrapper
}

// newTorrent makes a torrent of total pseudo-random bytes in pieces of
// pieceLen, nothing verified yet.
func newTorrent(t testing.TB, pieceLen, total int64) *torrent {
	t.Helper()
	data := make([]byte, total)
	_, _ = rand.NewChaCha8([32]byte{byte(pieceLen), byte(total)}).Read(data)
	info := &metainfo.Info{Name: "t", PieceLength: pieceLen, TotalLength: total}
	info.Files = []metainfo.File{{Path: []string{"t"}, Length: total}}
	return &torrent{info: info, data: data, w: memtorrent.Open(t, info, data)}
}

// deliver hands every block of piece p to the wrapper: p is verified.
func (tr *torrent) deliver(t testing.TB, p int) { memtorrent.Deliver(t, tr.w, tr.info, tr.data, p) }

// fill verifies every piece.
func (tr *torrent) fill(t testing.TB) { memtorrent.Fill(t, tr.w, tr.info, tr.data) }

// wantsOf returns the wants of priority pr registered now, as [start, end)
// torrent offsets, in order.
func (tr *torrent) wantsOf(pr picker.Priority) [][2]int64 {
	var out [][2]int64
	for _, w := range tr.w.Wants() {
		if w.Priority == pr {
			out = append(out, [2]int64{w.Start, w.End})
		}
	}
	slices.SortFunc(out, func(a, b [2]int64) int { return int(a[0] - b[0]) })
	return out
}

// TestReaderSeekReleasesWindow reads a file at a non-zero torrent offset
// through a Reader and watches the Readahead wants of the real wrapper: a
// window ahead of the reader that grows as it streams, replaced at once by
// one at the new position when the reader seeks (the old window's want is
// gone, not left for the engine to fetch), none for a reader that keeps
// seeking, and nothing left after Close.
func TestReaderSeekReleasesWindow(t *testing.T) {
	const pieceLen, total = 16 << 10, 64 << 10
	const fileOff, size = 1000, 60000
	tr := newTorrent(t, pieceLen, total)
	tr.fill(t)
	r := stream.NewReader(tr.w, fileOff, size, stream.Config{Policy: stream.NewPolicy(1000, 8000), PieceLength: pieceLen})
	buf := make([]byte, 500)
	read := func(off int64) [][2]int64 {
		t.Helper()
		n, err := r.ReadAt(context.Background(), buf, off)
		if err != nil || n != len(buf) {
			t.Fatalf("ReadAt(%d at %d) = %d, %v", len(buf), off, n, err)
		}
		if !bytes.Equal(buf, tr.data[fileOff+off:fileOff+off+int64(n)]) {
			t.Fatalf("ReadAt at %d: bytes differ from the file's", off)
		}
		return tr.wantsOf(picker.Readahead)
	}

	var last [2]int64
	for off := int64(0); off < 10000; off += 500 {
		ws := read(off)
		if len(ws) != 1 {
			t.Fatalf("after a sequential read at %d: readahead wants %v, want one", off, ws)
		}
		pos := fileOff + off + 500
		if ws[0][0] > pos || ws[0][1] <= pos || ws[0][1]-ws[0][0] > 8000 {
			t.Fatalf("after a sequential read at %d: window %v, want one of at most 8000 bytes ahead of %d", off, ws[0], pos)
		}
		last = ws[0]
	}
	if last[1]-last[0] != 8000 {
		t.Errorf("window after 10000 sequential bytes: %v, want the maximum 8000", last)
	}

	// A seek forward past the window: the old window is released, the new
	// one starts at the reader.
	ws := read(40000)
	if want := [][2]int64{{fileOff + 40500, fileOff + 41500}}; !slices.Equal(ws, want) {
		t.Errorf("after a seek to 40000: readahead wants %v, want only %v (the old window %v released)", ws, want, last)
	}
	// A seek back.
	ws = read(20000)
	if want := [][2]int64{{fileOff + 20500, fileOff + 21500}}; !slices.Equal(ws, want) {
		t.Errorf("after a seek back to 20000: readahead wants %v, want only %v", ws, want)
	}
	// A third short seek makes a random reader: no readahead at all.
	if ws = read(5000); len(ws) != 0 {
		t.Errorf("after three seeks in a row: readahead wants %v, want none", ws)
	}

	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if ws := tr.w.Wants(); len(ws) != 0 {
		t.Errorf("after Close: wants %v, want none", ws)
	}
	// Reads after Close still read, and register nothing that stays.
	if _, err := r.ReadAt(context.Background(), buf, 5500); err != nil {
		t.Errorf("ReadAt after Close: %v", err)
	}
	if ws := tr.w.Wants(); len(ws) != 0 {
		t.Errorf("after a read after Close: wants %v, want none", ws)
	}
}

// TestReaderSeekWhileWaiting: a reader blocked on a missing piece with a
// readahead window ahead of it seeks elsewhere (another goroutine, as a
// player's seek while its previous read waits); the old window is released
// at once, while the blocked read keeps only its own Now want until its
// piece comes.
func TestReaderSeekWhileWaiting(t *testing.T) {
	const pieceLen, total = 16 << 10, 256 << 10
	tr := newTorrent(t, pieceLen, total)
	for p := 8; p < 16; p++ {
		tr.deliver(t, p)
	}
	r := stream.NewReader(tr.w, 0, total, stream.Config{Policy: stream.NewPolicy(32<<10, 64<<10), PieceLength: pieceLen})
	defer r.Close()

	var wg sync.WaitGroup
	wg.Add(1)
	var readErr error
	go func() {
		defer wg.Done()
		buf := make([]byte, 4096)
		_, readErr = r.ReadAt(context.Background(), buf, 0)
	}()
	poll.Until(t, 10*time.Second, "the blocked read's Now want and its readahead window", func() bool {
		return len(tr.wantsOf(picker.Now)) == 1 && len(tr.wantsOf(picker.Readahead)) == 1
	})
	if ws := tr.wantsOf(picker.Readahead); ws[0] != [2]int64{4096, 4096 + 32<<10} {
		t.Errorf("readahead of the first read: %v, want [4096, %d)", ws, 4096+32<<10)
	}

	buf := make([]byte, 4096)
	at := int64(10 * pieceLen)
	if _, err := r.ReadAt(context.Background(), buf, at); err != nil {
		t.Fatalf("ReadAt after the seek: %v", err)
	}
	if !bytes.Equal(buf, tr.data[at:at+4096]) {
		t.Fatal("ReadAt after the seek: bytes differ")
	}
	want := [][2]int64{{at + 4096, at + 4096 + 32<<10}}
	if ws := tr.wantsOf(picker.Readahead); !slices.Equal(ws, want) {
		t.Errorf("after the seek: readahead wants %v, want only %v", ws, want)
	}
	if ws := tr.wantsOf(picker.Now); len(ws) != 1 || ws[0][0] != 0 {
		t.Errorf("after the seek: Now wants %v, want the blocked read's [0, 4096)", ws)
	}

	tr.deliver(t, 0)
	wg.Wait()
	if readErr != nil {
		t.Fatalf("the blocked read: %v", readErr)
	}
	if ws := tr.wantsOf(picker.Now); len(ws) != 0 {
		t.Errorf("after the blocked read returned: Now wants %v, want none", ws)
	}
}

// TestReaderHeadTail: with HeadTail set the head and tail of the range are
// wanted from NewReader to Close; without it nothing is wanted before the
// first read.
func TestReaderHeadTail(t *testing.T) {
	const pieceLen, total = 16 << 10, 1 << 20
	tr := newTorrent(t, pieceLen, total)
	const off, size = 100, 500 << 10
	plain := stream.NewReader(tr.w, off, size, stream.Config{PieceLength: pieceLen})
	if ws := tr.w.Wants(); len(ws) != 0 {
		t.Errorf("a plain Reader wants %v before reading, want nothing", ws)
	}
	media := stream.NewReader(tr.w, off, size, stream.Config{PieceLength: pieceLen, HeadTail: 64 << 10})
	want := [][2]int64{{off, off + 64<<10}, {off + size - 64<<10, off + size}}
	if ws := tr.wantsOf(picker.Readahead); !slices.Equal(ws, want) {
		t.Errorf("head and tail wants %v, want %v", ws, want)
	}
	if err := media.Close(); err != nil {
		t.Fatal(err)
	}
	if err := media.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := plain.Close(); err != nil {
		t.Fatal(err)
	}
	if ws := tr.w.Wants(); len(ws) != 0 {
		t.Errorf("after Close: wants %v, want none", ws)
	}
}

// TestReaderSetReadahead: a fixed window replaces the policy's at once, 0
// turns readahead off, a negative size returns to the policy.
func TestReaderSetReadahead(t *testing.T) {
	const pieceLen, total = 16 << 10, 256 << 10
	tr := newTorrent(t, pieceLen, total)
	tr.fill(t)
	r := stream.NewReader(tr.w, 0, total, stream.Config{Policy: stream.NewPolicy(1000, 8000), PieceLength: pieceLen})
	defer r.Close()
	r.SetReadahead(5000) // before the first read: nothing to be ahead of
	if ws := tr.w.Wants(); len(ws) != 0 {
		t.Errorf("SetReadahead before a read: wants %v, want none", ws)
	}
	buf := make([]byte, 100)
	if _, err := r.ReadAt(context.Background(), buf, 0); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		n    int64
		want [][2]int64
	}{
		{-1, nil}, // checked below: the policy's min
		{100 << 10, [][2]int64{{100, 100 + 100<<10}}},
		{0, nil},
		{5000, [][2]int64{{100, 5100}}},
		{-1, [][2]int64{{100, 1100}}},
	}
	steps[0].want = [][2]int64{{100, 1100}}
	for _, s := range steps {
		r.SetReadahead(s.n)
		if ws := tr.wantsOf(picker.Readahead); !slices.Equal(ws, s.want) {
			t.Errorf("SetReadahead(%d): readahead wants %v, want %v", s.n, ws, s.want)
		}
	}
}

// TestReaderReadAt: the Reader reads its range as io.ReaderAt does, at the
// range's offsets: short with io.EOF at its end, io.EOF past it, an error
// for a negative offset, and the waiting read's ctx error.
func TestReaderReadAt(t *testing.T) {
	const pieceLen, total = 16 << 10, 100 << 10
	tr := newTorrent(t, pieceLen, total)
	const off, size = 5000, 50000
	for p := range 4 {
		tr.deliver(t, p)
	}
	r := stream.NewReader(tr.w, off, size, stream.Config{PieceLength: pieceLen})
	defer r.Close()
	if r.Size() != size {
		t.Errorf("Size = %d, want %d", r.Size(), size)
	}
	ctx := context.Background()
	buf := make([]byte, 3000)
	tests := []struct {
		name    string
		at      int64
		wantN   int
		wantEOF bool
	}{
		{"start", 0, 3000, false},
		{"middle", 20000, 3000, false},
		{"exactly to the end", size - 3000, 3000, false},
		{"across the end", size - 1000, 1000, true},
		{"at the end", size, 0, true},
		{"past the end", size + 10, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := r.ReadAt(ctx, buf, tt.at)
			if n != tt.wantN || errors.Is(err, io.EOF) != tt.wantEOF || (err != nil && !errors.Is(err, io.EOF)) {
				t.Fatalf("ReadAt(%d at %d) = %d, %v; want %d, EOF %v", len(buf), tt.at, n, err, tt.wantN, tt.wantEOF)
			}
			if !bytes.Equal(buf[:n], tr.data[off+tt.at:off+tt.at+int64(n)]) {
				t.Error("bytes differ from the range's")
			}
		})
	}
	if _, err := r.ReadAt(ctx, buf, -1); err == nil {
		t.Error("ReadAt at -1: no error")
	}
	// A range whose pieces are missing: the read waits until ctx is done.
	far := stream.NewReader(tr.w, 80<<10, 10<<10, stream.Config{PieceLength: pieceLen})
	defer far.Close()
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := far.ReadAt(cctx, buf, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("ReadAt of a missing piece with a cancelled ctx: %v, want context.Canceled", err)
	}
	if got := far.FirstMissing(0, 10<<10); got != 0 {
		t.Errorf("FirstMissing of a missing range = %d, want 0", got)
	}
	if got := r.FirstMissing(0, 30000); got != 30000 {
		t.Errorf("FirstMissing of a verified range = %d, want its end", got)
	}
	// Pieces 0-3 (to 64 KiB) are verified; a range from 5000 past them.
	long := stream.NewReader(tr.w, off, 90000, stream.Config{PieceLength: pieceLen})
	defer long.Close()
	if got := long.FirstMissing(0, 90000); got != 4*pieceLen-off {
		t.Errorf("FirstMissing across piece 4 = %d, want %d", got, 4*pieceLen-off)
	}
}
