package httpserve_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"btfs/httpserve"
	"btfs/metainfo"
)

// FuzzPath asks for any path below a torrent and any Range: the server
// never panics, and a 2xx body is always a slice of one of the torrent's
// files (never anything else).
func FuzzPath(f *testing.F) {
	f.Add("a/movie.mp4", "bytes=0-10")
	f.Add("..%2f..%2fetc%2fpasswd", "")
	f.Add("c%20d%25.mkv", "bytes=-5")
	tr := newTorrent(f, 16<<10, testFiles, testOrder)
	tr.fill(f)
	s := httpserve.New(httpserve.Config{Torrents: httpserve.Static{tr.served()}})
	f.Fuzz(func(t *testing.T, p, rg string) {
		u, err := url.Parse("/t/" + tr.ih.String() + "/" + p)
		if err != nil {
			return
		}
		req := &http.Request{Method: http.MethodGet, URL: u, Host: "127.0.0.1", Header: http.Header{}, RequestURI: u.RequestURI()}
		if rg != "" {
			req.Header.Set("Range", rg)
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code/100 != 2 {
			return
		}
		for _, name := range testOrder {
			if bytes.Contains(tr.file(name), rec.Body.Bytes()) {
				return
			}
		}
		t.Fatalf("%q (Range %q): status %d with %d bytes that are no file's", p, rg, rec.Code, rec.Body.Len())
	})
}

// FuzzControl sends any Origin, Sec-Fetch-Site, Authorization, path and
// body to the control endpoints: the server never panics, and a torrent
// is added or removed only by a request with the right bearer token whose
// Origin, if any, is the server itself.
func FuzzControl(f *testing.F) {
	f.Add("POST", "/api/torrents", "http://127.0.0.1:8080", "", "Bearer tok", "magnet:?xt=urn:btih:"+strings.Repeat("ab", 20))
	f.Add("DELETE", "/api/torrents/"+strings.Repeat("ab", 20), "http://evil.example", "cross-site", "Bearer tok", "")
	f.Add("POST", "/api/torrents", "null", "", "Bearer tok", "https://x/y.torrent")
	f.Add("POST", "/api/torrents", "http://127.0.0.1:8080/", "same-origin", "bearer tok", "magnet:?xt=urn:btih:")
	f.Add("POST", "/api/torrents", "http://[::1]:8080", "none", "Bearer tok ", "")
	tr := newTorrent(f, 16<<10, testFiles, testOrder)
	f.Fuzz(func(t *testing.T, method, target, origin, site, auth, body string) {
		lib := &library{ts: map[metainfo.Hash]httpserve.TorrentInfo{}}
		for i := range 3 { // something to remove
			lib.ts[metainfo.Hash{byte(i)}] = httpserve.TorrentInfo{}
		}
		s := httpserve.New(httpserve.Config{Torrents: httpserve.Static{tr.served()}, Token: "tok", Control: lib})
		u, err := url.Parse(target)
		if err != nil || !strings.HasPrefix(u.Path, "/api/") {
			return
		}
		req := &http.Request{Method: method, URL: u, Host: "127.0.0.1:8080", Header: http.Header{}, RequestURI: u.RequestURI(),
			Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body))}
		req.Header.Set("Origin", origin)
		req.Header.Set("Sec-Fetch-Site", site)
		req.Header.Set("Authorization", auth)
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		changed := len(lib.ts) != 3
		if !changed {
			return
		}
		sameOrigin := origin == "" || strings.EqualFold(origin, "http://127.0.0.1:8080")
		okSite := site == "" || site == "same-origin" || site == "none"
		if auth != "Bearer tok" || !sameOrigin || !okSite {
			t.Fatalf("%s %s with Origin %q, Sec-Fetch-Site %q, Authorization %q changed the torrents (status %d)", method, target, origin, site, auth, rec.Code)
		}
	})
}
