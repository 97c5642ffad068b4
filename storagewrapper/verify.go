package storagewrapper

import (
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync"

	"btfs/metainfo"
)

// hashChunk is how much of a piece hashPiece reads at once: the only piece
// data the wrapper holds in RAM, per hashing goroutine.
const hashChunk = 256 << 10

// hashBufs recycles hashing buffers across pieces.
var hashBufs = sync.Pool{New: func() any { b := make([]byte, hashChunk); return &b }}

// hashPiece reports whether the Store's data for piece p (published, or
// partial when there is none) has p's SHA-1. Data that ends early or does
// not exist is a mismatch; other read errors are errors. It stops early when
// ctx is done (returning ctx's error) or the wrapper closes (ErrClosed).
func (w *Wrapper) hashPiece(ctx context.Context, p int) (bool, error) {
	w.hashed.Add(1)
	plen := w.info.PieceLen(p)
	bp := hashBufs.Get().(*[]byte)
	defer hashBufs.Put(bp)
	buf := *bp
	h := sha1.New()
	piece := w.store.Piece(p)
	for off := int64(0); off < plen; {
		if err := ctx.Err(); err != nil {
			return false, fmt.Errorf("hash piece %d: %w", p, err)
		}
		if w.ctx.Err() != nil {
			return false, fmt.Errorf("hash piece %d: %w", p, ErrClosed)
		}
		want := int(min(int64(len(buf)), plen-off))
		n, err := piece.ReadAt(buf[:want], off)
		h.Write(buf[:n])
		off += int64(n)
		if n == want {
			continue
		}
		if err == nil || errors.Is(err, io.EOF) || errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("hash piece %d: %w", p, err)
	}
	var sum metainfo.Hash
	h.Sum(sum[:0])
	return sum == w.info.Pieces[p], nil
}
