package storagewrapper

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
)

// Result is what PieceCameIn did with a block that it accepted.
type Result struct {
	// Piece is the block's piece.
	Piece int
	// Completed is set when this block was the piece's last: the piece was
	// hashed (and then Verified or HashFailed, or a store error returned).
	Completed bool
	// Verified is set when the piece hashed right and is published: the
	// engine sends HAVE, and waiting readers have been woken.
	Verified bool
	// HashFailed is set when the piece did not hash right: its data is
	// discarded and every block will be handed out again.
	HashFailed bool
	// Contributors lists, when Completed, the peers that sent the piece's
	// blocks with how many each, sorted by peer: on a hash failure, the
	// suspects.
	Contributors []Contribution
	// Blamed names, on a hash failure, the peer that sent every block of
	// the piece: it alone sent bad data. Empty when several peers
	// contributed (any of them may have lied).
	Blamed string
}

// Contribution is how many blocks of a piece one peer sent.
type Contribution struct {
	// Peer is the engine's key for the peer, as passed to PieceCameIn.
	Peer string
	// Blocks is the number of the piece's blocks it sent.
	Blocks int
}

// PieceCameIn files a block that peer from sent: the seed's piece_came_in.
// It writes the block into the Store in the caller's goroutine (no hop for
// block bytes); on the piece's last block it hashes the piece, publishes it
// and wakes its readers, or on a mismatch discards it and re-queues every
// block. Exactly one call hashes a piece, whatever the concurrency.
//
// The errors wrap ErrOutOfRange, ErrUnaligned, ErrWrongLength or
// ErrUnrequested for a block that nobody asked for or that cannot be right;
// ErrDuplicate for a block received already (an endgame duplicate); ErrStore
// when the Store failed (the block goes back to be requested again); and
// ErrClosed. A nil error means the block was taken; Result says what
// happened to the piece. Store errors are returned, not logged: the caller
// decides how loud a full disk is. data is not retained.
//
// It takes no context: all it may block on is one block's write and one
// piece's hash and publish, each bounded, and Close stops a hash midway.
func (w *Wrapper) PieceCameIn(piece int, begin int64, data []byte, from string) (Result, error) {
	res := Result{Piece: piece}
	idx, err := w.checkBlock(piece, begin, len(data))
	if err != nil {
		return res, fmt.Errorf("storagewrapper: block from %s: %w", from, err)
	}
	w.mu.Lock()
	d, err := w.claimLocked(piece, idx)
	if err == nil {
		w.ops.Add(1) // claimLocked checked closed under this same lock
	}
	w.mu.Unlock()
	if err != nil {
		return res, fmt.Errorf("storagewrapper: piece %d block at %d from %s: %w", piece, begin, from, err)
	}
	defer w.ops.Done()

	err = w.write(piece, begin, data)
	if err != nil && w.makeRoom(piece, err) {
		err = w.write(piece, begin, data) // room was made: once more
	}

	w.mu.Lock()
	d.writing--
	if w.downloads[piece] != d {
		// The piece was dropped while its block was being written (the
		// Store failed, see health.go): the block is lost with it.
		w.mu.Unlock()
		return res, fmt.Errorf("storagewrapper: piece %d block at %d from %s: piece dropped: %w", piece, begin, from, ErrUnrequested)
	}
	if err != nil {
		d.free(idx)
		release := w.retireIfIdleLocked(piece, d)
		w.mu.Unlock()
		release()
		w.storeFailed(err)
		return res, fmt.Errorf("storagewrapper: piece %d block at %d from %s: %w: %w", piece, begin, from, ErrStore, err)
	}
	d.state[idx] = blockReceived
	d.from[idx] = from
	d.received++
	if d.received < len(d.state) {
		w.mu.Unlock()
		return res, nil
	}
	d.hashing = true
	res.Completed = true
	res.Contributors = contributions(d.from)
	w.mu.Unlock()
	return w.finishPiece(res)
}

// write writes one block into the Store; a short write is an error.
func (w *Wrapper) write(piece int, begin int64, data []byte) error {
	n, err := w.store.Piece(piece).WriteAt(data, begin)
	if err == nil && n != len(data) {
		err = io.ErrShortWrite
	}
	return err
}

