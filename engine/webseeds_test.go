package engine

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"btfs/internal/poll"
	"btfs/internal/swarmtest"
)

// TestWebSeedOnly: a leecher whose only source is an nginx webseed gets
// every piece, verified, through the webseed as a peer.
func TestWebSeedOnly(t *testing.T) {
	for _, multi := range []bool{false, true} {
		dir := t.TempDir()
		ng := swarmtest.StartNginx(t, dir, "127.0.0.1")
		opts := swarmtest.TorrentOptions{Size: 3<<20 + 5, PieceLength: 64 << 10, Seed: 21, WebSeeds: []string{ng.URL()}}
		if multi {
			opts.Files = swarmtest.MultiFile
			opts.Name = "a dir with spaces"
		}
		_, mi := swarmtest.MakeTorrent(t, dir, opts)
		leecher, sw := leechEngine(t, mi, Config{Logger: testLogger(t)})
		waitComplete(t, leecher, 60*time.Second)
		st, err := leecher.Stats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.HashFailures != 0 {
			t.Errorf("multi=%v: %d hash failures", multi, st.HashFailures)
		}
		if n := sw.Stats().VerifiedPieces; n != mi.Info.NumPieces() {
			t.Errorf("multi=%v: %d of %d pieces verified", multi, n, mi.Info.NumPieces())
		}
	}
}

// webSeedBanned asks the loop whether the i-th webseed is banned.
func webSeedBanned(t *testing.T, tor *Torrent, i int) bool {
	t.Helper()
	var banned bool
	if err := tor.do(context.Background(), func() { banned = tor.s.banned[webSeedAddr(i).Addr()] }); err != nil {
		t.Fatal(err)
	}
	return banned
}

// TestWebSeedWrongBytes: a webseed whose copy of one file is corrupt is
// banned on the first piece that fails (it sent every block), and the
// download still completes, correct, from a peer.
func TestWebSeedWrongBytes(t *testing.T) {
	dir := t.TempDir()
	webDir := t.TempDir()
	ng := swarmtest.StartNginx(t, webDir, "127.0.0.1")
	_, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Files: swarmtest.MultiFile, PieceLength: 64 << 10, Seed: 22, WebSeeds: []string{ng.URL()}})
	if err := os.CopyFS(filepath.Join(webDir, mi.Info.Name), os.DirFS(filepath.Join(dir, mi.Info.Name))); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(webDir, mi.Info.Name, "sub", "b.bin")
	data, err := os.ReadFile(bad)
	if err != nil {
		t.Fatal(err)
	}
	for i := range data {
		data[i] ^= 0x55
	}
	if err := os.WriteFile(bad, data, 0o644); err != nil {
		t.Fatal(err)
	}
	log := testLogger(t)
	leecher, _ := leechEngine(t, mi, Config{Logger: log})
	poll.Until(t, 60*time.Second, "the webseed to be banned", func() bool { return webSeedBanned(t, leecher, 0) })
	seeder := seedEngine(t, mi, dir, Config{Logger: log})
	if err := leecher.AddPeers(context.Background(), seeder.ListenAddr()); err != nil {
		t.Fatal(err)
	}
	waitComplete(t, leecher, 60*time.Second)
	st, err := leecher.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.HashFailures == 0 {
		t.Error("no hash failure counted")
	}
}

// TestWebSeedRetryAfter: a server that answers 503 with Retry-After: 1 is
// asked again no sooner than a second later, and then serves the torrent.
// Its first two requests get the 503: two may be in flight at once (the
// webseed's two connections), but after the first 503 arrives nothing
// more is asked until the second is over.
func TestWebSeedRetryAfter(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	var times []time.Time // of each request; the first is answered 503
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		times = append(times, time.Now())
		busy := len(times) <= 2
		mu.Unlock()
		if busy {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		http.ServeFile(w, r, filepath.Join(dir, "data.bin")) // with Range support
	}))
	defer srv.Close()
	_, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Size: 1<<20 + 3, PieceLength: 64 << 10, Seed: 23, WebSeeds: []string{srv.URL + "/"}})
	leecher, _ := leechEngine(t, mi, Config{Logger: testLogger(t)})
	waitComplete(t, leecher, 60*time.Second)
	mu.Lock()
	defer mu.Unlock()
	if len(times) < 3 {
		t.Fatalf("%d requests", len(times))
	}
	if gap := times[2].Sub(times[0]); gap < time.Second {
		t.Errorf("asked again %v after a 503 with Retry-After: 1", gap)
	}
}

