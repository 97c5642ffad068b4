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
	queueTime      = 2 * time.Second
	minPipeline    = 4   // blocks, before a rate is known and for slow peers
	startPipeline  = 32  // blocks for a new peer, before slow start grows it
	maxPipeline    = 512 // blocks, whatever the rate
	urgentExtra    = 16  // blocks beyond the target allowed for Now-priority pieces
	urgentSlowPeer = time.Second
	fillBudget     = 4 * maxPipeline // NewRequest calls per fill, a guard against loops
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

// target is how many requests to keep outstanding at p. A snubbed peer
// gets one at a time until it delivers again.
//
// The measured rate needs a few seconds to catch up with a new peer (the
// meter ticks once a second and averages from zero), and a whole 256 MiB
// read from a LAN seeder is over by then: meanwhile the pipeline grows by
// slow start (p.slowStart, one more request per block delivered, so it
// doubles every round trip, as TCP's), and the larger of the two counts.
func (s *state) target(p *peer) int {
	if p.snubbed {
		return 1
	}
	n := p.slowStart
	if r := p.down.Rate(); r > 0 || time.Since(p.started) > rateWindow {
		n = int(r * queueTime.Seconds() / wire.BlockSize)
		if time.Since(p.started) < rateWindow {
			n = max(n, p.slowStart)
		}
	}
	n = max(n, minPipeline)
	if p.reqq > 0 {
		n = min(n, p.reqq)
	}
	return min(n, maxPipeline)
}

// queueTime estimates how long p needs for what we already asked of it.
func (s *state) queueTime(p *peer) time.Duration {
	r := max(p.down.Rate(), 16<<10) // unknown or tiny rates: assume 16 KiB/s
	return time.Duration(float64(p.outBytes) / r * float64(time.Second))
}

