package fs

import "btfs/stream"

// Torrent is what the mount needs from a torrent: what a stream.Reader
// needs (verified bytes at torrent offsets that ReadAt waits for, wants,
// the verified set), and nothing more: the verified set also gives the
// progress attributes. *storagewrapper.Wrapper satisfies it; one that also
// has Prefetch(off, n) gets its piece files read ahead for a streaming
// handle (stream.Reader.Prefetch).
type Torrent interface {
	stream.Torrent
}
