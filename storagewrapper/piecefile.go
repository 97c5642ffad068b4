package storagewrapper

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// PieceFiler is implemented by a Store whose published pieces are files of
// their own (DirStore, and the shared cache built on it): a reader can then
// move verified bytes from the piece file to where they go (a FUSE reply,
// through splice(2)) without copying them through user space.
type PieceFiler interface {
	// PieceFile returns piece i's published file, open for reading, and
	// release, which the caller calls once it is done with the file
	// (exactly once). Until then the file stays readable, even if the
	// piece is evicted or replaced meanwhile: an open file outlives its
	// name. A piece with no published file fails with an error wrapping
	// fs.ErrNotExist.
	PieceFile(i int) (f *os.File, release func(), err error)
}

// PieceFile implements PieceFiler. The file comes from the store's pool of
// open files, shared with ReadAt.
func (s *DirStore) PieceFile(i int) (*os.File, func(), error) {
	if i < 0 || i >= s.info.NumPieces() {
		return nil, nil, fmt.Errorf("dirstore: piece %d of %d: %w", i, s.info.NumPieces(), ErrOutOfRange)
	}
	if s.closed.Load() {
		return nil, nil, fmt.Errorf("dirstore: piece file %d: %w", i, ErrClosed)
	}
	e, err := s.pool.acquire(s.finalPath(i), os.O_RDONLY)
	if err != nil {
		return nil, nil, fmt.Errorf("dirstore: piece file %d: %w", i, err)
	}
	return e.f, func() { s.pool.release(e) }, nil
}

// ReadFiles hands the verified bytes [off, off+n) of the torrent to fn as
// ranges of the store's piece files, in order: fn(f, at, m) for the m bytes
// at offset at of the file f, once per piece the range covers. The files
// are valid only during fn. The pieces are pinned meanwhile (a shared
// cache counts it as a read and evicts none of them).
//
// Unlike ReadAt it never waits and never fetches: ok is false, with
// nothing handed to fn, when some piece of the range is not verified, the
// store keeps no piece files (not a PieceFiler), or the wrapper is closed;
// the caller then uses ReadAt, which waits, fetches and notices pieces that
// are gone. A piece file that turns out to be gone or short also gives ok
// false, possibly after fn saw earlier pieces: the caller discards what fn
// gathered. fn's error is returned as is, with ok false. A range not
// inside the torrent gives ok false.
func (w *Wrapper) ReadFiles(off int64, n int, fn func(f *os.File, at int64, m int) error) (ok bool, err error) {
	filer, isFiler := w.store.(PieceFiler)
	end := off + int64(n)
	if !isFiler || n <= 0 || off < 0 || end > w.info.TotalLength {
		return false, nil
	}
	plen := w.info.PieceLength
	first, last := int(off/plen), int((end-1)/plen)
	w.mu.Lock()
	missing, some := w.verified.NextClear(first)
	w.mu.Unlock()
	if some && missing <= last {
		return false, nil // the common miss costs no pin
	}
	if w.pinner != nil {
		unpin := w.pinner.Pin(first, last)
		defer unpin()
	}
	w.mu.Lock()
	// Again, pinned: a piece evicted before the pin is no longer verified.
	if missing, some := w.verified.NextClear(first); (some && missing <= last) || w.beginOpLocked() != nil {
		w.mu.Unlock()
		return false, nil
	}
	w.mu.Unlock()
	defer w.ops.Done()
	for at := off; at < end; {
		piece := int(at / plen)
		inPiece := at - w.info.PieceOffset(piece)
		m := int(min(end-at, w.info.PieceLen(piece)-inPiece))
		f, release, err := filer.PieceFile(piece)
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil // gone: ReadAt will notice and fetch it again
		}
		if err != nil {
			return false, fmt.Errorf("storagewrapper: piece file %d: %w: %w", piece, ErrStore, err)
		}
		err = fn(f, inPiece, m)
		release()
		if err != nil {
			return false, err
		}
		at += int64(m)
	}
	return true, nil
}

// Prefetch asks the kernel to read the piece files under the verified
// bytes of [off, off+n) into the page cache (posix_fadvise WILLNEED), so
// that a streaming reader's next reads find them there instead of waiting
// for the disk one piece at a time. It returns at once: the advice is
// given in the background, and Close waits for it. Pieces not verified, a
// store without piece files, a closed wrapper: nothing happens.
func (w *Wrapper) Prefetch(off int64, n int64) {
	filer, isFiler := w.store.(PieceFiler)
	end := min(off+n, w.info.TotalLength)
	if !isFiler || n <= 0 || off < 0 || off >= end {
		return
	}
	w.mu.Lock()
	if w.beginOpLocked() != nil {
		w.mu.Unlock()
		return
	}
	w.mu.Unlock()
	go func() {
		defer w.ops.Done()
		plen := w.info.PieceLength
		for at := off; at < end; {
			piece := int(at / plen)
			inPiece := at - w.info.PieceOffset(piece)
			m := min(end-at, w.info.PieceLen(piece)-inPiece)
			at += m
			w.mu.Lock()
			verified := w.verified.Has(piece)
			w.mu.Unlock()
			if !verified {
				continue
			}
			f, release, err := filer.PieceFile(piece)
			if err != nil {
				continue // gone: a read will notice
			}
			if rc, err := f.SyscallConn(); err == nil {
				_ = rc.Control(func(fd uintptr) {
					_ = unix.Fadvise(int(fd), inPiece, m, unix.FADV_WILLNEED)
				})
			}
			release()
		}
	}()
}
