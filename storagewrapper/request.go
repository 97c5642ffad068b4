package storagewrapper

import "sort"

// blockState is where one block of a piece in flight stands.
type blockState uint8

const (
	// blockFree: to be handed out by NewRequest.
	blockFree blockState = iota
	// blockOut: handed out, its data not yet here.
	blockOut
	// blockWriting: its data arrived and is being written to the Store.
	blockWriting
	// blockReceived: its data is in the Store's partial data.
	blockReceived
)

// download is the bookkeeping of one piece in flight (the seed's
// inactive_requests entry, plus who sent what). All fields are guarded by
// Wrapper.mu.
type download struct {
	// plen is the piece's length.
	plen int64
	// state holds one entry per block.
	state []blockState
	// from names, per received block, the peer that sent it.
	from []string
	// out, writing and received count the blocks in those states.
	out, writing, received int
	// firstFree is a lower bound of the lowest free block, so NewRequest
	// need not scan blocks it has handed out already.
	firstFree int
	// hashing is set once every block is received: the piece is being
	// hashed and then published or discarded, and takes no more blocks.
	hashing bool
}

func newDownload(plen int64) *download {
	n := numBlocks(plen)
	return &download{plen: plen, state: make([]blockState, n), from: make([]string, n)}
}

// idle reports whether the piece holds nothing: no block out, being written
// or received. An idle piece is no longer in flight.
func (d *download) idle() bool {
	return !d.hashing && d.out == 0 && d.writing == 0 && d.received == 0
}

// hasFree reports whether a block is left to hand out.
func (d *download) hasFree() bool {
	for idx := d.firstFree; idx < len(d.state); idx++ {
		if d.state[idx] == blockFree {
			return true
		}
	}
	return false
}

// free puts block idx back to be handed out again.
func (d *download) free(idx int) {
	d.state[idx] = blockFree
	d.from[idx] = ""
	d.firstFree = min(d.firstFree, idx)
}

// RequestStatus says what NewRequest did. Only RequestGranted comes with a
// block; the others tell the engine why not, so it can tell a piece that is
// merely exhausted (try the next piece, or go to endgame) from the in-flight
// cap (finish started pieces first).
type RequestStatus int8

const (
	// RequestGranted: the block is handed out to the caller.
	RequestGranted RequestStatus = iota
	// RequestVerified: the piece is verified; nothing to request.
	RequestVerified
	// RequestExhausted: every block of the piece is handed out or received
	// (Missing lists the ones handed out, for endgame duplicates).
	RequestExhausted
	// RequestBusy: the piece is being hashed, published or adopted.
	RequestBusy
	// RequestAtCap: the piece is not in flight and MaxInFlight pieces are.
	RequestAtCap
	// RequestOutOfRange: no such piece.
	RequestOutOfRange
	// RequestClosed: the wrapper is closed.
	RequestClosed
	// RequestClaimedElsewhere: the piece is not in flight here and another
	// process sharing the Store claimed it (Claimer). Like
	// RequestExhausted, for now: the piece comes back through TakeChanges,
	// as Verified once adopted or as Unverified if the claim ends without
	// a publish.
	RequestClaimedElsewhere
	// RequestStoreFailed: the Store does not take data now (a full,
	// read-only or failing disk; see Health): request nothing until it
	// recovers (Kick signals both changes).
	RequestStoreFailed
)

// OK reports whether a block was handed out.
func (s RequestStatus) OK() bool { return s == RequestGranted }

func (s RequestStatus) String() string {
	switch s {
	case RequestGranted:
		return "granted"
	case RequestVerified:
		return "verified"
	case RequestExhausted:
		return "exhausted"
	case RequestBusy:
		return "busy"
	case RequestAtCap:
		return "at in-flight cap"
	case RequestOutOfRange:
		return "out of range"
	case RequestClosed:
		return "closed"
	case RequestClaimedElsewhere:
		return "claimed by another process"
	case RequestStoreFailed:
		return "store failed"
	}
	return "request status(?)"
}

// NewRequest hands out the lowest-offset block of piece that is neither
// received nor handed out, starting the piece (putting it in flight) if
// needed. Lowest offset first, as in the seed: requests stay mostly
// sequential, which plays nice with the sender's read-ahead.
//
// With a Store shared between processes (a Claimer), starting a piece
// first claims it; a piece another process claimed is not started
// (RequestClaimedElsewhere) and is reported by TakeChanges, so that the
// engine sets it aside until it is published or its claim ends. The
// wrapper does not ask the Store again for a piece it set aside: the Store
// reports the end of the claim (ClaimEnded) or the piece is adopted.
func (w *Wrapper) NewRequest(piece int) (Block, RequestStatus) {
	if piece < 0 || piece >= w.info.NumPieces() {
		return Block{}, RequestOutOfRange
	}
	w.mu.Lock()
	mayClaim := w.claimer != nil
	for {
		b, st, needClaim := w.newRequestLocked(piece, mayClaim)
		if !needClaim {
			w.mu.Unlock()
			return b, st
		}
		// The claim is file I/O in a shared cache: it is taken without
		// the lock, and the piece looked at again afterwards.
		w.ops.Add(1) // newRequestLocked saw the wrapper open
		ends := w.claimEnds
		w.mu.Unlock()
		ok, err := w.claimer.Claim(piece)
		w.mu.Lock()
		mayClaim = false
		switch {
		case err != nil:
			w.lim.Warn("storagewrapper: cannot claim piece; downloading it unclaimed", "piece", piece, "err", err)
			w.ops.Done()
		case !ok:
			w.ops.Done()
			if w.closed || w.verified.Has(piece) {
				continue
			}
			_, known := w.refused[piece]
			if w.claimEnds == ends {
				w.refused[piece] = struct{}{}
			} else {
				// A claim ended while we asked (perhaps this one, after
				// the Store refused): not set aside, lest it stay so;
				// reported as requestable, and asked again.
				known = false
			}
			w.changed[piece] = struct{}{}
			w.mu.Unlock()
			if !known {
				w.signal()
			}
			return Block{}, RequestClaimedElsewhere
		default:
			_, adopting := w.adopting[piece]
			_, held := w.claims[piece]
			if w.closed || held || adopting || w.verified.Has(piece) || w.downloads[piece] != nil ||
				len(w.downloads) >= w.inFlightCapLocked() {
				// The piece moved on while we claimed it: this claim
				// is not needed (or is one too many).
				w.mu.Unlock()
				w.claimer.Release(piece)
				w.ops.Done()
				w.mu.Lock()
				continue
			}
			w.ops.Done()
			w.claims[piece] = struct{}{}
			w.downloads[piece] = newDownload(w.info.PieceLen(piece))
			if _, ok := w.refused[piece]; ok {
				delete(w.refused, piece)
				w.changed[piece] = struct{}{}
			}
		}
	}
}

