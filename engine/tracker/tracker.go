// Package tracker is the seed's Rerequester: it tells trackers that this
// client shares a torrent and asks them for the addresses of other peers.
//
// It speaks HTTP announces (BEP 3) with compact IPv4 and IPv6 peer lists
// (BEP 23, BEP 7) as well as the older list of dictionaries, and the UDP
// protocol (BEP 15). Tiers orders the trackers of a torrent as BEP 12 asks,
// and Announcer is the loop an engine runs for one torrent: "started", then
// re-announces on the tracker's interval or early when peers run short,
// "completed" once and "stopped" on the way out.
//
// Every reply is untrusted input from the network: bodies and datagrams are
// size-capped, bencode is checked with bounds before it is decoded, numbers
// are range-checked before they become durations or counts, and peers with
// port 0 are dropped. Nothing here panics on a reply.
package tracker

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"btfs/metainfo"
)

// Event is the announce event of BEP 3. The zero value is a regular
// re-announce that carries no event.
type Event int

const (
	// EventNone is a regular announce on the tracker's interval.
	EventNone Event = iota
	// EventStarted is the first announce of a download.
	EventStarted
	// EventCompleted is sent once when the download completes (not when a
	// client starts out as a seed).
	EventCompleted
	// EventStopped is sent when the client stops sharing the torrent.
	EventStopped
)

// String returns the event's HTTP parameter value ("" for EventNone).
func (e Event) String() string {
	switch e {
	case EventStarted:
		return "started"
	case EventCompleted:
		return "completed"
	case EventStopped:
		return "stopped"
	}
	return ""
}

// udpCode is the event's number in a BEP 15 announce (none 0, completed 1,
// started 2, stopped 3: not the order of the constants above).
func (e Event) udpCode() uint32 {
	switch e {
	case EventCompleted:
		return 1
	case EventStarted:
		return 2
	case EventStopped:
		return 3
	}
	return 0
}

// AnnounceRequest is what a client tells a tracker about one torrent.
type AnnounceRequest struct {
	// InfoHash names the torrent.
	InfoHash metainfo.Hash
	// PeerID is this client's 20-byte id.
	PeerID [20]byte
	// Port is the TCP port peers connect to, 0..65535 (0 for a client that
	// does not accept connections).
	Port int
	// Uploaded and Downloaded count payload bytes since the "started" event.
	Uploaded, Downloaded int64
	// Left is the number of bytes still to download; 0 for a seed.
	Left int64
	// Event is the announce event; EventNone for a regular announce.
	Event Event
	// NumWant is how many peers to ask for; 0 or less leaves it to the
	// tracker's default.
	NumWant int
	// Key identifies this client across IP changes (BEP 15 and most HTTP
	// trackers); random per client session.
	Key uint32
	// TrackerID is the "tracker id" a previous HTTP reply returned; empty
	// when it gave none. UDP ignores it.
	TrackerID string
}

// validate rejects requests that cannot be encoded, naming the field.
func (r *AnnounceRequest) validate() error {
	if r.Port < 0 || r.Port > 65535 {
		return fmt.Errorf("tracker: announce port %d out of range 0..65535", r.Port)
	}
	if r.Uploaded < 0 || r.Downloaded < 0 || r.Left < 0 {
		return fmt.Errorf("tracker: announce counters must not be negative (uploaded %d, downloaded %d, left %d)",
			r.Uploaded, r.Downloaded, r.Left)
	}
	if r.Event < EventNone || r.Event > EventStopped {
		return fmt.Errorf("tracker: unknown announce event %d", int(r.Event))
	}
	return nil
}

// AnnounceResponse is a tracker's answer to an announce.
type AnnounceResponse struct {
	// Interval is how long the tracker asks the client to wait before the
	// next regular announce; 0 when the tracker did not say.
	Interval time.Duration
	// MinInterval is the shortest wait the tracker allows between
	// announces; 0 when it did not say.
	MinInterval time.Duration
	// Peers are the addresses of other peers, IPv4 and IPv6 mixed, without
	// entries whose port is 0 or whose address is unspecified. They may
	// include this client's own address.
	Peers []netip.AddrPort
	// Seeders and Leechers are the tracker's counts ("complete" and
	// "incomplete"); 0 when it did not say.
	Seeders, Leechers int
	// TrackerID must be sent back in later HTTP announces when non-empty.
	TrackerID string
	// Warning is a tracker's "warning message": the announce worked, but
	// the tracker wants a person to read this.
	Warning string
}

// FailureError is a tracker's refusal: an HTTP reply's "failure reason" or
// a BEP 15 error action. The announce did not count.
type FailureError struct {
	// URL is the tracker that refused.
	URL string
	// Reason is the tracker's text, made valid UTF-8 and cut to
	// maxReasonLen bytes.
	Reason string
}

func (e *FailureError) Error() string {
	return fmt.Sprintf("tracker %s: failure: %s", e.URL, e.Reason)
}

// ErrClosed is returned by clients used after Close.
var ErrClosed = errors.New("tracker: client closed")

// maxReasonLen bounds the tracker-supplied texts kept in errors and logs.
const maxReasonLen = 1024

// cleanText makes a tracker-supplied text safe to log: valid UTF-8, without
// control characters, at most maxReasonLen bytes.
func cleanText(s string) string {
	if len(s) > maxReasonLen {
		s = s[:maxReasonLen]
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) > maxReasonLen { // a replacement may have grown it
		s = s[:maxReasonLen]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// maxSeconds bounds the interval fields a tracker sends: more than a year
// is nonsense, and the bound keeps the conversion to time.Duration far from
// overflow.
const maxSeconds = 366 * 24 * 3600

// seconds turns a tracker's count of seconds into a Duration, naming the
// field when it is out of range.
func seconds(field string, n int64) (time.Duration, error) {
	if n < 0 || n > maxSeconds {
		return 0, fmt.Errorf("%q %d out of range 0..%d", field, n, maxSeconds)
	}
	return time.Duration(n) * time.Second, nil
}

// usablePeer reports whether a peer address from a tracker is worth
// dialling: a real address and a non-zero port. IPv4-mapped IPv6 addresses
// are unmapped so that the same peer compares equal in both forms.
func usablePeer(ap netip.AddrPort) (netip.AddrPort, bool) {
	addr := ap.Addr().Unmap()
	if !addr.IsValid() || addr.IsUnspecified() || ap.Port() == 0 {
		return netip.AddrPort{}, false
	}
	if addr.Zone() != "" {
		addr = addr.WithZone("")
	}
	return netip.AddrPortFrom(addr, ap.Port()), true
}
