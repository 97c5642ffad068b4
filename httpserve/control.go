package httpserve

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"

	"btfs/metainfo"
)

// The control endpoints mirror `btfs add`, `btfs rm` and `btfs ls`:
//
//	GET    /api/torrents          the torrents, as JSON
//	POST   /api/torrents          add one: a .torrent's bytes (Content-Type
//	                              application/x-bittorrent), or a magnet
//	                              link or http(s) URL as the text body
//	DELETE /api/torrents/INFOHASH stop serving one
//
// A mutating request (POST, DELETE) always needs the token, and only in
// the Authorization header: a page on another site cannot set that header
// without a CORS preflight, which is never answered, so it cannot forge
// one even with a URL it learned. It is also refused when its Origin (or
// Sec-Fetch-Site) says another site sent it. With no token configured the
// mutating endpoints are off (403): a loopback server without a token is
// still reachable by any page the user opens.

// Controller adds, removes and lists torrents. Whatever owns the torrents
// implements it (a client of many torrents); the server only translates
// HTTP. Errors wrapping ErrNotSupported become 501, ErrUnknownTorrent 404,
// ErrBadSource 400, ErrExists 409.
type Controller interface {
	// Add starts a torrent from src; it returns once the torrent is known
	// (a magnet's info-hash at least).
	Add(ctx context.Context, src Source) (TorrentInfo, error)
	// Remove stops the torrent of info-hash ih.
	Remove(ctx context.Context, ih metainfo.Hash) error
	// List returns the torrents.
	List(ctx context.Context) ([]TorrentInfo, error)
}

// Source is what Add starts a torrent from: exactly one field is set.
type Source struct {
	// Torrent is a .torrent file's bytes.
	Torrent []byte
	// URI is a magnet link or an http(s) URL of a .torrent.
	URI string
}

// TorrentInfo is one torrent as the control endpoints list it.
type TorrentInfo struct {
	InfoHash string `json:"infohash"`
	Name     string `json:"name"`
	// Length is the total size in bytes; 0 while a magnet's metadata is
	// being fetched.
	Length   int64 `json:"length"`
	Files    int   `json:"files"`
	Pieces   int   `json:"pieces"`
	Verified int   `json:"verified"` // pieces verified
	// VerifiedBytes, the rates (bytes/s), Peers and State are what `btfs
	// ls` shows; a Controller that does not know them leaves them zero.
	VerifiedBytes int64   `json:"verifiedBytes"`
	DownloadRate  float64 `json:"downloadRate"`
	UploadRate    float64 `json:"uploadRate"`
	Peers         int     `json:"peers"`
	// State is the Controller's word for where the torrent is
	// ("metadata", "checking", "running", …); "" when it has none.
	State string `json:"state,omitempty"`
}

// Errors a Controller wraps to choose the HTTP status.
var (
	ErrNotSupported   = errors.New("not supported")
	ErrUnknownTorrent = errors.New("no such torrent")
	ErrBadSource      = errors.New("bad torrent source")
	ErrExists         = errors.New("torrent already added")
)

// Limits of an added torrent's request body.
const (
	maxTorrentBody = 16 << 20 // a .torrent; metainfo bounds the info dictionary likewise
	maxURIBody     = 64 << 10 // a magnet link or URL
)

// ListFrom is a Controller that lists the torrents of a Lister and cannot
// add or remove any (one mount of one torrent): Add and Remove answer
// ErrNotSupported with Why.
type ListFrom struct {
	Lister Lister
	// Why says why adding and removing are not possible.
	Why string
}

// Add is not supported.
func (l ListFrom) Add(context.Context, Source) (TorrentInfo, error) {
	return TorrentInfo{}, fmt.Errorf("adding a torrent: %w: %s", ErrNotSupported, l.Why)
}

// Remove is not supported.
func (l ListFrom) Remove(context.Context, metainfo.Hash) error {
	return fmt.Errorf("removing a torrent: %w: %s", ErrNotSupported, l.Why)
}

// List lists the Lister's torrents.
func (l ListFrom) List(context.Context) ([]TorrentInfo, error) {
	out := []TorrentInfo{}
	for _, t := range l.Lister.Torrents() {
		out = append(out, InfoOf(t))
	}
	return out, nil
}

