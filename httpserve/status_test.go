package httpserve_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"btfs/cache"
	"btfs/httpserve"
	"btfs/internal/memtorrent"
	"btfs/internal/poll"
	"btfs/storagewrapper"
	"btfs/stream"
)

// event is what the page reads from one Server-Sent Event.
type event struct {
	Torrents []struct {
		InfoHash string         `json:"infohash"`
		Pieces   int            `json:"pieces"`
		Map      string         `json:"map"`
		Counts   map[string]int `json:"counts"`
		Files    []struct {
			Path string `json:"path"`
			Done int64  `json:"done"`
			URL  string `json:"url"`
		} `json:"files"`
		Readers []struct {
			Kind, Name             string
			Pos                    int64
			WindowStart, WindowEnd int64
		} `json:"readers"`
		Stats *struct {
			Peers []httpserve.Peer `json:"peers"`
			Cache *httpserve.CacheUse
		} `json:"stats"`
	} `json:"torrents"`
	Reads map[string]struct {
		Reads uint64 `json:"reads"`
	} `json:"reads"`
}

// nextEvent reads the next "data:" line of an event stream.
func nextEvent(t *testing.T, br *bufio.Reader) event {
	t.Helper()
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("event stream: %v", err)
		}
		if data, ok := strings.CutPrefix(line, "data: "); ok {
			var ev event
			if err := json.Unmarshal([]byte(data), &ev); err != nil {
				t.Fatalf("event %q: %v", data, err)
			}
			return ev
		}
	}
}

