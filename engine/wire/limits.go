package wire

import "errors"

// BlockSize is the block length every client requests (16 KiB): the unit
// of request and piece messages, and the default cap on a piece's block.
const BlockSize = 16 << 10

// Defaults for the zero fields of Limits.
const (
	// DefaultMaxRequest is the largest request served: BEP 3 notes that
	// clients close on requests over 128 KiB, and nobody asks for more.
	DefaultMaxRequest = 128 << 10
	// DefaultMaxExtended caps an extended message's payload. ut_metadata
	// pieces are 16 KiB and a PEX message a few KiB; 1 MiB leaves room
	// for extensions we do not speak while bounding what a peer can make
	// us hold.
	DefaultMaxExtended = 1 << 20
	// DefaultMaxUnknown caps the body of a message with an ID we do not
	// know; such bodies are discarded as they arrive, never buffered.
	DefaultMaxUnknown = 1 << 20
	// MaxBitfieldUnknown caps a bitfield's payload while the piece count is
	// unknown (a magnet link before its metadata): 512 KiB, enough for
	// 4,194,304 pieces, far beyond any real torrent.
	MaxBitfieldUnknown = 1 << 19
)

// Limits bounds what a Reader accepts. The zero value is usable: every zero
// field takes its default.
type Limits struct {
	// NumPieces is the torrent's piece count: it caps the bitfield at
	// ceil(NumPieces/8) bytes and makes piece indices at or above it an
	// error (ErrBadIndex). 0 means unknown: the bitfield is capped at
	// MaxBitfieldUnknown and indices are not checked.
	NumPieces int
	// MaxBlock caps a piece message's block; 0 means BlockSize, which is
	// what we request. A larger block is one we never asked for.
	MaxBlock int
	// MaxRequest is the largest request length accepted without
	// ErrRequestTooLarge; 0 means DefaultMaxRequest.
	MaxRequest int
	// MaxExtended caps an extended message's payload (after the sub-ID);
	// 0 means DefaultMaxExtended.
	MaxExtended int
	// MaxUnknown caps the body of a message with an unknown ID; 0 means
	// DefaultMaxUnknown.
	MaxUnknown int
}

// withDefaults fills the zero (or negative) fields.
func (l Limits) withDefaults() Limits {
	if l.NumPieces < 0 {
		l.NumPieces = 0
	}
	if l.MaxBlock <= 0 {
		l.MaxBlock = BlockSize
	}
	if l.MaxRequest <= 0 {
		l.MaxRequest = DefaultMaxRequest
	}
	if l.MaxExtended <= 0 {
		l.MaxExtended = DefaultMaxExtended
	}
	if l.MaxUnknown <= 0 {
		l.MaxUnknown = DefaultMaxUnknown
	}
	return l
}

// maxBitfield is the largest bitfield payload accepted.
func (l Limits) maxBitfield() int {
	if l.NumPieces == 0 {
		return MaxBitfieldUnknown
	}
	return (l.NumPieces + 7) / 8
}

// Errors of the message codec. All but ErrRequestTooLarge mean the
// connection must be closed.
var (
	// ErrMessageTooLarge: the declared length exceeds the cap for the
	// message's type (or the exact size of a fixed-size message). The body
	// was not read, so the stream is out of step.
	ErrMessageTooLarge = errors.New("wire: message too large")
	// ErrBadLength: the declared length is too short for the type (a
	// fixed-size message, a piece without its header, an extended message
	// without its sub-ID).
	ErrBadLength = errors.New("wire: bad message length")
	// ErrBadIndex: a piece index at or above Limits.NumPieces.
	ErrBadIndex = errors.New("wire: piece index out of range")
	// ErrRequestTooLarge: a request longer than Limits.MaxRequest. Not
	// fatal: ReadMessage returns the full message with it and the stream is
	// in step, so the engine can drop or reject the request and go on.
	ErrRequestTooLarge = errors.New("wire: request too large")
	// ErrUnknownID: WriteMessage was given an ID this package does not
	// encode.
	ErrUnknownID = errors.New("wire: unknown message id")
)
