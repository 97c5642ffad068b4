package stream_test

import (
	"context"
	"testing"
	"time"

	"btfs/internal/poll"
	"btfs/stream"
)

// TestRegistry opens two Readers of one torrent into a Registry: each is
// listed with its position and window while open and gone after Close; a
// read that waits for its piece lands in a bucket above a read served at
// once; a read inside the window of verified bytes is a readahead hit.
func TestRegistry(t *testing.T) {
	const pieceLen, total = 16 << 10, 128 << 10
	tr := newTorrent(t, pieceLen, total)
	for p := range 4 {
		tr.deliver(t, p)
	}
	reg := stream.NewRegistry()
	pol := stream.NewPolicy(8<<10, 32<<10)
	a := stream.NewReader(tr.w, 0, total, stream.Config{Policy: pol, PieceLength: pieceLen, Registry: reg, Kind: "fuse", Name: "a"})
	b := stream.NewReader(tr.w, 0, total, stream.Config{Policy: pol, PieceLength: pieceLen, Registry: reg, Kind: "http", Name: "b"})
	if got := reg.Readers(); len(got) != 2 || got[0].Name != "a" || got[1].Name != "b" || got[0].Torrent != stream.Torrent(tr.w) {
		t.Fatalf("Readers = %+v", got)
	}
	buf := make([]byte, 4096)
	for off := int64(0); off < 5*4096; off += 4096 {
		if _, err := a.ReadAt(context.Background(), buf, off); err != nil {
			t.Fatal(err)
		}
	}
	ra := reg.Readers()[0]
	if ra.Pos != 5*4096 || ra.WindowStart > ra.Pos || ra.WindowEnd <= ra.Pos {
		t.Fatalf("reader a: %+v", ra)
	}
	st := reg.Stats()["fuse"]
	if st.Reads != 5 || st.ReadaheadHits == 0 || st.ReadaheadHits >= 5 || st.WaitCounts[0] != 5 {
		t.Fatalf("fuse stats %+v (the first read is no hit: no window yet)", st)
	}

	// b waits for piece 6 until it is delivered.
	done := make(chan error, 1)
	go func() {
		_, err := b.ReadAt(context.Background(), buf, 6*pieceLen)
		done <- err
	}()
	poll.Until(t, 10*time.Second, "b waiting with a want", func() bool { return len(tr.w.Wants()) > 0 && len(done) == 0 })
	time.Sleep(3 * time.Millisecond) // a wait longer than the first bucket: the result is checked, not the time
	tr.deliver(t, 6)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	hs := reg.Stats()["http"]
	if hs.Reads != 1 || hs.WaitCounts[0] != 0 || hs.WaitSum <= 0 || hs.ReadaheadHits != 0 {
		t.Fatalf("http stats %+v", hs)
	}
	_ = a.Close()
	_ = b.Close()
	if got := reg.Readers(); len(got) != 0 {
		t.Fatalf("after Close: %+v", got)
	}
}
