package engine

import (
	"context"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Stats is a snapshot for the status line and for tests.
type Stats struct {
	Downloaded, Uploaded     int64   // payload bytes this session
	DownloadRate, UploadRate float64 // bytes/s, smoothed
	Wasted                   int64   // bytes received and thrown away (duplicates, bad pieces)
	Hedged                   int64   // requests duplicated because a reader's block was late at its peer
	WastedWithdrawn          int64   // of Wasted: blocks that came after their request was withdrawn (a cancel crossed them)
	WastedDuplicate          int64   // of Wasted: second copies of blocks already filed (endgame, hedging)
	HashFailures             int     // pieces that failed their hash check
	Peers                    int     // connected
	KnownPeers               int     // addresses known
	PiecesDone, NumPieces    int
	VerifiedBytes, Total     int64
	Endgame                  bool
	Wants                    int // readers' wanted ranges the loop last read
	Banned                   int
	Learned                  map[string]int // new addresses by source: "config", "api", "tracker", "pex", "dht"
	LookupsStarted           int            // Finder (DHT) lookups started
	PerPeer                  []PeerStats    // sorted by address
}

// PeerStats describes one connection.
type PeerStats struct {
	Addr                     netip.AddrPort
	Client                   string // from the peer id prefix
	Downloaded, Uploaded     int64
	DownloadRate, UploadRate float64
	AmChoking, PeerChoking   bool
	AmInterested             bool
	NotInterested            int // not-interested messages we sent it: each may cost a choke round
	PeerInterested           bool
	Snubbed                  bool
	Outstanding              int           // our requests to it
	RTT                      time.Duration // smoothed round trip, request to block; 0 not measured yet
}

// Stats returns a snapshot taken on the loop.
func (t *Torrent) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	err := t.do(ctx, func() {
		t.s.refreshStats()
		st = t.s.stats
		st.PerPeer = slices.Clone(st.PerPeer)
		st.Learned = maps.Clone(st.Learned)
	})
	return st, err
}

func (s *state) refreshStats() {
	sw := s.t.sw.Stats()
	st := Stats{
		Downloaded:      s.t.down.Total(),
		Uploaded:        s.t.up.Total(),
		DownloadRate:    s.t.down.Rate(),
		UploadRate:      s.t.up.Rate(),
		Wasted:          s.wasted,
		Hedged:          s.hedged,
		WastedWithdrawn: s.withdrawnBytes,
		WastedDuplicate: s.dupBytes,
		HashFailures:    s.hashFail,
		Peers:           len(s.peers),
		KnownPeers:      len(s.known),
		PiecesDone:      s.pk.NumVerified(),
		NumPieces:       s.pk.NumPieces(),
		Total:           s.t.info.TotalLength,
		Endgame:         s.pk.Endgame(),
		Wants:           len(s.wants),
		Banned:          len(s.banned),
		Learned:         s.learned,
		LookupsStarted:  s.lookup.runs,
	}
	st.VerifiedBytes = sw.VerifiedBytes
	st.PerPeer = s.stats.PerPeer[:0]
	for p := range s.peers {
		st.PerPeer = append(st.PerPeer, PeerStats{
			Addr:           p.addr,
			Client:         clientName(p.id),
			Downloaded:     p.down.Total(),
			Uploaded:       p.up.Total(),
			DownloadRate:   p.down.Rate(),
			UploadRate:     p.up.Rate(),
			AmChoking:      p.amChoking,
			PeerChoking:    p.peerChoking,
			AmInterested:   p.amInterested,
			NotInterested:  p.uninterested,
			PeerInterested: p.peerInterested,
			Snubbed:        p.snubbed,
			Outstanding:    len(p.outstanding),
			RTT:            p.rtt.srtt,
		})
	}
	slices.SortFunc(st.PerPeer, func(a, b PeerStats) int { return a.Addr.Compare(b.Addr) })
	s.stats = st
}

// clientName decodes an Azureus-style peer id prefix ("-AR1360-" is aria2
// 1.36.0), or returns "".
func clientName(id [20]byte) string {
	if id[0] != '-' || id[7] != '-' {
		return ""
	}
	return strings.TrimSpace(string(id[1:7]))
}

// parseKey turns a storagewrapper peer key back into an address.
func parseKey(k string) (netip.AddrPort, error) { return netip.ParseAddrPort(k) }
