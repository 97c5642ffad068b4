package engine

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"btfs/engine/wire"
	"btfs/picker"
	"btfs/storagewrapper"
)

// Request pipeline sizing. The seed kept 2 + 4·rate/16 KiB requests per
// peer; libtorrent's better model keeps queueTime seconds of the peer's
// measured rate outstanding, so a fast peer never idles between round trips
// and a slow one does not hoard blocks a reader may be waiting on.
const (
	queueTime     = 2 * time.Second
	minPipeline   = 4               // blocks, before a rate is known and for slow peers
	startPipeline = 32              // blocks for a new peer, before slow start grows it
	maxPipeline   = 512             // blocks, whatever the rate
	urgentExtra   = 16              // blocks beyond the target allowed for Now-priority pieces
	fillBudget    = 4 * maxPipeline // NewRequest calls per fill, a guard against loops
	// unrequestedSlack is how many blocks beyond those we withdrew a peer
	// may send unasked before it is dropped: a block that crossed our
	// cancel is normal, a stream of blocks nobody asked for is not.
	unrequestedSlack = 16
	// preemptKeep is how many of a peer's requests for pieces no reader
	// waits on stay queued ahead of a reader's (see preempt): 1 MiB, a
	// few milliseconds at a LAN peer's rate.
	preemptKeep = 64
)

// errNotAsked marks a block its peer sent without our asking it for that
// block; it was not filed.
var errNotAsked = fmt.Errorf("%w: not asked of this peer", storagewrapper.ErrUnrequested)

// target is how many requests to keep outstanding at p: pipeline.depth
// (sched.go) with p's measurements. Pieces nobody wants get less while a
// reader waits (bgLimit).
//
// The measured rate needs a few seconds to catch up with a new peer (the
// meter ticks once a second and averages from zero), and a whole 256 MiB
// read from a LAN seeder is over by then: meanwhile the pipeline grows by
// slow start (p.slowStart, one more request per block delivered, so it
// doubles every round trip, as TCP's), and the larger of the two counts.
func (s *state) target(p *peer) int { return s.depth(p, false) }

// depth is pipeline.depth for p, as if a reader waited or not.
func (s *state) depth(p *peer, readerWaits bool) int {
	return pipeline{
		rate:        rateOf(p),
		srtt:        p.rtt.srtt,
		rttvar:      p.rtt.rttvar,
		young:       time.Since(p.started) < rateWindow,
		slowStart:   p.slowStart,
		reqq:        p.reqq,
		snubbed:     p.snubbed,
		readerWaits: readerWaits,
	}.depth()
}

// queueTime estimates how long p needs for what we already asked of it.
func (s *state) queueTime(p *peer) time.Duration {
	r := max(p.down.Rate(), 16<<10) // unknown or tiny rates: assume 16 KiB/s
	return time.Duration(float64(p.outBytes) / r * float64(time.Second))
}

// fillAll tops up every peer's pipeline, fastest queue first, so that the
// pieces readers wait on go to the peers that will deliver them soonest.
func (s *state) fillAll() {
	ps := make([]*peer, 0, len(s.peers))
	for p := range s.peers {
		if s.canRequest(p) {
			ps = append(ps, p)
		}
	}
	slices.SortFunc(ps, func(a, b *peer) int { return int(s.queueTime(a) - s.queueTime(b)) })
	for _, p := range ps {
		s.fill(p)
	}
}

// canRequest reports whether p may be asked for blocks at all.
func (s *state) canRequest(p *peer) bool {
	return !p.closed && p.amInterested && (!p.peerChoking || len(p.allowedFast) > 0)
}

