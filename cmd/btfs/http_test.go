package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"btfs/internal/poll"
	"btfs/internal/swarmtest"
)

// servingRE finds the address btfs mount -http prints.
var servingRE = regexp.MustCompile(`serving HTTP at (http://[^ /]+/)`)

// servedAt waits for p to print its HTTP address and returns it.
func servedAt(t *testing.T, p *proc) string {
	t.Helper()
	var base string
	poll.Until(t, 30*time.Second, "btfs prints the HTTP address", func() bool {
		m := servingRE.FindStringSubmatch(p.out.String())
		if m != nil {
			base = m[1]
		}
		return m != nil
	})
	return base
}

// TestMountHTTPStreamsMP4 mounts a fresh torrent of an MP4 whose moov atom
// is at the end, seeded by aria2c, with -http on an ephemeral loopback
// port: ffprobe and a seeking ffmpeg read the file's URL, the playlist
// names it, and /metrics shows the HTTP reads.
func TestMountHTTPStreamsMP4(t *testing.T) {
	swarmtest.Require(t, "ffmpeg", "ffprobe")
	data := t.TempDir()
	video := filepath.Join(data, "f.mp4")
	out, err := exec.Command("ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
		"-f", "lavfi", "-i", "sine", "-t", "10", "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "1M", "-c:a", "aac", video).CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	s := startSwarmFromFile(t, video)
	mp := mountpoint(t)
	p := startBtfs(t, mountArgs(t, "-http", "127.0.0.1:0", s.torrentPath, mp)...)
	waitMounted(t, p, mp)
	base := servedAt(t, p)
	url := base + "t/" + s.mi.InfoHash.String() + "/f.mp4"
	if out, err := exec.Command("ffprobe", "-v", "error", "-show_format", url).CombinedOutput(); err != nil {
		t.Fatalf("ffprobe %s: %v\n%s", url, err, out)
	}
	if out, err := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-ss", "5", "-i", url, "-frames:v", "1", "-f", "null", "-").CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg -ss 5 %s: %v\n%s", url, err, out)
	}

	resp, err := http.Get(base + "playlist/" + s.mi.InfoHash.String() + ".m3u")
	if err != nil {
		t.Fatal(err)
	}
	pl, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !strings.Contains(string(pl), url) {
		t.Errorf("playlist without %s (%v):\n%s", url, err, pl)
	}

	resp, err = http.Get(base + "metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	if n := pathSamples(mfs["btfs_read_wait_seconds"], "http"); n == 0 {
		t.Errorf("no HTTP read in btfs_read_wait_seconds: %v", mfs["btfs_read_wait_seconds"])
	}
	if v := mfs["btfs_pieces"]; v == nil || int(v.Metric[0].GetGauge().GetValue()) != s.mi.Info.NumPieces() {
		t.Errorf("btfs_pieces %v, want %d", v, s.mi.Info.NumPieces())
	}
	if v := mfs["btfs_downloaded_bytes_total"]; v == nil || v.Metric[0].GetCounter().GetValue() <= 0 {
		t.Errorf("btfs_downloaded_bytes_total %v after streaming", v)
	}
}

// pathSamples is the sample count of histogram family mf's series of
// label path=path; 0 when there is none.
func pathSamples(mf *dto.MetricFamily, path string) uint64 {
	if mf == nil {
		return 0
	}
	for _, m := range mf.Metric {
		for _, l := range m.Label {
			if l.GetName() == "path" && l.GetValue() == path {
				return m.GetHistogram().GetSampleCount()
			}
		}
	}
	return 0
}

// metricValue scrapes url (a /metrics) and returns the value of the gauge
// or counter name (its series with a label of value label, when given);
// false when it is not there.
func metricValue(t *testing.T, url, name string, label ...string) (float64, bool) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
	for _, m := range mf.Metric {
		if len(label) > 0 && !slices.ContainsFunc(m.Label, func(l *dto.LabelPair) bool { return l.GetValue() == label[0] }) {
			continue
		}
		return m.GetGauge().GetValue() + m.GetCounter().GetValue(), true
	}
	return 0, false
}

// TestMountHTTPInterruptedReleasesWants streams a file over HTTP from a
// mount whose download is capped far below what the client would take,
// with -fetch reads (nothing is fetched unless a reader wants it): while
// the client reads, the engine sees its wants (btfs_wants > 0); once the
// client goes away mid-body, they drop to zero and the response's reader
// is closed.
func TestMountHTTPInterruptedReleasesWants(t *testing.T) {
	const size = 8 << 20
	s := startSwarm(t, swarmtest.TorrentOptions{Size: size, PieceLength: 256 << 10}, true)
	mp := mountpoint(t)
	const token = "t0ken"
	p := startBtfs(t, mountArgs(t, "-fetch", "reads", "-max-download-rate", "512KB", "-http", "127.0.0.1:0", "-http-token", token, s.torrentPath, mp)...)
	waitMounted(t, p, mp)
	api := httpAPI{base: servedAt(t, p), token: token}
	if ts := api.list(t); len(ts) != 1 || ts[0].InfoHash != s.mi.InfoHash.String() {
		t.Errorf("GET /api/torrents of a mount of one torrent: %+v", ts)
	}
	if code, body := api.do(t, http.MethodPost, "api/torrents", "text/plain", []byte(magnetOf(s.mi, nil)), true); code != http.StatusNotImplemented || !bytes.Contains(body, []byte("mount a library")) {
		t.Errorf("POST to a mount of one torrent: %d %s, want 501 with the reason", code, body)
	}
	if code, body := api.do(t, http.MethodDelete, "api/torrents/"+s.mi.InfoHash.String(), "", nil, true); code != http.StatusNotImplemented || !bytes.Contains(body, []byte("mount a library")) {
		t.Errorf("DELETE from a mount of one torrent: %d %s, want 501 with the reason", code, body)
	}
	metrics := api.base + "metrics?token=" + token
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api.base+"t/"+s.mi.InfoHash.String()+"/"+s.mi.Info.Name+"?token="+token, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, 64<<10)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatalf("first bytes: %v", err)
	}
	src := s.source(t, s.mi.Info.Files[0])
	if !bytes.Equal(first, src[:len(first)]) {
		t.Fatal("the first bytes differ from the source")
	}
	poll.Until(t, 30*time.Second, "the engine sees the stream's wants", func() bool {
		v, ok := metricValue(t, metrics, "btfs_wants")
		return ok && v > 0
	})
	cancel() // the client goes away mid-body
	resp.Body.Close()
	poll.Until(t, 30*time.Second, "the wants released after the client left", func() bool {
		v, ok := metricValue(t, metrics, "btfs_wants")
		return ok && v == 0
	})
	if v, ok := metricValue(t, metrics, "btfs_readers", "http"); !ok || v != 0 {
		t.Errorf("btfs_readers %v after the client left", v)
	}
	if v, _ := metricValue(t, metrics, "btfs_pieces_verified"); v >= float64(s.mi.Info.NumPieces()) {
		t.Errorf("%v pieces verified: the whole file came before the client left, nothing was interrupted", v)
	}
}
