package storagewrapper

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"btfs/metainfo"
)

// DefaultMaxOpenFiles is how many files a DirStore keeps open at most (the
// seed's FilePool cap). Pieces are files, so a torrent's file count is not
// the bound: this is.
const DefaultMaxOpenFiles = 64

// Layout of a DirStore's directory.
const (
	// piecesDir holds one file per published (verified) piece.
	piecesDir = "pieces"
	// partialDir holds the partial data of pieces being downloaded.
	partialDir = "partial"
	// partialExt ends the name of a partial file, so that no tool (and no
	// later btfs) mistakes one for a piece.
	partialExt = ".part"
)

// DirStore stores each piece as a file of its own: pieces/000123 once
// published, partial/000123.part while being written. A piece file appears
// only by an atomic rename of a complete, fsynced partial file, followed by
// an fsync of the directory, so neither a reader nor a later process ever
// sees a partial piece under a final name, even after a crash.
//
// Partial files do not survive a restart: NewDirStore removes them, because
// the block bookkeeping that said which of their bytes are real lived in the
// RAM of the process that wrote them.
//
// Several processes may share one directory (the shared cache, package
// cache, is built on a DirStore): each then gives its DirStore a
// DirStoreOptions.PartialTag of its own, so that their partial files never
// collide and two publishes of the same piece are two renames of two
// complete, verified files, the last one winning.
type DirStore struct {
	// info gives piece lengths.
	info *metainfo.Info
	// pieces and partial are the two directories of the layout.
	pieces, partial string
	// tag is DirStoreOptions.PartialTag, "" for a private directory.
	tag string
	// aroundRename is DirStoreOptions.AroundRename, possibly nil.
	aroundRename func(piece int) (after func())
	// pool bounds the open files.
	pool *filePool
	// closed is set by Close.
	closed atomic.Bool
}

// DirStoreOptions tunes a DirStore shared by several processes. The zero
// value is a private store.
type DirStoreOptions struct {
	// PartialTag, when set, names this store's partial files
	// (partial/000123.TAG.part) and keeps NewDirStore from removing any
	// partial file but the untagged ones: the others may belong to live
	// processes, and their owner (package cache) cleans them. It must be a
	// single path element without dots.
	PartialTag string
	// AroundRename, when set, is called by Publish once the partial file is
	// complete and durable, right before the rename that publishes it; the
	// function it returns is called right after the rename. A shared cache
	// uses it to make room under its size cap and hold its lock across the
	// rename, without holding it across the fsync.
	AroundRename func(piece int) (after func())
	// MaxOpenFiles bounds the open files; 0 means DefaultMaxOpenFiles.
	MaxOpenFiles int
}

// NewDirStore opens (creating as needed) a private DirStore in dir for info
// and removes leftover partial files.
func NewDirStore(dir string, info *metainfo.Info) (*DirStore, error) {
	return NewDirStoreWith(dir, info, DirStoreOptions{})
}

// NewDirStoreWith opens (creating as needed) a DirStore in dir for info as
// opts say. Untagged leftover partial files (a private store's, whose
// writer is gone) are removed.
func NewDirStoreWith(dir string, info *metainfo.Info, opts DirStoreOptions) (*DirStore, error) {
	if opts.PartialTag != "" && (strings.ContainsAny(opts.PartialTag, "./") || !filepath.IsLocal(opts.PartialTag)) {
		return nil, fmt.Errorf("dirstore: partial tag %q: want one path element without dots", opts.PartialTag)
	}
	maxOpen := opts.MaxOpenFiles
	if maxOpen <= 0 {
		maxOpen = DefaultMaxOpenFiles
	}
	s := &DirStore{
		info:         info,
		pieces:       filepath.Join(dir, piecesDir),
		partial:      filepath.Join(dir, partialDir),
		tag:          opts.PartialTag,
		aroundRename: opts.AroundRename,
		pool:         newFilePool(maxOpen),
	}
	for _, d := range []string{s.pieces, s.partial} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("dirstore: %w", err)
		}
	}
	leftovers, err := os.ReadDir(s.partial)
	if err != nil {
		return nil, fmt.Errorf("dirstore: %w", err)
	}
	for _, e := range leftovers {
		if _, tag, ok := ParsePartialName(e.Name()); ok && tag == "" && e.Type().IsRegular() {
			if err := os.Remove(filepath.Join(s.partial, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("dirstore: remove leftover partial file: %w", err)
			}
		}
	}
	return s, nil
}

