package storagewrapper

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// Adopt verifies what the Store holds for piece (a piece found on disk at
// start, or published into a shared cache by another process) and marks it
// verified if it hashes right, waking its readers; data that does not hash
// right is discarded. It reports whether the piece is verified afterwards.
//
// A piece the Store reports Missing is not read. A piece in flight here (we
// are downloading it) or being adopted by another call is left alone and
// reported false: its partial data must not be hashed or discarded under
// the download; the caller may try again once the download is over.
//
// A piece adopted is reported by TakeChanges (Verified), so that the engine
// announces it: Adopt is how pieces published by other processes sharing
// the Store become ours.
func (w *Wrapper) Adopt(ctx context.Context, piece int) (bool, error) {
	return w.adopt(ctx, piece, false)
}

// adopt is Adopt; with onlyComplete, a piece the Store does not report
// Complete is not read either (a reader's miss checks whether another
// process published the piece, and must not hash partial data for it).
func (w *Wrapper) adopt(ctx context.Context, piece int, onlyComplete bool) (bool, error) {
	if piece < 0 || piece >= w.info.NumPieces() {
		return false, fmt.Errorf("storagewrapper: adopt piece %d of %d: %w", piece, w.info.NumPieces(), ErrOutOfRange)
	}
	// First without marking the piece busy: most calls (a reader's miss)
	// find nothing in the store, and the engine must not be told "busy"
	// for a piece nobody is working on.
	if done, ok, err := w.adoptableLocked(piece, false); done {
		return ok, err
	}
	defer w.ops.Done()
	if w.pinner != nil {
		// Not evicted while it is hashed: the hash would fail, and the
		// file be discarded, for no fault of its data.
		unpin := w.pinner.Pin(piece, piece)
		defer unpin()
	}
	sp := w.store.Piece(piece)
	c, err := sp.Completion()
	if err != nil {
		return false, fmt.Errorf("storagewrapper: adopt piece %d: %w: %w", piece, ErrStore, err)
	}
	if c == Missing || (onlyComplete && c != Complete && c != Verified) {
		return false, nil
	}
	if done, ok, err := w.adoptableLocked(piece, true); done {
		return ok, err
	}
	verified := false
	if c == Verified {
		// The store's shared record vouches for it: another process (or
		// this one, before a restart) hashed it once its bytes were on
		// disk. Hashing it again is what the record exists to avoid.
		verified = true
		w.mu.Lock()
		close(w.adopting[piece])
		delete(w.adopting, piece)
		w.markVerifiedLocked(piece)
		w.changed[piece] = struct{}{}
		w.mu.Unlock()
		w.signal()
		return true, nil
	}
	defer func() {
		w.mu.Lock()
		close(w.adopting[piece])
		delete(w.adopting, piece)
		if !verified && !w.closed {
			// NewRequest answered "busy" meanwhile, and the engine set
			// the piece aside: it must hear that it is to be fetched.
			w.changed[piece] = struct{}{}
		}
		w.mu.Unlock()
		if !verified {
			w.signal()
		}
	}()
	ok, err := w.hashPiece(ctx, piece)
	if err != nil {
		if ctx.Err() == nil && !errors.Is(err, ErrClosed) {
			err = fmt.Errorf("%w: %w", ErrStore, err)
		}
		return false, fmt.Errorf("storagewrapper: adopt piece %d: %w", piece, err)
	}
	if !ok {
		w.log.Warn("storagewrapper: stored piece failed its hash; discarding it", "piece", piece, "completion", c)
		if err := sp.Discard(); err != nil {
			return false, fmt.Errorf("storagewrapper: adopt piece %d: discard: %w: %w", piece, ErrStore, err)
		}
		return false, nil
	}
	if rec, ok := w.store.(Recorder); ok && c == Unknown {
		// Verified by hashing here: recorded, so that no process hashes
		// it again.
		if err := rec.Record(piece); err != nil {
			return false, fmt.Errorf("storagewrapper: adopt piece %d: record: %w: %w", piece, ErrStore, err)
		}
	}
	verified = true
	w.mu.Lock()
	w.markVerifiedLocked(piece)
	w.changed[piece] = struct{}{}
	w.mu.Unlock()
	w.signal()
	return true, nil
}

