package storagewrapper

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"

	"btfs/metainfo"
)

// FileStore keeps a torrent's data in its own files, laid out as every
// client does (dir/NAME for a single file, dir/NAME/path... for a
// directory): what `btfs get` writes, `btfs seed` reads, and aria2c or
// Transmission share. Blocks are written in place, so partial data and
// published data are the same bytes: the files cannot tell a verified piece
// from a partial one, so Completion says Unknown for a piece whose files
// hold enough bytes (Resume hashes it) and Missing otherwise, and Publish
// has nothing to rename. The Wrapper never serves a byte before its piece
// hashed right, so in-place writes stay safe for readers.
//
// BEP 47 padding files are never created: they read as zeros and writes to
// them are dropped (after the hash check has seen them as zeros).
type FileStore struct {
	root     string // the directory the files are in
	info     *metainfo.Info
	paths    []string // per file, the path on disk ("" for padding files)
	readOnly bool     // seeding existing data: never create or write
	pool     *filePool
}

// NewFileStore returns a FileStore of info's files under dir. With
// readOnly, files are opened for reading only and writes fail: for seeding
// data that must not change.
func NewFileStore(dir string, info *metainfo.Info, readOnly bool) (*FileStore, error) {
	if err := checkInfo(info); err != nil {
		return nil, err
	}
	s := &FileStore{root: dir, info: info, readOnly: readOnly, pool: newFilePool(DefaultMaxOpenFiles)}
	s.paths = make([]string, len(info.Files))
	for i, f := range info.Files {
		if f.Padding {
			continue
		}
		parts := []string{dir, info.Name}
		if info.MultiFile {
			parts = append(parts, f.Path...)
		}
		p := filepath.Join(parts...)
		// metainfo made every component safe; this is the belt to its braces.
		if rel, err := filepath.Rel(dir, p); err != nil || !filepath.IsLocal(rel) {
			return nil, fmt.Errorf("storagewrapper: file %q escapes %s", filepath.Join(f.Path...), dir)
		}
		s.paths[i] = p
	}
	if !readOnly {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("storagewrapper: %w", err)
		}
		// Zero-length files exist from the start: nothing will ever write them.
		for i, f := range info.Files {
			if f.Length == 0 && s.paths[i] != "" {
				if err := os.MkdirAll(filepath.Dir(s.paths[i]), 0o755); err != nil {
					return nil, fmt.Errorf("storagewrapper: %w", err)
				}
				fh, err := os.OpenFile(s.paths[i], os.O_RDWR|os.O_CREATE, 0o644)
				if err != nil {
					return nil, fmt.Errorf("storagewrapper: %w", err)
				}
				fh.Close()
			}
		}
	}
	return s, nil
}

// Piece returns piece i's handle.
func (s *FileStore) Piece(i int) Piece {
	if i < 0 || i >= s.info.NumPieces() {
		return errPiece{err: fmt.Errorf("storagewrapper: piece %d of %d: %w", i, s.info.NumPieces(), ErrOutOfRange)}
	}
	return filePiece{s: s, i: i}
}

// Close closes the open files.
func (s *FileStore) Close() error {
	s.pool.closeAll()
	return nil
}

// segment is the part of one file that a piece range covers.
type segment struct {
	file int   // index in info.Files
	off  int64 // offset in the file
	n    int   // bytes
}

// segments maps [toff, toff+n) of the torrent to file segments, in order.
func (s *FileStore) segments(toff int64, n int) []segment {
	files := s.info.Files
	// First file whose end is past toff (zero-length files are skipped).
	k := sort.Search(len(files), func(k int) bool { return files[k].Offset+files[k].Length > toff })
	var out []segment
	for ; k < len(files) && n > 0; k++ {
		f := files[k]
		if f.Length == 0 {
			continue
		}
		off := toff - f.Offset
		m := int(min(int64(n), f.Length-off))
		out = append(out, segment{file: k, off: off, n: m})
		toff += int64(m)
		n -= m
	}
	return out
}

func (s *FileStore) flag() int {
	if s.readOnly {
		return os.O_RDONLY
	}
	return os.O_RDWR | os.O_CREATE
}

// filePiece is one piece of a FileStore.
type filePiece struct {
	s *FileStore
	i int
}