// PiecesDir is the directory of the published pieces.
func (s *DirStore) PiecesDir() string { return s.pieces }

// PartialDir is the directory of the partial files.
func (s *DirStore) PartialDir() string { return s.partial }

// PiecePath is where piece i lives once published.
func (s *DirStore) PiecePath(i int) string { return s.finalPath(i) }

// PieceName is the file name of piece i in PiecesDir.
func PieceName(i int) string { return fmt.Sprintf("%06d", i) }

// ParsePieceName returns the piece index of a file name in PiecesDir; false
// for a name that is not a piece's.
func ParsePieceName(name string) (int, bool) {
	if len(name) < 6 {
		return 0, false
	}
	i := 0
	for _, c := range []byte(name) {
		if c < '0' || c > '9' || i > 1<<30 {
			return 0, false
		}
		i = i*10 + int(c-'0')
	}
	return i, true
}

// ParsePartialName returns the piece index and the tag ("" for none) of a
// file name in PartialDir; false for a name that is not a partial file's.
func ParsePartialName(name string) (piece int, tag string, ok bool) {
	base, found := strings.CutSuffix(name, partialExt)
	if !found {
		return 0, "", false
	}
	num, tag, _ := strings.Cut(base, ".")
	piece, ok = ParsePieceName(num)
	return piece, tag, ok && !strings.Contains(tag, ".")
}

// Forget drops the open handles of piece i's published file: another
// process removed or replaced it, and a handle kept open would go on
// reading (and holding the disk space of) the file that is gone.
func (s *DirStore) Forget(i int) { s.pool.forget(s.finalPath(i)) }

// ForgetAll drops the open handles of every file: the directory was
// removed and recreated, and the handles name files that are gone.
func (s *DirStore) ForgetAll() { s.pool.forgetAll() }

// Piece returns piece i.
func (s *DirStore) Piece(i int) Piece {
	if i < 0 || i >= s.info.NumPieces() {
		return errPiece{fmt.Errorf("dirstore: piece %d of %d: %w", i, s.info.NumPieces(), ErrOutOfRange)}
	}
	return dirPiece{s: s, i: i}
}

// Close closes the open files; later calls fail with ErrClosed.
func (s *DirStore) Close() error {
	s.closed.Store(true)
	s.pool.closeAll()
	return nil
}

// finalPath is where piece i lives once published.
func (s *DirStore) finalPath(i int) string {
	return filepath.Join(s.pieces, PieceName(i))
}

// partialPath is where piece i's partial data lives.
func (s *DirStore) partialPath(i int) string {
	if s.tag != "" {
		return filepath.Join(s.partial, PieceName(i)+"."+s.tag+partialExt)
	}
	return filepath.Join(s.partial, PieceName(i)+partialExt)
}

// dirPiece is a handle on one piece of a DirStore.
type dirPiece struct {
	// s is the store.
	s *DirStore
	// i is the piece index, in range.
	i int
}

// checkOpen fails once the store is closed.
func (p dirPiece) checkOpen(op string) error {
	if p.s.closed.Load() {
		return fmt.Errorf("dirstore: %s piece %d: %w", op, p.i, ErrClosed)
	}
	return nil
}

func (p dirPiece) ReadAt(b []byte, off int64) (int, error) {
	if _, err := pieceSpan(p.s.info, p.i, off, 0); err != nil {
		return 0, fmt.Errorf("dirstore: read: %w", err)
	}
	if err := p.checkOpen("read"); err != nil {
		return 0, err
	}
	e, err := p.open()
	if err != nil {
		return 0, fmt.Errorf("dirstore: read piece %d: %w", p.i, err)
	}
	defer p.s.pool.release(e)
	n, err := e.f.ReadAt(b, off)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("dirstore: read piece %d at %d: %w", p.i, off, err)
	}
	return n, err
}

