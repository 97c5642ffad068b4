package storagewrapper

import "errors"

// Errors of PieceCameIn. The first four mean the peer sent something nobody
// asked for or something malformed (a broken or lying peer); ErrDuplicate is
// the normal fate of an endgame duplicate or of a block that arrived after
// another peer's copy; ErrStore is this machine's problem, not the peer's.
var (
	// ErrOutOfRange: a piece index, a block offset or a byte range outside
	// the torrent or the piece.
	ErrOutOfRange = errors.New("out of range")
	// ErrUnaligned: a block offset that is not a multiple of BlockSize.
	ErrUnaligned = errors.New("block offset not aligned to the block size")
	// ErrWrongLength: a block whose length is not the length of the block
	// at that offset (BlockSize, or the short last block of the piece).
	ErrWrongLength = errors.New("wrong block length")
	// ErrUnrequested: a block that is not handed out (never requested, or
	// its request was lost, or its piece failed its hash since).
	ErrUnrequested = errors.New("block not requested")
	// ErrDuplicate: a block already received (or being written), or a block
	// of a piece already verified or being hashed.
	ErrDuplicate = errors.New("duplicate block")
	// ErrStore wraps a failure of the Store (a full disk, an I/O error): the
	// block is put back to be requested again.
	ErrStore = errors.New("store failure")
	// ErrClosed is returned by a Wrapper or a Store used after Close, and by
	// a ReadAt that was waiting when Close was called.
	ErrClosed = errors.New("storagewrapper: closed")
	// ErrBadInfo: New was given an Info whose lengths do not add up.
	ErrBadInfo = errors.New("inconsistent torrent info")
)
