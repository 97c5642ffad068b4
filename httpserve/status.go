package httpserve

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"btfs/picker"
	"btfs/stream"
)

// The status page: one HTML file with its CSS and script inline (no
// external asset: it works offline and nothing is fetched from elsewhere),
// fed by Server-Sent Events at /status/events. Each subscriber gets one
// snapshot per statusInterval; a snapshot is built at most once per
// interval whoever asks (statusCache), and at most maxSubscribers streams
// are open at once: N open tabs cost one walk of the torrents a second, not
// N.

//go:embed status.html
var statusHTML []byte

const (
	// statusInterval is how often a subscriber gets a snapshot.
	statusInterval = time.Second
	// maxSubscribers bounds the open event streams; more get 503.
	maxSubscribers = 16
	// eventWriteTimeout drops a subscriber that does not take a snapshot
	// within it (a stalled tab, a client that stopped reading).
	eventWriteTimeout = 10 * time.Second
)

// Piece states in a snapshot's map, one byte per piece, drawn by the page
// in this order of precedence.
const (
	pieceMissing   = '0' // not verified, nobody asks for it
	pieceVerified  = '1' // verified
	pieceInFlight  = '2' // being downloaded (blocks out or hashing)
	pieceNow       = '3' // a reader is blocked on it now
	pieceReadahead = '4' // in a reader's readahead window (or a media file's head/tail)
	pieceClaimed   = '5' // another process sharing the cache is downloading it
)

// pieceStater is what a Torrent's Data may also tell about its pieces
// beyond the verified set (*storagewrapper.Wrapper does): the pieces in
// flight, the wants registered, the pieces another process claimed.
type pieceStater interface {
	InFlight() []int
	Wants() []picker.Want
	Refused() []int
}

// snapshot is what one event carries.
type snapshot struct {
	Time     int64                 `json:"time"` // Unix milliseconds
	Torrents []torrentStatus       `json:"torrents"`
	Reads    map[string]readCounts `json:"reads"`
}

type readCounts struct {
	Reads         uint64  `json:"reads"`
	ReadaheadHits uint64  `json:"readaheadHits"`
	WaitSeconds   float64 `json:"waitSeconds"`
}

type torrentStatus struct {
	InfoHash    string         `json:"infohash"`
	Name        string         `json:"name"`
	Pieces      int            `json:"pieces"`
	PieceLength int64          `json:"pieceLength"`
	Length      int64          `json:"length"`
	Map         string         `json:"map"`
	Counts      map[string]int `json:"counts"`
	Stats       *statsJSON     `json:"stats,omitempty"`
	Files       []fileStatus   `json:"files"`
	Readers     []readerStatus `json:"readers"`
}

type statsJSON struct {
	Downloaded   int64     `json:"downloaded"`
	Uploaded     int64     `json:"uploaded"`
	DownloadRate float64   `json:"downloadRate"`
	UploadRate   float64   `json:"uploadRate"`
	HashFailures int       `json:"hashFailures"`
	Banned       int       `json:"banned"`
	Peers        []Peer    `json:"peers"`
	Cache        *CacheUse `json:"cache,omitempty"`
}

type fileStatus struct {
	Path   string `json:"path"`
	Length int64  `json:"length"`
	Done   int64  `json:"done"` // verified bytes
	URL    string `json:"url"`  // relative to the server
}

type readerStatus struct {
	Kind        string `json:"kind"`
	Name        string `json:"name"`
	Off         int64  `json:"off"`
	Size        int64  `json:"size"`
	Pos         int64  `json:"pos"`
	WindowStart int64  `json:"windowStart"`
	WindowEnd   int64  `json:"windowEnd"`
	Random      bool   `json:"random"`
}

// statusCache holds the last snapshot, shared by every subscriber.
type statusCache struct {
	mu   sync.Mutex
	at   time.Time
	data []byte
	// subs counts the open event streams.
	subs int
}

// status serves the page.
func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// The page runs only its own inline script and connects only here.
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
	h.Set("Cache-Control", "no-store")
	_, _ = w.Write(statusHTML)
}

// events streams snapshots as Server-Sent Events until the client goes.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	s.st.mu.Lock()
	if s.st.subs >= maxSubscribers {
		s.st.mu.Unlock()
		w.Header().Set("Retry-After", "5")
		http.Error(w, "too many status pages open", http.StatusServiceUnavailable)
		return
	}
	s.st.subs++
	s.st.mu.Unlock()
	defer func() {
		s.st.mu.Lock()
		s.st.subs--
		s.st.mu.Unlock()
	}()
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	t := time.NewTicker(statusInterval)
	defer t.Stop()
	for {
		data := s.snapshotJSON(r.Context())
		_ = rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout))
		if _, err := fmt.Fprintf(w, "data: %s\n\n", data); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
		}
	}
}

