package storagewrapper

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// PieceFiler is implemented by a Store whose pieces' bytes lie in files
// (the torrent's own files: FileStore, and the shared cache built on one):
// a reader can then move verified bytes from those files to where they go
// (a FUSE reply, through splice(2)) without copying them through user
// space, and ask the kernel to read them ahead.
type PieceFiler interface {
	// PieceFiles calls fn(f, at, m) for each file segment holding bytes
	// [off, off+n) of piece i, in order: the m bytes at offset at of the
	// open file f, valid only during fn. A piece whose file is gone fails
	// with an error wrapping fs.ErrNotExist; fn's error is returned as is.
	PieceFiles(i int, off int64, n int, fn func(f *os.File, at int64, m int) error) error
}

// ReadFiles hands the verified bytes [off, off+n) of the torrent to fn as
// ranges of the store's files, in order: fn(f, at, m) for the m bytes
// at offset at of the file f, once per file segment of each piece the
// range covers. The files
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
		var fnErr error
		err := filer.PieceFiles(piece, inPiece, m, func(f *os.File, at int64, m int) error {
			fnErr = fn(f, at, m)
			return fnErr
		})
		switch {
		case fnErr != nil:
			return false, fnErr
		case errors.Is(err, fs.ErrNotExist):
			return false, nil // gone: ReadAt will notice and fetch it again
		case err != nil:
			return false, fmt.Errorf("storagewrapper: piece files %d: %w: %w", piece, ErrStore, err)
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
			_ = filer.PieceFiles(piece, inPiece, int(m), func(f *os.File, at int64, m int) error {
				if rc, err := f.SyscallConn(); err == nil {
					_ = rc.Control(func(fd uintptr) {
						_ = unix.Fadvise(int(fd), at, int64(m), unix.FADV_WILLNEED)
					})
				}
				return nil
			}) // gone: a read will notice
		}
	}()
}

// FileBacker is implemented by a Store that keeps the torrent's files
// whole (FileStore, and the shared cache built on one): a file whose
// pieces are all verified can then be read by the kernel itself (FUSE
// passthrough), with no server in between.
type FileBacker interface {
	// BackingFile opens file k of the torrent (an index in Info.Files)
	// for reading. The caller verified and pinned every piece holding its
	// bytes; a store that cannot vouch for them (the shared cache: not
	// all marked) or whose file has not the torrent's length fails.
	BackingFile(k int) (*os.File, error)
}

// BackingFile returns file k of the torrent, open for reading, when every
// piece holding its bytes is verified and the store keeps it whole
// (FileBacker); its pieces stay pinned until release (a shared cache
// evicts none of them while the kernel reads the file directly). ok is
// false otherwise: the caller reads through ReadAt.
func (w *Wrapper) BackingFile(k int) (f *os.File, release func(), ok bool) {
	fb, isBacker := w.store.(FileBacker)
	if !isBacker || k < 0 || k >= len(w.info.Files) {
		return nil, nil, false
	}
	if file := w.info.Files[k]; file.Length == 0 || file.Padding {
		return nil, nil, false
	}
	first, end := w.info.FileRange(k)
	complete := func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		missing, some := w.verified.NextClear(first)
		return !w.closed && (!some || missing >= end)
	}
	if !complete() {
		return nil, nil, false
	}
	unpin := func() {}
	if w.pinner != nil {
		unpin = w.pinner.Pin(first, end-1)
	}
	if !complete() { // evicted before the pin
		unpin()
		return nil, nil, false
	}
	f, err := fb.BackingFile(k)
	if err != nil {
		unpin()
		w.log.Debug("storagewrapper: no backing file", "file", k, "err", err)
		return nil, nil, false
	}
	var once sync.Once
	return f, func() {
		once.Do(func() {
			f.Close()
			unpin()
		})
	}, true
}
