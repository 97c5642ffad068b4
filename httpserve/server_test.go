package httpserve_test

import (
	"bytes"
	"context"
	"crypto/sha1"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"btfs/httpserve"
	"btfs/internal/leakcheck"
	"btfs/internal/memtorrent"
	"btfs/internal/poll"
	"btfs/metainfo"
	"btfs/storagewrapper"
	"btfs/stream"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// torrent is a real storagewrapper.Wrapper over a MemStore with files the
// test knows the bytes of.
type torrent struct {
	info *metainfo.Info
	ih   metainfo.Hash
	data []byte
	w    *storagewrapper.Wrapper
}

// newTorrent makes a multi-file torrent of the given files (path, length)
// in pieces of pieceLen, nothing verified yet.
func newTorrent(t testing.TB, pieceLen int64, files map[string]int64, order []string) *torrent {
	t.Helper()
	info := &metainfo.Info{Name: "t", PieceLength: pieceLen, MultiFile: true}
	for _, p := range order {
		info.Files = append(info.Files, metainfo.File{Path: strings.Split(p, "/"), Length: files[p], Offset: info.TotalLength})
		info.TotalLength += files[p]
	}
	data := make([]byte, info.TotalLength)
	_, _ = rand.NewChaCha8([32]byte{byte(pieceLen)}).Read(data)
	w := memtorrent.Open(t, info, data)
	return &torrent{info: info, ih: sha1.Sum([]byte(fmt.Sprint(order))), data: data, w: w}
}

// deliver hands every block of piece p to the wrapper: p is verified.
func (tr *torrent) deliver(t testing.TB, p int) { memtorrent.Deliver(t, tr.w, tr.info, tr.data, p) }

func (tr *torrent) fill(t testing.TB) { memtorrent.Fill(t, tr.w, tr.info, tr.data) }

// served is what the server sees of tr; Stats counts tr's verified pieces.
func (tr *torrent) served() httpserve.Torrent {
	return httpserve.Torrent{
		InfoHash: tr.ih, Info: tr.info, Data: tr.w,
		Stats: func(context.Context) (httpserve.Stats, error) {
			bf := tr.w.Bitfield()
			return httpserve.Stats{PiecesVerified: bf.Count(), Pieces: tr.info.NumPieces()}, nil
		},
	}
}

func (tr *torrent) file(p string) []byte {
	for _, f := range tr.info.Files {
		if strings.Join(f.Path, "/") == p {
			return tr.data[f.Offset : f.Offset+f.Length]
		}
	}
	panic("no file " + p)
}

var testFiles = map[string]int64{"a/movie.mp4": 100_000, "b.txt": 5_000, "c d%.mkv": 40_000}
var testOrder = []string{"a/movie.mp4", "b.txt", "c d%.mkv"}

// TestRangeLikeServeContent compares each answer of the server with Go's
// own http.ServeContent over the same bytes: status, Content-Range,
// Content-Length and body, for first, last, suffix, open, clamped and
// out-of-range requests, GET and HEAD.
func TestRangeLikeServeContent(t *testing.T) {
	tr := newTorrent(t, 16<<10, testFiles, testOrder)
	tr.fill(t)
	s := httpserve.New(httpserve.Config{Torrents: httpserve.Static{tr.served()}})
	ranges := []string{
		"", "bytes=0-0", "bytes=0-99", "bytes=99999-99999", "bytes=-1", "bytes=-500",
		"bytes=50000-", "bytes=16383-16385", "bytes=100000-", "bytes=100001-200000",
		"bytes=1000000000000000000-", "bytes=0-1000000000000000000", "bytes=-1000000000000000000",
		"bytes=99999999999999999999-", "bytes=5-2", "bytes=0-1,5-6", "items=0-5",
	}
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		for _, rg := range ranges {
			t.Run(method+" "+rg, func(t *testing.T) {
				target := "/t/" + tr.ih.String() + "/a/movie.mp4"
				req := httptest.NewRequest(method, target, nil)
				req.Host = "127.0.0.1:8080"
				if rg != "" {
					req.Header.Set("Range", rg)
				}
				got := httptest.NewRecorder()
				s.ServeHTTP(got, req)

				want := httptest.NewRecorder()
				wreq := req.Clone(context.Background())
				if strings.Contains(rg, ",") { // ours ignores multiple ranges
					wreq.Header.Del("Range")
				}
				want.Header().Set("Content-Type", "video/mp4")
				http.ServeContent(want, wreq, "movie.mp4", time.Time{}, bytes.NewReader(tr.file("a/movie.mp4")))

				if got.Code != want.Code {
					t.Fatalf("status %d, ServeContent %d", got.Code, want.Code)
				}
				for _, h := range []string{"Content-Range", "Content-Length", "Content-Type", "Accept-Ranges"} {
					if g, w := got.Header().Get(h), want.Header().Get(h); g != w {
						t.Errorf("%s %q, ServeContent %q", h, g, w)
					}
				}
				if !bytes.Equal(got.Body.Bytes(), want.Body.Bytes()) {
					t.Errorf("body of %d bytes differs from ServeContent's %d", got.Body.Len(), want.Body.Len())
				}
				if (got.Code/100 == 2 && got.Header().Get("ETag") == "") || got.Header().Get("Access-Control-Allow-Origin") != "" {
					t.Errorf("headers %v", got.Header())
				}
			})
		}
	}
}

