package tracker

import (
	"encoding/binary"
	"fmt"

	"btfs/metainfo"
)

// BEP 15's wire format. All integers are big-endian.

const (
	// udpProtocolID is the magic constant of a connect request.
	udpProtocolID = 0x41727101980

	actionConnect  = 0
	actionAnnounce = 1
	actionScrape   = 2
	actionError    = 3

	// udpMaxScrape is the most info-hashes one scrape may carry (BEP 15:
	// "up to about 74").
	udpMaxScrape = 74

	// udpMaxDatagram is the read buffer size: the largest UDP payload.
	udpMaxDatagram = 65507
)

// ScrapeResult is a tracker's counts for one torrent.
type ScrapeResult struct {
	// Seeders is the number of peers with the whole torrent.
	Seeders int
	// Completed is how many times the torrent was downloaded to the end.
	Completed int
	// Leechers is the number of peers still downloading.
	Leechers int
}

// connectPacket is the 16-byte connect request.
func connectPacket(tid uint32) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint64(b[0:], udpProtocolID)
	binary.BigEndian.PutUint32(b[8:], actionConnect)
	binary.BigEndian.PutUint32(b[12:], tid)
	return b
}

// announcePacket is the 98-byte announce request. The IP field is 0 (the
// tracker uses the datagram's source address); num_want -1 is the
// tracker's default.
func announcePacket(connID uint64, tid uint32, req *AnnounceRequest) []byte {
	b := make([]byte, 98)
	binary.BigEndian.PutUint64(b[0:], connID)
	binary.BigEndian.PutUint32(b[8:], actionAnnounce)
	binary.BigEndian.PutUint32(b[12:], tid)
	copy(b[16:36], req.InfoHash[:])
	copy(b[36:56], req.PeerID[:])
	binary.BigEndian.PutUint64(b[56:], uint64(req.Downloaded))
	binary.BigEndian.PutUint64(b[64:], uint64(req.Left))
	binary.BigEndian.PutUint64(b[72:], uint64(req.Uploaded))
	binary.BigEndian.PutUint32(b[80:], req.Event.udpCode())
	binary.BigEndian.PutUint32(b[84:], 0)
	binary.BigEndian.PutUint32(b[88:], req.Key)
	numWant := int32(-1)
	if req.NumWant > 0 {
		numWant = int32(min(req.NumWant, 1<<31-1))
	}
	binary.BigEndian.PutUint32(b[92:], uint32(numWant))
	binary.BigEndian.PutUint16(b[96:], uint16(req.Port))
	return b
}

// scrapePacket is a scrape request for up to udpMaxScrape info-hashes.
func scrapePacket(connID uint64, tid uint32, hashes []metainfo.Hash) []byte {
	b := make([]byte, 16, 16+20*len(hashes))
	binary.BigEndian.PutUint64(b[0:], connID)
	binary.BigEndian.PutUint32(b[8:], actionScrape)
	binary.BigEndian.PutUint32(b[12:], tid)
	for _, h := range hashes {
		b = append(b, h[:]...)
	}
	return b
}

// udpReply is one decoded datagram from a tracker.
type udpReply struct {
	// action is the reply's action: connect, announce, scrape or error.
	action uint32
	// tid is the transaction id the reply answers.
	tid uint32
	// connID is a connect reply's connection id.
	connID uint64
	// announce is an announce reply's content.
	announce *AnnounceResponse
	// scrape holds a scrape reply's results in request order.
	scrape []ScrapeResult
	// message is an error reply's text, cleaned.
	message string
}

// udpHeader returns the action and transaction id of a datagram; ok is
// false when it is too short to carry them.
func udpHeader(b []byte) (action, tid uint32, ok bool) {
	if len(b) < 8 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint32(b[0:]), binary.BigEndian.Uint32(b[4:]), true
}

// parseUDPReply decodes a tracker datagram. addrLen is the size of a peer
// address in an announce reply: 4 over IPv4, 16 over IPv6 (BEP 15 ties it
// to the address family of the exchange, not to anything in the packet).
func parseUDPReply(b []byte, addrLen int) (udpReply, error) {
	action, tid, ok := udpHeader(b)
	if !ok {
		return udpReply{}, fmt.Errorf("tracker reply: datagram of %d bytes is shorter than its 8-byte header", len(b))
	}
	r := udpReply{action: action, tid: tid}
	switch action {
	case actionConnect:
		if len(b) < 16 {
			return r, fmt.Errorf("tracker reply: connect reply of %d bytes, want 16", len(b))
		}
		r.connID = binary.BigEndian.Uint64(b[8:])
	case actionAnnounce:
		if len(b) < 20 {
			return r, fmt.Errorf("tracker reply: announce reply of %d bytes, want at least 20", len(b))
		}
		interval := int32(binary.BigEndian.Uint32(b[8:]))
		iv, err := seconds("interval", int64(interval))
		if err != nil {
			return r, err
		}
		a := &AnnounceResponse{
			Interval: iv,
			Leechers: clampCount(int64(int32(binary.BigEndian.Uint32(b[12:])))),
			Seeders:  clampCount(int64(int32(binary.BigEndian.Uint32(b[16:])))),
		}
		if a.Peers, err = compactPeers(nil, b[20:], addrLen); err != nil {
			return r, fmt.Errorf("tracker reply: announce peers: %w", err)
		}
		r.announce = a
	case actionScrape:
		rest := b[8:]
		if len(rest)%12 != 0 {
			return r, fmt.Errorf("tracker reply: scrape reply body of %d bytes is not a multiple of 12", len(rest))
		}
		r.scrape = make([]ScrapeResult, 0, len(rest)/12)
		for ; len(rest) > 0; rest = rest[12:] {
			r.scrape = append(r.scrape, ScrapeResult{
				Seeders:   clampCount(int64(int32(binary.BigEndian.Uint32(rest[0:])))),
				Completed: clampCount(int64(int32(binary.BigEndian.Uint32(rest[4:])))),
				Leechers:  clampCount(int64(int32(binary.BigEndian.Uint32(rest[8:])))),
			})
		}
	case actionError:
		r.message = cleanText(string(b[8:]))
	default:
		return r, fmt.Errorf("tracker reply: unknown action %d", action)
	}
	return r, nil
}