// fillAll tops up every peer's pipeline, fastest queue first, so that the
// pieces readers wait on go to the peers that will deliver them soonest.
func (s *state) fillAll() {
	if s.pk == nil {
		return // the metadata phase: nothing to request yet
	}
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
	slow := s.queueTime(p) > urgentSlowPeer && s.fasterPeerExists(p)
	has := p.pieces()
	preempted := false
	for budget := fillBudget; budget > 0; budget-- {
		piece, ok := s.pk.Next(has)
		if !ok {
			break
		}
		urgent := s.pk.Priority(piece) == picker.Now
		limit := target
		if urgent {
			if slow {
				break // leave urgent pieces to faster peers
			}
			limit += urgentExtra
		}
		// A reader's blocks may go urgentExtra beyond the target; past
		// that, they preempt the requests nobody waits on, once per
		// fill. Not sooner: at a fast peer the blocks cancelled are
		// mostly on their way already (preempting whenever a reader's
		// block met a full pipeline made a shared cache's seeder send up
		// to 1.3 × the torrent).
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
			s.sync(piece)
			s.request(p, b)
		case storagewrapper.RequestExhausted, storagewrapper.RequestBusy, storagewrapper.RequestVerified,
			storagewrapper.RequestClaimedElsewhere:
			// Nothing to hand out: the picker learns why (full, set
			// aside while another process sharing the cache downloads
			// it, verified), and the loop goes on with the next piece.
			s.sync(piece)
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
// requests for pieces nobody waits on. A peer serves requests in order, so
// the reader's blocks would wait behind the whole pipeline, tens of
// milliseconds at a fast peer's full depth, for every seek of a player or
// random read. The newest of those requests (the last the peer would
// serve) are cancelled until preemptKeep remain; their blocks go back to
// the storagewrapper and are asked again after the reader's. It reports
// whether it cancelled anything.
func (s *state) preempt(p *peer) bool {
	type sent struct {
		b  storagewrapper.Block
		at time.Time
	}
	var lazy []sent
	for b, at := range p.outstanding {
		if s.pk.Priority(b.Piece) != picker.Now {
			lazy = append(lazy, sent{b, at})
		}
	}
	if len(lazy) <= preemptKeep {
		return false
	}
	slices.SortFunc(lazy, func(x, y sent) int { return y.at.Compare(x.at) }) // newest first
	for _, r := range lazy[:len(lazy)-preemptKeep] {
		s.releaseRequest(p, r.b, true)
	}
	return true
}

// fasterPeerExists reports whether an unchoked peer with a shorter queue
// could take urgent blocks instead of p.
func (s *state) fasterPeerExists(p *peer) bool {
	qt := s.queueTime(p)
	for q := range s.peers {
		if q != p && s.canRequest(q) && !q.peerChoking && s.queueTime(q) < qt/2 {
			return true
		}
	}
	return false
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
					s.sync(piece)
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
			s.sync(piece)
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
	p.asked.add(b)
	p.outstanding[b] = time.Now()
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
		s.sync(b.Piece)
	}
}

// withdraw takes b out of p's requests: the reader will not file it if
// it still comes, and the loop expects it might.
func (s *state) withdraw(p *peer, b storagewrapper.Block) {
	delete(p.outstanding, b)
	p.outBytes -= b.Length
	p.asked.remove(b)
	p.released++
}

// sync brings the picker's copy of piece's state up to the
// storagewrapper's, which owns it; called after every change the loop
// makes or hears of (blocks handed out or back, a piece done, failed or
// adopted, a claim elsewhere).
func (s *state) sync(piece int) { s.pk.Sync(piece, s.t.sw.PieceState(piece)) }

// onBlock applies what PieceCameIn did with a block p sent.
func (s *state) onBlock(p *peer, b storagewrapper.Block, res storagewrapper.Result, err error) {
	if _, ok := p.outstanding[b]; ok {
		delete(p.outstanding, b)
		p.outBytes -= b.Length
		if s.reqCount[b]--; s.reqCount[b] <= 0 {
			delete(s.reqCount, b)
		}
	}
	switch {
	case err == nil:
		p.lastBlock, p.snubbed = time.Now(), false
		p.slowStart = min(p.slowStart+1, maxPipeline)
		if s.reqCount[b] > 0 {
			s.cancelDuplicates(b) // the first copy wins
		}
	case errors.Is(err, storagewrapper.ErrDuplicate):
		p.lastBlock, p.snubbed = time.Now(), false
		s.wasted += int64(b.Length) // an endgame or urgent duplicate: expected
	case errors.Is(err, errNotAsked):
		s.wasted += int64(b.Length)
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
	case res.Verified && !s.t.sw.DoIHave(i):
		// Verified, then gone from the store before this result reached
		// the loop (a full disk's eviction took it at once): its
		// Unverified change came first, and marking it had now would
		// leave the picker believing in a piece nobody can read.
		s.sync(i)
	case res.Verified:
		s.sync(i)
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
		s.pk.Failed(i) // idle, and bumped behind its equals
		s.sync(i)
		s.blame(res)
		s.fillAll()
	default:
		// The store failed while publishing; the storagewrapper has re-queued it.
		s.sync(i)
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

// rerequestLate gives a late block of an urgent piece (a reader waits on
// it) to a second, faster peer: libtorrent's time-critical pieces. The
// first copy to arrive wins; the other request is cancelled.
func (s *state) rerequestLate(now time.Time) {
	if len(s.wants) == 0 || s.store.failed {
		return
	}
	for p := range s.peers {
		grace := max(3*s.queueTime(p), 500*time.Millisecond)
		for b, at := range p.outstanding {
			if now.Sub(at) < grace || s.reqCount[b] > 1 || s.pk.Priority(b.Piece) != picker.Now {
				continue
			}
			if q := s.fastestOther(p, b); q != nil {
				s.request(q, b)
			}
		}
	}
}

// fastestOther is the unchoked peer with the shortest queue, other than p,
// that has b's piece and has not been asked for b.
func (s *state) fastestOther(p *peer, b storagewrapper.Block) *peer {
	var best *peer
	for q := range s.peers {
		if q == p || q.peerChoking || !q.amInterested || !q.hasPiece(b.Piece) {
			continue
		}
		if _, ok := q.outstanding[b]; ok || len(q.outstanding) >= s.target(q)+urgentExtra {
			continue
		}
		if best == nil || s.queueTime(q) < s.queueTime(best) {
			best = q
		}
	}
	return best
}
