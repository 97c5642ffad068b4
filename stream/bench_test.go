package stream_test

import (
	"context"
	"testing"

	"btfs/stream"
)

// BenchmarkReaderReadAt measures a streaming reader's 64 KiB reads through
// a Reader over a fully verified torrent in memory: the Reader's
// bookkeeping (position, window, want moves) plus the wrapper's copy.
//
//	go test -run '^$' -bench ReaderReadAt ./stream/
func BenchmarkReaderReadAt(b *testing.B) {
	const pieceLen, total, bs = 256 << 10, 16 << 20, 64 << 10
	tr := newTorrent(b, pieceLen, total)
	tr.fill(b)
	r := stream.NewReader(tr.w, 0, total, stream.Config{PieceLength: pieceLen})
	defer r.Close()
	buf := make([]byte, bs)
	ctx := context.Background()
	b.SetBytes(bs)
	var off int64
	for b.Loop() {
		if _, err := r.ReadAt(ctx, buf, off); err != nil {
			b.Fatal(err)
		}
		off = (off + bs) % total
	}
}