// TestStatusEvents subscribes to /status/events of a torrent in every
// state the page draws — a verified piece, a piece in flight, a read
// blocked on a piece (wanted now), a reader's readahead window — and finds
// each in the piece map, the reader with its window, the per-file
// progress and the peers; the page itself is self-contained (no URL to
// anywhere else) under a strict Content-Security-Policy.
func TestStatusEvents(t *testing.T) {
	const pl = 16 << 10
	tr := newTorrent(t, pl, testFiles, testOrder) // 145000 bytes: pieces 0..8
	tr.deliver(t, 0)
	tr.deliver(t, 6) // b.txt's piece
	reg := stream.NewRegistry()
	served := tr.served()
	served.Stats = func(context.Context) (httpserve.Stats, error) {
		return httpserve.Stats{PeerList: []httpserve.Peer{{Addr: "127.0.0.2:6881", Client: "AR1360", Encryption: "rc4"}},
			Cache: &httpserve.CacheUse{Bytes: 2 * pl}}, nil
	}
	srv := httptest.NewServer(httpserve.New(httpserve.Config{Torrents: httpserve.Static{served}, Readers: reg}))
	defer srv.Close()

	// Piece 8 in flight; a reader at the start of movie.mp4 with a
	// window over pieces 1-2; a read blocked on piece 4.
	if _, st := tr.w.NewRequest(8); !st.OK() {
		t.Fatalf("NewRequest(8): %v", st)
	}
	r := stream.NewReader(tr.w, 0, 100_000, stream.Config{PieceLength: pl, Registry: reg, Kind: "fuse", Name: "a/movie.mp4"})
	defer r.Close()
	r.SetReadahead(3 * pl)
	if _, err := r.ReadAt(t.Context(), make([]byte, 100), 0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	blocked := make(chan error, 1)
	go func() {
		_, err := tr.w.ReadAt(ctx, make([]byte, 10), 4*pl)
		blocked <- err
	}()
	defer func() { cancel(); <-blocked }()
	poll.Until(t, 10*time.Second, "the read of piece 4 waiting", func() bool {
		for _, w := range tr.w.Wants() {
			if w.Start == 4*pl {
				return true
			}
		}
		return false
	})

	resp, err := srv.Client().Get(srv.URL + "/status/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	ev := nextEvent(t, bufio.NewReader(resp.Body))
	if len(ev.Torrents) != 1 {
		t.Fatalf("torrents %+v", ev.Torrents)
	}
	ts := ev.Torrents[0]
	// 0 verified, 1-3 readahead (3 pieces from offset 100), 4 now (over
	// the readahead), 6 verified, 8 in flight.
	want := map[int]byte{0: '1', 1: '4', 2: '4', 3: '4', 4: '3', 5: '0', 6: '1', 7: '0', 8: '2'}
	for p, c := range want {
		if ts.Map[p] != c {
			t.Errorf("piece %d drawn %c, want %c (map %s)", p, ts.Map[p], c, ts.Map)
		}
	}
	if ts.Counts["verified"] != 2 || ts.Counts["inflight"] != 1 || ts.Counts["now"] != 1 {
		t.Errorf("counts %v", ts.Counts)
	}
	if len(ts.Readers) != 1 || ts.Readers[0].Kind != "fuse" || ts.Readers[0].Pos != 100 || ts.Readers[0].WindowEnd != 100+3*pl {
		t.Errorf("readers %+v", ts.Readers)
	}
	done := map[string]int64{}
	for _, f := range ts.Files {
		done[f.Path] = f.Done
		if f.Path == "c d%.mkv" && f.URL != "/t/"+tr.ih.String()+"/c%20d%25.mkv" {
			t.Errorf("the link to %q is %q", f.Path, f.URL)
		}
	}
	if done["a/movie.mp4"] != pl+(100_000-6*pl) || done["b.txt"] != 5000 || done["c d%.mkv"] != 6*pl+pl-105_000 {
		t.Errorf("files done %v", done)
	}
	if ev.Reads["fuse"].Reads != 1 {
		t.Errorf("reads %+v, want the fuse reader's one read", ev.Reads)
	}
	if ts.Stats == nil || len(ts.Stats.Peers) != 1 || ts.Stats.Peers[0].Encryption != "rc4" || ts.Stats.Cache.Bytes != 2*pl {
		t.Errorf("stats %+v", ts.Stats)
	}

	page, err := srv.Client().Get(srv.URL + "/status")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(page.Body)
	page.Body.Close()
	csp := page.Header.Get("Content-Security-Policy")
	if page.StatusCode != 200 || !strings.Contains(csp, "default-src 'none'") || !strings.Contains(string(body), "<canvas") && !strings.Contains(string(body), `"canvas"`) {
		t.Fatalf("status page: %d, CSP %q", page.StatusCode, csp)
	}
	for _, ext := range []string{"http://", "https://", "src=\"", "@import"} {
		if strings.Contains(string(body), ext) {
			t.Errorf("the page refers to something outside itself: %q", ext)
		}
	}
}

// TestStatusSubscribersBounded opens more event streams than the server
// allows: the extra ones are refused with 503, and one closed makes room.
func TestStatusSubscribersBounded(t *testing.T) {
	tr := newTorrent(t, 16<<10, testFiles, testOrder)
	srv := httptest.NewServer(httpserve.New(httpserve.Config{Torrents: httpserve.Static{tr.served()}}))
	defer srv.Close()
	var open []*http.Response
	defer func() {
		for _, r := range open {
			r.Body.Close()
		}
	}()
	for {
		resp, err := srv.Client().Get(srv.URL + "/status/events")
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == http.StatusServiceUnavailable {
			resp.Body.Close()
			break
		}
		open = append(open, resp)
		if len(open) > 100 {
			t.Fatal("no bound on event streams")
		}
	}
	if len(open) != 16 {
		t.Errorf("%d streams served before the 503, want 16", len(open))
	}
	open[0].Body.Close()
	open = open[1:]
	poll.Until(t, 10*time.Second, "a stream served again after one closed", func() bool {
		resp, err := srv.Client().Get(srv.URL + "/status/events")
		if err != nil {
			return false
		}
		if resp.StatusCode == 200 {
			open = append(open, resp)
			return true
		}
		resp.Body.Close()
		return false
	})
}

// TestStatusShowsOtherProcessClaim shares one cache directory between two
// cache.Stores (two processes' worth: claims tell them apart): a piece the
// first one downloads is drawn, on the second one's status page, as in
// another process's claim, and its cache use is the cache's.
func TestStatusShowsOtherProcessClaim(t *testing.T) {
	const pl = 16 << 10
	tr := newTorrent(t, pl, testFiles, testOrder) // for its info (piece hashes) and bytes
	dir := t.TempDir()
	open := func() *storagewrapper.Wrapper {
		cs, err := cache.Open(dir, tr.info, cache.Options{})
		if err != nil {
			t.Fatal(err)
		}
		w, err := storagewrapper.New(tr.info, cs, storagewrapper.Config{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.Close(); cs.Close() })
		return w
	}
	a, b := open(), open()
	if _, st := a.NewRequest(3); !st.OK() {
		t.Fatalf("A: NewRequest(3) = %v", st)
	}
	if _, st := b.NewRequest(3); st != storagewrapper.RequestClaimedElsewhere {
		t.Fatalf("B: NewRequest(3) = %v, want claimed elsewhere", st)
	}
	memtorrent.Deliver(t, b, tr.info, tr.data, 0)
	srv := httptest.NewServer(httpserve.New(httpserve.Config{Torrents: httpserve.Static{{InfoHash: tr.ih, Info: tr.info, Data: b}}}))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/status/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	ts := nextEvent(t, bufio.NewReader(resp.Body)).Torrents[0]
	if ts.Map[3] != '5' || ts.Map[0] != '1' || ts.Counts["claimed"] != 1 {
		t.Fatalf("map %s counts %v: want piece 3 in another process's claim, piece 0 verified", ts.Map, ts.Counts)
	}
	if s := a.Refused(); len(s) != 0 {
		t.Errorf("A sees its own claim as another's: %v", s)
	}
}
