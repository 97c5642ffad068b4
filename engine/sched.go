package engine

import (
	"math"
	"time"

	"btfs/engine/wire"
	"btfs/picker"
	"btfs/storagewrapper"
)

// The deadline-first part of the request scheduler (issue 13): while a
// reader waits (a Now want), requests for pieces nobody wants are held to
// each peer's bandwidth-delay product rather than 2 s of its rate (and
// trimmed to it at a peer that gets a reader's block), and a reader's
// block that is late at its peer is asked of a second peer too
// ("hedged"), the one expected to deliver it first (queue ahead ÷ rate +
// RTT); the first copy wins and the other request is cancelled
// (cancelDuplicates).
//
// Why: a peer serves requests in order, so a block asked of a peer waits
// behind everything queued there. With 2 s of rate queued at every peer, a
// seek waited about that long; at the BDP the link is still kept busy
// (that is what the BDP is) and a new block waits about one round trip.
// Readahead keeps the full depth: it is what a stream reads next.
const (
	// defaultRTT stands in for a peer's round trip until one is measured.
	defaultRTT = 100 * time.Millisecond
	// minRTTSample floors a sample: a loopback peer answers in
	// microseconds, and a zero would make the BDP zero.
	minRTTSample = time.Millisecond
	// bdpExtra blocks are kept beyond the BDP and its margin: the peer's
	// own turnaround (disk read, its send buffer).
	bdpExtra = 2
	// minHedgeMargin is the least a block must be overdue before it is
	// hedged: jitter of a few milliseconds is not lateness.
	minHedgeMargin = 50 * time.Millisecond
	// unknownHedgeMargin is the margin before a peer's RTT is known.
	unknownHedgeMargin = 500 * time.Millisecond
	// minETARate is the rate assumed for a peer whose rate is unknown or
	// tiny (16 KiB/s): its queue looks long, so readers' blocks prefer
	// peers that have shown a rate.
	minETARate = 16 << 10
)

// rttEstimator smooths a peer's round trip as TCP does (RFC 6298: SRTT
// and RTTVAR with gains 1/8 and 1/4). A sample is the latency of a block
// asked of the peer when nothing else was outstanding there (the probe),
// less the block's own transfer time at the peer's rate. Any block that
// comes back faster than the estimate also counts: a latency bounds the
// round trip from above, queue or not.
type rttEstimator struct {
	srtt, rttvar time.Duration
	probe        storagewrapper.Block // the block being timed
	probing      bool
}

// get is the smoothed RTT, or false when there has been no sample.
func (e *rttEstimator) get() (time.Duration, bool) { return e.srtt, e.srtt > 0 }

// or is the smoothed RTT, or d when there has been no sample.
func (e *rttEstimator) or(d time.Duration) time.Duration {
	if e.srtt > 0 {
		return e.srtt
	}
	return d
}

// add folds one sample in.
func (e *rttEstimator) add(r time.Duration) {
	r = max(r, minRTTSample)
	if e.srtt == 0 {
		e.srtt, e.rttvar = r, r/2
		return
	}
	d := e.srtt - r
	if d < 0 {
		d = -d
	}
	e.rttvar = (3*e.rttvar + d) / 4
	e.srtt = (7*e.srtt + r) / 8
}

// sent notes a request of b with ahead bytes already outstanding.
func (e *rttEstimator) sent(b storagewrapper.Block, ahead int) {
	if ahead == 0 && !e.probing {
		e.probe, e.probing = b, true
	}
}

// withdrawn notes that b will not be answered (cancelled, rejected).
func (e *rttEstimator) withdrawn(b storagewrapper.Block) {
	if e.probing && e.probe == b {
		e.probing = false
	}
}

// arrived takes b's latency (sent to arrived) as a sample when b was the
// probe or came back sooner than the estimate. rate is the peer's, bytes/s.
func (e *rttEstimator) arrived(b storagewrapper.Block, latency time.Duration, rate float64) {
	if e.probing && e.probe == b {
		e.probing = false
		if rate > 0 {
			latency -= time.Duration(float64(b.Length) / rate * float64(time.Second))
		}
		e.add(latency)
		return
	}
	if e.srtt > 0 && latency < e.srtt {
		e.add(latency)
	}
}

// hedgeMargin is how far past its expected arrival a block of this peer
// must be before it is asked elsewhere too.
func (e *rttEstimator) hedgeMargin() time.Duration {
	if e.srtt == 0 {
		return unknownHedgeMargin
	}
	return max(e.srtt/2, 4*e.rttvar, minHedgeMargin)
}

// pipeline is what sizes a peer's request queue (pipelineDepth).
type pipeline struct {
	rate         float64       // measured, bytes/s; 0 unknown
	srtt, rttvar time.Duration // smoothed round trip and its variation; srtt 0 unknown
	young        bool          // connected less than rateWindow ago: the rate meter still lags
	slowStart    int           // slow-start target (peer.slowStart)
	reqq         int           // the peer's request queue size, 0 unknown
	snubbed      bool
	readerWaits  bool // a reader waits on a piece (a Now want)
}

// bdpBlocks is the bandwidth-delay product in blocks, with a margin of
// half a round trip or four deviations, whichever is more, for jitter and
// a rate that varies.
func bdpBlocks(rate float64, srtt, rttvar time.Duration) int {
	window := srtt + max(srtt/2, 4*rttvar)
	return int(math.Ceil(rate*window.Seconds()/wire.BlockSize)) + bdpExtra
}

