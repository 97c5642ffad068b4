// Package httpserve serves torrents' files over HTTP for players and other
// machines that have no FUSE: Range streaming of every file through the
// same stream.Reader as the mount (one Reader per response, closed when the
// client goes away), an M3U playlist per torrent of its media files, and
// /metrics in the Prometheus text format.
//
// It sees torrents only through the small Lister interface (a list of
// Torrent values: info-hash, file table, the bytes) and statistics only
// through Torrent.Stats, so that whatever holds the torrents — one mount
// today, a client of many tomorrow — serves them unchanged. It imports
// neither engine nor fs.
//
// Security: a URL is resolved only through the torrent's file table; no
// filesystem path is ever built from it. The Host header must be an IP
// literal, localhost or a configured name (DNS rebinding); no CORS header
// is ever sent; with a token set (required when listening beyond
// loopback), every request must carry it.
package httpserve