// fill tops up p's pipeline: the picker chooses pieces, the storagewrapper
// hands out their blocks (the seed's SingleDownload._request_more).
func (s *state) fill(p *peer) {
	if !s.canRequest(p) || s.store.failed {
		return
	}
	target := s.target(p)
	if p.peerChoking {
		s.fillAllowedFast(p, target)
		return
	}
	has := p.pieces()
	bg := s.bgLimit(p)
	preempted := false
	for budget := fillBudget; budget > 0; budget-- {
		piece, ok := s.pk.Next(has)
		if !ok {
			break
		}
		// A reader's piece goes to the peer that asks for work (it
		// delivered a block, so it has a free slot), beyond its target;
		// a peer whose queue is full of nobody's pieces has them
		// trimmed to bgLimit first (preempt). Placing each of a
		// reader's blocks on the peer with the earliest expected
		// arrival instead (tried: queue ahead ÷ rate + RTT) cut a
		// sequential read on the shaped swarm from 23 to 9 MB/s: the
		// whole piece was handed out at once, to the back of queues.
		// Late blocks are hedged by that estimate (rerequestLate).
		urgent := s.pk.Priority(piece) == picker.Now
		limit := target
		switch s.pk.Priority(piece) {
		case picker.None:
			limit = bg // nobody's piece: little of it ahead of a reader's
		case picker.Now:
			limit += urgentExtra
		}
		if len(p.outstanding) >= limit {
			if !urgent || preempted || !s.preempt(p) {
				break
			}
			preempted = true
		}
		if s.pk.EndgameCandidate(piece) {
			// Nothing is pickable any more: fillEndgame below walks
			// every endgame piece once. Asking Next again would only
			// draw endgame pieces at random until the budget runs out,
			// on every block that arrives.
			break
		}
		b, st := s.t.sw.NewRequest(piece)
		switch st {
		case storagewrapper.RequestGranted:
			s.pk.Started(piece)
			s.request(p, b)
		case storagewrapper.RequestExhausted, storagewrapper.RequestBusy:
			s.pk.FullyRequested(piece)
		case storagewrapper.RequestClaimedElsewhere:
			// Another process sharing the cache downloads it: set aside
			// (syncStore brings it back if its claim ends unpublished),
			// and go on with the next piece.
			s.pk.FullyRequested(piece)
		case storagewrapper.RequestVerified:
			s.pk.Verified(piece)
		case storagewrapper.RequestAtCap:
			s.fillInFlight(p, limit)
			return
		default:
			return
		}
	}
	if s.pk.Endgame() {
		s.fillEndgame(p, target)
	}
}

// preempt makes room near the front of p's queue for a reader: a piece a
// reader waits on (Now) is not requested yet, and p's pipeline is full of
// requests for pieces nobody wants (not even as readahead). A peer serves requests in order, so the reader's blocks
// would wait behind the whole pipeline, up to queueTime at a peer's full
// depth, for every seek of a player or random read. The newest of those
// requests (the last the peer would serve) are cancelled until p's
// target while a reader waits remains (its BDP, see pipeline.depth), or
// preemptKeep before its round trip is known; their blocks go back to the
// storagewrapper and are asked again after the reader's. It reports
// whether it cancelled anything.
func (s *state) preempt(p *peer) bool {
	keep := s.bgLimit(p)
	type sent struct {
		b  storagewrapper.Block
		at time.Time
	}
	var lazy []sent
	for b, at := range p.outstanding {
		if s.pk.Priority(b.Piece) == picker.None {
			lazy = append(lazy, sent{b, at})
		}
	}
	if len(lazy) <= keep {
		return false
	}
	slices.SortFunc(lazy, func(x, y sent) int { return y.at.Compare(x.at) }) // newest first
	for _, r := range lazy[:len(lazy)-keep] {
		s.releaseRequest(p, r.b, true)
	}
	return true
}

// fillInFlight requests blocks of pieces already in flight only: the
// storagewrapper's in-flight cap stops new pieces from starting.
func (s *state) fillInFlight(p *peer, limit int) {
	for _, piece := range s.t.sw.InFlight() {
		if !p.hasPiece(piece) {
			continue
		}
		for len(p.outstanding) < limit {
			b, st := s.t.sw.NewRequest(piece)
			if st != storagewrapper.RequestGranted {
				if st == storagewrapper.RequestExhausted {
					s.pk.FullyRequested(piece)
				}
				break
			}
			s.request(p, b)
		}
	}
}

// fillAllowedFast requests blocks of BEP 6 allowed-fast pieces while p
// chokes us. In FetchReads mode only those a reader wants: aria2c offers
// ten allowed-fast pieces to every new peer, and fetching them would fill
// a capped cache with pieces nobody reads.
func (s *state) fillAllowedFast(p *peer, limit int) {
	for piece := range p.allowedFast {
		if !p.hasPiece(piece) || s.t.sw.DoIHave(piece) {
			continue
		}
		if s.pk.Mode() == picker.FetchReads && s.pk.Priority(piece) == picker.None {
			continue
		}
		for len(p.outstanding) < limit {
			b, st := s.t.sw.NewRequest(piece)
			if st != storagewrapper.RequestGranted {
				break
			}
			s.pk.Started(piece)
			s.request(p, b)
		}
	}
}