func (p filePiece) ReadAt(b []byte, off int64) (int, error) {
	plen, err := pieceSpan(p.s.info, p.i, off, len(b))
	if err != nil {
		return 0, err
	}
	want := len(b)
	if rest := plen - off; int64(want) > rest {
		want = int(rest)
	}
	done := 0
	for _, sg := range p.s.segments(p.s.info.PieceOffset(p.i)+off, want) {
		dst := b[done : done+sg.n]
		path := p.s.paths[sg.file]
		if path == "" { // padding
			clear(dst)
			done += sg.n
			continue
		}
		e, err := p.s.pool.acquire(path, p.s.flag())
		if err != nil {
			return done, fmt.Errorf("storagewrapper: piece %d: %w", p.i, err)
		}
		n, err := e.f.ReadAt(dst, sg.off)
		p.s.pool.release(e)
		done += n
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF // the file is shorter than the torrent says
			}
			return done, fmt.Errorf("storagewrapper: piece %d: %s: %w", p.i, path, err)
		}
	}
	if done < len(b) {
		return done, io.EOF
	}
	return done, nil
}

func (p filePiece) WriteAt(b []byte, off int64) (int, error) {
	if p.s.readOnly {
		return 0, fmt.Errorf("storagewrapper: piece %d: read-only file store", p.i)
	}
	plen, err := pieceSpan(p.s.info, p.i, off, len(b))
	if err != nil {
		return 0, err
	}
	if off+int64(len(b)) > plen {
		return 0, fmt.Errorf("storagewrapper: piece %d: write of %d at %d past its end: %w", p.i, len(b), off, ErrOutOfRange)
	}
	done := 0
	for _, sg := range p.s.segments(p.s.info.PieceOffset(p.i)+off, len(b)) {
		src := b[done : done+sg.n]
		path := p.s.paths[sg.file]
		if path == "" {
			done += sg.n
			continue
		}
		e, err := p.s.pool.acquire(path, p.s.flag())
		if errors.Is(err, os.ErrNotExist) {
			// The torrent's subdirectories are made as needed, but a
			// store whose directory was removed under it fails: that
			// is a fault to report (storagewrapper/health.go), not to
			// paper over.
			if _, serr := os.Stat(p.s.root); serr != nil {
				err = serr
			} else if err = os.MkdirAll(filepath.Dir(path), 0o755); err == nil {
				e, err = p.s.pool.acquire(path, p.s.flag())
			}
		}
		if err != nil {
			return done, fmt.Errorf("storagewrapper: piece %d: %w", p.i, err)
		}
		n, err := e.f.WriteAt(src, sg.off)
		p.s.pool.release(e)
		done += n
		if err != nil {
			return done, fmt.Errorf("storagewrapper: piece %d: %s: %w", p.i, path, err)
		}
	}
	return done, nil
}

// Completion is Missing when a file of the piece is absent or too short,
// Unknown otherwise: only the hash can tell.
func (p filePiece) Completion() (Completion, error) {
	plen := p.s.info.PieceLen(p.i)
	for _, sg := range p.s.segments(p.s.info.PieceOffset(p.i), int(plen)) {
		path := p.s.paths[sg.file]
		if path == "" {
			continue
		}
		fi, err := os.Stat(path)
		if errors.Is(err, os.ErrNotExist) {
			return Missing, nil
		}
		if err != nil {
			return Unknown, fmt.Errorf("storagewrapper: piece %d: %w", p.i, err)
		}
		if fi.Size() < sg.off+int64(sg.n) {
			return Missing, nil
		}
	}
	return Unknown, nil
}

// Publish has nothing to move: the blocks are in place.
func (p filePiece) Publish() error { return nil }

// Discard leaves the bytes (they will be overwritten by the next download
// of the piece); the Wrapper already treats the piece as missing.
func (p filePiece) Discard() error { return nil }

// Path returns file k's path on disk ("" for a padding file).
func (s *FileStore) Path(k int) string { return s.paths[k] }

// FilesOf returns the files (indexes in info.Files) that hold bytes of
// piece i, padding files left out.
func (s *FileStore) FilesOf(i int) []int {
	var out []int
	for _, sg := range s.segments(s.info.PieceOffset(i), int(s.info.PieceLen(i))) {
		if s.paths[sg.file] != "" {
			out = append(out, sg.file)
		}
	}
	return out
}

