package fs

import (
	"context"

	"btfs/bitfield"
	"btfs/picker"
)

// Torrent is what the mount needs from a torrent: verified bytes at torrent
// offsets, a way to say which bytes it will want soon, and the verified set
// for the progress attributes. It is defined here, at its consumer;
// *storagewrapper.Wrapper satisfies it.
type Torrent interface {
	// ReadAt reads len(p) bytes at torrent offset off once every piece
	// under them is verified, waiting (with a picker.Now want on the missing
	// part, registered by ReadAt itself) until then or until ctx is done,
	// in which case the error wraps ctx.Err(). It is never short except at
	// the end of the torrent (io.EOF, as io.ReaderAt).
	ReadAt(ctx context.Context, p []byte, off int64) (int, error)
	// Want registers demand for a byte range until release is called;
	// release may be called more than once.
	Want(w picker.Want) (release func())
	// Bitfield returns a copy of the verified set: the caller's to keep.
	Bitfield() *bitfield.Bitfield
}
