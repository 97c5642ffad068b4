package metadata

import "btfs/engine/wire"

// Server answers BEP 9 requests for our info dictionary. It holds the
// bytes exactly as they were hashed (metainfo.MetaInfo.InfoBytes or a
// Fetcher's Result); they are never copied or modified. Safe for
// concurrent use: it has no mutable state.
type Server struct {
	// info is the verified info dictionary.
	info []byte
}

// NewServer serves info, which must be the verified info dictionary.
func NewServer(info []byte) *Server { return &Server{info: info} }

// Size is the metadata_size to announce in our extension handshake.
func (s *Server) Size() int64 { return int64(len(s.info)) }

// Answer returns the reply to a request for piece i: a data message with
// the piece (its Data aliases the dictionary), or a reject when i is out
// of range. Rate limiting (BEP 9 allows rejecting for it) is the
// engine's.
func (s *Server) Answer(i int) wire.MetadataMsg {
	n := wire.MetadataPieceLen(s.Size(), i)
	if n == 0 {
		return wire.MetadataMsg{Type: wire.MetadataReject, Piece: max(i, 0)}
	}
	start := i * wire.MetadataPieceSize
	return wire.MetadataMsg{Type: wire.MetadataData, Piece: i, TotalSize: s.Size(), Data: s.info[start : start+n : start+n]}
}
