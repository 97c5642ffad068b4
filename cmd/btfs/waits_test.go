package main

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"btfs/internal/poll"
	"btfs/internal/swarmtest"
)

// TestEvictedPieceRefetchedAtOnce: a mount with a cache cap far below the
// torrent (so it fetches only what is read, and evicts) reads scattered
// pieces from aria2c, one open-read-close at a time, so that nothing is
// wanted between two reads; then reads the first piece again, evicted
// meanwhile. Every read must succeed within -read-timeout 5s, half of
// aria2c's 10 s choke round, and btfs must never tell aria2c it is not
// interested: it used to between reads, aria2c choked it at its next
// round, and the next read waited for the round after (11 s in a soak).
func TestEvictedPieceRefetchedAtOnce(t *testing.T) {
	const pieceLen = 256 << 10
	s := startCacheSwarm(t, swarmtest.TorrentOptions{Name: "evict.bin", Size: 16 << 20, PieceLength: pieceLen, Seed: 31})
	cacheDir := t.TempDir()
	mp := mountpoint(t)
	p := mountShared(t, s, cacheDir, mp, "-cache-size", strconv.Itoa(4*pieceLen), "-read-timeout", "5s")
	path := s.mounted(mp, s.mi.Info.Files[0])
	src := s.source(t, s.mi.Info.Files[0])
	read := func(piece int) error {
		f, err := os.OpenFile(path, os.O_RDONLY|unix.O_DIRECT, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		buf := make([]byte, 4096) // O_DIRECT: the page cache is not asked
		off := int64(piece) * pieceLen
		if _, err := f.ReadAt(buf, off); err != nil {
			return err
		}
		if !bytes.Equal(buf, src[off:off+4096]) {
			t.Fatalf("piece %d: wrong bytes", piece)
		}
		return nil
	}
	// The first read may wait for the connection and aria2c's first
	// unchoke: it is tried until it works.
	poll.UntilNil(t, 60*time.Second, "a first read of piece 0", func() error { return read(0) })
	for _, piece := range []int{40, 9, 57, 23, 33, 2, 61, 17} {
		if err := read(piece); err != nil {
			t.Fatalf("read of piece %d: %v\n%s", piece, err, p.out.String())
		}
	}
	poll.Until(t, 10*time.Second, "piece 0 evicted from the cache", func() bool {
		return !marked(t, torrentDir(cacheDir, s.mi), s.mi.Info).Has(0)
	})
	if err := read(0); err != nil {
		t.Fatalf("read of evicted piece 0: %v\n%s", err, p.out.String())
	}
	p.stop(t)
	// Each read took less than aria2c's round here, but a reader pausing
	// longer would have met a choke: btfs must not have gone
	// not-interested at all.
	if out := p.out.String(); strings.Contains(out, "not interested in the peer any more") {
		t.Fatalf("btfs went not-interested to aria2c between reads:\n%s", out)
	}
}