// InfoOf describes a served torrent for List.
func InfoOf(t Torrent) TorrentInfo {
	ti := TorrentInfo{InfoHash: t.InfoHash.String()}
	if t.Info != nil {
		ti.Name, ti.Length, ti.Pieces = t.Info.Name, t.Info.TotalLength, t.Info.NumPieces()
		for _, f := range t.Info.Files {
			if !f.Padding {
				ti.Files++
			}
		}
	}
	if t.Data != nil {
		ti.Verified = t.Data.Bitfield().Count()
	}
	return ti
}

// controller returns the configured Controller, or one that lists what is
// served and adds nothing.
func (s *Server) controller() Controller {
	if s.cfg.Control != nil {
		return s.cfg.Control
	}
	return ListFrom{Lister: s.cfg.Torrents, Why: "this server has no control of its torrents"}
}

// mutationAllowed checks a POST or DELETE: the token in the Authorization
// header and no sign of another site. It writes the refusal itself.
func (s *Server) mutationAllowed(w http.ResponseWriter, r *http.Request) bool {
	if s.cfg.Token == "" {
		http.Error(w, "control endpoints need a token (btfs mount -http-token)", http.StatusForbidden)
		return false
	}
	if !s.bearerOK(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="btfs"`)
		http.Error(w, "the token must come in the Authorization header", http.StatusUnauthorized)
		return false
	}
	if !sameOrigin(r) {
		http.Error(w, "cross-site request refused", http.StatusForbidden)
		return false
	}
	return true
}

// sameOrigin reports whether nothing in r says another site sent it: an
// Origin header must name the host the request reached (scheme http), and
// a browser's Sec-Fetch-Site must be same-origin or none (typed by the
// user). A request with neither (curl, a script) passes: the token is what
// guards it.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	// A browser sends scheme://host[:port] and nothing else.
	u, err := url.Parse(o)
	if err != nil || u.Scheme != "http" || u.Host == "" || u.Opaque != "" || u.User != nil || u.Path != "" ||
		u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.HasSuffix(o, "#") {
		return false
	}
	return sameHost(u.Host, r.Host)
}

// sameHost compares two host[:port] values, the default port included.
func sameHost(a, b string) bool {
	norm := func(h string) string {
		h = strings.ToLower(strings.TrimSuffix(h, "."))
		if _, _, err := net.SplitHostPort(h); err != nil {
			h = net.JoinHostPort(strings.Trim(h, "[]"), "80")
		}
		return h
	}
	return norm(a) == norm(b)
}

// writeJSON writes v with status code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// controlError answers a Controller's error.
func controlError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrNotSupported):
		code = http.StatusNotImplemented
	case errors.Is(err, ErrUnknownTorrent):
		code = http.StatusNotFound
	case errors.Is(err, ErrBadSource):
		code = http.StatusBadRequest
	case errors.Is(err, ErrExists):
		code = http.StatusConflict
	}
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

func (s *Server) apiList(w http.ResponseWriter, r *http.Request) {
	ts, err := s.controller().List(r.Context())
	if err != nil {
		controlError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ts)
}

func (s *Server) apiAdd(w http.ResponseWriter, r *http.Request) {
	if !s.mutationAllowed(w, r) {
		return
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var src Source
	if ct == "application/x-bittorrent" {
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxTorrentBody))
		if err != nil {
			http.Error(w, "torrent body: "+err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		src.Torrent = b
	} else {
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxURIBody))
		if err != nil {
			http.Error(w, "body: "+err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		src.URI = strings.TrimSpace(string(b))
		u, err := url.Parse(src.URI)
		if err != nil || (u.Scheme != "magnet" && u.Scheme != "http" && u.Scheme != "https") {
			http.Error(w, "the body must be a .torrent (Content-Type: application/x-bittorrent), a magnet link or an http(s) URL", http.StatusBadRequest)
			return
		}
	}
	ti, err := s.controller().Add(r.Context(), src)
	if err != nil {
		controlError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, ti)
}

func (s *Server) apiRemove(w http.ResponseWriter, r *http.Request) {
	if !s.mutationAllowed(w, r) {
		return
	}
	ih, ok := parseHash(r.PathValue("ih"))
	if !ok {
		http.Error(w, "bad info-hash: want 40 hex digits", http.StatusBadRequest)
		return
	}
	if err := s.controller().Remove(r.Context(), ih); err != nil {
		controlError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// parseHash reads a v1 info-hash in hex.
func parseHash(s string) (metainfo.Hash, bool) {
	var h metainfo.Hash
	if len(s) != 2*len(h) {
		return h, false
	}
	_, err := hex.Decode(h[:], []byte(s))
	return h, err == nil
}
