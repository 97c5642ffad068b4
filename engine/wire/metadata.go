package wire

import (
	"errors"
	"fmt"

	"btfs/metainfo"
)

// BEP 9 message types ("msg_type").
const (
	// MetadataRequest asks for one piece of the info dictionary.
	MetadataRequest = 0
	// MetadataData carries one piece, after the bencoded dictionary.
	MetadataData = 1
	// MetadataReject says the sender will not give that piece (it does
	// not have the metadata, or it is limiting how much it serves).
	MetadataReject = 2
)

// MetadataPieceSize is BEP 9's piece size: every piece of the info
// dictionary is 16 KiB except the last, which holds what is left.
const MetadataPieceSize = 16 << 10

// MaxMetadataDictLen caps the bencoded dictionary at the head of a
// ut_metadata message. Real ones are about 50 bytes; 4 KiB leaves room for
// keys we do not know without letting a peer make us scan much more.
const MaxMetadataDictLen = 4 << 10

// metadataDictLimits bound the dictionary: depth 1 is all BEP 9 needs,
// a little more lets unknown keys hold small lists or dictionaries.
var metadataDictLimits = metainfo.Limits{MaxSize: MaxMetadataDictLen, MaxDepth: 8}

// Errors of the ut_metadata codec.
var (
	// ErrBadMetadataMsg: not a dictionary, a required key missing or of the
	// wrong type, a piece index out of range, a data message whose data is
	// not exactly the piece's length, or bytes after the dictionary of a
	// request or reject. The message must be dropped; the engine may
	// penalise the peer.
	ErrBadMetadataMsg = errors.New("wire: bad ut_metadata message")
	// ErrUnknownMetadataMsg: a msg_type other than 0, 1 and 2. BEP 9 says
	// to ignore such messages, for extensibility: drop it, charge nobody.
	ErrUnknownMetadataMsg = errors.New("wire: unknown ut_metadata message type")
)

// MetadataMsg is one BEP 9 ut_metadata message: the payload of an Extended
// message whose sub-ID is the one we gave ExtMetadata in our handshake.
type MetadataMsg struct {
	// Type is MetadataRequest, MetadataData or MetadataReject.
	Type int
	// Piece is the index of the 16 KiB piece asked for, sent or refused.
	Piece int
	// TotalSize is the size of the whole info dictionary ("total_size");
	// set in data messages only, 0 otherwise.
	TotalSize int64
	// Data is the piece's bytes (data messages only). From
	// ParseMetadataMsg it aliases the payload, which a Reader reuses at
	// the next read: copy it to keep it.
	Data []byte
}

// String describes the message for logs, without the data.
func (m MetadataMsg) String() string {
	switch m.Type {
	case MetadataRequest:
		return fmt.Sprintf("metadata-request(%d)", m.Piece)
	case MetadataData:
		return fmt.Sprintf("metadata-data(%d, %d bytes of %d)", m.Piece, len(m.Data), m.TotalSize)
	case MetadataReject:
		return fmt.Sprintf("metadata-reject(%d)", m.Piece)
	}
	return fmt.Sprintf("metadata-unknown(%d, piece %d)", m.Type, m.Piece)
}

// MetadataPieces is the number of 16 KiB pieces of an info dictionary of
// size bytes (0 for size <= 0).
func MetadataPieces(size int64) int {
	if size <= 0 {
		return 0
	}
	return int((size + MetadataPieceSize - 1) / MetadataPieceSize)
}

// MetadataPieceLen is the length of piece i of an info dictionary of size
// bytes: MetadataPieceSize except for the last piece; 0 when i is out of
// range.
func MetadataPieceLen(size int64, i int) int {
	if i < 0 || i >= MetadataPieces(size) {
		return 0
	}
	return int(min(MetadataPieceSize, size-int64(i)*MetadataPieceSize))
}

// EncodeMetadataMsg returns the payload of m: the dictionary with its keys
// in canonical order, then, for data messages, the data. It refuses what
// ParseMetadataMsg would refuse: an unknown type, a negative piece, and for
// a data message a TotalSize below 1, a piece beyond it or data not of the
// piece's length; for a request or a reject, a TotalSize or Data.
func EncodeMetadataMsg(m MetadataMsg) ([]byte, error) {
	if m.Piece < 0 {
		return nil, fmt.Errorf("%w: piece %d", ErrBadMetadataMsg, m.Piece)
	}
	switch m.Type {
	case MetadataRequest, MetadataReject:
		if m.TotalSize != 0 || len(m.Data) != 0 {
			return nil, fmt.Errorf("%w: %s with total_size %d and %d bytes of data", ErrBadMetadataMsg, m, m.TotalSize, len(m.Data))
		}
		return fmt.Appendf(nil, "d8:msg_typei%de5:piecei%dee", m.Type, m.Piece), nil
	case MetadataData:
		if err := checkMetadataData(m.Piece, m.TotalSize, len(m.Data)); err != nil {
			return nil, err
		}
		b := make([]byte, 0, 64+len(m.Data))
		b = fmt.Appendf(b, "d8:msg_typei%de5:piecei%de10:total_sizei%dee", m.Type, m.Piece, m.TotalSize)
		return append(b, m.Data...), nil
	}
	return nil, fmt.Errorf("%w: msg_type %d", ErrUnknownMetadataMsg, m.Type)
}

