// Package wire is the BitTorrent peer wire protocol: the handshake (BEP 3),
// the length-prefixed messages of BEP 3 and BEP 6 (fast extension), the
// extended message of BEP 10 with its handshake, and BEP 6's allowed-fast
// set. It is the seed's Connecter._read_message and the framing half of its
// Encrypter, without any of the decisions: which pieces to ask for, whom to
// choke and when to close belong to the engine.
//
// # Trust
//
// Every byte read here comes from a stranger. The rules that follow from
// that:
//   - No allocation is sized from a length the peer declared until the length
//     has been checked against a cap for its message type (Limits); a 4-byte
//     prefix of 0xffffffff costs nothing but an error.
//   - Bodies larger than 64 KiB (a big bitfield or extended message) are read
//     into a buffer that grows with the bytes that actually arrive, so a peer
//     that declares 1 MiB and sends nothing holds 64 KiB of ours, not 1 MiB.
//   - Bencoded payloads go through btfs/metainfo's bounded decoder, never
//     straight into bencode-go, which allocates declared string lengths
//     before reading them.
//   - Bad input is an error, never a panic.
//
// # Errors
//
// Every error from Reader.ReadMessage means "close the connection", except
// ErrRequestTooLarge: the stream is still in step and the engine may drop (or,
// with the fast extension, reject) the request and carry on. Likewise
// ParseExtHandshake's ErrMetadataTooLarge only means "do not fetch metadata
// from this peer". Sentinels are wrapped with the message type and values, so
// test them with errors.Is.
//
// # Extension payloads
//
// The payloads of ut_metadata (BEP 9) and ut_pex (BEP 11) ride inside
// Extended messages: Message.ExtendedID says which extension (as numbered in
// our own ExtHandshake.M), Message.Payload is its body. ParseMetadataMsg
// and ParsePex decode them as ParseExtHandshake decodes the handshake:
// btfs/metainfo's bounded scanner checks the bencode, then metainfo.Value
// reads the known keys in place, with no generic decoding; EncodeMetadataMsg
// and EncodePex write them. What to do with
// them (which piece to ask whom, whom to believe) is engine/metadata's and
// engine/pex's.
//
// # What is not here
//
// Obfuscation (MSE/PE) is not supported.
package wire
