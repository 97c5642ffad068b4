package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"btfs/bitfield"
	"btfs/metainfo"
)

// The record: which pieces of a torrent are verified, shared by every
// process using the cache directory (the file recordName). It is a fixed
// layout of small slots, each written in place with one pwrite(2) and
// carrying its own CRC-32C, so that a slot torn by a crash or read in the
// middle of a write reads as invalid, and invalid reads as "not verified":
//
//	header     32 bytes  magic, piece length, pieces, files, CRC
//	files      24 bytes each: size, mtime (ns) as btfs last left the file, CRC
//	pieces     16 bytes each: state, generation, CRC
//
// A piece is marked only after its bytes are durable (fdatasync of its
// files), so a mark that survives a crash vouches for bytes that did. Each
// change of a piece's state bumps its generation: a reader that saw the
// piece marked before and after reading its bytes, with the same
// generation, read verified bytes (eviction clears the mark before it
// punches the hole).
//
// The file stamps say what btfs last did to each data file: a file whose
// size or mtime differs while no process holds a claim on any of its
// pieces was changed behind btfs's back, and its marked pieces become
// suspect (hashed again before they are served).

// recordName is the record's file in the torrent's directory.
const recordName = "verified"

// recordMagic begins the record; a new layout gets a new magic.
const recordMagic = "btfsvr01"

// Slot sizes.
const (
	headerSize    = 32
	fileSlotSize  = 24
	pieceSlotSize = 16
)

// Piece states in the record.
const (
	// stateNone: not verified; the bytes under it are never served.
	stateNone uint8 = iota
	// stateMarked: verified, its bytes durable.
	stateMarked
	// stateSuspect: was marked, but its file changed behind btfs's back:
	// hashed before it is served again (and marked again if right).
	stateSuspect
)

// castagnoli is the slots' checksum table.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// record is the open record of one torrent.
type record struct {
	// f is the record file, read and written with pread/pwrite.
	f *os.File
	// info gives the piece and file counts.
	info *metainfo.Info
}

// pieceSlot is one piece's slot.
type pieceSlot struct {
	// state is stateNone, stateMarked or stateSuspect.
	state uint8
	// gen counts the piece's state changes.
	gen uint32
}

// fileStamp is one file's slot: what btfs last left it as.
type fileStamp struct {
	// size and mtime (Unix ns) of the file; both 0 for a file not there.
	size, mtime int64
}

// errBadRecord says the record is not one of this torrent (another
// layout, damage): it is started afresh.
var errBadRecord = errors.New("not a record of this torrent")

// openRecord opens path, creating or resetting it when it is missing or
// not a record of info (the caller holds the directory lock). fresh
// reports that it was (re)created: nothing is marked.
func openRecord(path string, info *metainfo.Info) (r *record, fresh bool, err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, false, fmt.Errorf("cache: record: %w", err)
	}
	r = &record{f: f, info: info}
	if err := r.checkHeader(); err != nil {
		if err := r.reset(); err != nil {
			f.Close()
			return nil, false, err
		}
		return r, true, nil
	}
	return r, false, nil
}

// header returns the header the record of info has.
func (r *record) header() []byte {
	b := make([]byte, headerSize)
	copy(b, recordMagic)
	binary.LittleEndian.PutUint64(b[8:], uint64(r.info.PieceLength))
	binary.LittleEndian.PutUint32(b[16:], uint32(r.info.NumPieces()))
	binary.LittleEndian.PutUint32(b[20:], uint32(len(r.info.Files)))
	binary.LittleEndian.PutUint32(b[28:], crc32.Checksum(b[:28], castagnoli))
	return b
}

// size is the record's length.
func (r *record) size() int64 {
	return headerSize + int64(len(r.info.Files))*fileSlotSize + int64(r.info.NumPieces())*pieceSlotSize
}

// checkHeader fails unless the file holds a record of r.info.
func (r *record) checkHeader() error {
	b := make([]byte, headerSize)
	if _, err := r.f.ReadAt(b, 0); err != nil {
		return fmt.Errorf("%w: %w", errBadRecord, err)
	}
	if string(b) != string(r.header()) {
		return errBadRecord
	}
	if st, err := r.f.Stat(); err != nil || st.Size() != r.size() {
		return errBadRecord
	}
	return nil
}

// reset writes an empty record: nothing marked, no stamps.
func (r *record) reset() error {
	if err := r.f.Truncate(0); err != nil {
		return fmt.Errorf("cache: record: %w", err)
	}
	b := make([]byte, r.size())
	copy(b, r.header())
	if _, err := r.f.WriteAt(b, 0); err != nil {
		return fmt.Errorf("cache: record: %w", err)
	}
	if err := r.f.Sync(); err != nil {
		return fmt.Errorf("cache: record: %w", err)
	}
	return nil
}

// pieceOff is the offset of piece i's slot.
func (r *record) pieceOff(i int) int64 {
	return headerSize + int64(len(r.info.Files))*fileSlotSize + int64(i)*pieceSlotSize
}

// decodePiece decodes a piece slot; ok is false for an invalid one (torn
// by a crash, or read while another process wrote it).
func decodePiece(b []byte) (s pieceSlot, ok bool) {
	if binary.LittleEndian.Uint32(b[12:]) != crc32.Checksum(b[:12], castagnoli) {
		return pieceSlot{}, false
	}
	s = pieceSlot{state: b[0], gen: binary.LittleEndian.Uint32(b[4:])}
	if s.state > stateSuspect {
		return pieceSlot{}, false
	}
	return s, true
}

