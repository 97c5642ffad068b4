package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"btfs/internal/leakcheck"
	"btfs/internal/swarmtest"
	"btfs/metainfo"
	"btfs/picker"
	"btfs/storagewrapper"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// testLogger logs to the test when -v, else discards.
func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// seedEngine starts an in-process seeder of the data under dir.
func seedEngine(t testing.TB, mi *metainfo.MetaInfo, dir string, cfg Config) *Torrent {
	t.Helper()
	sw := fileStoreWrapper(t, mi, dir, true, cfg.Logger)
	if got := sw.Stats().VerifiedPieces; got != mi.Info.NumPieces() {
		t.Fatalf("seeder verified %d of %d pieces", got, mi.Info.NumPieces())
	}
	return startEngine(t, mi, sw, cfg)
}

// fileStoreWrapper is a resumed storagewrapper over the torrent's files
// under dir, closed in cleanup.
func fileStoreWrapper(t testing.TB, mi *metainfo.MetaInfo, dir string, readOnly bool, log *slog.Logger) *storagewrapper.Wrapper {
	t.Helper()
	fs, err := storagewrapper.NewFileStore(dir, mi.Info, readOnly)
	if err != nil {
		t.Fatal(err)
	}
	sw, err := storagewrapper.New(mi.Info, fs, storagewrapper.Config{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sw.Close() })
	if err := sw.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	return sw
}

func startEngine(t testing.TB, mi *metainfo.MetaInfo, sw *storagewrapper.Wrapper, cfg Config) *Torrent {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Trackers == nil {
		cfg.Trackers = [][]string{}
	}
	return runEngine(t, mi, sw, cfg)
}

// runEngine starts a Torrent with cfg as it is; it is closed at the end of
// the test.
func runEngine(t testing.TB, mi *metainfo.MetaInfo, sw *storagewrapper.Wrapper, cfg Config) *Torrent {
	t.Helper()
	tor, err := New(mi, sw, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := tor.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tor.Close() })
	return tor
}

// leechEngine starts an empty in-memory client.
func leechEngine(t testing.TB, mi *metainfo.MetaInfo, cfg Config) (*Torrent, *storagewrapper.Wrapper) {
	t.Helper()
	sw, err := storagewrapper.New(mi.Info, storagewrapper.NewMemStore(mi.Info), storagewrapper.Config{Logger: cfg.Logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sw.Close() })
	return startEngine(t, mi, sw, cfg), sw
}

func waitComplete(t *testing.T, tor *Torrent, d time.Duration) {
	t.Helper()
	select {
	case <-tor.Complete():
	case <-time.After(d):
		st, _ := tor.Stats(context.Background())
		t.Fatalf("not complete after %v: %+v", d, st)
	}
}

// checkData compares everything the wrapper serves with the files under dir.
func checkData(t *testing.T, mi *metainfo.MetaInfo, sw *storagewrapper.Wrapper, dir string) {
	t.Helper()
	var want bytes.Buffer
	for _, f := range mi.Info.Files {
		p := filepath.Join(append([]string{dir, mi.Info.Name}, f.Path...)...)
		if !mi.Info.MultiFile {
			p = filepath.Join(dir, mi.Info.Name)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		want.Write(b)
	}
	got := make([]byte, mi.Info.TotalLength)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := sw.ReadAt(ctx, got, 0); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(want.Bytes()) {
		t.Fatal("downloaded data differs from the source")
	}
}

func TestInProcessSwarm(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts swarmtest.TorrentOptions
	}{
		{"single file", swarmtest.TorrentOptions{Size: 3<<20 + 12345, PieceLength: 64 << 10}},
		{"multi file", swarmtest.TorrentOptions{Files: swarmtest.MultiFile, PieceLength: 32 << 10}},
		{"tiny pieces", swarmtest.TorrentOptions{Size: 100 << 10, PieceLength: 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			_, mi := swarmtest.MakeTorrent(t, dir, tc.opts)
			log := testLogger(t)
			seeder := seedEngine(t, mi, dir, Config{Logger: log})
			leecher, sw := leechEngine(t, mi, Config{Logger: log, Peers: []netip.AddrPort{seeder.ListenAddr()}})
			waitComplete(t, leecher, 60*time.Second)
			checkData(t, mi, sw, dir)
			st, err := leecher.Stats(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if st.HashFailures != 0 || st.PiecesDone != mi.Info.NumPieces() {
				t.Fatalf("stats after completion: %+v", st)
			}
		})
	}
}

func TestReadsComeFirst(t *testing.T) {
	// FetchReads: only what a reader asks for is downloaded.
	dir := t.TempDir()
	_, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Size: 4 << 20, PieceLength: 64 << 10})
	log := testLogger(t)
	seeder := seedEngine(t, mi, dir, Config{Logger: log})
	leecher, sw := leechEngine(t, mi, Config{Logger: log, Mode: picker.FetchReads, Peers: []netip.AddrPort{seeder.ListenAddr()}})
	buf := make([]byte, 64<<10)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	off := int64(2<<20 + 1000)
	if _, err := sw.ReadAt(ctx, buf, off); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join(dir, mi.Info.Name))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, src[off:off+int64(len(buf))]) {
		t.Fatal("read returned wrong bytes")
	}
	st, err := leecher.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.PiecesDone > 2 {
		t.Fatalf("FetchReads downloaded %d pieces for a read spanning 2", st.PiecesDone)
	}
}
