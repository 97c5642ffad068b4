package storagewrapper

import (
	"fmt"
	"io"
	"io/fs"
	"sync"

	"btfs/metainfo"
)

// MemStore is a Store in RAM, for tests and benchmarks: it holds the whole
// torrent in memory, so it is no choice for real downloads (the DirStore is).
// It follows the same contract as the DirStore, including "partial data is
// never read as published".
type MemStore struct {
	// info gives piece lengths for bounds checks.
	info *metainfo.Info
	// mu guards the fields below.
	mu sync.RWMutex
	// partial maps a piece to its partial data, allocated at full piece
	// length on the first write.
	partial map[int][]byte
	// written maps a piece to how far its partial data extends: ReadAt of
	// partial data stops there, as a file would.
	written map[int]int64
	// published maps a piece to its published data.
	published map[int][]byte
	// closed is set by Close.
	closed bool
}

// NewMemStore returns an empty MemStore for info.
func NewMemStore(info *metainfo.Info) *MemStore {
	return &MemStore{
		info:      info,
		partial:   map[int][]byte{},
		written:   map[int]int64{},
		published: map[int][]byte{},
	}
}

// Piece returns piece i.
func (s *MemStore) Piece(i int) Piece {
	if i < 0 || i >= s.info.NumPieces() {
		return errPiece{fmt.Errorf("memstore: piece %d of %d: %w", i, s.info.NumPieces(), ErrOutOfRange)}
	}
	return memPiece{s: s, i: i}
}

// Close drops all data; later calls fail with ErrClosed.
func (s *MemStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.partial, s.written, s.published = nil, nil, nil
	return nil
}

// memPiece is a handle on one piece of a MemStore.
type memPiece struct {
	// s is the store.
	s *MemStore
	// i is the piece index, in range.
	i int
}

func (p memPiece) ReadAt(b []byte, off int64) (int, error) {
	if _, err := pieceSpan(p.s.info, p.i, off, 0); err != nil {
		return 0, fmt.Errorf("memstore: read: %w", err)
	}
	p.s.mu.RLock()
	defer p.s.mu.RUnlock()
	if p.s.closed {
		return 0, fmt.Errorf("memstore: read piece %d: %w", p.i, ErrClosed)
	}
	data, ok := p.s.published[p.i]
	if !ok {
		part, ok := p.s.partial[p.i]
		if !ok {
			return 0, fmt.Errorf("memstore: read piece %d: %w", p.i, fs.ErrNotExist)
		}
		data = part[:p.s.written[p.i]]
	}
	if off >= int64(len(data)) {
		return 0, io.EOF
	}
	n := copy(b, data[off:])
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}

func (p memPiece) WriteAt(b []byte, off int64) (int, error) {
	plen, err := pieceSpan(p.s.info, p.i, off, len(b))
	if err != nil {
		return 0, fmt.Errorf("memstore: write: %w", err)
	}
	p.s.mu.Lock()
	defer p.s.mu.Unlock()
	if p.s.closed {
		return 0, fmt.Errorf("memstore: write piece %d: %w", p.i, ErrClosed)
	}
	part, ok := p.s.partial[p.i]
	if !ok {
		part = make([]byte, plen)
		p.s.partial[p.i] = part
	}
	n := copy(part[off:], b)
	p.s.written[p.i] = max(p.s.written[p.i], off+int64(n))
	return n, nil
}

func (p memPiece) Completion() (Completion, error) {
	p.s.mu.RLock()
	defer p.s.mu.RUnlock()
	if p.s.closed {
		return Unknown, fmt.Errorf("memstore: completion of piece %d: %w", p.i, ErrClosed)
	}
	if _, ok := p.s.published[p.i]; ok {
		return Complete, nil
	}
	return Missing, nil
}

func (p memPiece) Publish() error {
	p.s.mu.Lock()
	defer p.s.mu.Unlock()
	if p.s.closed {
		return fmt.Errorf("memstore: publish piece %d: %w", p.i, ErrClosed)
	}
	part, ok := p.s.partial[p.i]
	if !ok || p.s.written[p.i] != int64(len(part)) {
		return fmt.Errorf("memstore: publish piece %d: partial data incomplete (%d of %d bytes): %w",
			p.i, p.s.written[p.i], p.s.info.PieceLen(p.i), io.ErrUnexpectedEOF)
	}
	p.s.published[p.i] = part
	delete(p.s.partial, p.i)
	delete(p.s.written, p.i)
	return nil
}

func (p memPiece) Discard() error {
	p.s.mu.Lock()
	defer p.s.mu.Unlock()
	if p.s.closed {
		return fmt.Errorf("memstore: discard piece %d: %w", p.i, ErrClosed)
	}
	delete(p.s.partial, p.i)
	delete(p.s.written, p.i)
	delete(p.s.published, p.i)
	return nil
}
