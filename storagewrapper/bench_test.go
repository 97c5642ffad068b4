package storagewrapper

import (
	"sync/atomic"

	"btfs/metainfo"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkPieceCameIn measures the download path of one 1 MiB piece: 64
// NewRequest + PieceCameIn calls (writes into the store), then the read-back,
// SHA-1 and Publish (for the dir store: fsync, rename, fsync of the
// directory). MB/s is per piece verified.
func BenchmarkPieceCameIn(b *testing.B) {
	const pieceLen, pieces = 1 << 20, 32
	f := newFixture(b, pieceLen, pieceLen*pieces)
	root := b.TempDir()
	for _, kind := range []string{"mem", "file"} {
		b.Run(kind, func(b *testing.B) {
			open := func() *Wrapper {
				var store Store = NewMemStore(f.info)
				if kind == "file" {
					dir := filepath.Join(root, kind)
					if err := os.RemoveAll(dir); err != nil {
						b.Fatal(err)
					}
					ds, err := NewFileStore(dir, f.info, false)
					if err != nil {
						b.Fatal(err)
					}
					store = ds
				}
				w, err := New(f.info, store, Config{})
				if err != nil {
					b.Fatal(err)
				}
				return w
			}
			w := open()
			b.SetBytes(pieceLen)
			b.ResetTimer()
			for i := range b.N {
				p := i % pieces
				if p == 0 && i > 0 {
					b.StopTimer()
					if err := w.Close(); err != nil {
						b.Fatal(err)
					}
					w = open()
					b.StartTimer()
				}
				var res Result
				for {
					blk, st := w.NewRequest(p)
					if !st.OK() {
						break
					}
					r, err := w.PieceCameIn(p, blk.Begin, f.block(blk), "peer")
					if err != nil {
						b.Fatal(err)
					}
					res = r
				}
				if !res.Verified {
					b.Fatalf("piece %d: %+v", p, res)
				}
			}
			b.StopTimer()
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkPieceCameInParallel is BenchmarkPieceCameIn with four peer
// goroutines feeding one wrapper, each downloading whole pieces, so that
// one piece's fsync overlaps another's writes and hashing. The torrent has
// 65536 identical 1 MiB pieces (one hash to compute, 1 MiB of fixture); each
// verified piece is discarded again (an unlink for the dir store, included
// in the time) so that neither RAM nor disk grows with b.N.
func BenchmarkPieceCameInParallel(b *testing.B) {
	const pieceLen, pieces = 1 << 20, 1 << 16
	one := newFixture(b, pieceLen, pieceLen)
	info := *one.info
	info.TotalLength = pieceLen * pieces
	info.Pieces = make([]metainfo.Hash, pieces)
	for i := range info.Pieces {
		info.Pieces[i] = one.info.Pieces[0]
	}
	for _, kind := range []string{"mem", "file"} {
		b.Run(kind, func(b *testing.B) {
			var store Store = NewMemStore(&info)
			if kind == "file" {
				ds, err := NewFileStore(b.TempDir(), &info, false)
				if err != nil {
					b.Fatal(err)
				}
				store = ds
			}
			w, err := New(&info, store, Config{MaxInFlight: 8})
			if err != nil {
				b.Fatal(err)
			}
			var next atomic.Int64
			b.SetBytes(pieceLen)
			b.SetParallelism(2) // 2 × GOMAXPROCS goroutines
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					p := int(next.Add(1)-1) % pieces
					var res Result
					for {
						blk, st := w.NewRequest(p)
						if !st.OK() {
							break
						}
						r, err := w.PieceCameIn(p, blk.Begin, one.block(Block{Piece: 0, Begin: blk.Begin, Length: blk.Length}), "peer")
						if err != nil {
							b.Error(err)
							return
						}
						res = r
					}
					if !res.Verified {
						b.Errorf("piece %d: %+v", p, res)
						return
					}
					if err := store.Piece(p).Discard(); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}