// newRequestLocked is NewRequest under the lock. needClaim asks the caller
// to claim the piece first (only when mayClaim): it is not in flight and
// could be started.
func (w *Wrapper) newRequestLocked(piece int, mayClaim bool) (b Block, st RequestStatus, needClaim bool) {
	switch {
	case w.closed:
		return Block{}, RequestClosed, false
	case w.verified.Has(piece):
		return Block{}, RequestVerified, false
	case w.hs.fault != FaultNone:
		return Block{}, RequestStoreFailed, false
	}
	if _, ok := w.adopting[piece]; ok {
		return Block{}, RequestBusy, false
	}
	d := w.downloads[piece]
	if d == nil {
		if len(w.downloads) >= w.inFlightCapLocked() {
			return Block{}, RequestAtCap, false
		}
		if mayClaim {
			if _, ok := w.refused[piece]; ok {
				// Set aside until the Store says the claim ended (or the
				// piece is adopted): no need to ask again.
				return Block{}, RequestClaimedElsewhere, false
			}
			return Block{}, 0, true
		}
		d = newDownload(w.info.PieceLen(piece))
		w.downloads[piece] = d
	}
	if d.hashing {
		return Block{}, RequestBusy, false
	}
	for idx := d.firstFree; idx < len(d.state); idx++ {
		if d.state[idx] == blockFree {
			d.state[idx] = blockOut
			d.out++
			d.firstFree = idx + 1
			return blockOf(piece, d.plen, idx), RequestGranted, false
		}
	}
	d.firstFree = len(d.state)
	return Block{}, RequestExhausted, false
}

// RequestLost puts a handed-out block back, to be handed out again: its
// request was cancelled, the peer choked us or went away. It reports whether
// b was handed out; a block already received, never handed out, or of a
// piece that is done is left alone. A piece left with no block received or
// handed out is no longer in flight.
func (w *Wrapper) RequestLost(b Block) bool {
	idx, err := w.checkBlock(b.Piece, b.Begin, b.Length)
	if err != nil {
		return false
	}
	w.mu.Lock()
	d := w.downloads[b.Piece]
	if d == nil || d.hashing || d.state[idx] != blockOut {
		w.mu.Unlock()
		return false
	}
	d.free(idx)
	d.out--
	release := w.retireIfIdleLocked(b.Piece, d)
	w.mu.Unlock()
	release()
	return true
}

// retireIfIdleLocked takes an idle piece out of flight; call the returned
// function without the lock (it releases the piece's claim, if any).
func (w *Wrapper) retireIfIdleLocked(piece int, d *download) (release func()) {
	if d.idle() {
		return w.leaveFlightLocked(piece)
	}
	return func() {}
}

// leaveFlightLocked takes piece out of flight. If this process claimed it,
// the claim is dropped and the returned function, to be called without the
// lock, releases it (the Store stays open until it has); otherwise it does
// nothing.
func (w *Wrapper) leaveFlightLocked(piece int) (release func()) {
	delete(w.downloads, piece)
	if _, ok := w.claims[piece]; !ok {
		return func() {}
	}
	// Close empties claims when it closes, so the wrapper is open here.
	delete(w.claims, piece)
	w.ops.Add(1)
	return func() {
		w.claimer.Release(piece)
		w.ops.Done()
	}
}

// Missing returns the blocks of piece that are handed out but not yet
// received, lowest offset first: in endgame the engine requests them from
// other peers too (and cancels the rest when one copy arrives).
func (w *Wrapper) Missing(piece int) []Block {
	w.mu.Lock()
	defer w.mu.Unlock()
	d := w.downloads[piece]
	if d == nil || d.hashing {
		return nil
	}
	var out []Block
	for idx, s := range d.state {
		if s == blockOut {
			out = append(out, blockOf(piece, d.plen, idx))
		}
	}
	return out
}

// InFlight returns the pieces in flight, in increasing order: the picker
// prefers finishing them to starting new ones.
func (w *Wrapper) InFlight() []int {
	w.mu.Lock()
	out := make([]int, 0, len(w.downloads))
	for p := range w.downloads {
		out = append(out, p)
	}
	w.mu.Unlock()
	sort.Ints(out)
	return out
}

// Refused returns the pieces another process sharing the store has
// claimed (NewRequest did not start them), in increasing order: the status
// page draws them apart from the missing ones.
func (w *Wrapper) Refused() []int {
	w.mu.Lock()
	out := make([]int, 0, len(w.refused))
	for p := range w.refused {
		out = append(out, p)
	}
	w.mu.Unlock()
	sort.Ints(out)
	return out
}
