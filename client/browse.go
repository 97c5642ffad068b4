package client

import (
	"context"
	"errors"
	"os"

	"btfs/bitfield"
	"btfs/picker"
)

// errBrowseOnly fails every read of a -browse-only mount.
var errBrowseOnly = errors.New("btfs: mounted with -browse-only: file contents are not fetched")

// browseTorrent is the torrent of a -browse-only mount: the files are
// listed, no piece is ever verified, and a read fails at once (EIO) rather
// than wait for bytes nobody will fetch.
type browseTorrent struct {
	// n is the number of pieces.
	n int
}

func (browseTorrent) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	return 0, errBrowseOnly
}

func (browseTorrent) Want(picker.Want) (release func()) { return func() {} }

func (b browseTorrent) Bitfield() *bitfield.Bitfield { return bitfield.New(b.n) }

// mkdir makes dir and its parents.
func mkdir(dir string) error { return os.MkdirAll(dir, 0o755) }