// TestInterruptedStreamReleasesWants streams a file of which only the
// first piece is there: the client reads the first bytes and goes away
// while the server waits for the second piece; every want of the
// response's Reader is then released.
func TestInterruptedStreamReleasesWants(t *testing.T) {
	tr := newTorrent(t, 16<<10, testFiles, testOrder)
	tr.deliver(t, 0)
	srv := httptest.NewServer(httpserve.New(httpserve.Config{Torrents: httpserve.Static{tr.served()}}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/t/"+tr.ih.String()+"/a/movie.mp4", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 4096)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatalf("first bytes: %v", err)
	}
	if !bytes.Equal(buf, tr.data[:len(buf)]) {
		t.Fatal("first bytes differ")
	}
	poll.Until(t, 10*time.Second, "the response waiting on piece 1 with wants", func() bool {
		return len(tr.w.Wants()) > 0
	})
	cancel()
	poll.Until(t, 10*time.Second, "every want released after the client left", func() bool {
		return len(tr.w.Wants()) == 0
	})
}

// TestHostAndToken checks the Host header against DNS rebinding and the
// token when one is set.
func TestHostAndToken(t *testing.T) {
	tr := newTorrent(t, 16<<10, testFiles, testOrder)
	tr.fill(t)
	target := "/t/" + tr.ih.String() + "/b.txt"
	for _, tc := range []struct {
		host, token, auth, query string
		want                     int
	}{
		{host: "127.0.0.1:80", want: 200},
		{host: "localhost:9000", want: 200},
		{host: "[::1]:9000", want: 200},
		{host: "192.168.1.7:9000", want: 200},
		{host: "tv.lan:9000", want: 200}, // configured
		{host: "evil.example:9000", want: 421},
		{host: "127.0.0.1.evil.example", want: 421},
		{host: "", want: 421},
		{host: "127.0.0.1", token: "s3cret", want: 401},
		{host: "127.0.0.1", token: "s3cret", auth: "Bearer wrong", want: 401},
		{host: "127.0.0.1", token: "s3cret", auth: "Bearer s3cret", want: 200},
		{host: "127.0.0.1", token: "s3cret", query: "?token=s3cret", want: 200},
		{host: "evil.example", token: "s3cret", query: "?token=s3cret", want: 421},
	} {
		s := httpserve.New(httpserve.Config{Torrents: httpserve.Static{tr.served()}, Token: tc.token, Hosts: []string{"tv.lan"}})
		req := httptest.NewRequest(http.MethodGet, target+tc.query, nil)
		req.Host = tc.host
		req.Header.Set("Origin", "http://evil.example")
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("host %q token %q auth %q query %q: status %d, want %d", tc.host, tc.token, tc.auth, tc.query, rec.Code, tc.want)
		}
		if rec.Code == 200 && !bytes.Equal(rec.Body.Bytes(), tr.file("b.txt")) {
			t.Errorf("host %q: wrong body", tc.host)
		}
		for k := range rec.Header() {
			if strings.HasPrefix(strings.ToLower(k), "access-control-") {
				t.Errorf("CORS header %s sent", k)
			}
		}
	}
}

// TestTraversal asks for paths outside the file table, plain and encoded:
// none is served.
func TestTraversal(t *testing.T) {
	tr := newTorrent(t, 16<<10, testFiles, testOrder)
	tr.fill(t)
	s := httpserve.New(httpserve.Config{Torrents: httpserve.Static{tr.served()}})
	ih := tr.ih.String()
	for _, target := range []string{
		"/t/" + ih + "/../../etc/passwd",
		"/t/" + ih + "/..%2f..%2fetc%2fpasswd",
		"/t/" + ih + "/%2e%2e/%2e%2e/etc/passwd",
		"/t/" + ih + "/a/..%5c..%5cb.txt",
		"/t/" + ih + "//etc/passwd",
		"/t/" + ih + "/a",
		"/t/" + ih + "/t/b.txt",
		"/t/" + strings.Repeat("0", 40) + "/b.txt",
	} {
		req := httptest.NewRequest(http.MethodGet, target, nil)
		req.Host = "127.0.0.1"
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code < 300 || rec.Code >= 500 {
			t.Errorf("%s: status %d, want a redirect or a client error", target, rec.Code)
		}
	}
	// The file with a space and a percent sign is served under its
	// escaped name.
	req := httptest.NewRequest(http.MethodGet, "/t/"+ih+"/c%20d%25.mkv", nil)
	req.Host = "127.0.0.1"
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	if rec.Code != 200 || !bytes.Equal(rec.Body.Bytes(), tr.file("c d%.mkv")) {
		t.Errorf("c d%%.mkv: status %d", rec.Code)
	}
}