// fillEndgame sends duplicate requests for the last missing blocks.
func (s *state) fillEndgame(p *peer, limit int) {
	for _, piece := range s.pk.AppendEndgame(nil, p.pieces()) {
		if !s.requestDuplicates(p, piece, limit) {
			return
		}
	}
}

// requestDuplicates asks p for the missing blocks of piece that it has not
// been asked for; false when p's pipeline is full.
func (s *state) requestDuplicates(p *peer, piece, limit int) bool {
	for _, b := range s.t.sw.Missing(piece) {
		if len(p.outstanding) >= limit {
			return false
		}
		if _, ok := p.outstanding[b]; ok || s.reqCount[b] >= 2 {
			continue
		}
		s.request(p, b)
	}
	return len(p.outstanding) < limit
}

// request sends one request and books it.
func (s *state) request(p *peer, b storagewrapper.Block) {
	now := time.Now()
	p.asked.add(b)
	p.due[b] = now.Add(s.dueIn(p, b.Length))
	p.rtt.sent(b, p.outBytes)
	p.outstanding[b] = now
	p.outBytes += b.Length
	s.reqCount[b]++
	p.send(wire.Message{ID: wire.Request, Index: uint32(b.Piece), Begin: uint32(b.Begin), Length: uint32(b.Length)})
}

// releaseRequest unbooks a request of p; with cancel, the peer is told.
// The storagewrapper gets the block back when no other peer has it
// outstanding.
func (s *state) releaseRequest(p *peer, b storagewrapper.Block, cancel bool) {
	if _, ok := p.outstanding[b]; !ok {
		return
	}
	s.withdraw(p, b)
	if cancel && !p.closed {
		p.send(wire.Message{ID: wire.Cancel, Index: uint32(b.Piece), Begin: uint32(b.Begin), Length: uint32(b.Length)})
	}
	if s.reqCount[b]--; s.reqCount[b] > 0 {
		return
	}
	delete(s.reqCount, b)
	if s.t.sw.RequestLost(b) {
		s.requeued(b.Piece)
	}
}

// withdraw takes b out of p's requests: the reader will not file it if
// it still comes, and the loop expects it might.
func (s *state) withdraw(p *peer, b storagewrapper.Block) {
	delete(p.outstanding, b)
	delete(p.due, b)
	p.rtt.withdrawn(b)
	p.outBytes -= b.Length
	p.asked.remove(b)
	p.released++
}

// requeued tells the picker that a block of piece went back to the
// storagewrapper: the piece is pickable again, started if other blocks of
// it are still out or received, idle if that was its last (the
// storagewrapper then took it out of flight, and a started piece that is
// not in flight would jump the rarest-first queue).
func (s *state) requeued(piece int) {
	if _, inFlight := slices.BinarySearch(s.t.sw.InFlight(), piece); inFlight {
		s.pk.Started(piece)
	} else {
		s.pk.Unrequested(piece)
	}
}

// onBlock applies what PieceCameIn did with a block p sent.
func (s *state) onBlock(p *peer, b storagewrapper.Block, res storagewrapper.Result, err error) {
	if at, ok := p.outstanding[b]; ok {
		if err == nil {
			p.rtt.arrived(b, time.Since(at), p.down.Rate())
		}
		delete(p.outstanding, b)
		delete(p.due, b)
		p.outBytes -= b.Length
		if s.reqCount[b]--; s.reqCount[b] <= 0 {
			delete(s.reqCount, b)
		}
	}
	switch {
	case err == nil:
		p.lastBlock, p.snubbed, p.late = time.Now(), false, false
		p.slowStart = min(p.slowStart+1, maxPipeline)
		if s.reqCount[b] > 0 {
			s.cancelDuplicates(b) // the first copy wins
		}
	case errors.Is(err, storagewrapper.ErrDuplicate):
		p.lastBlock, p.snubbed = time.Now(), false
		s.wasted += int64(b.Length) // an endgame or urgent duplicate: expected
		s.dupBytes += int64(b.Length)
	case errors.Is(err, errNotAsked):
		s.wasted += int64(b.Length)
		s.withdrawnBytes += int64(b.Length)
		if p.unrequested++; p.unrequested > p.released+unrequestedSlack {
			s.dropPeer(p, fmt.Errorf("%w: %d blocks we did not ask for (%d requests withdrawn)", errProtocol, p.unrequested, p.released))
			return
		}
	case errors.Is(err, storagewrapper.ErrUnrequested):
		// Asked of p, but the piece moved on meanwhile (it failed its
		// hash, or another copy completed it).
		s.wasted += int64(b.Length)
	case errors.Is(err, storagewrapper.ErrOutOfRange), errors.Is(err, storagewrapper.ErrUnaligned),
		errors.Is(err, storagewrapper.ErrWrongLength):
		s.dropPeer(p, fmt.Errorf("%w: %v", errProtocol, err))
		return
	case errors.Is(err, storagewrapper.ErrClosed):
		return
	default: // the store failed (a full disk): the block was put back
		s.storeFailedBlock(b, err)
	}
	if res.Completed {
		s.pieceDone(res)
	}
	if !p.closed {
		s.fill(p)
	}
}

