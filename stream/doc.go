// Package stream follows readers of a torrent's bytes: a Reader per
// consumer (an open FUSE file handle, an HTTP response) over one byte range
// of the torrent (one file), next to the Torrent's own ReadAt. It keeps the
// consumer's position across reads, one picker.Readahead want ahead of it
// sized from its consumption (Policy), the head and tail of a media file
// wanted while it is open, and releases every want on Close.
//
// It reaches the torrent only through the small Torrent interface
// (*storagewrapper.Wrapper satisfies it) and imports neither fs nor engine:
// fs adapts a Reader to FUSE, and anything else that streams uses the same
// one.
package stream