// TestPlaylist lists the media files of the torrent, in order, with URLs
// that the server serves.
func TestPlaylist(t *testing.T) {
	tr := newTorrent(t, 16<<10, testFiles, testOrder)
	tr.fill(t)
	s := httpserve.New(httpserve.Config{Torrents: httpserve.Static{tr.served()}, Token: "tok"})
	get := func(target string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, target, nil)
		req.Host = "127.0.0.1:1234"
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		return rec
	}
	rec := get("/playlist/" + tr.ih.String() + ".m3u?token=tok")
	if rec.Code != 200 {
		t.Fatalf("status %d", rec.Code)
	}
	var urls []string
	for line := range strings.Lines(rec.Body.String()) {
		if strings.HasPrefix(line, "http://") {
			urls = append(urls, strings.TrimSpace(line))
		}
	}
	if len(urls) != 2 || !strings.Contains(urls[0], "/a/movie.mp4") || !strings.Contains(urls[1], "/c%20d%25.mkv") {
		t.Fatalf("playlist:\n%s", rec.Body.String())
	}
	idx := get("/?token=tok").Body.String()
	for _, u := range append(urls, "/playlist/"+tr.ih.String()+".m3u?token=tok") {
		if !strings.Contains(idx, `href="`+u+`"`) {
			t.Errorf("the index has no link to %s:\n%s", u, idx)
		}
	}
	for i, u := range urls {
		got := get(strings.TrimPrefix(u, "http://127.0.0.1:1234"))
		if want := tr.file(testOrder[[]int{0, 2}[i]]); got.Code != 200 || !bytes.Equal(got.Body.Bytes(), want) {
			t.Errorf("%s: status %d, %d bytes", u, got.Code, got.Body.Len())
		}
	}
}

