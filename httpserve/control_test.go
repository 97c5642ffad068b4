package httpserve_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"btfs/httpserve"
	"btfs/metainfo"
)

// library is a Controller over a set of torrents kept in memory: what the
// HTTP layer needs from the client of many torrents to come, with real
// parsing of what is added (metainfo.Parse, metainfo.ParseMagnet).
type library struct {
	mu sync.Mutex
	ts map[metainfo.Hash]httpserve.TorrentInfo
	// unique refuses a torrent added twice (ErrExists), as a client does.
	unique bool
}

func (l *library) Add(_ context.Context, src httpserve.Source) (httpserve.TorrentInfo, error) {
	var ti httpserve.TorrentInfo
	var ih metainfo.Hash
	switch {
	case src.Torrent != nil:
		mi, err := metainfo.Parse(src.Torrent)
		if err != nil {
			return ti, fmt.Errorf("%w: %w", httpserve.ErrBadSource, err)
		}
		ih = mi.InfoHash
		ti = httpserve.TorrentInfo{InfoHash: ih.String(), Name: mi.Info.Name, Length: mi.Info.TotalLength, Files: len(mi.Info.Files), Pieces: mi.Info.NumPieces()}
	case strings.HasPrefix(src.URI, "magnet:"):
		m, err := metainfo.ParseMagnet(src.URI)
		if err != nil {
			return ti, fmt.Errorf("%w: %w", httpserve.ErrBadSource, err)
		}
		ih = m.InfoHash
		ti = httpserve.TorrentInfo{InfoHash: ih.String(), Name: m.DisplayName}
	default:
		return ti, fmt.Errorf("fetching %s: %w", src.URI, httpserve.ErrNotSupported)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.ts[ih]; ok && l.unique {
		return httpserve.TorrentInfo{}, fmt.Errorf("%s: %w", ih, httpserve.ErrExists)
	}
	l.ts[ih] = ti
	return ti, nil
}

func (l *library) Remove(_ context.Context, ih metainfo.Hash) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.ts[ih]; !ok {
		return httpserve.ErrUnknownTorrent
	}
	delete(l.ts, ih)
	return nil
}

func (l *library) List(context.Context) ([]httpserve.TorrentInfo, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := []httpserve.TorrentInfo{}
	for _, ti := range l.ts {
		out = append(out, ti)
	}
	return out, nil
}

// TestControl adds a .torrent and a magnet link, lists them and removes
// one through the control endpoints, with the token; with the default
// Controller (one mount) adding says why it cannot (501).
func TestControl(t *testing.T) {
	tr := newTorrent(t, 16<<10, testFiles, testOrder)
	lib := &library{ts: map[metainfo.Hash]httpserve.TorrentInfo{}, unique: true}
	s := httpserve.New(httpserve.Config{Torrents: httpserve.Static{tr.served()}, Token: "tok", Control: lib})
	do := func(method, target, ct, body string) *httptest.ResponseRecorder {
		t.Helper()
		req := httptest.NewRequest(method, target, strings.NewReader(body))
		req.Host = "127.0.0.1:8080"
		req.Header.Set("Authorization", "Bearer tok")
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		return rec
	}
	torrent := memTorrentFile(t)
	mi, err := metainfo.Parse(torrent)
	if err != nil {
		t.Fatal(err)
	}
	if rec := do(http.MethodPost, "/api/torrents", "application/x-bittorrent", string(torrent)); rec.Code != http.StatusCreated || !strings.Contains(rec.Body.String(), mi.InfoHash.String()) {
		t.Fatalf("add .torrent: %d %s", rec.Code, rec.Body)
	}
	magnet := "magnet:?xt=urn:btih:" + strings.Repeat("ab", 20) + "&dn=x"
	if rec := do(http.MethodPost, "/api/torrents", "text/plain", magnet+"\n"); rec.Code != http.StatusCreated {
		t.Fatalf("add magnet: %d %s", rec.Code, rec.Body)
	}
	if rec := do(http.MethodPost, "/api/torrents", "text/plain", magnet); rec.Code != http.StatusConflict {
		t.Errorf("add the same magnet again: %d %s, want 409", rec.Code, rec.Body)
	}
	for _, tc := range []struct{ ct, body string }{
		{"text/plain", "file:///etc/passwd"},
		{"text/plain", "/etc/passwd"},
		{"application/x-bittorrent", "d4:infoi1ee"},
	} {
		if rec := do(http.MethodPost, "/api/torrents", tc.ct, tc.body); rec.Code != http.StatusBadRequest {
			t.Errorf("add %q: %d, want 400", tc.body, rec.Code)
		}
	}
	if rec := do(http.MethodPost, "/api/torrents", "text/plain", "https://example.org/x.torrent"); rec.Code != http.StatusNotImplemented {
		t.Errorf("add URL with a Controller that cannot fetch: %d, want 501", rec.Code)
	}
	var list []httpserve.TorrentInfo
	rec := do(http.MethodGet, "/api/torrents", "", "")
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil || len(list) != 2 {
		t.Fatalf("list: %d %s (%v)", rec.Code, rec.Body, err)
	}
	if rec := do(http.MethodDelete, "/api/torrents/"+strings.Repeat("ab", 20), "", ""); rec.Code != http.StatusNoContent {
		t.Fatalf("remove: %d %s", rec.Code, rec.Body)
	}
	if rec := do(http.MethodDelete, "/api/torrents/"+strings.Repeat("ab", 20), "", ""); rec.Code != http.StatusNotFound {
		t.Errorf("remove again: %d, want 404", rec.Code)
	}
	if rec := do(http.MethodDelete, "/api/torrents/xyz", "", ""); rec.Code != http.StatusBadRequest {
		t.Errorf("remove a bad info-hash: %d, want 400", rec.Code)
	}

	// One mount: list what is served; adding and removing are 501 with
	// a reason.
	one := httpserve.New(httpserve.Config{Torrents: httpserve.Static{tr.served()}, Token: "tok"})
	s = one
	rec = do(http.MethodGet, "/api/torrents", "", "")
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil || len(list) != 1 || list[0].InfoHash != tr.ih.String() || list[0].Files != 3 {
		t.Fatalf("list of one mount: %d %s", rec.Code, rec.Body)
	}
	if rec := do(http.MethodPost, "/api/torrents", "text/plain", magnet); rec.Code != http.StatusNotImplemented || !strings.Contains(rec.Body.String(), "not supported") {
		t.Errorf("add to one mount: %d %s", rec.Code, rec.Body)
	}
	if rec := do(http.MethodDelete, "/api/torrents/"+tr.ih.String(), "", ""); rec.Code != http.StatusNotImplemented {
		t.Errorf("remove from one mount: %d %s", rec.Code, rec.Body)
	}
}

// memTorrentFile returns the bytes of a small valid .torrent.
func memTorrentFile(t *testing.T) []byte {
	t.Helper()
	data, err := metainfo.Build(t.Context(), writeTemp(t, "x.bin", make([]byte, 40000)), metainfo.BuildOptions{PieceLength: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	return data
}
