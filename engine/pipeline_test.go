package engine

import (
	"testing"
	"time"

	"btfs/engine/wire"
	"btfs/internal/swarmtest"
	"btfs/picker"
	"btfs/storagewrapper"
)

// deliver answers every request outstanding at p, as the peer would, and
// lets the loop react to each block (onBlock refills the pipeline).
func deliver(t *testing.T, s *state, p *peer) int {
	t.Helper()
	var blocks []storagewrapper.Block
	for b := range p.outstanding {
		blocks = append(blocks, b)
	}
	for _, b := range blocks {
		if !p.asked.take(b) {
			t.Fatalf("outstanding block %v not in the asked set", b)
		}
		s.onBlock(p, b, storagewrapper.Result{}, nil)
	}
	return len(blocks)
}

func TestSlowStart(t *testing.T) {
	_, mi := swarmtest.MakeTorrent(t, t.TempDir(), swarmtest.TorrentOptions{Size: 64 << 20, PieceLength: 1 << 20})
	tor := idleTorrent(t, mi)
	s := tor.s
	p := idlePeer(t, tor, 3001)
	s.fill(p)
	if got := len(p.outstanding); got != startPipeline {
		t.Fatalf("a new peer got %d requests; want %d", got, startPipeline)
	}
	// Each delivered block adds one request: the pipeline doubles with
	// every round of answers, as long as the rate is unknown.
	for want := 2 * startPipeline; want <= maxPipeline; want *= 2 {
		deliver(t, s, p)
		if got := len(p.outstanding); got != want {
			t.Fatalf("after a round of answers: %d outstanding; want %d", got, want)
		}
	}
	deliver(t, s, p)
	if got := len(p.outstanding); got != maxPipeline {
		t.Fatalf("slow start went past the cap: %d outstanding; want %d", got, maxPipeline)
	}
}

func TestTarget(t *testing.T) {
	_, mi := swarmtest.MakeTorrent(t, t.TempDir(), swarmtest.TorrentOptions{Size: 4 << 20, PieceLength: 1 << 20})
	perSec := func(blocks int) float64 { return float64(blocks) * wire.BlockSize / queueTime.Seconds() }
	for _, tc := range []struct {
		name      string
		age       time.Duration // since the peer connected
		rate      float64       // its measured rate, bytes/s
		slowStart int
		reqq      int
		snubbed   bool
		want      int
	}{
		{"new peer", 0, 0, startPipeline, 0, false, startPipeline},
		{"grown by slow start, rate unknown", time.Second, 0, 300, 0, false, 300},
		{"young: the meter lags, slow start counts", 2 * time.Second, perSec(100), 300, 0, false, 300},
		{"young: a rate above slow start", 2 * time.Second, perSec(400), 300, 0, false, 400},
		{"settled: the rate alone", 2 * rateWindow, perSec(100), 300, 0, false, 100},
		{"settled slow peer: the floor", 2 * rateWindow, 1, 300, 0, false, minPipeline},
		{"fast peer: the cap", 2 * rateWindow, perSec(10 * maxPipeline), 300, 0, false, maxPipeline},
		{"its reqq", 2 * rateWindow, perSec(400), 300, 250, false, 250},
		{"snubbed", 2 * rateWindow, perSec(400), 300, 0, true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tor := idleTorrent(t, mi)
			p := idlePeer(t, tor, 3002)
			p.started = time.Now().Add(-tc.age)
			p.down.rate = tc.rate
			p.slowStart, p.reqq, p.snubbed = tc.slowStart, tc.reqq, tc.snubbed
			if got := tor.s.target(p); got != tc.want {
				t.Fatalf("target = %d; want %d", got, tc.want)
			}
		})
	}
}

func TestPreempt(t *testing.T) {
	// 256 KiB pieces of 16 blocks: a 256-block pipeline covers 16 pieces,
	// well under the storagewrapper's in-flight cap.
	_, mi := swarmtest.MakeTorrent(t, t.TempDir(), swarmtest.TorrentOptions{Size: 64 << 20, PieceLength: 256 << 10})
	const depth = 256
	for _, tc := range []struct {
		name        string
		depth       int             // requests for nobody's pieces before the read
		priority    picker.Priority // of the new want
		wantRelease int             // requests withdrawn for it
	}{
		{"a reader waits behind a full pipeline", depth, picker.Now, depth - preemptKeep},
		{"readahead does not preempt", depth, picker.Readahead, 0},
		{"a short queue is left alone", preemptKeep, picker.Now, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tor := idleTorrent(t, mi)
			s := tor.s
			p := idlePeer(t, tor, 3003)
			p.slowStart = tc.depth
			s.fill(p)
			if len(p.outstanding) != tc.depth {
				t.Fatalf("%d requests outstanding; want %d", len(p.outstanding), tc.depth)
			}
			before := make(map[storagewrapper.Block]time.Time, len(p.outstanding))
			for b, at := range p.outstanding {
				before[b] = at
			}
			// Two pieces nobody asked for yet become wanted: more blocks
			// than urgentExtra lets a reader add beyond the target.
			inFlight := map[int]bool{}
			for _, i := range tor.sw.InFlight() {
				inFlight[i] = true
			}
			piece := -1
			for i := mi.Info.NumPieces() - 1; i >= 1; i-- {
				if !inFlight[i] && !inFlight[i-1] {
					piece = i
					break
				}
			}
			off := mi.Info.PieceOffset(piece - 1)
			release := tor.sw.Want(picker.Want{Start: off, End: off + 2*mi.Info.PieceLength, Priority: tc.priority, Deadline: time.Now()})
			defer release()
			s.readWants()
			s.fill(p)

			if tc.priority == picker.Now {
				asked := false
				for b := range p.outstanding {
					asked = asked || b.Piece == piece
				}
				if !asked && tc.wantRelease > 0 {
					t.Fatalf("the wanted piece %d was not requested", piece)
				}
			}
			if p.released != tc.wantRelease {
				t.Fatalf("%d requests withdrawn; want %d", p.released, tc.wantRelease)
			}
			// What stays ahead of the reader are the oldest requests.
			var kept, dropped []time.Time
			for b, at := range before {
				if _, ok := p.outstanding[b]; ok && p.outstanding[b].Equal(at) {
					kept = append(kept, at)
				} else {
					dropped = append(dropped, at)
				}
			}
			if len(dropped) != tc.wantRelease {
				t.Fatalf("%d of the earlier requests were dropped; want %d", len(dropped), tc.wantRelease)
			}
			for _, k := range kept {
				for _, d := range dropped {
					if k.After(d) {
						t.Fatalf("kept a request sent at %v, dropped an older one sent at %v", k, d)
					}
				}
			}
		})
	}
}