// onOrphanBlock handles a block that arrived after its peer was dropped.
func (s *state) onOrphanBlock(_ storagewrapper.Block, res storagewrapper.Result, _ error) {
	if res.Completed {
		s.pieceDone(res)
	}
}

// cancelDuplicates cancels b at every peer still waiting for it.
func (s *state) cancelDuplicates(b storagewrapper.Block) {
	for q := range s.peers {
		if _, ok := q.outstanding[b]; ok {
			s.withdraw(q, b)
			q.send(wire.Message{ID: wire.Cancel, Index: uint32(b.Piece), Begin: uint32(b.Begin), Length: uint32(b.Length)})
		}
	}
	delete(s.reqCount, b)
}

// pieceDone reacts to a completed piece: HAVE to the swarm, or blame.
func (s *state) pieceDone(res storagewrapper.Result) {
	i := res.Piece
	switch {
	case res.Verified:
		s.pk.Verified(i)
		s.pieceVerified(i)
		for q := range s.peers {
			if !q.hasPiece(i) {
				q.send(wire.Message{ID: wire.Have, Index: uint32(i)})
			}
			if q.amInterested && q.hasPiece(i) {
				s.updateInterest(q)
			}
		}
		s.checkComplete()
	case res.HashFailed:
		s.hashFail++
		s.wasted += s.t.info.PieceLen(i)
		s.pk.Failed(i)
		s.blame(res)
		s.fillAll()
	default:
		// The store failed while publishing; the storagewrapper has re-queued it.
		s.pk.Unrequested(i)
		s.pieceAbandoned(i)
	}
}

// blame deals with the senders of a piece that failed its hash: one that
// sent every block is banned at once; when several contributed, the liar
// is found by smart ban once the piece verifies (smartban.go), and nobody
// is charged meanwhile.
func (s *state) blame(res storagewrapper.Result) {
	s.t.log.Warn("piece failed its hash check", "piece", res.Piece, "contributors", res.Contributors, "blamed", res.Blamed)
	s.pieceFailed(res.Piece)
	if res.Blamed == "" {
		return
	}
	if ap, err := parseKey(res.Blamed); err == nil {
		s.ban(ap.Addr(), fmt.Sprintf("sent every block of piece %d, which failed its hash", res.Piece))
	}
}

// checkSnub withdraws requests a peer sits on (the seed's snubbing). A
// request unanswered for snubTimeout while the peer still delivers others
// was dropped by it: that request alone goes to other peers. A peer that
// has delivered nothing for snubTimeout — counted from its last block or
// from the oldest request it has, whichever is later — is snubbed: every
// request goes elsewhere, it keeps one at a time until it delivers again,
// and that one is withdrawn again after another snubTimeout.
func (s *state) checkSnub(p *peer, now time.Time) {
	var stale []storagewrapper.Block
	var oldest time.Time
	for b, at := range p.outstanding {
		if now.Sub(at) >= snubTimeout {
			stale = append(stale, b)
		}
		if oldest.IsZero() || at.Before(oldest) {
			oldest = at
		}
	}
	if len(stale) == 0 {
		return
	}
	last := p.lastBlock
	if oldest.After(last) {
		last = oldest
	}
	if now.Sub(last) >= snubTimeout {
		if !p.snubbed {
			s.t.log.Debug("peer snubbed us", "peer", p.key, "outstanding", len(p.outstanding))
		}
		p.snubbed = true
		stale = stale[:0]
		for b := range p.outstanding {
			stale = append(stale, b)
		}
	}
	for _, b := range stale {
		s.releaseRequest(p, b, true)
	}
	s.fillAll()
}
