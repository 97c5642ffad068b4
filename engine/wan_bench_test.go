package engine

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"btfs/internal/poll"
	"btfs/internal/swarmtest"
	"btfs/internal/swarmtest/shaper"
)

// BenchmarkWANReads measures what a reader waits for on the shaped swarm
// of the bench's easy profile (9 seeders at 2-6 MB/s, RTT 40-160 ms, a
// very slow one, one that churns): a 64 KiB read at an unread offset
// while the engine fetches the rest of the file in the background, as a
// player's seek after its probe does. The first read comes 1 s after the
// first peer connects (peers still young: a seek right after a probe);
// the others every 300 ms after the previous one returns, each at a piece
// not verified yet. It reports the median, p90 and worst of those reads.
// Root, nft and a private network namespace are needed (see
// swarmtest.RequireShaper); run with -benchtime=1x.
func BenchmarkWANReads(b *testing.B) {
	swarmtest.RequireShaper(b)
	swarmtest.Require(b, "aria2c")
	swarmtest.RequireLibtorrent(b)
	prof, err := shaper.Lookup("easy")
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	path, mi := swarmtest.MakeTorrent(b, dir, swarmtest.TorrentOptions{Size: 192 << 20, PieceLength: 1 << 20, Seed: 7})
	sw := swarmtest.StartShapedSwarm(b, prof, path, dir)
	var lat []time.Duration
	for b.Loop() {
		tor, store := leechEngine(b, mi, Config{Logger: testLogger(b), Peers: sw.Seeders, Trackers: [][]string{}})
		ctx := context.Background()
		poll.Until(b, 60*time.Second, "a peer to connect", func() bool {
			st, err := tor.Stats(ctx)
			return err == nil && st.Peers > 0
		})
		time.Sleep(time.Second)
		rng := rand.New(rand.NewPCG(1, 2))
		buf := make([]byte, 64<<10)
		for range 24 {
			piece := -1
			for range 100 {
				if i := rng.IntN(mi.Info.NumPieces()); !store.DoIHave(i) {
					piece = i
					break
				}
			}
			if piece < 0 {
				break // the background fetch has it all
			}
			off := mi.Info.PieceOffset(piece) + rng.Int64N(mi.Info.PieceLen(piece)-int64(len(buf)))
			rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			start := time.Now()
			_, err := store.ReadAt(rctx, buf, off)
			cancel()
			if err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
			time.Sleep(300 * time.Millisecond)
		}
		st, _ := tor.Stats(ctx)
		for _, ps := range st.PerPeer {
			b.Logf("%v: rate %.1f MB/s, rtt %v, outstanding %d", ps.Addr, ps.DownloadRate/1e6, ps.RTT, ps.Outstanding)
		}
		b.Logf("hedged %d, wasted %d bytes (%d withdrawn, %d duplicate), reads %v", st.Hedged, st.Wasted, st.WastedWithdrawn, st.WastedDuplicate, lat)
		tor.Close()
	}
	if len(lat) == 0 {
		b.Fatal("no read measured")
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[len(lat)*9/10]), "p90-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
	b.ReportMetric(float64(len(lat)), "reads")
}

// BenchmarkWANSequential reads a 64 MiB file from start to end in 128 KiB
// reads on the shaped easy swarm, as cat on a fresh mount does, and
// reports the rate and the bytes thrown away. Same needs as
// BenchmarkWANReads.
func BenchmarkWANSequential(b *testing.B) {
	swarmtest.RequireShaper(b)
	swarmtest.Require(b, "aria2c")
	swarmtest.RequireLibtorrent(b)
	prof, err := shaper.Lookup("easy")
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	path, mi := swarmtest.MakeTorrent(b, dir, swarmtest.TorrentOptions{Size: 64 << 20, PieceLength: 1 << 20, Seed: 8})
	sw := swarmtest.StartShapedSwarm(b, prof, path, dir)
	var secs, wasted, hedged float64
	for b.Loop() {
		tor, store := leechEngine(b, mi, Config{Logger: testLogger(b), Peers: sw.Seeders, Trackers: [][]string{}})
		ctx := context.Background()
		buf := make([]byte, 128<<10)
		start := time.Now()
		for off := int64(0); off < mi.Info.TotalLength; off += int64(len(buf)) {
			rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			_, err := store.ReadAt(rctx, buf, off)
			cancel()
			if err != nil {
				b.Fatal(err)
			}
		}
		secs += time.Since(start).Seconds()
		st, _ := tor.Stats(ctx)
		wasted += float64(st.Wasted)
		hedged += float64(st.Hedged)
		b.Logf("%.2f s, hedged %d, wasted %d (%d withdrawn, %d duplicate)", time.Since(start).Seconds(), st.Hedged, st.Wasted, st.WastedWithdrawn, st.WastedDuplicate)
		tor.Close()
	}
	b.ReportMetric(float64(mi.Info.TotalLength)/1e6/secs*float64(b.N), "MB/s")
	b.ReportMetric(wasted/1e6/float64(b.N), "wasted-MB")
	b.ReportMetric(hedged/float64(b.N), "hedged")
}
