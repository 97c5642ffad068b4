package httpserve

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"btfs/metainfo"
	"btfs/stream"
)

// Torrent is one torrent the server serves.
type Torrent struct {
	// InfoHash names the torrent in URLs (/t/INFOHASH/...).
	InfoHash metainfo.Hash
	// Info is the file table: the only way a URL reaches a file.
	Info *metainfo.Info
	// Data is what Readers read and want through
	// (*storagewrapper.Wrapper).
	Data stream.Torrent
	// Stats, when set, is asked for the torrent's counters at each scrape
	// of /metrics.
	Stats func(ctx context.Context) (Stats, error)
	// Gone, when set, is closed once the torrent is removed: its streams
	// end at once with an error (the client sees a body cut short), even
	// those whose bytes are all there or whose client stopped reading,
	// instead of waiting for the storage to close under them.
	Gone <-chan struct{}
}

// Stats are the counters of one torrent exported on /metrics: what
// engine.Stats has, adapted by whoever runs the engine.
type Stats struct {
	Downloaded, Uploaded int64 // payload bytes this session
	Peers                int   // connected now
	PiecesVerified       int   // pieces verified now (resumed ones included)
	Pieces               int   // pieces in the torrent
	HashFailures         int   // pieces that failed their hash check
	Banned               int   // peers banned
	// Wants counts the byte ranges readers want now (blocked reads,
	// readahead windows, media heads and tails) as the engine last read
	// them: 0 once every reader is gone.
	Wants int
	// DownloadRate and UploadRate are payload bytes/s, smoothed.
	DownloadRate, UploadRate float64
	// PeerList describes each connection, for the status page.
	PeerList []Peer
	// Cache is the torrent's piece cache, when it has one.
	Cache *CacheUse
}

// Peer is one connection of a torrent, as the status page shows it.
type Peer struct {
	Addr         string  `json:"addr"`
	Client       string  `json:"client"` // from the peer id ("" unknown)
	Downloaded   int64   `json:"downloaded"`
	Uploaded     int64   `json:"uploaded"`
	DownloadRate float64 `json:"downloadRate"`
	UploadRate   float64 `json:"uploadRate"`
	// Encryption is the MSE/PE method: "rc4", "plaintext" (only the
	// handshake obfuscated) or "" (a plain connection).
	Encryption string `json:"encryption"`
	UTP        bool   `json:"utp"`
}

// CacheUse is what a torrent's piece cache holds.
type CacheUse struct {
	Bytes     int64 `json:"bytes"`     // published pieces, every process's
	Cap       int64 `json:"cap"`       // 0: no cap
	Evictions int64 `json:"evictions"` // pieces this process evicted
}

// Lister lists the torrents served now; it is asked at each request, so a
// torrent added or removed later is served or gone at once.
type Lister interface {
	Torrents() []Torrent
}

// Static is a Lister of a fixed list.
type Static []Torrent

// Torrents returns the list.
func (s Static) Torrents() []Torrent { return s }

// Config sets up a Server.
type Config struct {
	// Torrents lists what is served.
	Torrents Lister
	// Token, when not empty, must be in every request (Authorization:
	// Bearer TOKEN, or ?token=TOKEN for players that take only a URL).
	Token string
	// Hosts are host names accepted in the Host header beside IP literals
	// and localhost (a name this machine is reached by on the LAN).
	Hosts []string
	// Policy and PrefetchAhead are the Readers' (stream.Config); zero:
	// the defaults and no prefetch.
	Policy        stream.Policy
	PrefetchAhead int64
	// Control adds, removes and lists torrents for the control endpoints
	// (control.go); nil lists what Torrents serves and adds nothing.
	Control Controller
	// StallTimeout drops a stream whose client took none of its bytes for
	// that long (a write blocked on a full socket): its Reader and wants go
	// with it. 0 means DefaultStallTimeout.
	StallTimeout time.Duration
	// MaxStreams bounds the file responses served at once; more are
	// answered 503 with Retry-After. 0 means DefaultMaxStreams.
	MaxStreams int
	// Readers lists the open stream.Readers (the mount's too, when it
	// shares this Registry): the status page shows them and /metrics
	// exports their read waits. nil: the server's own.
	Readers *stream.Registry
	// Logger receives request errors at debug level; nil discards them.
	Logger *slog.Logger
}

// Config defaults.
const (
	// DefaultStallTimeout is StallTimeout's default: a paused player keeps
	// its connection open without reading for a while, but not forever.
	DefaultStallTimeout = 2 * time.Minute
	// DefaultMaxStreams is MaxStreams's default: far more than players,
	// few enough that their buffers (a Reader, a 32 KiB copy buffer, the
	// connection's) stay within some tens of MiB.
	DefaultMaxStreams = 256
)

