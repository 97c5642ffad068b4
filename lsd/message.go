package lsd

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
)

// Limits of the wire format. A message is one UDP datagram; we never
// build one larger than MaxMessage and ignore any larger one we receive,
// so that an announce always fits an Ethernet frame unfragmented.
const (
	// MaxMessage is the largest announce we send or accept, in bytes.
	MaxMessage = 1400
	// MaxInfoHashes is the most Infohash lines we put in one message and
	// the most we take from one: one message teaches at most this many
	// (torrent, peer) pairs, whatever the sender puts in it.
	MaxInfoHashes = 20
	// maxCookie bounds the cookie we accept (ours are 16 hex digits).
	maxCookie = 64
)

// requestLine starts every BEP 14 announce.
const requestLine = "BT-SEARCH * HTTP/1.1"

// Announce is one BT-SEARCH message: a peer listening on Port (TCP, at
// the sender's address) serves these torrents.
type Announce struct {
	Port       uint16
	InfoHashes [][20]byte
	// Cookie identifies the sender's process, so that a client can ignore
	// its own announces (multicast loops back to the sender's host).
	Cookie string
}

var (
	errNotAnnounce = errors.New("lsd: not a BT-SEARCH announce")
	errTooLarge    = errors.New("lsd: message too large")
)

// Parse reads an announce. It accepts only what BEP 14 defines (a
// BT-SEARCH request line, CRLF or LF line ends, header names in any case)
// and ignores unknown headers, malformed Infohash lines and any beyond
// MaxInfoHashes. A message without a valid Port or without one valid
// Infohash is an error.
func Parse(b []byte) (Announce, error) {
	var a Announce
	if len(b) > MaxMessage {
		return a, errTooLarge
	}
	first := true
	port := -1
	for len(b) > 0 {
		var line []byte
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			line, b = b, nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if first {
			if string(line) != requestLine {
				return Announce{}, errNotAnnounce
			}
			first = false
			continue
		}
		if len(line) == 0 {
			break // end of headers
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch string(bytes.ToLower(bytes.TrimSpace(name))) {
		case "port":
			if n, err := strconv.ParseUint(string(value), 10, 16); err == nil && n > 0 {
				port = int(n)
			}
		case "infohash":
			var ih [20]byte
			if len(value) != 2*len(ih) || len(a.InfoHashes) >= MaxInfoHashes {
				continue
			}
			if _, err := hex.Decode(ih[:], value); err != nil {
				continue
			}
			a.InfoHashes = append(a.InfoHashes, ih)
		case "cookie":
			if len(value) <= maxCookie {
				a.Cookie = string(value)
			}
		}
	}
	if first {
		return Announce{}, errNotAnnounce
	}
	if port < 0 {
		return Announce{}, fmt.Errorf("%w: no valid Port", errNotAnnounce)
	}
	if len(a.InfoHashes) == 0 {
		return Announce{}, fmt.Errorf("%w: no valid Infohash", errNotAnnounce)
	}
	a.Port = uint16(port)
	return a, nil
}

// Format builds the messages announcing ihs on port to host (the group,
// "239.192.152.143:6771"): as few as fit, each with at most MaxInfoHashes
// Infohash lines and at most MaxMessage bytes.
func Format(host string, port uint16, cookie string, ihs [][20]byte) [][]byte {
	var msgs [][]byte
	for len(ihs) > 0 {
		n := min(len(ihs), MaxInfoHashes)
		var b bytes.Buffer
		fmt.Fprintf(&b, "%s\r\nHost: %s\r\nPort: %d\r\n", requestLine, host, port)
		for _, ih := range ihs[:n] {
			fmt.Fprintf(&b, "Infohash: %x\r\n", ih)
		}
		if cookie != "" {
			fmt.Fprintf(&b, "cookie: %s\r\n", cookie)
		}
		b.WriteString("\r\n\r\n")
		msgs = append(msgs, b.Bytes())
		ihs = ihs[n:]
	}
	return msgs
}