// TestWebSeedIgnoresRange: a server that answers every Range request with
// 200 and the whole file is dropped after its first answer, which is
// closed unread: it sends a small part of the file, not the file per
// request; a peer completes the download.
func TestWebSeedIgnoresRange(t *testing.T) {
	dir := t.TempDir()
	var sent atomic.Int64
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		f, err := os.Open(filepath.Join(dir, "data.bin"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer f.Close()
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusOK)
		buf := make([]byte, 64<<10)
		for {
			n, err := f.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return
				}
				sent.Add(int64(n))
			}
			if err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	const size = 64 << 20
	_, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Size: size, PieceLength: 256 << 10, Seed: 24, WebSeeds: []string{srv.URL + "/"}})
	log := testLogger(t)
	leecher, _ := leechEngine(t, mi, Config{Logger: log})
	poll.Until(t, 60*time.Second, "the webseed to be dropped", func() bool {
		var n int
		if err := leecher.do(context.Background(), func() { n = len(leecher.s.peers) }); err != nil {
			t.Fatal(err)
		}
		return requests.Load() > 0 && n == 0
	})
	seeder := seedEngine(t, mi, dir, Config{Logger: log})
	if err := leecher.AddPeers(context.Background(), seeder.ListenAddr()); err != nil {
		t.Fatal(err)
	}
	waitComplete(t, leecher, 60*time.Second)
	srv.CloseClientConnections()
	if got := sent.Load(); got >= size/2 {
		t.Errorf("the server sent %d bytes of a %d-byte file in %d requests", got, size, requests.Load())
	}
}

// TestWebSeedAndAria2: a leecher with an nginx webseed and an aria2c
// seeder (through opentracker) gets bytes from both.
func TestWebSeedAndAria2(t *testing.T) {
	swarmtest.Require(t, "opentracker", "aria2c")
	dir := t.TempDir()
	ng := swarmtest.StartNginx(t, dir, "127.0.0.1")
	opts := swarmtest.TorrentOptions{Size: 48 << 20, PieceLength: 256 << 10, Seed: 25, WebSeeds: []string{ng.URL()}}
	_, probe := swarmtest.MakeTorrent(t, t.TempDir(), opts)
	tr := swarmtest.StartTracker(t, probe.InfoHash)
	opts.AnnounceList = [][]string{{tr.HTTPURL()}}
	torrentPath, mi := swarmtest.MakeTorrent(t, dir, opts)
	seeder := swarmtest.StartAria2Seeder(t, torrentPath, dir, "127.0.0.2")
	tr.WaitForPeer(t, mi.InfoHash, seeder.Addr())
	// Capped, so that the webseed alone does not finish before aria2c
	// answers its first handshake (at its 1 s tick).
	leecher, _ := leechEngine(t, mi, Config{Logger: testLogger(t), Peers: []netip.AddrPort{seeder.Addr()}, Trackers: [][]string{}, MaxDownloadRate: 8 << 20})
	waitComplete(t, leecher, 120*time.Second)
	fromWeb, err := ng.BytesSent()
	if err != nil {
		t.Fatal(err)
	}
	var fromAria2 int64
	poll.UntilNil(t, 10*time.Second, "aria2c's upload count", func() error {
		var err error
		fromAria2, err = seeder.UploadLength(context.Background())
		if err == nil && fromAria2 == 0 {
			err = errors.New("aria2c uploaded nothing")
		}
		return err
	})
	t.Logf("from the webseed %d bytes, from aria2c %d bytes", fromWeb, fromAria2)
	if fromWeb == 0 {
		t.Error("nothing came from the webseed")
	}
}

// TestWebSeedRedirect: a webseed URL that redirects to the real server
// (nginx) is followed; one that redirects forever is dropped after a
// bounded number of hops.
func TestWebSeedRedirect(t *testing.T) {
	dir := t.TempDir()
	ng := swarmtest.StartNginx(t, dir, "127.0.0.1")
	var loops atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("loop") != "" {
			loops.Add(1)
			http.Redirect(w, r, r.URL.Path+"?loop="+strconv.Itoa(int(loops.Load())), http.StatusFound)
			return
		}
		http.Redirect(w, r, strings.TrimSuffix(ng.URL(), "/")+r.URL.Path, http.StatusFound)
	}))
	defer srv.Close()
	_, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Size: 2<<20 + 1, PieceLength: 64 << 10, Seed: 26, WebSeeds: []string{srv.URL + "/"}})
	leecher, _ := leechEngine(t, mi, Config{Logger: testLogger(t)})
	waitComplete(t, leecher, 60*time.Second)

	mi2 := *mi
	mi2.URLList = []string{srv.URL + "/data.bin?loop=1"}
	loopy, _ := leechEngine(t, &mi2, Config{Logger: testLogger(t)})
	poll.Until(t, 60*time.Second, "the looping webseed to be dropped", func() bool {
		var n int
		if err := loopy.do(context.Background(), func() { n = len(loopy.s.peers) }); err != nil {
			t.Fatal(err)
		}
		return loops.Load() > 0 && n == 0
	})
	if n := loops.Load(); n > 2*5 { // two connections, five hops each
		t.Errorf("followed %d redirects", n)
	}
}