// Server is the HTTP handler.
type Server struct {
	cfg     Config
	log     *slog.Logger
	mux     *http.ServeMux
	reg     *prometheus.Registry
	readers *stream.Registry
	// streams holds a token per file response being served.
	streams chan struct{}
	// st is the status page's shared snapshot and subscriber count.
	st statusCache
}

// New returns a Server; its metrics live in its own registry (no global
// state: two servers in one process do not collide).
func New(cfg Config) *Server {
	s := &Server{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux(), reg: prometheus.NewRegistry()}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.cfg.StallTimeout <= 0 {
		s.cfg.StallTimeout = DefaultStallTimeout
	}
	if s.cfg.MaxStreams <= 0 {
		s.cfg.MaxStreams = DefaultMaxStreams
	}
	s.streams = make(chan struct{}, s.cfg.MaxStreams)
	s.readers = cfg.Readers
	if s.readers == nil {
		s.readers = stream.NewRegistry()
	}
	s.reg.MustRegister(collector{s})
	s.mux.HandleFunc("GET /{$}", s.index)
	s.mux.HandleFunc("GET /status", s.status)
	s.mux.HandleFunc("GET /status/events", s.events)
	s.mux.HandleFunc("GET /api/torrents", s.apiList)
	s.mux.HandleFunc("POST /api/torrents", s.apiAdd)
	s.mux.HandleFunc("DELETE /api/torrents/{ih}", s.apiRemove)
	s.mux.HandleFunc("GET /t/{ih}/{path...}", s.file)
	s.mux.HandleFunc("GET /playlist/{name}", s.playlist)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	return s
}

// ServeHTTP checks the Host header and the token, then serves.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.hostAllowed(r.Host) {
		http.Error(w, "host not allowed", http.StatusMisdirectedRequest)
		return
	}
	if s.cfg.Token != "" && !s.tokenOK(r) {
		http.Error(w, "token required", http.StatusUnauthorized)
		return
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	s.mux.ServeHTTP(w, r)
}

// hostAllowed reports whether host (the Host header) is an IP literal,
// localhost or a configured name. A DNS rebinding attack needs a name the
// attacker's DNS answers with our address; an IP literal cannot be one.
func (s *Server) hostAllowed(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "" {
		return false
	}
	if _, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return true
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	for _, h := range s.cfg.Hosts {
		if strings.EqualFold(h, host) {
			return true
		}
	}
	return false
}

// tokenOK compares the request's token with the configured one in
// constant time.
func (s *Server) tokenOK(r *http.Request) bool {
	got := r.URL.Query().Get("token")
	if a, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		got = a
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.Token)) == 1
}

// bearerOK reports whether the Authorization header carries the token
// (never the URL: see control.go).
func (s *Server) bearerOK(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.Token)) == 1
}

// lookup finds the torrent named by its hex info-hash.
func (s *Server) lookup(ih string) (Torrent, bool) {
	for _, t := range s.cfg.Torrents.Torrents() {
		if t.InfoHash.String() == strings.ToLower(ih) {
			return t, true
		}
	}
	return Torrent{}, false
}

// filePath is the path of f in URLs: its components below the torrent's
// root, joined by '/'.
func filePath(f metainfo.File) string { return strings.Join(f.Path, "/") }

// file serves one file of a torrent with Range support.
func (s *Server) file(w http.ResponseWriter, r *http.Request) {
	p := r.PathValue("path")
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" || seg == "." || seg == ".." || strings.ContainsAny(seg, "\\\x00") {
			http.Error(w, "bad path", http.StatusBadRequest)
			return
		}
	}
	t, ok := s.lookup(r.PathValue("ih"))
	if !ok {
		http.NotFound(w, r)
		return
	}
	idx := -1
	for i, f := range t.Info.Files {
		if !f.Padding && filePath(f) == p {
			idx = i
			break
		}
	}
	if idx < 0 {
		http.NotFound(w, r)
		return
	}
	select {
	case s.streams <- struct{}{}:
		defer func() { <-s.streams }()
	default:
		w.Header().Set("Retry-After", "5")
		http.Error(w, "too many streams", http.StatusServiceUnavailable)
		return
	}
	f := t.Info.Files[idx]
	// Several ranges would be as many seeks, each a want; a player asks
	// for one. RFC 9110 lets a server ignore Range: the whole file.
	if strings.Contains(r.Header.Get("Range"), ",") {
		r.Header.Del("Range")
	}
	cfg := stream.Config{
		Policy:        s.cfg.Policy,
		PieceLength:   t.Info.PieceLength,
		PrefetchAhead: s.cfg.PrefetchAhead,
		Logger:        s.log.With("http", p),
		Registry:      s.readers,
		Kind:          "http",
		Name:          p,
	}
	name := f.Path[len(f.Path)-1]
	if stream.IsMedia(name) && r.Method != http.MethodHead {
		cfg.HeadTail = stream.DefaultMediaHeadTail
	}
	sr := stream.NewReader(t.Data, f.Offset, f.Length, cfg)
	defer sr.Close()
	h := w.Header()
	h.Set("Content-Type", contentType(name))
	h.Set("ETag", etag(t.InfoHash, p))
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	rs := &readSeeker{ctx: ctx, r: sr, off: f.Offset, pieceLen: t.Info.PieceLength,
		rc: http.NewResponseController(w), stall: s.cfg.StallTimeout}
	if t.Gone != nil {
		defer rs.cutWhen(t.Gone, cancel)()
	}
	http.ServeContent(w, r, name, time.Time{}, rs)
	if rs.err != nil && r.Context().Err() == nil {
		s.log.Debug("http: stream ended", "path", p, "err", rs.err)
	}
}