// adoptableLocked takes the lock and says whether adopt is done with piece
// (done: verified already, in flight here, being adopted, or the wrapper
// closed), with adopt's results. Otherwise, the first time (!claim) it
// begins a Store operation that adopt ends; the second time (claim) it
// marks the piece as being adopted.
func (w *Wrapper) adoptableLocked(piece int, claim bool) (done, ok bool, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.verified.Has(piece) {
		return true, true, nil
	}
	_, adopting := w.adopting[piece]
	if w.downloads[piece] != nil || adopting {
		return true, false, nil
	}
	if claim {
		w.adopting[piece] = make(chan struct{})
		return false, false, nil
	}
	if err := w.beginOpLocked(); err != nil {
		return true, false, fmt.Errorf("storagewrapper: adopt piece %d: %w", piece, err)
	}
	return false, false, nil
}

// resumeAdopt is Adopt for Resume: a piece that another call is adopting
// at the same moment (a reader's miss, a shared cache's watcher) is waited
// for and looked at again, not skipped. Skipping it made Resume return
// with a piece of the store still unverified, so the engine connected
// peers with a wrong first BITFIELD and a torrent held whole by the cache
// was not complete from the cache alone.
func (w *Wrapper) resumeAdopt(ctx context.Context, piece int) error {
	for {
		ok, err := w.Adopt(ctx, piece)
		if ok || err != nil {
			return err
		}
		w.mu.Lock()
		done := w.adopting[piece]
		w.mu.Unlock()
		if done == nil {
			return nil // missing, bad, or in flight here
		}
		select {
		case <-done:
		case <-ctx.Done():
			return nil // Resume reports ctx's error
		case <-w.closedCh:
			return fmt.Errorf("storagewrapper: resume piece %d: %w", piece, ErrClosed)
		}
	}
}

// Resume counts what the Store already holds: every piece it reports
// Complete or Unknown is hashed (Config.HashWorkers at a time) and adopted
// if right, discarded if wrong. Nothing counts as verified before its hash
// is checked. The engine calls Resume once, after New and before it
// connects peers (so that its first BITFIELD is right); readers may already
// wait meanwhile and are woken piece by piece. Config.ResumeProgress hears
// of each piece examined.
//
// A piece that cannot be read is left unverified (it will be downloaded)
// and Resume goes on; it then returns an error wrapping the first such
// failure. It returns ctx's error if ctx ends first.
func (w *Wrapper) Resume(ctx context.Context) error {
	total := w.info.NumPieces()
	var (
		next     atomic.Int64 // next piece to examine
		mu       sync.Mutex   // serializes progress calls and guards the rest
		done     int
		failures int
		first    error
		wg       sync.WaitGroup
	)
	for range min(w.hashWorkers, total) {
		wg.Go(func() {
			for {
				p := int(next.Add(1) - 1)
				if p >= total || ctx.Err() != nil {
					return
				}
				err := w.resumeAdopt(ctx, p)
				if errors.Is(err, ErrClosed) {
					return
				}
				mu.Lock()
				done++
				if err != nil && ctx.Err() == nil {
					w.log.Error("storagewrapper: resume: piece unreadable", "piece", p, "err", err)
					failures++
					if first == nil {
						first = err
					}
				}
				if w.progress != nil {
					w.progress(done, total)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("storagewrapper: resume: %w", err)
	}
	w.mu.Lock()
	closed := w.closed
	st := w.verified.Count()
	w.mu.Unlock()
	if closed {
		return fmt.Errorf("storagewrapper: resume: %w", ErrClosed)
	}
	w.log.Info("storagewrapper: resume done", "verified", st, "pieces", total, "unreadable", failures)
	if first != nil {
		return fmt.Errorf("storagewrapper: resume: %d of %d pieces unreadable, first: %w", failures, total, first)
	}
	return nil
}