// open acquires the file to read: the published file if there is one,
// else the partial file. A handle the pool holds open already is taken
// without a lookup, so that hashing partial data does not try (and fail) to
// open the final name for every chunk; this is exact because Publish and
// Discard drop both names from the pool before they rename or remove.
func (p dirPiece) open() (*poolEntry, error) {
	final, partial := p.s.finalPath(p.i), p.s.partialPath(p.i)
	if e, ok := p.s.pool.acquireOpen(final); ok {
		return e, nil
	}
	if e, ok := p.s.pool.acquireOpen(partial); ok {
		return e, nil
	}
	e, err := p.s.pool.acquire(final, os.O_RDONLY)
	if errors.Is(err, fs.ErrNotExist) {
		e, err = p.s.pool.acquire(partial, os.O_RDWR)
	}
	return e, err
}

func (p dirPiece) WriteAt(b []byte, off int64) (int, error) {
	if _, err := pieceSpan(p.s.info, p.i, off, len(b)); err != nil {
		return 0, fmt.Errorf("dirstore: write: %w", err)
	}
	if err := p.checkOpen("write"); err != nil {
		return 0, err
	}
	e, err := p.s.pool.acquire(p.s.partialPath(p.i), os.O_RDWR|os.O_CREATE)
	if err != nil {
		return 0, fmt.Errorf("dirstore: write piece %d: %w", p.i, err)
	}
	defer p.s.pool.release(e)
	n, err := e.f.WriteAt(b, off)
	if err != nil {
		// os.File.WriteAt reports ENOSPC and every short write here.
		return n, fmt.Errorf("dirstore: write piece %d at %d (%d of %d bytes written): %w", p.i, off, n, len(b), err)
	}
	return n, nil
}

func (p dirPiece) Completion() (Completion, error) {
	if err := p.checkOpen("completion of"); err != nil {
		return Unknown, err
	}
	st, err := os.Stat(p.s.finalPath(p.i))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return Missing, nil
	case err != nil:
		return Unknown, fmt.Errorf("dirstore: completion of piece %d: %w", p.i, err)
	case !st.Mode().IsRegular() || st.Size() != p.s.info.PieceLen(p.i):
		// Not a piece this store wrote; let the hash judge it (and
		// Discard remove it).
		return Unknown, nil
	}
	return Complete, nil
}

func (p dirPiece) Publish() error {
	if err := p.checkOpen("publish"); err != nil {
		return err
	}
	partial, final := p.s.partialPath(p.i), p.s.finalPath(p.i)
	e, err := p.s.pool.acquire(partial, os.O_RDWR)
	if err != nil {
		return fmt.Errorf("dirstore: publish piece %d: %w", p.i, err)
	}
	err = p.syncPartial(e.f)
	p.s.pool.release(e)
	if err != nil {
		return err
	}
	// Both names leave the pool around the rename: no pooled handle may
	// stay under the partial name for the published inode (a later write
	// would change a published piece), nor under the final name for an
	// inode the rename replaced.
	p.s.pool.forget(partial)
	p.s.pool.forget(final)
	var after func()
	if p.s.aroundRename != nil {
		after = p.s.aroundRename(p.i)
	}
	err = os.Rename(partial, final)
	if after != nil {
		after()
	}
	p.s.pool.forget(partial)
	p.s.pool.forget(final)
	if err != nil {
		return fmt.Errorf("dirstore: publish piece %d: %w", p.i, err)
	}
	if err := syncDir(p.s.pieces); err != nil {
		return fmt.Errorf("dirstore: publish piece %d: %w", p.i, err)
	}
	return nil
}

// syncPartial checks that the partial file has the piece's length and
// flushes it to the disk: the rename that follows must not publish a piece
// whose bytes are still only in the page cache (a full disk can first show
// up here, with delayed allocation).
func (p dirPiece) syncPartial(f *os.File) error {
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("dirstore: publish piece %d: %w", p.i, err)
	}
	if want := p.s.info.PieceLen(p.i); st.Size() != want {
		return fmt.Errorf("dirstore: publish piece %d: partial file has %d bytes, want %d: %w",
			p.i, st.Size(), want, io.ErrUnexpectedEOF)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("dirstore: publish piece %d: fsync: %w", p.i, err)
	}
	return nil
}

// syncDir makes the directory entries of dir durable (the rename).
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

func (p dirPiece) Discard() error {
	if err := p.checkOpen("discard"); err != nil {
		return err
	}
	var errs []error
	for _, path := range []string{p.s.partialPath(p.i), p.s.finalPath(p.i)} {
		p.s.pool.forget(path)
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("dirstore: discard piece %d: %w", p.i, err)
	}
	return nil
}
