package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"btfs/internal/swarmtest"
)

// TestLoadSource: a path, an http URL, and a magnet link load; a missing
// file, a URL that fails, answers too much or too slowly, and a bad magnet
// are clear errors.
func TestLoadSource(t *testing.T) {
	dir := t.TempDir()
	torrentPath, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Size: 100 << 10, PieceLength: 16 << 10, Seed: 70})
	raw, err := os.ReadFile(torrentPath)
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	defer close(release)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/x.torrent":
			w.Write(raw)
		case "/huge.torrent":
			chunk := bytes.Repeat([]byte("d"), 1<<20)
			for range maxTorrentDownload>>20 + 1 {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		case "/slow.torrent":
			select {
			case <-release:
			case <-r.Context().Done():
			}
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	old := torrentFetchTimeout
	torrentFetchTimeout = 3 * time.Second
	defer func() { torrentFetchTimeout = old }()

	tests := []struct {
		name, arg, wantErr string
		magnet             bool
	}{
		{name: "path", arg: torrentPath},
		{name: "url", arg: srv.URL + "/x.torrent"},
		{name: "magnet", arg: magnetOf(mi, []string{"http://127.0.0.1:1/announce"}), magnet: true},
		{name: "missing file", arg: filepath.Join(dir, "nope.torrent"), wantErr: "no such file"},
		{name: "404", arg: srv.URL + "/nope.torrent", wantErr: "404"},
		{name: "too large", arg: srv.URL + "/huge.torrent", wantErr: "larger than"},
		{name: "too slow", arg: srv.URL + "/slow.torrent", wantErr: "deadline exceeded"},
		{name: "bad magnet", arg: "magnet:?dn=x", wantErr: "xt"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src, err := loadSource(context.Background(), tc.arg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if src.InfoHash() != mi.InfoHash || (src.Magnet != nil) != tc.magnet || (src.MetaInfo == nil) != tc.magnet {
				t.Errorf("got info-hash %s, magnet %v, torrent %v", src.InfoHash(), src.Magnet != nil, src.MetaInfo != nil)
			}
		})
	}
}
