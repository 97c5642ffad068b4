package storagewrapper

import (
	"fmt"
	"io"

	"btfs/metainfo"
)

// Completion is what a Store knows about one piece. Unknown is distinct from
// Missing: a store that cannot tell (a piece file of the wrong size, a shared
// cache whose index was lost) says Unknown, and the wrapper hashes the data
// before it trusts it, while Missing lets it skip the piece without reading.
type Completion int8

const (
	// Unknown: the store cannot tell whether it holds the piece; hash it.
	Unknown Completion = iota
	// Missing: the store holds no published data for the piece.
	Missing
	// Complete: the store holds published data for the piece. The wrapper
	// still hashes it once (Resume, Adopt) before serving it.
	Complete
	// Verified: the store holds the piece and a durable record that it
	// was verified (by this process or another sharing the store, after
	// its bytes were on disk): the wrapper trusts it without hashing it.
	// Only a Recorder says so.
	Verified
)

func (c Completion) String() string {
	switch c {
	case Unknown:
		return "unknown"
	case Missing:
		return "missing"
	case Complete:
		return "complete"
	case Verified:
		return "verified"
	}
	return "completion(?)"
}

// Store holds the bytes of a torrent by piece index. It is the consumer-side
// interface of this package, kept as small as anacrolix/torrent's
// storage.PieceImpl so that a shared-cache store can implement it too.
// Implementations must be safe for concurrent use: blocks of one piece are
// written from several goroutines at once, and many pieces are read at once.
// A Store never calls back into the Wrapper.
type Store interface {
	// Piece returns a handle on piece i. It does no I/O; an index out of
	// range gives a Piece whose methods fail.
	Piece(i int) Piece
	// Close releases the store's resources (open files). Methods called
	// after Close fail with an error wrapping ErrClosed.
	Close() error
}

// Piece is one piece of a Store. Offsets are relative to the piece's start
// and must stay inside the piece.
//
// A piece has two kinds of data: partial data, written block by block and
// not yet verified, and published data, which only Publish creates, in one
// atomic step. ReadAt reads the published data when there is some, the
// partial data otherwise (the wrapper hashes partial data before it
// publishes it, and reads published data for its readers). A reader of the
// store, in this process or another, never sees partial data as published.
type Piece interface {
	// ReadAt follows io.ReaderAt. Reading a piece with no data at all fails
	// with an error wrapping fs.ErrNotExist.
	io.ReaderAt
	// WriteAt writes into the partial data; it follows io.WriterAt and in
	// particular reports a short write with a non-nil error (a full disk is
	// an error, never a silently short piece).
	io.WriterAt
	// Completion says whether the piece has published data. The error is
	// for a store that could not find out (Completion is then Unknown).
	Completion() (Completion, error)
	// Publish makes the partial data, which the caller has verified, the
	// piece's published data: atomically and durably (the dir store fsyncs
	// the data and the directory around an atomic rename). The partial data
	// is gone afterwards.
	Publish() error
	// Discard drops the piece's partial data and its published data, if
	// any: the caller found them wrong. Afterwards Completion is Missing.
	Discard() error
}

// errPiece is the Piece of an index out of range: every method fails with
// err, so a bad index from anywhere becomes an error and never a panic.
type errPiece struct {
	// err is what every method returns.
	err error
}

func (p errPiece) ReadAt([]byte, int64) (int, error)  { return 0, p.err }
func (p errPiece) WriteAt([]byte, int64) (int, error) { return 0, p.err }
func (p errPiece) Completion() (Completion, error)    { return Unknown, p.err }
func (p errPiece) Publish() error                     { return p.err }
func (p errPiece) Discard() error                     { return p.err }

// pieceSpan checks that [off, off+n) lies inside piece i of info and returns
// the piece's length. Both stores use it so that a bad offset is an error
// that names the piece, not a panic or a write past the piece.
func pieceSpan(info *metainfo.Info, i int, off int64, n int) (int64, error) {
	if i < 0 || i >= info.NumPieces() {
		return 0, fmt.Errorf("piece %d of %d: %w", i, info.NumPieces(), ErrOutOfRange)
	}
	plen := info.PieceLen(i)
	if off < 0 || off > plen || int64(n) > plen-off {
		return plen, fmt.Errorf("piece %d: range [%d,%d) outside [0,%d): %w", i, off, off+int64(n), plen, ErrOutOfRange)
	}
	return plen, nil
}

// Claimer is implemented by a Store that several processes share (package
// cache): before NewRequest starts a piece, the process claims it, so that
// processes sharing the store download disjoint pieces. The Wrapper holds
// at most one claim per piece and releases each exactly once, when the
// piece leaves flight (published, failed, abandoned) or at Close. Claim and
// Release are called without any lock of the Wrapper held.
type Claimer interface {
	// Claim takes piece i for this process. It reports false when another
	// process holds a live claim on it or has published it already (the
	// Store then sees to it that the Wrapper adopts or is told otherwise,
	// see Wrapper.ClaimEnded); an error means claims do not work (the
	// piece is then downloaded unclaimed).
	Claim(i int) (bool, error)
	// Release gives up the claim on piece i taken by a Claim that
	// returned true.
	Release(i int)
}

// Pinner is implemented by a Store whose pieces can disappear under the
// Wrapper (a shared cache with a size cap evicts them). ReadAt and Adopt pin
// the pieces they are about to wait for, read or hash; a pinned piece is
// never evicted, and one that is missing is urgent for whoever downloads
// it. Pin is called without any lock of the Wrapper held.
type Pinner interface {
	// Pin marks pieces first..last (inclusive) in use until unpin is
	// called; unpin may be called more than once.
	Pin(first, last int) (unpin func())
}

// Recorder is implemented by a Store that keeps a durable record of which
// pieces are verified, shared by every process using it (package cache):
// such a store answers Completion with Verified for a recorded piece, and a
// piece is hashed once per store, not once per process. Publish records
// the piece (after its bytes are durable); Record does the same for a piece
// the wrapper verified by hashing data already in the store (Adopt of a
// piece the store reported Unknown, e.g. one changed behind its back).
type Recorder interface {
	// Record makes piece i's bytes durable, then records it verified.
	Record(i int) error
}