// SyncPiece makes piece i's bytes durable: fdatasync(2) of each file that
// holds some (the whole file: a range sync would leave the allocation of a
// sparse file's new blocks in the journal). A file that does not exist has
// nothing to flush.
func (s *FileStore) SyncPiece(i int) error {
	return s.eachFile(i, func(f *os.File, _ segment) error {
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			return fmt.Errorf("fdatasync %s: %w", f.Name(), err)
		}
		return nil
	})
}

// PunchPiece deallocates piece i's bytes (fallocate PUNCH_HOLE, the file
// sizes kept): they read as zeros afterwards and take no disk space beyond
// the blocks they share with neighbouring pieces. A file that does not
// exist has nothing to punch.
func (s *FileStore) PunchPiece(i int) error {
	return s.eachFile(i, func(f *os.File, sg segment) error {
		err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, sg.off, int64(sg.n))
		if err != nil {
			return fmt.Errorf("punch %s at %d+%d: %w", f.Name(), sg.off, sg.n, err)
		}
		return nil
	})
}

// eachFile calls fn with each existing file holding bytes of piece i and
// the segment of the piece in it.
func (s *FileStore) eachFile(i int, fn func(f *os.File, sg segment) error) error {
	if i < 0 || i >= s.info.NumPieces() {
		return fmt.Errorf("storagewrapper: piece %d of %d: %w", i, s.info.NumPieces(), ErrOutOfRange)
	}
	if s.readOnly {
		return fmt.Errorf("storagewrapper: piece %d: read-only file store", i)
	}
	for _, sg := range s.segments(s.info.PieceOffset(i), int(s.info.PieceLen(i))) {
		path := s.paths[sg.file]
		if path == "" {
			continue
		}
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			continue
		}
		e, err := s.pool.acquire(path, s.flag())
		if err != nil {
			return fmt.Errorf("storagewrapper: piece %d: %w", i, err)
		}
		err = fn(e.f, sg)
		s.pool.release(e)
		if err != nil {
			return fmt.Errorf("storagewrapper: piece %d: %w", i, err)
		}
	}
	return nil
}

// ForgetAll drops the open handles: the files were removed (a cache
// directory removed while in use), and a handle kept would write into a
// file that is gone.
func (s *FileStore) ForgetAll() { s.pool.forgetAll() }

// PieceFiles implements PieceFiler: the segments of the torrent's files
// that hold [off, off+n) of piece i. A padding file, or a file missing or
// short, fails with an error wrapping fs.ErrNotExist (the caller reads
// through ReadAt instead).
func (s *FileStore) PieceFiles(i int, off int64, n int, fn func(f *os.File, at int64, m int) error) error {
	if _, err := pieceSpan(s.info, i, off, n); err != nil {
		return fmt.Errorf("storagewrapper: %w", err)
	}
	for _, sg := range s.segments(s.info.PieceOffset(i)+off, n) {
		path := s.paths[sg.file]
		if path == "" {
			return fmt.Errorf("storagewrapper: piece %d: padding: %w", i, os.ErrNotExist)
		}
		e, ok := s.pool.acquireOpen(path)
		if !ok {
			// Not created here: a file removed behind our back is gone.
			if _, err := os.Stat(path); err != nil {
				return fmt.Errorf("storagewrapper: piece %d: %w", i, err)
			}
			var err error
			if e, err = s.pool.acquire(path, s.flag()); err != nil {
				return fmt.Errorf("storagewrapper: piece %d: %w", i, err)
			}
		}
		err := fn(e.f, sg.off, sg.n)
		s.pool.release(e)
		if err != nil {
			return err
		}
	}
	return nil
}

// BackingFile implements FileBacker: file k opened for reading, if it has
// the torrent's length.
func (s *FileStore) BackingFile(k int) (*os.File, error) {
	if k < 0 || k >= len(s.paths) || s.paths[k] == "" {
		return nil, fmt.Errorf("storagewrapper: backing file %d: %w", k, ErrOutOfRange)
	}
	f, err := os.Open(s.paths[k])
	if err != nil {
		return nil, fmt.Errorf("storagewrapper: %w", err)
	}
	st, err := f.Stat()
	if err == nil && st.Size() != s.info.Files[k].Length {
		err = fmt.Errorf("%s has %d bytes, the torrent says %d: %w", s.paths[k], st.Size(), s.info.Files[k].Length, io.ErrUnexpectedEOF)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("storagewrapper: backing file %d: %w", k, err)
	}
	return f, nil
}