// errTorrentGone ends the streams of a torrent removed while they run.
var errTorrentGone = errors.New("httpserve: the torrent was removed")

// cutWhen ends the response when gone closes: the reads fail with
// errTorrentGone (cancel) and a write blocked on a client that stopped
// reading fails at once (a write deadline in the past). The returned
// func stops watching.
func (s *readSeeker) cutWhen(gone <-chan struct{}, cancel context.CancelCauseFunc) (stop func()) {
	done := make(chan struct{})
	go func() {
		select {
		case <-gone:
			cancel(errTorrentGone)
			s.mu.Lock()
			_ = s.rc.SetWriteDeadline(time.Now())
			s.mu.Unlock()
		case <-done:
		}
	}()
	return func() { close(done) }
}

// etag is a strong validator of a file: its torrent's info-hash and its
// path fix its bytes.
func etag(ih metainfo.Hash, p string) string {
	sum := sha1.Sum([]byte(ih.String() + "/" + p))
	return `"` + hex.EncodeToString(sum[:12]) + `"`
}

// mediaTypes are the types of media files that Go's built-in table lacks
// when the system has no mime.types.
var mediaTypes = map[string]string{
	".mkv": "video/x-matroska", ".mka": "audio/x-matroska", ".mp4": "video/mp4",
	".m4v": "video/x-m4v", ".m4a": "audio/mp4", ".webm": "video/webm",
	".avi": "video/x-msvideo", ".mov": "video/quicktime", ".ts": "video/mp2t",
	".m2ts": "video/mp2t", ".mp3": "audio/mpeg", ".flac": "audio/flac",
	".ogg": "audio/ogg", ".oga": "audio/ogg", ".ogv": "video/ogg", ".opus": "audio/ogg",
	".wav": "audio/wav", ".srt": "application/x-subrip", ".vtt": "text/vtt",
	".mpg": "video/mpeg", ".mpeg": "video/mpeg", ".flv": "video/x-flv",
	".wmv": "video/x-ms-wmv", ".aac": "audio/aac",
}

// contentType is the type of a file from its extension; set before
// ServeContent so that it never reads the head to sniff it.
func contentType(name string) string {
	ext := strings.ToLower(path.Ext(name))
	if t, ok := mediaTypes[ext]; ok {
		return t
	}
	if t := mime.TypeByExtension(ext); t != "" {
		return t
	}
	return "application/octet-stream"
}

// readSeeker is an io.ReadSeeker over a stream.Reader for
// http.ServeContent: reads wait under the request's context (a client gone
// ends the wait) and never past what was asked (ServeContent reads through
// an io.LimitedReader of the range's length).
type readSeeker struct {
	ctx context.Context
	r   *stream.Reader
	pos int64
	// off is the file's torrent offset and pieceLen the piece length.
	off, pieceLen int64
	// rc sets the write deadline: each chunk read is to be written within
	// stall, or the connection is closed (a client that stopped reading).
	// net/http clears it after each response, so a kept-alive
	// connection's next request starts without it.
	rc    *http.ResponseController
	stall time.Duration
	// mu orders the write deadline's extensions after a read with
	// cutWhen's deadline in the past: once ctx is done, none extends it.
	mu  sync.Mutex
	err error
}

