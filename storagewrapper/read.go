package storagewrapper

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"btfs/picker"
)

// ReadAt reads len(p) bytes at torrent offset off, once every piece under
// them is verified. It waits (with a picker.Now want on the missing part, so
// that the engine fetches it first) until then, until ctx is done (the error
// wraps ctx.Err(): context.Canceled or DeadlineExceeded), or until Close
// (ErrClosed). It never returns unverified bytes and is never short except
// at the end of the torrent, where it follows io.ReaderAt: the bytes up to
// the end and io.EOF. A read of zero bytes returns at once.
//
// Waking is per piece: a channel closed when the piece is verified, so a
// thousand readers of one piece cost nothing while they wait.
func (w *Wrapper) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("storagewrapper: read at %d: %w", off, ErrOutOfRange)
	}
	if len(p) == 0 {
		return 0, nil
	}
	total := w.info.TotalLength
	if off >= total {
		return 0, io.EOF
	}
	end := off + int64(len(p))
	var atEOF error
	if end > total || end < off { // end < off: overflow
		end, atEOF = total, io.EOF
	}
	plen := w.info.PieceLength
	next, last := int(off/plen), int((end-1)/plen)
	if w.pinner != nil {
		// Pinned from the wait to the copy: a shared cache evicts none of
		// these pieces meanwhile.
		unpin := w.pinner.Pin(next, last)
		defer unpin()
	}
	for {
		if err := w.waitVerified(ctx, off, end, next, last); err != nil {
			return 0, err
		}
		n, gone, err := w.readVerified(p[:end-off], off)
		w.ops.Done()
		if gone < 0 {
			if err != nil {
				return n, err
			}
			return n, atEOF
		}
		// The piece's published data is gone (a shared cache evicted it
		// before this read pinned it, or it was removed or truncated
		// behind our back): not an error for the reader, a piece to fetch
		// again.
		w.lim.Info("storagewrapper: a verified piece is gone from the store; fetching it again", "piece", gone, "err", err)
		w.Unverify(gone)
	}
}

// waitVerified returns once pieces [next, last] are all verified, with a
// Store operation begun (the caller ends it), or with the reason it gave up.
//
// On a miss it first asks the Store whether the piece is there after all
// (another process sharing it may have published it a moment ago) and
// adopts it if so, before it registers a want and waits.
func (w *Wrapper) waitVerified(ctx context.Context, off, end int64, next, last int) error {
	var release func()
	tried := -1 // the last piece a miss tried to adopt
	defer func() {
		if release != nil {
			release()
		}
	}()
	for {
		w.mu.Lock()
		if w.closed {
			w.mu.Unlock()
			return fmt.Errorf("storagewrapper: read at %d: %w", off, ErrClosed)
		}
		missing, ok := w.verified.NextClear(next)
		if !ok || missing > last {
			err := w.beginOpLocked() // cannot fail: not closed
			w.mu.Unlock()
			return err
		}
		if err := w.storeErrLocked(); err != nil {
			// The Store takes no data (health.go): nothing will come.
			w.mu.Unlock()
			return fmt.Errorf("storagewrapper: read at %d: piece %d not cached: %w", off, missing, err)
		}
		failed := w.hs.failed
		ch := w.waiters[missing]
		if ch == nil {
			ch = make(chan struct{})
			w.waiters[missing] = ch
		}
		w.mu.Unlock()
		next = missing // pieces before it are verified (until Unverify, which the read notices)
		if tried != missing {
			tried = missing
			if ok, err := w.adopt(ctx, missing, true); ok {
				continue
			} else if err != nil && ctx.Err() == nil && !errors.Is(err, ErrClosed) {
				w.lim.Warn("storagewrapper: read miss: stored piece unreadable", "piece", missing, "err", err)
			}
		}
		if release == nil {
			release = w.Want(picker.Want{
				Start:    max(off, w.info.PieceOffset(missing)),
				End:      end,
				Priority: picker.Now,
				Deadline: w.now(),
			})
		}
		select {
		case <-ch:
		case <-failed: // the loop returns the Store's error
		case <-ctx.Done():
			return fmt.Errorf("storagewrapper: read at %d waiting for piece %d: %w", off, missing, ctx.Err())
		case <-w.closedCh:
			return fmt.Errorf("storagewrapper: read at %d waiting for piece %d: %w", off, missing, ErrClosed)
		}
	}
}

// readVerified copies verified bytes from the Store into p, piece by piece.
// gone is the piece whose published data turned out to be missing or short
// (it is no longer there to be read; -1 when none), with err saying how.
func (w *Wrapper) readVerified(p []byte, off int64) (n, gone int, err error) {
	plen := w.info.PieceLength
	done := 0
	for done < len(p) {
		at := off + int64(done)
		piece := int(at / plen)
		inPiece := at - w.info.PieceOffset(piece)
		want := int(min(int64(len(p)-done), w.info.PieceLen(piece)-inPiece))
		n, err := w.store.Piece(piece).ReadAt(p[done:done+want], inPiece)
		done += n
		if n == want {
			continue
		}
		gone = -1
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF // a verified piece shorter than it is
		}
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, fs.ErrNotExist) {
			gone = piece
		}
		return done, gone, fmt.Errorf("storagewrapper: read piece %d at %d: %w: %w", piece, inPiece, ErrStore, err)
	}
	return done, -1, nil
}