// checkBlock validates a block's coordinates against the torrent and
// returns its index in the piece.
func (w *Wrapper) checkBlock(piece int, begin int64, length int) (int, error) {
	if piece < 0 || piece >= w.info.NumPieces() {
		return 0, fmt.Errorf("piece %d of %d: %w", piece, w.info.NumPieces(), ErrOutOfRange)
	}
	plen := w.info.PieceLen(piece)
	if begin < 0 || begin >= plen {
		return 0, fmt.Errorf("piece %d: block at %d outside the piece's %d bytes: %w", piece, begin, plen, ErrOutOfRange)
	}
	if begin%BlockSize != 0 {
		return 0, fmt.Errorf("piece %d: block at %d: %w", piece, begin, ErrUnaligned)
	}
	if want := min(BlockSize, plen-begin); int64(length) != want {
		return 0, fmt.Errorf("piece %d: block at %d has %d bytes, want %d: %w", piece, begin, length, want, ErrWrongLength)
	}
	return int(begin / BlockSize), nil
}

// claimLocked moves block idx of piece from handed out to being written, or
// says why it cannot.
func (w *Wrapper) claimLocked(piece, idx int) (*download, error) {
	if w.closed {
		return nil, ErrClosed
	}
	if w.verified.Has(piece) {
		return nil, fmt.Errorf("piece already verified: %w", ErrDuplicate)
	}
	d := w.downloads[piece]
	switch {
	case d == nil:
		return nil, fmt.Errorf("piece not in flight: %w", ErrUnrequested)
	case d.hashing:
		return nil, fmt.Errorf("piece complete, being hashed: %w", ErrDuplicate)
	}
	switch d.state[idx] {
	case blockFree:
		return nil, ErrUnrequested
	case blockWriting, blockReceived:
		return nil, ErrDuplicate
	}
	d.state[idx] = blockWriting
	d.out--
	d.writing++
	return d, nil
}

// finishPiece hashes a piece whose blocks are all received and publishes
// it, or discards it. It runs in the goroutine of the last block, outside
// the lock, while the piece is busy (download.hashing).
func (w *Wrapper) finishPiece(res Result) (Result, error) {
	p := res.Piece
	ok, err := w.hashPiece(context.Background(), p)
	if err == nil && ok {
		if err = w.store.Piece(p).Publish(); err == nil {
			w.mu.Lock()
			w.markVerifiedLocked(p)
			release := w.leaveFlightLocked(p)
			w.mu.Unlock()
			release()
			res.Verified = true
			return res, nil
		}
	}
	if errors.Is(err, ErrClosed) {
		// Closing: the partial data is not known bad; leave it to the
		// store (the dir store drops partial files when it opens).
		w.mu.Lock()
		release := w.leaveFlightLocked(p)
		w.mu.Unlock()
		release()
		return res, fmt.Errorf("storagewrapper: piece %d: %w", p, err)
	}
	// A mismatch, or a store that could not read or publish the piece:
	// either way the partial data goes, and every block is asked for again.
	if derr := w.store.Piece(p).Discard(); derr != nil {
		w.lim.Error("storagewrapper: discard failed", "piece", p, "err", derr)
	}
	w.mu.Lock()
	release := w.leaveFlightLocked(p)
	w.mu.Unlock()
	release()
	if err != nil {
		w.storeFailed(err)
		return res, fmt.Errorf("storagewrapper: piece %d: %w: %w", p, ErrStore, err)
	}
	res.HashFailed = true
	if len(res.Contributors) == 1 {
		res.Blamed = res.Contributors[0].Peer
	}
	w.log.Warn("storagewrapper: piece failed its hash", "piece", p, "contributors", res.Contributors, "blamed", res.Blamed)
	return res, nil
}

// contributions counts the blocks each peer sent, sorted by peer.
func contributions(from []string) []Contribution {
	counts := map[string]int{}
	for _, p := range from {
		counts[p]++
	}
	out := make([]Contribution, 0, len(counts))
	for p, n := range counts {
		out = append(out, Contribution{Peer: p, Blocks: n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Peer < out[j].Peer })
	return out
}