func (s *readSeeker) Read(p []byte) (int, error) {
	if s.ctx.Err() != nil {
		// Verified bytes are read without a wait, hence without a look
		// at ctx: a stream cut (its torrent removed) stops here.
		s.err = context.Cause(s.ctx)
		return 0, s.err
	}
	size := s.r.Size()
	if s.pos >= size {
		return 0, io.EOF
	}
	if rem := size - s.pos; int64(len(p)) > rem {
		p = p[:rem]
	}
	// ReadAt waits for all of p: cut it where the verified bytes end, or
	// at the end of the missing piece, so that each piece goes out as soon
	// as it is verified instead of waiting for the next one.
	end := s.pos + int64(len(p))
	if m := s.r.FirstMissing(s.pos, end); m > s.pos {
		p = p[:m-s.pos]
	} else if pe := ((s.off+s.pos)/s.pieceLen+1)*s.pieceLen - s.off; pe < end {
		p = p[:pe-s.pos]
	}
	n, err := s.r.ReadAt(s.ctx, p, s.pos)
	if n > 0 && s.rc != nil {
		s.mu.Lock()
		if s.ctx.Err() == nil {
			_ = s.rc.SetWriteDeadline(time.Now().Add(s.stall))
		}
		s.mu.Unlock()
	}
	s.pos += int64(n)
	if errors.Is(err, io.EOF) && n > 0 {
		err = nil
	}
	if err != nil && !errors.Is(err, io.EOF) {
		s.err = err
	}
	return n, err
}

func (s *readSeeker) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += s.pos
	case io.SeekEnd:
		off += s.r.Size()
	default:
		return 0, errors.New("httpserve: bad whence")
	}
	if off < 0 {
		return 0, errors.New("httpserve: negative position")
	}
	s.pos = off
	return off, nil
}

// fileURL is the absolute URL of file f of t as seen by a client that
// reached us at host, with the token when one is set.
func (s *Server) fileURL(host string, t Torrent, f metainfo.File) string {
	return "http://" + host + s.fileRef(t, f)
}

// fileRef is fileURL without scheme and host: for the status page, whose
// links are relative to wherever it was loaded from.
func (s *Server) fileRef(t Torrent, f metainfo.File) string {
	segs := make([]string, len(f.Path))
	for i, c := range f.Path {
		segs[i] = url.PathEscape(c)
	}
	u := "/t/" + t.InfoHash.String() + "/" + strings.Join(segs, "/")
	if s.cfg.Token != "" {
		u += "?token=" + url.QueryEscape(s.cfg.Token)
	}
	return u
}

// playlist serves /playlist/INFOHASH.m3u: the torrent's media files in
// torrent order, so that a player plays a whole season.
func (s *Server) playlist(w http.ResponseWriter, r *http.Request) {
	ih, ok := strings.CutSuffix(r.PathValue("name"), ".m3u")
	if !ok {
		http.NotFound(w, r)
		return
	}
	t, ok := s.lookup(ih)
	if !ok {
		http.NotFound(w, r)
		return
	}
	var b strings.Builder
	b.WriteString("#EXTM3U\n")
	for _, f := range t.Info.Files {
		if f.Padding || !stream.IsMedia(f.Path[len(f.Path)-1]) {
			continue
		}
		// A name is one line: a newline in it would start a new entry.
		title := strings.NewReplacer("\n", " ", "\r", " ").Replace(filePath(f))
		fmt.Fprintf(&b, "#EXTINF:-1,%s\n%s\n", title, s.fileURL(r.Host, t, f))
	}
	w.Header().Set("Content-Type", "audio/x-mpegurl; charset=utf-8")
	_, _ = io.WriteString(w, b.String())
}

// index lists every torrent's files with their links: a page built with
// html.EscapeString, not html/template, whose reflection would keep every
// exported method of the binary alive in the linker.
func (s *Server) index(w http.ResponseWriter, r *http.Request) {
	var b strings.Builder
	b.WriteString("<!doctype html>\n<meta charset=\"utf-8\"><title>btfs</title>\n")
	st := "/status"
	if s.cfg.Token != "" {
		st += "?token=" + url.QueryEscape(s.cfg.Token)
	}
	fmt.Fprintf(&b, "<p><a href=\"%s\">status: piece maps, readers, peers</a></p>\n", html.EscapeString(st))
	ts := s.cfg.Torrents.Torrents()
	if len(ts) == 0 {
		b.WriteString("<p>no torrent</p>\n")
	}
	for _, t := range ts {
		pl := "/playlist/" + t.InfoHash.String() + ".m3u"
		if s.cfg.Token != "" {
			pl += "?token=" + url.QueryEscape(s.cfg.Token)
		}
		fmt.Fprintf(&b, "<h2>%s</h2>\n<p><a href=\"%s\">playlist (m3u)</a></p>\n<ul>\n",
			html.EscapeString(t.Info.Name), html.EscapeString(pl))
		for _, f := range t.Info.Files {
			if !f.Padding {
				fmt.Fprintf(&b, "<li><a href=\"%s\">%s</a> (%d bytes)</li>\n",
					html.EscapeString(s.fileURL(r.Host, t, f)), html.EscapeString(filePath(f)), f.Length)
			}
		}
		b.WriteString("</ul>\n")
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = io.WriteString(w, b.String())
}

// NewToken returns a random token of 128 bits in hex.
func NewToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// IsLoopback reports whether a listen address (host:port) binds only
// loopback: a host that is a loopback IP or "localhost". An empty host
// binds every interface.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
