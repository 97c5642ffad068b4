package wire

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net/netip"

	"github.com/jackpal/bencode-go"

	"btfs/metainfo"
)

// ExtHandshakeID is the extended sub-ID of BEP 10's extension handshake.
// Every other sub-ID means what the receiver's own handshake said in "m".
const ExtHandshakeID = 0

// Extension names as they appear in "m".
const (
	// ExtMetadata is BEP 9's metadata exchange (fetching the info
	// dictionary for a magnet link).
	ExtMetadata = "ut_metadata"
	// ExtPex is BEP 11's peer exchange.
	ExtPex = "ut_pex"
)

// DefaultMaxMetadataSize is the metadata_size cap ParseExtHandshake applies
// when given 0: 16 MiB is an info dictionary with ~800,000 pieces, beyond
// any torrent a magnet link is used for, and is what we would have to hold
// in memory while fetching it.
const DefaultMaxMetadataSize = 16 << 20

// MaxExtHandshakeLen caps the bencoded handshake. Real ones are a few
// hundred bytes; 64 KiB leaves room for unknown keys while bounding the
// scan of a message that may be mostly keys we skip.
const MaxExtHandshakeLen = 64 << 10

// extHandshakeLimits bound a handshake. The known keys need depth 2 ("m"
// inside the root); unknown keys may nest a little.
var extHandshakeLimits = metainfo.Limits{MaxSize: MaxExtHandshakeLen, MaxDepth: 16}

// Errors of the extension handshake.
var (
	// ErrBadExtHandshake: not a bencoded dictionary, "m" not a dictionary,
	// an "m" ID outside 0..255, or a negative metadata_size. Close the
	// connection.
	ErrBadExtHandshake = errors.New("wire: bad extension handshake")
	// ErrMetadataTooLarge: metadata_size beyond the caller's cap. Not fatal:
	// ParseExtHandshake returns everything else, with MetadataSize 0, and
	// the engine just does not fetch metadata from this peer.
	ErrMetadataTooLarge = errors.New("wire: metadata_size too large")
)

// ExtHandshake is the payload of BEP 10's extension handshake (extended
// sub-ID 0), with the keys this client uses. Absent keys are zero values.
// A peer may send the handshake again later; its "m" then updates the
// earlier one, and an ID of 0 switches that extension off.
type ExtHandshake struct {
	// M maps extension names (ExtMetadata, ExtPex, ...) to the sub-ID the
	// sender wants to receive them with; 0 means "disabled". Entries whose
	// value is not an integer are dropped as unknown.
	M map[string]int
	// V is the client's name and version ("v"), free text.
	V string
	// Port is the sender's listen port ("p"); 0 when absent or not in
	// 1..65535.
	Port int
	// YourIP is our address as the sender sees it ("yourip"); invalid
	// when absent or not 4 or 16 bytes.
	YourIP netip.Addr
	// IPv4 and IPv6 are the sender's own addresses ("ipv4", "ipv6");
	// invalid when absent or of the wrong length.
	IPv4, IPv6 netip.Addr
	// Reqq is how many outstanding requests the sender queues ("reqq");
	// 0 when absent or not in 1..math.MaxInt32. The engine clamps it to
	// its own pipeline bound.
	Reqq int
	// MetadataSize is BEP 9's size of the info dictionary in bytes; 0 when
	// absent or over the cap.
	MetadataSize int64
	// UploadOnly is BEP 21's "upload_only": the sender is a seed or a
	// partial seed and will not download.
	UploadOnly bool
}

// Encode returns the bencoded handshake. "m" is always present (an empty
// dictionary if M is empty); other keys only when set. It fails on values
// that cannot be sent: an ID outside 0..255, a port outside 0..65535, an
// IPv4 field holding an IPv6 address or the reverse.
func (h ExtHandshake) Encode() ([]byte, error) {
	m := make(map[string]int64, len(h.M))
	for name, id := range h.M {
		if id < 0 || id > math.MaxUint8 {
			return nil, fmt.Errorf("%w: m[%q] = %d, want 0..255", ErrBadExtHandshake, name, id)
		}
		m[name] = int64(id)
	}
	d := map[string]any{"m": m}
	if h.V != "" {
		d["v"] = h.V
	}
	if h.Port < 0 || h.Port > math.MaxUint16 {
		return nil, fmt.Errorf("%w: p = %d", ErrBadExtHandshake, h.Port)
	}
	if h.Port > 0 {
		d["p"] = int64(h.Port)
	}
	if h.YourIP.IsValid() {
		if h.YourIP.Is4() {
			a := h.YourIP.As4()
			d["yourip"] = string(a[:])
		} else {
			a := h.YourIP.As16()
			d["yourip"] = string(a[:])
		}
	}
	if h.IPv4.IsValid() {
		if !h.IPv4.Is4() {
			return nil, fmt.Errorf("%w: ipv4 = %s", ErrBadExtHandshake, h.IPv4)
		}
		a := h.IPv4.As4()
		d["ipv4"] = string(a[:])
	}
	if h.IPv6.IsValid() {
		if !h.IPv6.Is6() {
			return nil, fmt.Errorf("%w: ipv6 = %s", ErrBadExtHandshake, h.IPv6)
		}
		a := h.IPv6.As16()
		d["ipv6"] = string(a[:])
	}
	if h.Reqq > 0 {
		d["reqq"] = int64(h.Reqq)
	}
	if h.MetadataSize > 0 {
		d["metadata_size"] = h.MetadataSize
	}
	if h.UploadOnly {
		d["upload_only"] = int64(1)
	}
	var buf bytes.Buffer
	if err := bencode.Marshal(&buf, d); err != nil {
		return nil, fmt.Errorf("wire: encoding extension handshake: %w", err)
	}
	return buf.Bytes(), nil
}