// ParseMetadataMsg decodes a ut_metadata payload (the bytes after the
// extended sub-ID). Only the leading dictionary is decoded, bounded by
// MaxMetadataDictLen; the bytes after it are a data message's piece and
// are not copied. maxTotal caps total_size (0 or less means
// DefaultMaxMetadataSize): a larger one is an error wrapping
// ErrMetadataTooLarge. Piece indices are checked against total_size for
// data messages and against maxTotal for requests and rejects. Unknown
// keys are ignored, as BEP 10 asks; total_size in a request or a reject is
// ignored too. Errors wrap ErrBadMetadataMsg, ErrUnknownMetadataMsg or
// ErrMetadataTooLarge.
func ParseMetadataMsg(payload []byte, maxTotal int64) (MetadataMsg, error) {
	if maxTotal <= 0 {
		maxTotal = DefaultMaxMetadataSize
	}
	n, err := metainfo.CheckBencodePrefix(payload, metadataDictLimits)
	if err != nil {
		return MetadataMsg{}, fmt.Errorf("%w: %w", ErrBadMetadataMsg, err)
	}
	var f [3]metainfo.Value
	if err := metainfo.ValueOf(payload[:n]).Fields(f[:], "msg_type", "piece", "total_size"); err != nil {
		return MetadataMsg{}, fmt.Errorf("%w: %w", ErrBadMetadataMsg, err)
	}
	rest := payload[n:]
	typ, err := intField(f[0], "msg_type")
	if err != nil {
		return MetadataMsg{}, err
	}
	piece, err := intField(f[1], "piece")
	if err != nil {
		return MetadataMsg{}, err
	}
	if piece < 0 {
		return MetadataMsg{}, fmt.Errorf("%w: piece %d", ErrBadMetadataMsg, piece)
	}
	switch typ {
	case MetadataRequest, MetadataReject:
		if len(rest) != 0 {
			return MetadataMsg{}, fmt.Errorf("%w: %d bytes after the dictionary of msg_type %d", ErrBadMetadataMsg, len(rest), typ)
		}
		if piece >= int64(MetadataPieces(maxTotal)) {
			return MetadataMsg{}, fmt.Errorf("%w: piece %d of msg_type %d is beyond the %d-byte cap", ErrBadMetadataMsg, piece, typ, maxTotal)
		}
		return MetadataMsg{Type: int(typ), Piece: int(piece)}, nil
	case MetadataData:
		total, err := intField(f[2], "total_size")
		if err != nil {
			return MetadataMsg{}, err
		}
		if total > maxTotal {
			return MetadataMsg{}, fmt.Errorf("%w: total_size = %d, cap %d", ErrMetadataTooLarge, total, maxTotal)
		}
		if piece > int64(MetadataPieces(maxTotal)) {
			return MetadataMsg{}, fmt.Errorf("%w: piece %d beyond the %d-byte cap", ErrBadMetadataMsg, piece, maxTotal)
		}
		if err := checkMetadataData(int(piece), total, len(rest)); err != nil {
			return MetadataMsg{}, err
		}
		return MetadataMsg{Type: MetadataData, Piece: int(piece), TotalSize: total, Data: rest}, nil
	}
	return MetadataMsg{}, fmt.Errorf("%w: msg_type %d", ErrUnknownMetadataMsg, typ)
}

// checkMetadataData checks a data message's fields against each other.
func checkMetadataData(piece int, total int64, dataLen int) error {
	if total < 1 {
		return fmt.Errorf("%w: total_size %d", ErrBadMetadataMsg, total)
	}
	want := MetadataPieceLen(total, piece)
	if want == 0 {
		return fmt.Errorf("%w: piece %d beyond total_size %d (%d pieces)", ErrBadMetadataMsg, piece, total, MetadataPieces(total))
	}
	if dataLen != want {
		return fmt.Errorf("%w: piece %d of total_size %d has %d bytes of data, want %d", ErrBadMetadataMsg, piece, total, dataLen, want)
	}
	return nil
}

// intField reads the integer value of key, which must be present, from a
// checked dictionary.
func intField(v metainfo.Value, key string) (int64, error) {
	if !v.Exists() {
		return 0, fmt.Errorf("%w: %s: missing", ErrBadMetadataMsg, key)
	}
	n, err := v.Int()
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %w", ErrBadMetadataMsg, key, err)
	}
	return n, nil
}