// depth is how many requests to keep outstanding. Without a reader
// waiting, queueTime seconds of the rate: background fetching gains from
// deep queues and loses nothing. While a reader waits and the round trip
// is known, the BDP: the link stays busy, and a block asked now waits
// about one round trip rather than queueTime behind the others (rate is
// then rateOf, which does not lag for a young peer; the margin lets it
// grow by half each round trip). Otherwise a young peer's meter lags, so
// slow start counts until it settles. A snubbed peer gets one request at
// a time.
func (q pipeline) depth() int {
	if q.snubbed {
		return 1
	}
	n := q.slowStart
	if q.rate > 0 || !q.young {
		n = int(q.rate * queueTime.Seconds() / wire.BlockSize)
		if q.young {
			n = max(n, q.slowStart)
		}
	}
	if q.readerWaits && q.srtt > 0 {
		n = bdpBlocks(q.rate, q.srtt, q.rttvar)
	}
	n = max(n, minPipeline)
	if q.reqq > 0 {
		n = min(n, q.reqq)
	}
	return min(n, maxPipeline)
}

// rateOf is p's download rate for sizing and placing requests. The meter
// averages from zero over rateWindow, so for a young peer it reads a
// fraction of the truth; the bytes it sent over its age are closer.
func rateOf(p *peer) float64 {
	r := p.down.Rate()
	if age := time.Since(p.started); age > 0 && age < rateWindow {
		r = max(r, float64(p.down.Total())/age.Seconds())
	}
	return r
}

// bgLimit is how many requests p may have outstanding when the piece to
// ask for is one nobody wants (not even as readahead): its target, and
// while a reader waits its BDP (pipeline.depth) but no less than
// preemptKeep (preemptKeep alone before its round trip is known).
// Readers' and readahead pieces keep the full target: cutting those cuts
// a stream's throughput (measured: a sequential read on the shaped swarm
// fell from 24 to 14 MB/s when every piece was held to the BDP), and so
// did a BDP alone, without the floor: the rate it is computed from is
// what the short queue let through. preempt trims to the same number, so
// what it cancels is not asked again at once.
func (s *state) bgLimit(p *peer) int {
	n := s.target(p)
	if !s.waiting {
		return n
	}
	k := preemptKeep
	if _, known := p.rtt.get(); known {
		k = max(k, s.depth(p, true))
	}
	return min(n, k)
}

// readerETA is eta for a reader's block at p counting only what may stay
// ahead of it while a reader waits: requests for nobody's pieces are cut
// to bgLimit at a peer that gets a reader's block (preempt). Ranking by
// the whole queue would favour a slow peer with a short queue over fast
// ones whose queues are deep with background.
func (s *state) readerETA(p *peer) time.Duration {
	ahead := p.outBytes
	if s.waiting {
		ahead = min(ahead, (s.bgLimit(p)+urgentExtra)*wire.BlockSize)
	}
	r := max(rateOf(p), minETARate)
	return time.Duration(float64(ahead+wire.BlockSize)/r*float64(time.Second)) + p.rtt.or(defaultRTT)
}

// dueIn is when a block of n bytes asked of p now should arrive, from
// now: the bytes queued ahead of it at p's rate, plus its round trip. It
// takes the meter's rate, which
// lags a young peer's, so that a young peer's blocks are not judged late
// on a rate it has not shown yet.
func (s *state) dueIn(p *peer, n int) time.Duration { return etaAt(p, n, p.down.Rate()) }

func etaAt(p *peer, n int, rate float64) time.Duration {
	r := max(rate, minETARate)
	return time.Duration(float64(p.outBytes+n)/r*float64(time.Second)) + p.rtt.or(defaultRTT)
}

// bestFor is the peer that should deliver a block of piece first, among
// those that have it, are unchoked and have room for a reader's block. A
// peer with an overdue reader's block (late) is taken only when no other
// can. With dup, b is a block already asked elsewhere: peers asked for it
// already are skipped.
func (s *state) bestFor(piece int, b storagewrapper.Block, dup bool) *peer {
	var best *peer
	var bestETA time.Duration
	for q := range s.peers {
		if !s.canRequest(q) || q.peerChoking || q.snubbed || !q.hasPiece(piece) {
			continue
		}
		if dup {
			if _, ok := q.outstanding[b]; ok {
				continue
			}
		}
		if len(q.outstanding) >= s.target(q)+urgentExtra {
			continue
		}
		eta := s.readerETA(q)
		if best == nil || (best.late && !q.late) || (best.late == q.late && eta < bestETA) {
			best, bestETA = q, eta
		}
	}
	return best
}

// rerequestLate hedges: a block a reader waits on that is overdue at its
// peer (past its expected arrival by the peer's hedge margin) is asked of
// the peer expected to deliver it first among the others too, and its
// peer is marked late, so readers' blocks avoid it until it delivers
// again. A stalled peer is bypassed this way. The first copy to arrive
// wins; the other request is cancelled (cancelDuplicates).
func (s *state) rerequestLate(now time.Time) {
	if !s.waiting || s.store.failed {
		return
	}
	for p := range s.peers {
		margin := p.rtt.hedgeMargin()
		for b, due := range p.due {
			if now.Sub(due) < margin || s.reqCount[b] > 1 || s.pk.Priority(b.Piece) != picker.Now {
				continue
			}
			p.late = true
			if q := s.bestFor(b.Piece, b, true); q != nil {
				s.request(q, b)
				s.hedged++
			}
		}
	}
}
