package metadata

import (
	"fmt"
	"time"
)

// singlePipeline is the owner's pipeline in single mode: one peer fetches
// everything then, so it may have more requests out.
const singlePipeline = 4 * PeerPipeline

// NextRequest returns the next piece to ask of peer id, if any. The engine
// calls it when the peer has announced a size and after each answer,
// reject or tick, until ok is false, and sends a request for each piece.
//
// A peer is asked only for the elected size it announced, outside its
// reject back-off, up to PeerPipeline requests younger than RequestTimeout.
// Pieces nobody has been asked for come first, lowest index first; then
// pieces whose every request has timed out. A stalled peer (one that let
// a request time out or rejected one, and has delivered nothing since) is
// asked only when no other peer can be. In single mode only the
// attempt's owner is asked; another peer takes the attempt over (from
// scratch) when the owner stalls, rejects or goes.
func (f *Fetcher) NextRequest(id string, now time.Time) (piece int, ok bool) {
	if f.result != nil || f.banned[id] {
		return 0, false
	}
	p := f.peers[id]
	if p == nil || p.refused || p.size == 0 {
		return 0, false
	}
	f.refreshStalled(now)
	f.elect()
	if p.size != f.size || now.Before(p.backoffUntil) {
		return 0, false
	}
	if p.stalled && f.otherLive(id, now) {
		// It left a request unanswered: what it timed out on goes to
		// others first, or it would take the same pieces again and
		// starve them.
		return 0, false
	}
	pipeline := PeerPipeline
	if f.single {
		if f.owner != id {
			if f.owner != "" && !f.ownerLost(now) {
				return 0, false
			}
			f.restart()
			f.owner = id
		}
		pipeline = singlePipeline
	}
	live := 0
	for i := range f.pieces {
		for _, r := range f.pieces[i].reqs {
			if r.peer == id && !timedOut(r, now) {
				live++
			}
		}
	}
	if live >= pipeline {
		return 0, false
	}
	for _, fresh := range []bool{true, false} {
		for i := range f.pieces {
			pc := &f.pieces[i]
			if pc.data != nil || (fresh && len(pc.reqs) > 0) || (!fresh && anyLive(pc.reqs, now)) {
				continue
			}
			pc.reqs = append(dropRequests(pc.reqs, id), request{peer: id, at: now})
			return i, true
		}
	}
	return 0, false
}

// ownerLost reports whether the single-mode owner can no longer be
// counted on: gone, refused, banned, stalled or backing off.
func (f *Fetcher) ownerLost(now time.Time) bool {
	o := f.peers[f.owner]
	return o == nil || o.refused || o.stalled || now.Before(o.backoffUntil) || f.banned[f.owner]
}

// otherLive reports whether a peer other than id could be asked now: it
// announced the elected size, is not stalled, refused, banned or backing
// off.
func (f *Fetcher) otherLive(id string, now time.Time) bool {
	for oid, o := range f.peers {
		if oid != id && o.size == f.size && !o.refused && !o.stalled && !now.Before(o.backoffUntil) && !f.banned[oid] {
			return true
		}
	}
	return false
}

// anyLive reports whether any request is younger than RequestTimeout.
func anyLive(reqs []request, now time.Time) bool {
	for _, r := range reqs {
		if !timedOut(r, now) {
			return true
		}
	}
	return false
}

// hasRequest reports whether id has a request among reqs.
func hasRequest(reqs []request, id string) bool {
	for _, r := range reqs {
		if r.peer == id {
			return true
		}
	}
	return false
}

// Rejected records BEP 9's reject of a piece we asked of id: the request
// is withdrawn and the peer is not asked again for RejectBackoff. A reject
// by the single-mode owner gives up its attempt. It returns an error
// wrapping ErrUnrequested for a piece we have not asked of it, or
// ErrBanned.
func (f *Fetcher) Rejected(id string, index int, now time.Time) error {
	if f.banned[id] {
		return fmt.Errorf("peer %s: reject of piece %d: %w", id, index, ErrBanned)
	}
	if index < 0 || index >= len(f.pieces) || !hasRequest(f.pieces[index].reqs, id) {
		return fmt.Errorf("peer %s: reject of piece %d: %w", id, index, ErrUnrequested)
	}
	f.pieces[index].reqs = dropRequests(f.pieces[index].reqs, id)
	if p := f.peers[id]; p != nil {
		p.backoffUntil = now.Add(RejectBackoff)
		p.stalled = true
	}
	if f.single && f.owner == id {
		f.restart()
	}
	f.elect()
	return nil
}
