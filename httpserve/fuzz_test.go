package httpserve_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"btfs/httpserve"
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
