package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"

	"btfs/metainfo"
)

// PexFlags is BEP 11's one byte of flags per added peer ("added.f",
// "added6.f"). They are hints from a stranger: nothing here trusts them.
type PexFlags uint8

// The flags of BEP 11.
const (
	// PexEncryption: the peer prefers encryption (we do not speak it).
	PexEncryption PexFlags = 0x01
	// PexSeed: the peer is a seed or upload-only.
	PexSeed PexFlags = 0x02
	// PexUTP: the peer supports uTP.
	PexUTP PexFlags = 0x04
	// PexHolepunch: the peer supports ut_holepunch.
	PexHolepunch PexFlags = 0x08
	// PexReachable: the sender made an outgoing connection to the peer,
	// so it accepts connections.
	PexReachable PexFlags = 0x10
)

// Bounds of a ut_pex message.
const (
	// MaxPexPeers caps each of the four address lists (added, added6,
	// dropped, dropped6) that ParsePex returns and EncodePex accepts.
	// libtorrent sends at most 100 added peers a message, BEP 11 suggests
	// 50; a client's first message may list every peer it has, so
	// ParsePex keeps the first 200 of each list and ignores the rest.
	MaxPexPeers = 200
	// MaxPexLen caps the payload. Four full lists with flags are about
	// 10 KiB; 64 KiB leaves room for a long first message and for keys
	// we do not know, and libtorrent closes at 500 KiB.
	MaxPexLen = 64 << 10
)

// pexLimits bound the dictionary: BEP 11 needs depth 1, and unknown keys
// may nest a little.
var pexLimits = metainfo.Limits{MaxSize: MaxPexLen, MaxDepth: 8}

// ErrBadPex: a ut_pex payload that is too large (it also wraps
// ErrMessageTooLarge then), not a dictionary, or whose address lists are
// not strings of whole 6-byte (IPv4) or 18-byte (IPv6) entries. Drop the
// message; the engine may penalise the peer.
var ErrBadPex = errors.New("wire: bad ut_pex message")

// PexPeer is one added peer: its listen address and its flags.
type PexPeer struct {
	// Addr is the peer's address: IPv4 from "added", IPv6 from "added6"
	// (where an IPv4-mapped address stays mapped, so that a message
	// re-encodes as it came).
	Addr netip.AddrPort
	// Flags are the sender's hints about the peer.
	Flags PexFlags
}

// PexMsg is the payload of one BEP 11 ut_pex message: the peers the sender
// connected to and dropped since its previous message to us.
type PexMsg struct {
	// Added are the new peers, IPv4 ("added") and IPv6 ("added6")
	// together, each family in message order.
	Added []PexPeer
	// Dropped are the peers the sender has disconnected from, IPv4
	// ("dropped") and IPv6 ("dropped6") together.
	Dropped []netip.AddrPort
}

// Compact address entry sizes.
const (
	compact4 = 4 + 2
	compact6 = 16 + 2
)

// EncodePex returns the bencoded payload of m with all six keys of BEP 11
// (libtorrent sends them all, empty or not), in canonical order. It fails
// on an address that cannot be sent (invalid, with a zone) and on more
// than MaxPexPeers entries in any of the four lists.
func EncodePex(m PexMsg) ([]byte, error) {
	var a4, f4, a6, f6, d4, d6 []byte
	for _, p := range m.Added {
		a := p.Addr.Addr()
		switch {
		case !p.Addr.IsValid() || a.Zone() != "":
			return nil, fmt.Errorf("%w: added peer %v", ErrBadPex, p.Addr)
		case a.Is4():
			a4, f4 = appendCompact(a4, a, p.Addr.Port()), append(f4, byte(p.Flags))
		default:
			a6, f6 = appendCompact(a6, a, p.Addr.Port()), append(f6, byte(p.Flags))
		}
	}
	for _, ap := range m.Dropped {
		a := ap.Addr()
		switch {
		case !ap.IsValid() || a.Zone() != "":
			return nil, fmt.Errorf("%w: dropped peer %v", ErrBadPex, ap)
		case a.Is4():
			d4 = appendCompact(d4, a, ap.Port())
		default:
			d6 = appendCompact(d6, a, ap.Port())
		}
	}
	if n := max(len(f4), len(f6), len(d4)/compact4, len(d6)/compact6); n > MaxPexPeers {
		return nil, fmt.Errorf("%w: %d peers in one list, cap %d", ErrBadPex, n, MaxPexPeers)
	}
	b := make([]byte, 0, 80+len(a4)+len(f4)+len(a6)+len(f6)+len(d4)+len(d6))
	b = append(b, 'd')
	// Keys in byte order: '.' (0x2e) sorts before '6' (0x36).
	for _, kv := range []struct {
		k string
		v []byte
	}{{"added", a4}, {"added.f", f4}, {"added6", a6}, {"added6.f", f6}, {"dropped", d4}, {"dropped6", d6}} {
		b = appendBencodeString(b, kv.k)
		b = appendBencodeString(b, string(kv.v))
	}
	return append(b, 'e'), nil
}

