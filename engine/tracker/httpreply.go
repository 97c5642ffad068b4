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
// anything reads it.
func parseHTTPResponse(url string, body []byte) (*AnnounceResponse, error) {
	if err := metainfo.CheckBencode(body, metainfo.Limits{MaxSize: len(body), MaxDepth: replyMaxDepth}); err != nil {
		return nil, fmt.Errorf("tracker %s: reply is not valid bencode: %w", url, err)
	}
	r := &AnnounceResponse{}
	var failure *string
	var peers, peers6 = -1, -1 // positions of the peer lists, read last
	_, err := bdict(body, 0, func(key []byte, val int) (int, error) {
		var err error
		switch string(key) {
		case "failure reason":
			var s string
			s, val, err = fieldString(body, val, "failure reason")
			failure = &s
			return val, err
		case "warning message":
			r.Warning, val, err = fieldString(body, val, "warning message")
			r.Warning = cleanText(r.Warning)
			return val, err
		case "tracker id":
			r.TrackerID, val, err = fieldString(body, val, "tracker id")
			return val, err
		case "interval":
			r.Interval, val, err = fieldSeconds(body, val, "interval")
			return val, err
		case "min interval":
			r.MinInterval, val, err = fieldSeconds(body, val, "min interval")
			return val, err
		case "complete":
			r.Seeders, val, err = fieldCount(body, val, "complete")
			return val, err
		case "incomplete":
			r.Leechers, val, err = fieldCount(body, val, "incomplete")
			return val, err
		case "peers":
			peers = val
		case "peers6":
			peers6 = val
		}
		return bskip(body, val)
	})
	if err != nil {
		return nil, fmt.Errorf("tracker %s: reply: %w", url, err)
	}
	if failure != nil {
		return nil, &FailureError{URL: url, Reason: cleanText(*failure)}
	}
	if peers >= 0 {
		if r.Peers, err = readPeers(r.Peers, body, peers); err != nil {
			return nil, fmt.Errorf("tracker %s: %q: %w", url, "peers", err)
		}
	}
	if peers6 >= 0 {
		s, _, err := fieldString(body, peers6, "peers6")
		if err == nil {
			r.Peers, err = compactPeers(r.Peers, []byte(s), 16)
		}
		if err != nil {
			return nil, fmt.Errorf("tracker %s: %q: %w", url, "peers6", err)
		}
	}
	return r, nil
}

// readPeers reads "peers": a compact string of IPv4 peers (BEP 23) or
// BEP 3's list of dictionaries.
func readPeers(dst []netip.AddrPort, b []byte, pos int) ([]netip.AddrPort, error) {
	if bkind(b, pos) == "string" {
		s, _, err := bstring(b, pos)
		if err != nil {
			return dst, err
		}
		return compactPeers(dst, s, 4)
	}
	if bkind(b, pos) != "list" {
		return dst, fmt.Errorf("is a %s, want a string or a list", bkind(b, pos))
	}
	_, err := blist(b, pos, func(elem int) (int, error) {
		if bkind(b, elem) != "dictionary" {
			return bskip(b, elem) // one bad entry does not spoil the others
		}
		var ap netip.AddrPort
		var ok bool
		end, err := dictPeer(b, elem, &ap, &ok)
		if err == nil && ok {
			dst = append(dst, ap)
		}
		return end, err
	})
	return dst, err
}

// dictPeer reads one {"ip", "port", "peer id"} entry. Entries that are not
// usable (a host name instead of an address, a bad port, a wrong type)
// leave ok false: this client does not resolve names a tracker hands out.
func dictPeer(b []byte, pos int, ap *netip.AddrPort, ok *bool) (int, error) {
	var addr netip.Addr
	port := int64(-1)
	end, err := bdict(b, pos, func(key []byte, val int) (int, error) {
		switch string(key) {
		case "ip":
			if s, end, err := bstring(b, val); err == nil {
				if a, perr := netip.ParseAddr(string(s)); perr == nil {
					addr = a
				}
				return end, nil
			}
		case "port":
			if n, end, err := bint(b, val); err == nil {
				port = n
				return end, nil
			}
		}
		return bskip(b, val)
	})
	if err != nil {
		return 0, err
	}
	if addr.IsValid() && port > 0 && port <= 65535 {
		*ap, *ok = usablePeer(netip.AddrPortFrom(addr, uint16(port)))
	}
	return end, nil
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

// fieldString reads the string value of field at pos.
func fieldString(b []byte, pos int, field string) (string, int, error) {
	if k := bkind(b, pos); k != "string" {
		return "", 0, fmt.Errorf("%q is a %s, want a string", field, k)
	}
	s, end, err := bstring(b, pos)
	return string(s), end, err
}

// fieldInt reads the integer value of field at pos.
func fieldInt(b []byte, pos int, field string) (int64, int, error) {
	if k := bkind(b, pos); k != "integer" {
		return 0, 0, fmt.Errorf("%q is a %s, want an integer", field, k)
	}
	n, end, err := bint(b, pos)
	if err != nil {
		return 0, 0, fmt.Errorf("%q: %w", field, err)
	}
	return n, end, nil
}

// fieldSeconds reads a count of seconds, range-checked.
func fieldSeconds(b []byte, pos int, field string) (time.Duration, int, error) {
	n, end, err := fieldInt(b, pos, field)
	if err != nil {
		return 0, 0, err
	}
	d, err := seconds(field, n)
	return d, end, err
}

// fieldCount reads a peer count, clamped to an int.
func fieldCount(b []byte, pos int, field string) (int, int, error) {
	n, end, err := fieldInt(b, pos, field)
	return clampCount(n), end, err
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