// tornRetries is how many times an invalid slot is read again before it
// counts as invalid (stateNone): a read that met another process's
// pwrite of the slot sees it whole a moment later; a slot torn by a crash
// stays invalid.
const tornRetries = 8

// piece reads piece i's slot.
func (r *record) piece(i int) (pieceSlot, error) {
	var b [pieceSlotSize]byte
	for range tornRetries {
		if _, err := r.f.ReadAt(b[:], r.pieceOff(i)); err != nil {
			return pieceSlot{}, fmt.Errorf("cache: record: piece %d: %w", i, err)
		}
		if s, ok := decodePiece(b[:]); ok {
			return s, nil
		}
		runtime.Gosched()
	}
	return pieceSlot{}, nil
}

// pieces reads every piece slot at once (Run's view of the others' work).
func (r *record) pieces() ([]pieceSlot, error) {
	n := r.info.NumPieces()
	b := make([]byte, n*pieceSlotSize)
	if _, err := r.f.ReadAt(b, r.pieceOff(0)); err != nil && !(errors.Is(err, io.EOF) && n == 0) {
		return nil, fmt.Errorf("cache: record: %w", err)
	}
	out := make([]pieceSlot, n)
	for i := range out {
		s, ok := decodePiece(b[i*pieceSlotSize:])
		if !ok {
			var err error
			if s, err = r.piece(i); err != nil {
				return nil, err
			}
		}
		out[i] = s
	}
	return out, nil
}

// setPiece sets piece i's state, bumping its generation (the caller holds
// the directory lock, so that generations only grow).
func (r *record) setPiece(i int, state uint8) error {
	cur, err := r.piece(i)
	if err != nil {
		return err
	}
	var b [pieceSlotSize]byte
	b[0] = state
	binary.LittleEndian.PutUint32(b[4:], cur.gen+1)
	binary.LittleEndian.PutUint32(b[12:], crc32.Checksum(b[:12], castagnoli))
	if _, err := r.f.WriteAt(b[:], r.pieceOff(i)); err != nil {
		return fmt.Errorf("cache: record: piece %d: %w", i, err)
	}
	return nil
}

// fileOff is the offset of file k's stamp.
func (r *record) fileOff(k int) int64 { return headerSize + int64(k)*fileSlotSize }

// stamp reads file k's stamp; ok is false for an invalid slot.
func (r *record) stamp(k int) (fileStamp, bool, error) {
	var b [fileSlotSize]byte
	if _, err := r.f.ReadAt(b[:], r.fileOff(k)); err != nil {
		return fileStamp{}, false, fmt.Errorf("cache: record: file %d: %w", k, err)
	}
	if binary.LittleEndian.Uint32(b[20:]) != crc32.Checksum(b[:20], castagnoli) {
		return fileStamp{}, false, nil
	}
	return fileStamp{size: int64(binary.LittleEndian.Uint64(b[0:])), mtime: int64(binary.LittleEndian.Uint64(b[8:]))}, true, nil
}

// setStamp writes file k's stamp.
func (r *record) setStamp(k int, s fileStamp) error {
	var b [fileSlotSize]byte
	binary.LittleEndian.PutUint64(b[0:], uint64(s.size))
	binary.LittleEndian.PutUint64(b[8:], uint64(s.mtime))
	binary.LittleEndian.PutUint32(b[20:], crc32.Checksum(b[:20], castagnoli))
	if _, err := r.f.WriteAt(b[:], r.fileOff(k)); err != nil {
		return fmt.Errorf("cache: record: file %d: %w", k, err)
	}
	return nil
}

// statStamp is what path is now, as a stamp (zero when it does not exist).
func statStamp(path string) (fileStamp, error) {
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return fileStamp{}, nil
	}
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{size: st.Size(), mtime: st.ModTime().UnixNano()}, nil
}

// close closes the record file.
func (r *record) close() error { return r.f.Close() }

// The least-recently-read order: the file readsName holds a uint64 per
// piece, the Unix time (ns) of its last read as far as the batched flushes
// of every process tell, or of its mark. Nanoseconds, because a reader and
// its readahead mark and read many pieces within a second, and eviction
// must not take the next piece to read for the last one read. No checksum:
// a torn value only misorders one eviction.
const readsName = "reads"

// readSlot is the size of a piece's read time.
const readSlot = 8

// readTime encodes t for the reads file.
func readTime(t time.Time) uint64 { return uint64(max(t.UnixNano(), 0)) }

// Verified returns the pieces the record of the torrent directory dir
// marks verified, for tools and tests that look at a cache from outside
// (no lock taken: a snapshot). A directory without a record of info has
// none.
func Verified(dir string, info *metainfo.Info) (*bitfield.Bitfield, error) {
	bf := bitfield.New(info.NumPieces())
	f, err := os.Open(filepath.Join(dir, recordName))
	if errors.Is(err, os.ErrNotExist) {
		return bf, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	defer f.Close()
	r := &record{f: f, info: info}
	if r.checkHeader() != nil {
		return bf, nil
	}
	slots, err := r.pieces()
	if err != nil {
		return nil, err
	}
	for i, s := range slots {
		if s.state == stateMarked {
			bf.Set(i)
		}
	}
	return bf, nil
}
