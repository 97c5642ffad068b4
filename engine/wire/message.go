package wire

import (
	"fmt"
)

// ID is the one-byte type of a length-prefixed message.
type ID uint8

// Message IDs of BEP 3, BEP 6 and BEP 10.
const (
	Choke         ID = 0  // BEP 3: no body.
	Unchoke       ID = 1  // BEP 3: no body.
	Interested    ID = 2  // BEP 3: no body.
	NotInterested ID = 3  // BEP 3: no body.
	Have          ID = 4  // BEP 3: Index.
	Bitfield      ID = 5  // BEP 3: Bitfield.
	Request       ID = 6  // BEP 3: Index, Begin, Length.
	Piece         ID = 7  // BEP 3: Index, Begin, Block.
	Cancel        ID = 8  // BEP 3: Index, Begin, Length.
	Port          ID = 9  // BEP 5 (listed in BEP 3's table): Port, the DHT port.
	Suggest       ID = 13 // BEP 6: Index.
	HaveAll       ID = 14 // BEP 6: no body.
	HaveNone      ID = 15 // BEP 6: no body.
	RejectRequest ID = 16 // BEP 6: Index, Begin, Length.
	AllowedFast   ID = 17 // BEP 6: Index.
	Extended      ID = 20 // BEP 10: ExtendedID, Payload.
)

// idNames holds the names of the known IDs, indexed by ID; "" for gaps.
var idNames = [...]string{
	Choke: "choke", Unchoke: "unchoke", Interested: "interested",
	NotInterested: "not-interested", Have: "have", Bitfield: "bitfield",
	Request: "request", Piece: "piece", Cancel: "cancel", Port: "port",
	Suggest: "suggest", HaveAll: "have-all", HaveNone: "have-none",
	RejectRequest: "reject-request", AllowedFast: "allowed-fast",
	Extended: "extended",
}

// String names the message type for logs; unknown IDs print as their number.
func (id ID) String() string {
	if id.Known() {
		return idNames[id]
	}
	return fmt.Sprintf("unknown(%d)", uint8(id))
}

// Known reports whether the ID is one this package decodes. The Reader
// returns messages with other IDs with no fields set (their bodies skipped),
// and the Writer refuses them.
func (id ID) Known() bool { return int(id) < len(idNames) && idNames[id] != "" }

// IsFast reports whether the ID belongs to BEP 6. A peer that sends one
// without both sides having set the fast bit in the handshake violates
// BEP 6, which says to close the connection; that check needs the
// handshake, so it is the engine's.
func (id ID) IsFast() bool {
	switch id {
	case Suggest, HaveAll, HaveNone, RejectRequest, AllowedFast:
		return true
	}
	return false
}

// Message is one peer wire message, a value type. Which fields mean
// something depends on ID (see the ID constants); the others are zero.
//
// The slices Bitfield, Block and Payload of a Message returned by
// Reader.ReadMessage alias the Reader's buffer: they are valid only until the
// next ReadMessage on that Reader. Copy what must outlive it (the engine
// hands a block to storagewrapper, which copies it into the piece, so the
// common path never copies twice).
type Message struct {
	// KeepAlive marks the zero-length message; every other field is
	// ignored when it is set.
	KeepAlive bool
	// ID is the message type.
	ID ID
	// Index is the piece index of have, request, piece, cancel, suggest,
	// reject-request and allowed-fast.
	Index uint32
	// Begin is the byte offset within the piece of request, piece, cancel
	// and reject-request.
	Begin uint32
	// Length is the block length of request, cancel and reject-request.
	Length uint32
	// Bitfield is the raw payload of a bitfield message, high bit of the
	// first byte = piece 0. Its exact length and spare bits are checked by
	// btfs/bitfield.FromBytes, which needs the piece count.
	Bitfield []byte
	// Block is the data of a piece message.
	Block []byte
	// ExtendedID is the BEP 10 sub-ID: 0 for the extension handshake,
	// otherwise an ID the receiver chose in its own handshake's "m".
	ExtendedID uint8
	// Payload is the body of an extended message after ExtendedID.
	Payload []byte
	// Port is the DHT port of a port message.
	Port uint16
}

// String summarises the message for logs, without payload bytes.
func (m Message) String() string {
	if m.KeepAlive {
		return "keep-alive"
	}
	switch m.ID {
	case Have, Suggest, AllowedFast:
		return fmt.Sprintf("%s(%d)", m.ID, m.Index)
	case Request, Cancel, RejectRequest:
		return fmt.Sprintf("%s(%d, %d, %d)", m.ID, m.Index, m.Begin, m.Length)
	case Piece:
		return fmt.Sprintf("piece(%d, %d, %d bytes)", m.Index, m.Begin, len(m.Block))
	case Bitfield:
		return fmt.Sprintf("bitfield(%d bytes)", len(m.Bitfield))
	case Extended:
		return fmt.Sprintf("extended(%d, %d bytes)", m.ExtendedID, len(m.Payload))
	case Port:
		return fmt.Sprintf("port(%d)", m.Port)
	}
	return m.ID.String()
}

// fixedBody returns the exact body length (after the ID byte) of the
// message types whose size never varies, and false for the others.
func fixedBody(id ID) (int, bool) {
	switch id {
	case Choke, Unchoke, Interested, NotInterested, HaveAll, HaveNone:
		return 0, true
	case Have, Suggest, AllowedFast:
		return 4, true
	case Request, Cancel, RejectRequest:
		return 12, true
	case Port:
		return 2, true
	}
	return 0, false
}
