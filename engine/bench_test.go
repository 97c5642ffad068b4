package engine

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"btfs/internal/swarmtest"
)

// BenchmarkDownload measures an in-process swarm: one seeder reading its
// files, one leecher writing into memory, over loopback TCP. It is the
// engine's own cost per byte (wire codec, request pipeline, loop round
// trips, hashing), without another client's limits; bench/get-vs-aria2.sh
// compares against aria2c.
func BenchmarkDownload(b *testing.B) {
	for _, pieceLen := range []int64{256 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("piece=%dKiB", pieceLen>>10), func(b *testing.B) {
			dir := b.TempDir()
			const size = 64 << 20
			_, mi := swarmtest.MakeTorrent(b, dir, swarmtest.TorrentOptions{Size: size, PieceLength: pieceLen, Seed: 71})
			b.SetBytes(size)
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				seeder := seedEngine(b, mi, dir, Config{})
				b.StartTimer()
				leecher, sw := leechEngine(b, mi, Config{Peers: []netip.AddrPort{seeder.ListenAddr()}})
				select {
				case <-leecher.Complete():
				case <-time.After(5 * time.Minute):
					b.Fatal("download did not complete")
				}
				b.StopTimer()
				leecher.Close()
				sw.Close()
				seeder.Close()
				b.StartTimer()
			}
		})
	}
}
