package tracker

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"btfs/metainfo"
)

// replyMaxDepth bounds the nesting of an HTTP tracker reply: a reply is a
// dictionary whose "peers" may be a list of dictionaries (depth 3); the
// margin leaves room for extensions nobody reads.
const replyMaxDepth = 8

// parseHTTPResponse decodes the body of an HTTP announce reply (BEP 3, 23,
// 7). A "failure reason" becomes a *FailureError for url. The body is
// checked with metainfo.CheckBencode, bounded by its own size, before
// anything reads it; then metainfo.Value reads only the keys this package
// uses, straight from the body. No generic tree is built: a hostile reply
// of a million empty dictionaries costs nothing more than its bytes, where
// a generic decoder would allocate a map for each.
func parseHTTPResponse(url string, body []byte) (*AnnounceResponse, error) {
	if err := metainfo.CheckBencode(body, metainfo.Limits{MaxSize: len(body), MaxDepth: replyMaxDepth}); err != nil {
		return nil, fmt.Errorf("tracker %s: reply is not valid bencode: %w", url, err)
	}
	r := &AnnounceResponse{}
	var failure *string
	var peers, peers6 metainfo.Value // read last
	err := metainfo.ValueOf(body).Entries(func(key []byte, v metainfo.Value) error {
		var err error
		switch string(key) {
		case "failure reason":
			var s string
			s, err = fieldString(v, "failure reason")
			failure = &s
		case "warning message":
			r.Warning, err = fieldString(v, "warning message")
			r.Warning = cleanText(r.Warning)
		case "tracker id":
			r.TrackerID, err = fieldString(v, "tracker id")
		case "interval":
			r.Interval, err = fieldSeconds(v, "interval")
		case "min interval":
			r.MinInterval, err = fieldSeconds(v, "min interval")
		case "complete":
			r.Seeders, err = fieldCount(v, "complete")
		case "incomplete":
			r.Leechers, err = fieldCount(v, "incomplete")
		case "peers":
			peers = v
		case "peers6":
			peers6 = v
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("tracker %s: reply: %w", url, err)
	}
	if failure != nil {
		return nil, &FailureError{URL: url, Reason: cleanText(*failure)}
	}
	if peers.Exists() {
		if r.Peers, err = readPeers(r.Peers, peers); err != nil {
			return nil, fmt.Errorf("tracker %s: %q: %w", url, "peers", err)
		}
	}
	if peers6.Exists() {
		s, err := peers6.Bytes()
		if err == nil {
			r.Peers, err = compactPeers(r.Peers, s, 16)
		}
		if err != nil {
			return nil, fmt.Errorf("tracker %s: %q: %w", url, "peers6", err)
		}
	}
	return r, nil
}

// readPeers reads "peers": a compact string of IPv4 peers (BEP 23) or
// BEP 3's list of dictionaries.
func readPeers(dst []netip.AddrPort, v metainfo.Value) ([]netip.AddrPort, error) {
	switch v.Kind() {
	case metainfo.KindString:
		s, err := v.Bytes()
		if err != nil {
			return dst, err
		}
		return compactPeers(dst, s, 4)
	case metainfo.KindList:
		err := v.Elems(func(_ int, elem metainfo.Value) error {
			if elem.Kind() != metainfo.KindDict {
				return nil // one bad entry does not spoil the others
			}
			ap, ok, err := dictPeer(elem)
			if ok {
				dst = append(dst, ap)
			}
			return err
		})
		return dst, err
	}
	return dst, fmt.Errorf("is a %s, want a string or a list", v.Kind())
}

// dictPeer reads one {"ip", "port", "peer id"} entry. Entries that are not
// usable (a host name instead of an address, a bad port, a wrong type)
// give ok false: this client does not resolve names a tracker hands out.
func dictPeer(v metainfo.Value) (ap netip.AddrPort, ok bool, err error) {
	var f [2]metainfo.Value
	if err := v.Fields(f[:], "ip", "port"); err != nil {
		return netip.AddrPort{}, false, err
	}
	ip, ipErr := f[0].Bytes()
	port, portErr := f[1].Int()
	if ipErr != nil || portErr != nil || port <= 0 || port > 65535 {
		return netip.AddrPort{}, false, nil
	}
	addr, err := netip.ParseAddr(string(ip))
	if err != nil {
		return netip.AddrPort{}, false, nil
	}
	ap, ok = usablePeer(netip.AddrPortFrom(addr, uint16(port)))
	return ap, ok, nil
}

// compactPeers appends the peers of a compact list (BEP 23 for IPv4, BEP 7
// for IPv6): each peer is an address of addrLen bytes and a big-endian port.
func compactPeers(dst []netip.AddrPort, b []byte, addrLen int) ([]netip.AddrPort, error) {
	size := addrLen + 2
	if len(b)%size != 0 {
		return dst, fmt.Errorf("compact peer list of %d bytes is not a multiple of %d", len(b), size)
	}
	for ; len(b) > 0; b = b[size:] {
		addr, _ := netip.AddrFromSlice(b[:addrLen]) // length is 4 or 16: always ok
		ap := netip.AddrPortFrom(addr, binary.BigEndian.Uint16(b[addrLen:size]))
		if ap, ok := usablePeer(ap); ok {
			dst = append(dst, ap)
		}
	}
	return dst, nil
}

// fieldString reads the string value of field.
func fieldString(v metainfo.Value, field string) (string, error) {
	s, err := v.Str()
	if err != nil {
		return "", fmt.Errorf("%q: %w", field, err)
	}
	return s, nil
}

// fieldSeconds reads a count of seconds, range-checked.
func fieldSeconds(v metainfo.Value, field string) (time.Duration, error) {
	n, err := v.Int()
	if err != nil {
		return 0, fmt.Errorf("%q: %w", field, err)
	}
	return seconds(field, n)
}

// fieldCount reads a peer count, clamped to an int.
func fieldCount(v metainfo.Value, field string) (int, error) {
	n, err := v.Int()
	if err != nil {
		return 0, fmt.Errorf("%q: %w", field, err)
	}
	return clampCount(n), nil
}

// clampCount turns a tracker's peer count into an int: negative counts
// become 0 and huge ones stop at 1<<31-1.
func clampCount(n int64) int {
	switch {
	case n < 0:
		return 0
	case n > 1<<31-1:
		return 1<<31 - 1
	}
	return int(n)
}