// ParseExtHandshake decodes an extension handshake's payload (the bytes
// after the sub-ID). The payload is capped at MaxExtHandshakeLen and
// checked by btfs/metainfo's bounded scanner, then read in place with
// metainfo.Value: nothing is decoded generically, and only the "m" map and
// the strings kept are allocated.
// Unknown keys and known keys of the wrong type are ignored, as BEP 10
// asks; see ExtHandshake for which values are dropped. maxMetadataSize
// caps metadata_size (0 means DefaultMaxMetadataSize): a larger value
// yields the rest of the handshake and an error wrapping
// ErrMetadataTooLarge. Any other error wraps ErrBadExtHandshake or
// ErrMessageTooLarge.
func ParseExtHandshake(payload []byte, maxMetadataSize int64) (ExtHandshake, error) {
	if maxMetadataSize <= 0 {
		maxMetadataSize = DefaultMaxMetadataSize
	}
	if len(payload) > MaxExtHandshakeLen {
		return ExtHandshake{}, fmt.Errorf("%w: extension handshake of %d bytes, cap %d", ErrMessageTooLarge, len(payload), MaxExtHandshakeLen)
	}
	if err := metainfo.CheckBencode(payload, extHandshakeLimits); err != nil {
		return ExtHandshake{}, fmt.Errorf("%w: %w", ErrBadExtHandshake, err)
	}
	var f [9]metainfo.Value
	err := metainfo.ValueOf(payload).Fields(f[:], "m", "v", "p", "yourip", "ipv4", "ipv6", "reqq", "upload_only", "metadata_size")
	if err != nil {
		return ExtHandshake{}, fmt.Errorf("%w: %w", ErrBadExtHandshake, err)
	}
	m, version, port, yourIP, ipv4, ipv6, reqq, uploadOnly, metadataSize := f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8]
	var h ExtHandshake
	if m.Exists() {
		if m.Kind() != metainfo.KindDict {
			return ExtHandshake{}, fmt.Errorf("%w: m is not a dictionary", ErrBadExtHandshake)
		}
		h.M = make(map[string]int)
		err := m.Entries(func(name []byte, idv metainfo.Value) error {
			id, err := idv.Int()
			if err != nil {
				return nil // not an integer: dropped as unknown
			}
			if id < 0 || id > math.MaxUint8 {
				return fmt.Errorf("%w: m[%q] = %d, want 0..255", ErrBadExtHandshake, name, id)
			}
			h.M[string(name)] = int(id)
			return nil
		})
		if err != nil {
			return ExtHandshake{}, err
		}
	}
	// Known keys of the wrong type read as absent: their readers' errors
	// are dropped.
	h.V, _ = version.Str()
	if n, err := port.Int(); err == nil && n > 0 && n <= math.MaxUint16 {
		h.Port = int(n)
	}
	h.YourIP = parseAddr(yourIP, 4, 16)
	h.IPv4 = parseAddr(ipv4, 4)
	h.IPv6 = parseAddr(ipv6, 16)
	if q, err := reqq.Int(); err == nil && q > 0 && q <= math.MaxInt32 {
		h.Reqq = int(q)
	}
	if u, err := uploadOnly.Int(); err == nil && u != 0 {
		h.UploadOnly = true
	}
	if n, err := metadataSize.Int(); err == nil {
		switch {
		case n < 0:
			return ExtHandshake{}, fmt.Errorf("%w: metadata_size = %d", ErrBadExtHandshake, n)
		case n > maxMetadataSize:
			return h, fmt.Errorf("%w: metadata_size = %d, cap %d", ErrMetadataTooLarge, n, maxMetadataSize)
		}
		h.MetadataSize = n
	}
	return h, nil
}

// parseAddr reads a compact address: a byte string of one of the given
// lengths (4: IPv4, 16: IPv6). Anything else is the invalid Addr.
func parseAddr(v metainfo.Value, lens ...int) netip.Addr {
	b, err := v.Bytes()
	if err != nil {
		return netip.Addr{}
	}
	for _, n := range lens {
		if len(b) != n {
			continue
		}
		switch n {
		case 4:
			return netip.AddrFrom4([4]byte(b))
		case 16:
			return netip.AddrFrom16([16]byte(b))
		}
	}
	return netip.Addr{}
}
