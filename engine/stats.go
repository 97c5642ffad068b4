package engine

import (
	"context"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"btfs/engine/mse"
	"btfs/engine/transport"
)

// Stats is a snapshot for the status line and for tests.
type Stats struct {
	Downloaded, Uploaded     int64   // payload bytes this session
	DownloadRate, UploadRate float64 // bytes/s, smoothed
	Wasted                   int64   // bytes received and thrown away (duplicates, bad pieces)
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
	// Transport counts connections by encryption, and those lost to the
	// encryption policy (shared by every Torrent of the Transport).
	Transport transport.Stats
	// Metadata is set while a magnet link's info dictionary is fetched
	// (PiecesDone, NumPieces and the byte counts are 0 until it is in);
	// MetadataHave of MetadataPieces of its 16 KiB pieces are in.
	Metadata                     bool
	MetadataHave, MetadataPieces int
	// Connections counts the connections admitted since the start (in
	// both directions, across the metadata phase, webseeds included):
	// redials show up here.
	Connections int
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
	Outstanding              int // our requests to it
	// Encryption is the connection's MSE method ("rc4", "plaintext":
	// only the handshake obfuscated), "" for a plain connection.
	Encryption string
	// Network is the transport ("tcp").
	Network string
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
	if err != nil {
		return Stats{}, err
	}
	return st, nil
}

func (s *state) refreshStats() {
	st := Stats{
		Downloaded:     s.t.down.Total(),
		Uploaded:       s.t.up.Total(),
		DownloadRate:   s.t.down.Rate(),
		UploadRate:     s.t.up.Rate(),
		Wasted:         s.wasted,
		HashFailures:   s.hashFail,
		Peers:          len(s.peers),
		KnownPeers:     len(s.known),
		Wants:          len(s.wants),
		Banned:         len(s.banned),
		Learned:        s.learned,
		LookupsStarted: s.lookup.runs,
		Transport:      s.t.tr.Stats(),
	}
	if s.pk != nil {
		st.PiecesDone, st.NumPieces, st.Endgame = s.pk.NumVerified(), s.pk.NumPieces(), s.pk.Endgame()
		st.Total, st.VerifiedBytes = s.t.info.TotalLength, s.t.sw.Stats().VerifiedBytes
	}
	if s.fetch != nil {
		st.Metadata = true
		st.MetadataHave, st.MetadataPieces = s.fetch.fetcher.Progress()
	}
	st.Connections = s.connections
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
			Encryption:     encName(p.enc),
			Network:        p.network,
		})
	}
	slices.SortFunc(st.PerPeer, func(a, b PeerStats) int { return a.Addr.Compare(b.Addr) })
	s.stats = st
}

// encName names an MSE method for stats and logs; "" for plain.
func encName(m mse.Method) string {
	if m == 0 {
		return ""
	}
	return m.String()
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
