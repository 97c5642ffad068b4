// Package memtorrent is a test fixture shared by the packages that serve a
// torrent's bytes (httpserve, stream): a real storagewrapper.Wrapper over a
// MemStore holding bytes the test knows, whose pieces the test verifies as
// if they had been downloaded. It is imported by tests only.
package memtorrent

import (
	"crypto/sha1"
	"testing"

	"btfs/metainfo"
	"btfs/storagewrapper"
)

// Open sets info's piece hashes to those of data (info.PieceLength and
// info.TotalLength set, len(data) == info.TotalLength) and returns a
// wrapper over a MemStore with nothing verified yet, closed when t ends.
func Open(t testing.TB, info *metainfo.Info, data []byte) *storagewrapper.Wrapper {
	t.Helper()
	n := int((info.TotalLength + info.PieceLength - 1) / info.PieceLength)
	info.Pieces = make([]metainfo.Hash, n)
	for p := range n {
		info.Pieces[p] = sha1.Sum(data[int64(p)*info.PieceLength : min(int64(p+1)*info.PieceLength, info.TotalLength)])
	}
	w, err := storagewrapper.New(info, storagewrapper.NewMemStore(info), storagewrapper.Config{})
	if err != nil {
		t.Fatalf("storagewrapper.New: %v", err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return w
}

// Deliver hands every block of piece p of data to w: p is verified.
func Deliver(t testing.TB, w *storagewrapper.Wrapper, info *metainfo.Info, data []byte, p int) {
	t.Helper()
	for {
		b, st := w.NewRequest(p)
		if !st.OK() {
			return
		}
		off := info.PieceOffset(p) + b.Begin
		if _, err := w.PieceCameIn(p, b.Begin, data[off:off+int64(b.Length)], "test"); err != nil {
			t.Fatalf("PieceCameIn(%d, %d): %v", p, b.Begin, err)
		}
	}
}

// Fill verifies every piece.
func Fill(t testing.TB, w *storagewrapper.Wrapper, info *metainfo.Info, data []byte) {
	t.Helper()
	for p := range info.NumPieces() {
		Deliver(t, w, info, data, p)
	}
}