// snapshotJSON returns the current snapshot, built anew at most once per
// statusInterval (half of it, so that a subscriber's tick never finds the
// previous one).
func (s *Server) snapshotJSON(ctx context.Context) []byte {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	if s.st.data != nil && time.Since(s.st.at) < statusInterval/2 {
		return s.st.data
	}
	snap := s.snapshot(ctx)
	data, err := json.Marshal(snap)
	if err != nil { // cannot happen: plain types
		data = []byte(`{"error":"` + err.Error() + `"}`)
	}
	s.st.data, s.st.at = data, time.Now()
	return data
}

// snapshot builds the state of every torrent.
func (s *Server) snapshot(ctx context.Context) snapshot {
	snap := snapshot{Time: time.Now().UnixMilli(), Reads: map[string]readCounts{}}
	for k, st := range s.readers.Stats() {
		snap.Reads[k] = readCounts{Reads: st.Reads, ReadaheadHits: st.ReadaheadHits, WaitSeconds: st.WaitSum}
	}
	readers := s.readers.Readers()
	for _, t := range s.cfg.Torrents.Torrents() {
		snap.Torrents = append(snap.Torrents, s.torrentStatus(ctx, t, readers))
	}
	return snap
}

// torrentStatus is one torrent's part of a snapshot.
func (s *Server) torrentStatus(ctx context.Context, t Torrent, readers []stream.ReaderInfo) torrentStatus {
	info := t.Info
	n := info.NumPieces()
	m := []byte(strings.Repeat(string(rune(pieceMissing)), n))
	// Lowest precedence first: each later state overwrites.
	if ps, ok := t.Data.(pieceStater); ok {
		wants := ps.Wants()
		for _, want := range wants {
			if want.Priority < picker.Now {
				setRange(m, info.PieceLength, want.Start, want.End, pieceReadahead)
			}
		}
		for _, p := range ps.Refused() {
			if p >= 0 && p < n {
				m[p] = pieceClaimed
			}
		}
		for _, p := range ps.InFlight() {
			if p >= 0 && p < n {
				m[p] = pieceInFlight
			}
		}
		for _, want := range wants {
			if want.Priority >= picker.Now {
				setRange(m, info.PieceLength, want.Start, want.End, pieceNow)
			}
		}
	}
	bf := t.Data.Bitfield()
	for p := range bf.Ones() {
		if p < n {
			m[p] = pieceVerified
		}
	}
	ts := torrentStatus{
		InfoHash: t.InfoHash.String(), Name: info.Name, Pieces: n, PieceLength: info.PieceLength,
		Length: info.TotalLength, Map: string(m), Counts: map[string]int{},
	}
	names := map[byte]string{pieceMissing: "missing", pieceVerified: "verified", pieceInFlight: "inflight",
		pieceNow: "now", pieceReadahead: "readahead", pieceClaimed: "claimed"}
	for _, c := range m {
		ts.Counts[names[c]]++
	}
	for _, f := range info.Files {
		if f.Padding {
			continue
		}
		var done int64
		if f.Length > 0 {
			first, end := info.PiecesFor(f.Offset, f.Length)
			for p := first; p < end; p++ {
				if bf.Has(p) {
					ps, pe := info.PieceOffset(p), info.PieceOffset(p)+info.PieceLen(p)
					done += min(pe, f.Offset+f.Length) - max(ps, f.Offset)
				}
			}
		}
		ts.Files = append(ts.Files, fileStatus{Path: filePath(f), Length: f.Length, Done: done, URL: s.fileRef(t, f)})
	}
	for _, r := range readers {
		if r.Torrent != t.Data {
			continue
		}
		ts.Readers = append(ts.Readers, readerStatus{
			Kind: r.Kind, Name: r.Name, Off: r.Off, Size: r.Size, Pos: r.Pos,
			WindowStart: r.WindowStart, WindowEnd: r.WindowEnd, Random: r.Random,
		})
	}
	if t.Stats != nil {
		sctx, cancel := context.WithTimeout(ctx, statsTimeout)
		st, err := t.Stats(sctx)
		cancel()
		if err == nil {
			ts.Stats = &statsJSON{
				Downloaded: st.Downloaded, Uploaded: st.Uploaded, DownloadRate: st.DownloadRate,
				UploadRate: st.UploadRate, HashFailures: st.HashFailures, Banned: st.Banned,
				Peers: st.PeerList, Cache: st.Cache,
			}
			if ts.Stats.Peers == nil {
				ts.Stats.Peers = []Peer{}
			}
		}
	}
	return ts
}

// setRange sets c in m for every piece under torrent bytes [start, end).
func setRange(m []byte, pieceLen, start, end int64, c byte) {
	if start >= end || pieceLen <= 0 {
		return
	}
	first := max(start/pieceLen, 0)
	last := min((end-1)/pieceLen, int64(len(m))-1)
	for p := first; p <= last; p++ {
		m[p] = c
	}
}