// TestMetrics parses /metrics with the Prometheus text parser: every
// family is there with its labels; the pieces verified come from the
// torrent, the torrent's counters from its Stats, and reads through a
// FUSE-kind Reader sharing the Registry and through HTTP are counted under
// their own path.
func TestMetrics(t *testing.T) {
	tr := newTorrent(t, 16<<10, testFiles, testOrder)
	tr.deliver(t, 0)
	tr.deliver(t, 6) // b.txt is [100000, 105000): in piece 6
	reg := stream.NewRegistry()
	served := tr.served()
	served.Stats = func(context.Context) (httpserve.Stats, error) {
		return httpserve.Stats{
			Downloaded: 1000, Uploaded: 2000, Peers: 1, PiecesVerified: tr.w.Bitfield().Count(),
			Pieces: tr.info.NumPieces(), HashFailures: 3, Banned: 4, DownloadRate: 5, UploadRate: 6, Wants: 10,
			PeerList: []httpserve.Peer{{Addr: "127.0.0.2:6881"}},
			Cache:    &httpserve.CacheUse{Bytes: 7, Cap: 8, Evictions: 9},
		}, nil
	}
	s := httpserve.New(httpserve.Config{Torrents: httpserve.Static{served}, Readers: reg})
	do := func(target string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, target, nil)
		req.Host = "127.0.0.1"
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		return rec
	}
	if rec := do("/t/" + tr.ih.String() + "/b.txt"); rec.Code != 200 {
		t.Fatalf("b.txt: %d", rec.Code)
	}
	fuse := stream.NewReader(tr.w, 0, 16<<10, stream.Config{PieceLength: 16 << 10, Registry: reg, Kind: "fuse"})
	defer fuse.Close()
	for off := int64(0); off < 16<<10; off += 4096 {
		if _, err := fuse.ReadAt(t.Context(), make([]byte, 4096), off); err != nil {
			t.Fatal(err)
		}
	}
	rec := do("/metrics")
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	ih := tr.ih.String()
	for name, want := range map[string]float64{
		"btfs_downloaded_bytes_total": 1000, "btfs_uploaded_bytes_total": 2000, "btfs_peers": 1,
		"btfs_pieces_verified": 2, "btfs_pieces": float64(tr.info.NumPieces()), "btfs_hash_failures_total": 3,
		"btfs_banned_peers": 4, "btfs_download_rate_bytes": 5, "btfs_upload_rate_bytes": 6,
		"btfs_cache_bytes": 7, "btfs_cache_cap_bytes": 8, "btfs_cache_evictions_total": 9, "btfs_wants": 10,
	} {
		mf := mfs[name]
		if mf == nil || len(mf.Metric) != 1 {
			t.Errorf("%s: %v", name, mf)
			continue
		}
		m := mf.Metric[0]
		got := m.GetGauge().GetValue() + m.GetCounter().GetValue()
		if got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
		if l := m.Label; len(l) != 1 || l[0].GetName() != "infohash" || l[0].GetValue() != ih {
			t.Errorf("%s labels %v", name, l)
		}
	}
	byPath := func(name string) map[string]*dto.Metric {
		out := map[string]*dto.Metric{}
		if mf := mfs[name]; mf != nil {
			for _, m := range mf.Metric {
				out[m.Label[0].GetValue()] = m
			}
		}
		return out
	}
	h := byPath("btfs_read_wait_seconds")
	if h["http"].GetHistogram().GetSampleCount() == 0 || h["fuse"].GetHistogram().GetSampleCount() != 4 {
		t.Errorf("btfs_read_wait_seconds: %v", h)
	}
	if b := h["fuse"].GetHistogram().GetBucket(); len(b) != len(stream.WaitBuckets)+1 || b[len(b)-1].GetCumulativeCount() != 4 {
		t.Errorf("fuse buckets %v", b)
	}
	hits := byPath("btfs_readahead_hits_total")
	if got := hits["fuse"].GetCounter().GetValue(); got < 1 || got > 3 { // the first read had no window yet
		t.Errorf("fuse readahead hits %v of 4 sequential reads of verified bytes", got)
	}
	readers := byPath("btfs_readers")
	if readers["fuse"].GetGauge().GetValue() != 1 || readers["http"].GetGauge().GetValue() != 0 {
		t.Errorf("btfs_readers %v", readers)
	}
}

// TestRangeReadsOnlyWhatIsAsked serves ranges of which only the pieces
// under them are verified: the response completes, so the server read
// nothing past the range (a read past it would wait for a missing piece
// until the deadline).
func TestRangeReadsOnlyWhatIsAsked(t *testing.T) {
	tr := newTorrent(t, 16<<10, testFiles, testOrder)
	tr.deliver(t, 0)
	tr.deliver(t, 6) // movie.mp4's last 1696 bytes and b.txt
	s := httpserve.New(httpserve.Config{Torrents: httpserve.Static{tr.served()}})
	movie := tr.file("a/movie.mp4")
	for _, tc := range []struct {
		rg         string
		start, end int
	}{
		{"bytes=0-16383", 0, 16384},
		{"bytes=100-199", 100, 200},
		{"bytes=-1000", 99000, 100000},
		{"bytes=98304-", 98304, 100000},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/t/"+tr.ih.String()+"/a/movie.mp4", nil)
		req.Host = "127.0.0.1"
		req.Header.Set("Range", tc.rg)
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		cancel()
		if rec.Code != http.StatusPartialContent || !bytes.Equal(rec.Body.Bytes(), movie[tc.start:tc.end]) {
			t.Errorf("%s: status %d, %d bytes, want 206 with [%d, %d)", tc.rg, rec.Code, rec.Body.Len(), tc.start, tc.end)
		}
	}
	if ws := tr.w.Wants(); len(ws) != 0 {
		t.Errorf("wants left after the responses: %v", ws)
	}
}

// TestServeStopsStreams stops Serve while a response waits for a piece
// nobody has: Serve returns, and the response's wants are released.
func TestServeStopsStreams(t *testing.T) {
	tr := newTorrent(t, 16<<10, testFiles, testOrder)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	served := make(chan error, 1)
	go func() {
		served <- httpserve.Serve(ctx, ln, httpserve.New(httpserve.Config{Torrents: httpserve.Static{tr.served()}}))
	}()
	got := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/t/" + tr.ih.String() + "/b.txt")
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		got <- err
	}()
	poll.Until(t, 10*time.Second, "the response waiting with wants", func() bool { return len(tr.w.Wants()) > 0 })
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	if ws := tr.w.Wants(); len(ws) != 0 {
		t.Errorf("wants left after Serve returned: %v", ws)
	}
	if err := <-got; err == nil {
		t.Error("the client got a whole body of a file whose pieces are missing")
	}
}