// ParsePex decodes a ut_pex payload (the bytes after the extended sub-ID).
// The payload is capped at MaxPexLen and checked by btfs/metainfo's bounded
// scanner; nothing is decoded generically. Each list keeps its first
// MaxPexPeers entries. Flags apply only when "added.f" (or "added6.f") has
// exactly one byte per added peer; otherwise the peers are kept with no
// flags. Absent keys are empty lists, unknown keys are ignored. Addresses
// are not judged here (port 0, multicast, IPv4-mapped, our own): see
// engine/pex.
func ParsePex(payload []byte) (PexMsg, error) {
	if len(payload) > MaxPexLen {
		return PexMsg{}, fmt.Errorf("%w: %w: %d bytes, cap %d", ErrBadPex, ErrMessageTooLarge, len(payload), MaxPexLen)
	}
	if err := metainfo.CheckBencode(payload, pexLimits); err != nil {
		return PexMsg{}, fmt.Errorf("%w: %w", ErrBadPex, err)
	}
	var f [6]metainfo.Value
	if err := metainfo.ValueOf(payload).Fields(f[:], "added", "added.f", "added6", "added6.f", "dropped", "dropped6"); err != nil {
		return PexMsg{}, fmt.Errorf("%w: %w", ErrBadPex, err)
	}
	var lists [6][]byte
	for i, v := range f {
		if !v.Exists() {
			continue // an absent key is an empty list
		}
		s, err := v.Bytes()
		if err != nil {
			return PexMsg{}, fmt.Errorf("%w: %s: %w", ErrBadPex, v.Name(), err)
		}
		lists[i] = s
	}
	var m PexMsg
	var err error
	if m.Added, err = parseAdded(m.Added, "added", lists[0], lists[1], compact4); err != nil {
		return PexMsg{}, err
	}
	if m.Added, err = parseAdded(m.Added, "added6", lists[2], lists[3], compact6); err != nil {
		return PexMsg{}, err
	}
	if m.Dropped, err = parseDropped(m.Dropped, "dropped", lists[4], compact4); err != nil {
		return PexMsg{}, err
	}
	if m.Dropped, err = parseDropped(m.Dropped, "dropped6", lists[5], compact6); err != nil {
		return PexMsg{}, err
	}
	return m, nil
}

// parseAdded appends the peers of one compact list with their flags.
func parseAdded(dst []PexPeer, key string, addrs, flags []byte, size int) ([]PexPeer, error) {
	if len(addrs)%size != 0 {
		return nil, fmt.Errorf("%w: %s is %d bytes, not a multiple of %d", ErrBadPex, key, len(addrs), size)
	}
	n := len(addrs) / size
	if len(flags) != n {
		flags = nil
	}
	for i := range min(n, MaxPexPeers) {
		p := PexPeer{Addr: readCompact(addrs[i*size : (i+1)*size])}
		if flags != nil {
			p.Flags = PexFlags(flags[i])
		}
		dst = append(dst, p)
	}
	return dst, nil
}

// parseDropped appends the addresses of one compact list.
func parseDropped(dst []netip.AddrPort, key string, addrs []byte, size int) ([]netip.AddrPort, error) {
	if len(addrs)%size != 0 {
		return nil, fmt.Errorf("%w: %s is %d bytes, not a multiple of %d", ErrBadPex, key, len(addrs), size)
	}
	for i := range min(len(addrs)/size, MaxPexPeers) {
		dst = append(dst, readCompact(addrs[i*size:(i+1)*size]))
	}
	return dst, nil
}

// readCompact reads a 6- or 18-byte compact address (big-endian port last).
func readCompact(b []byte) netip.AddrPort {
	port := binary.BigEndian.Uint16(b[len(b)-2:])
	if len(b) == compact4 {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[:4])), port)
	}
	return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[:16])), port)
}

// appendCompact appends a's compact form (4 or 16 bytes) and the port.
func appendCompact(b []byte, a netip.Addr, port uint16) []byte {
	b = append(b, a.AsSlice()...)
	return binary.BigEndian.AppendUint16(b, port)
}

// appendBencodeString appends s as a bencoded byte string.
func appendBencodeString(b []byte, s string) []byte {
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, ':')
	return append(b, s...)
}
