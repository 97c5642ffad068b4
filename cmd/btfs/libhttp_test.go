package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"btfs/httpserve"
	"btfs/internal/poll"
	"btfs/internal/swarmtest"
)

// httpAPI talks to a btfs's HTTP server: base is its root URL, token its
// -http-token.
type httpAPI struct {
	base, token string
}

// do sends a request to path (with the token in the Authorization header
// unless auth is false) and returns the status and body.
func (a httpAPI) do(t *testing.T, method, path, ct string, body []byte, auth bool, header ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, a.base+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if auth {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// list is GET /api/torrents.
func (a httpAPI) list(t *testing.T) []httpserve.TorrentInfo {
	t.Helper()
	code, b := a.do(t, http.MethodGet, "api/torrents", "", nil, true)
	var ts []httpserve.TorrentInfo
	if err := json.Unmarshal(b, &ts); code != http.StatusOK || err != nil {
		t.Fatalf("GET /api/torrents: %d %s (%v)", code, b, err)
	}
	return ts
}

// listed reports whether GET /api/torrents lists info-hash ih.
func (a httpAPI) listed(t *testing.T, ih string) bool {
	return slices.ContainsFunc(a.list(t), func(ti httpserve.TorrentInfo) bool { return ti.InfoHash == ih })
}

// get fetches a file URL path (the token in the query, as a player has
// it) and returns its body.
func (a httpAPI) get(t *testing.T, path string) []byte {
	t.Helper()
	resp, err := http.Get(a.base + path + "?token=" + a.token)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d, %v", path, resp.StatusCode, err)
	}
	return b
}

// TestLibraryHTTP: a library mounted with -http is served over HTTP, and
// its control endpoints add and remove through the library (what btfs ls
// and the mount show). Without the token, or from another origin, the
// mutations are refused. A .torrent POSTed appears in GET /api/torrents,
// in btfs ls and in the mount, and its file reads back right over HTTP
// and through the mount; a torrent added by URL is removed while a stream
// of it runs: the stream ends with an error, the torrent is gone from the
// list, the mount, /metrics, and its reader from the registry. A magnet
// link of the first (its metadata and pieces in the cache) brings it back.
func TestLibraryHTTP(t *testing.T) {
	a := startSwarm(t, swarmtest.TorrentOptions{Name: "a.bin", Size: 1<<20 + 7, PieceLength: 64 << 10, Seed: 170}, true)
	// b comes slowly (the download cap): its stream is still running
	// when it is removed.
	b := startSwarm(t, swarmtest.TorrentOptions{Name: "b.bin", Size: 8 << 20, PieceLength: 256 << 10, Seed: 171}, true)
	bTorrent, err := os.ReadFile(b.torrentPath)
	if err != nil {
		t.Fatal(err)
	}
	torrentURL := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-bittorrent")
		_, _ = w.Write(bTorrent)
	}))
	defer torrentURL.Close()

	mp := mountpoint(t)
	const token = "libt0ken"
	l := startLibrary(t, mp, t.TempDir(), runtimeDir(t), "-max-download-rate", "512KiB", "-http", "127.0.0.1:0", "-http-token", token)
	api := httpAPI{base: servedAt(t, l.p), token: token}
	aTorrent, err := os.ReadFile(a.torrentPath)
	if err != nil {
		t.Fatal(err)
	}
	aIH, bIH := a.mi.InfoHash.String(), b.mi.InfoHash.String()

	// Refused: no token in the header (only in the URL, as a page could
	// have learned it), a foreign Origin, a cross-site fetch.
	refusals := []struct {
		name   string
		path   string
		auth   bool
		header []string
		want   int
	}{
		{"no token", "api/torrents", false, nil, http.StatusUnauthorized},
		{"token only in the URL", "api/torrents?token=" + token, false, nil, http.StatusUnauthorized},
		{"foreign Origin", "api/torrents", true, []string{"Origin", "http://evil.example"}, http.StatusForbidden},
		{"cross-site fetch", "api/torrents", true, []string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
	}
	for _, r := range refusals {
		if code, body := api.do(t, http.MethodPost, r.path, "application/x-bittorrent", aTorrent, r.auth, r.header...); code != r.want {
			t.Errorf("POST %s: %d %s, want %d", r.name, code, body, r.want)
		}
	}
	if ts := api.list(t); len(ts) != 0 {
		t.Fatalf("refused adds added %v", ts)
	}
	if got := names(t, mp); len(got) != 0 {
		t.Fatalf("refused adds made %v in the mount", got)
	}

	// Add a .torrent: listed, in btfs ls, in the mount; its file reads
	// back right over HTTP and through the mount.
	code, body := api.do(t, http.MethodPost, "api/torrents", "application/x-bittorrent", aTorrent, true)
	var added httpserve.TorrentInfo
	if err := json.Unmarshal(body, &added); code != http.StatusCreated || err != nil || added.InfoHash != aIH || added.Name != "a.bin" {
		t.Fatalf("POST a.torrent: %d %s (%v)", code, body, err)
	}
	if ts := api.list(t); len(ts) != 1 || ts[0].InfoHash != aIH || ts[0].Files != 1 || ts[0].Pieces != a.mi.Info.NumPieces() || ts[0].Length != a.mi.Info.TotalLength {
		t.Errorf("GET /api/torrents after the add: %+v", ts)
	}
	if ls := l.must(t, "ls", mp); !strings.Contains(ls, aIH) || !strings.Contains(ls, "1 torrents") {
		t.Errorf("btfs ls after an add over HTTP:\n%s", ls)
	}
	if got := names(t, mp); !slices.Equal(got, []string{"a.bin"}) {
		t.Errorf("the mount lists %v, want [a.bin]", got)
	}
	src := a.source(t, a.mi.Info.Files[0])
	if got := api.get(t, "t/"+aIH+"/a.bin"); !bytes.Equal(got, src) {
		t.Fatalf("a.bin over HTTP: %d bytes, not the source's %d", len(got), len(src))
	}
	if got, err := os.ReadFile(filepath.Join(mp, "a.bin", "a.bin")); err != nil || !bytes.Equal(got, src) {
		t.Fatalf("a.bin through the mount: %d bytes, %v", len(got), err)
	}
	if idx := api.get(t, ""); !bytes.Contains(idx, []byte("t/"+aIH+"/a.bin")) {
		t.Errorf("the index lacks a.bin:\n%s", idx)
	}
	metrics := api.base + "metrics?token=" + token
	if v, ok := metricValue(t, metrics, "btfs_pieces", aIH); !ok || int(v) != a.mi.Info.NumPieces() {
		t.Errorf("btfs_pieces{infohash=a} %v, %v", v, ok)
	}
	if code, body := api.do(t, http.MethodPost, "api/torrents", "application/x-bittorrent", aTorrent, true); code != http.StatusConflict {
		t.Errorf("POST a.torrent again: %d %s, want 409", code, body)
	}
	if code, body := api.do(t, http.MethodPost, "api/torrents", "application/x-bittorrent", []byte("d4:infoi1ee"), true); code != http.StatusBadRequest {
		t.Errorf("POST a broken .torrent: %d %s, want 400", code, body)
	}

	// Add by URL, stream, remove mid-stream.
	if code, body := api.do(t, http.MethodPost, "api/torrents", "text/plain", []byte(torrentURL.URL+"/b.torrent"), true); code != http.StatusCreated || !bytes.Contains(body, []byte(bIH)) {
		t.Fatalf("POST the URL of b.torrent: %d %s", code, body)
	}
	poll.Until(t, 10*time.Second, "b in the mount", func() bool { return slices.Contains(names(t, mp), "b.bin") })
	resp, err := http.Get(api.base + "t/" + bIH + "/b.bin?token=" + token)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, 64<<10)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatalf("b.bin's first bytes over HTTP: %v", err)
	}
	if !bytes.Equal(first, b.source(t, b.mi.Info.Files[0])[:len(first)]) {
		t.Fatal("b.bin's first bytes differ from the source")
	}
	if v, ok := metricValue(t, metrics, "btfs_readers", "http"); !ok || v != 1 {
		t.Errorf("btfs_readers{path=http} %v while b streams, want 1", v)
	}
	if code, body := api.do(t, http.MethodDelete, "api/torrents/"+bIH, "", nil, true, "Origin", "http://evil.example"); code != http.StatusForbidden {
		t.Errorf("DELETE from a foreign Origin: %d %s, want 403", code, body)
	}
	if code, body := api.do(t, http.MethodDelete, "api/torrents/"+bIH, "", nil, true); code != http.StatusNoContent {
		t.Fatalf("DELETE b: %d %s", code, body)
	}
	rest := make(chan error, 1)
	var got int64
	go func() {
		n, err := io.Copy(io.Discard, resp.Body)
		got = n
		rest <- err
	}()
	select {
	case err := <-rest:
		if err == nil || int64(len(first))+got >= b.mi.Info.TotalLength {
			t.Errorf("the stream of a removed torrent ended with %v after %d more bytes: want an error before the end", err, got)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the stream of a removed torrent still runs 30 s after its removal")
	}
	if api.listed(t, bIH) {
		t.Error("GET /api/torrents still lists b after its removal")
	}
	if got := names(t, mp); !slices.Equal(got, []string{"a.bin"}) {
		t.Errorf("after DELETE b the mount lists %v", got)
	}
	if _, ok := metricValue(t, metrics, "btfs_pieces", bIH); ok {
		t.Error("/metrics still has b after its removal")
	}
	poll.Until(t, 10*time.Second, "the removed stream's reader out of the registry", func() bool {
		v, ok := metricValue(t, metrics, "btfs_readers", "http")
		return ok && v == 0
	})
	if code, _ := api.do(t, http.MethodDelete, "api/torrents/"+bIH, "", nil, true); code != http.StatusNotFound {
		t.Errorf("DELETE b again: %d, want 404", code)
	}
	resp, err = http.Get(api.base + "t/" + bIH + "/b.bin?token=" + token)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("a removed torrent's file: %d, want 404", resp.StatusCode)
	}

	// Remove a, add it back as a magnet link: the cache has it all.
	if code, body := api.do(t, http.MethodDelete, "api/torrents/"+aIH, "", nil, true); code != http.StatusNoContent {
		t.Fatalf("DELETE a: %d %s", code, body)
	}
	if got := names(t, mp); len(got) != 0 {
		t.Errorf("after DELETE a and b the mount lists %v", got)
	}
	if _, err := os.Stat(filepath.Join(mp, "a.bin", "a.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a removed torrent's file through the mount: %v, want ENOENT", err)
	}
	if code, body := api.do(t, http.MethodPost, "api/torrents", "text/plain", []byte(magnetOf(a.mi, nil)), true); code != http.StatusCreated {
		t.Fatalf("POST a's magnet link: %d %s", code, body)
	}
	poll.Until(t, 30*time.Second, "a served again from its magnet link", func() bool {
		ts := api.list(t)
		return len(ts) == 1 && ts[0].InfoHash == aIH && ts[0].Files == 1
	})
	if got := api.get(t, "t/"+aIH+"/a.bin"); !bytes.Equal(got, src) {
		t.Fatalf("a.bin over HTTP from its magnet link: %d bytes, not the source's %d", len(got), len(src))
	}
	if got, err := os.ReadFile(filepath.Join(mp, "a.bin", "a.bin")); err != nil || !bytes.Equal(got, src) {
		t.Fatalf("a.bin through the mount from its magnet link: %d bytes, %v", len(got), err)
	}
}
