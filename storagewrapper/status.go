package storagewrapper

import (
	"btfs/bitfield"
	"btfs/picker"
)

// DoIHave reports whether piece is verified: the seed's do_I_have.
func (w *Wrapper) DoIHave(piece int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.verified.Has(piece)
}

// Bitfield returns a copy of the verified set, for the BITFIELD message and
// the picker. The copy is the caller's.
func (w *Wrapper) Bitfield() *bitfield.Bitfield {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.verified.Clone()
}

// Stats is a snapshot of the wrapper's counts, for the status line.
type Stats struct {
	// Pieces and Length describe the torrent.
	Pieces int
	Length int64
	// VerifiedPieces and VerifiedBytes count what is verified.
	VerifiedPieces int
	VerifiedBytes  int64
	// InFlight is the number of pieces in flight (partial or hashing).
	InFlight int
	// Wants is the number of registered wants.
	Wants int
	// Hashed counts the pieces this wrapper hashed (downloads, adoptions,
	// resume), whatever the outcome.
	Hashed int64
}

// Stats returns the current counts.
func (w *Wrapper) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return Stats{
		Pieces:         w.info.NumPieces(),
		Length:         w.info.TotalLength,
		VerifiedPieces: w.verified.Count(),
		VerifiedBytes:  w.verifiedBytes,
		InFlight:       len(w.downloads),
		Wants:          len(w.wants),
		Hashed:         w.hashed.Load(),
	}
}

// PieceState is where piece stands, in the picker's terms: verified;
// full when no block is left to hand out (all handed out or received,
// being hashed, being adopted, or claimed by another process sharing the
// Store); started when some blocks are handed out and some are not; idle
// otherwise. The wrapper owns this state; the engine's picker keeps a copy
// synced from here (picker.Sync) after each change.
func (w *Wrapper) PieceState(piece int) picker.PieceState {
	w.mu.Lock()
	defer w.mu.Unlock()
	if piece < 0 || piece >= w.info.NumPieces() {
		return picker.PieceIdle
	}
	if w.verified.Has(piece) {
		return picker.PieceVerified
	}
	_, adopting := w.adopting[piece]
	_, refused := w.refused[piece]
	d := w.downloads[piece]
	switch {
	case adopting || refused:
		return picker.PieceFull
	case d == nil:
		return picker.PieceIdle
	case d.hashing || !d.hasFree():
		return picker.PieceFull
	}
	return picker.PieceStarted
}
