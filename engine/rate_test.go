package engine

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"btfs/engine/wire"
	"btfs/internal/poll"
	"btfs/internal/swarmtest"
)

// TestRateLimits checks that MaxDownloadRate and MaxUploadRate hold: at
// every moment, the bytes counted are at most the token bucket's burst
// plus rate × the time since the Torrent was made. It is an upper bound,
// a correctness property of the limiter's use, not a speed measurement: a
// slow machine passes it by being slow.
func TestRateLimits(t *testing.T) {
	const limit = 1 << 20 // bytes/s
	dir := t.TempDir()
	_, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Size: 3 << 20, PieceLength: 64 << 10, Seed: 31})
	for _, tc := range []struct {
		name       string
		down, up   int64
		limitedIsL bool // the leecher is the limited side (else the seeder)
	}{
		{name: "download", down: limit, limitedIsL: true},
		{name: "upload", up: limit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := testLogger(t)
			start := time.Now() // before New: the buckets start full
			seeder := seedEngine(t, mi, dir, Config{Logger: log, MaxUploadRate: tc.up})
			leecher, sw := leechEngine(t, mi, Config{Logger: log, MaxDownloadRate: tc.down, Peers: []netip.AddrPort{seeder.ListenAddr()}})
			limited := seeder
			if tc.limitedIsL {
				limited = leecher
			}
			bound := func() float64 { return float64(burst(limit)) + limit*time.Since(start).Seconds() }
			check := func() bool {
				st, err := limited.Stats(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				n := st.Downloaded
				if !tc.limitedIsL {
					n = st.Uploaded
				}
				if b := bound(); float64(n) > b {
					t.Fatalf("%d bytes after %v: more than burst + rate × time = %.0f", n, time.Since(start), b)
				}
				return n >= mi.Info.TotalLength
			}
			poll.Until(t, 60*time.Second, "the download to finish within the rate's bound", check)
			waitComplete(t, leecher, 60*time.Second)
			checkData(t, mi, sw, dir)
		})
	}
}

// TestUploadLargerThanBurst: a request longer than the upload bucket's
// burst (BEP 3 allows 128 KiB; a low cap has a 64 KiB burst) is served
// slowly, not refused.
func TestUploadLargerThanBurst(t *testing.T) {
	dir := t.TempDir()
	_, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Size: 1 << 20, PieceLength: 256 << 10, Seed: 32})
	data, err := os.ReadFile(filepath.Join(dir, mi.Info.Name))
	if err != nil {
		t.Fatal(err)
	}
	const rate = 64 << 10
	if burst(rate) >= wire.DefaultMaxRequest {
		t.Fatalf("burst %d: the test needs a request longer than it", burst(rate))
	}
	seeder := seedEngine(t, mi, dir, Config{Logger: testLogger(t), MaxUploadRate: rate})
	const begin, length = 16 << 10, wire.DefaultMaxRequest
	got := make(chan []byte, 1)
	dialRawPeer(t, mi, seeder.ListenAddr(), true, func(c *rawConn) error {
		if err := c.send(wire.Message{ID: wire.HaveNone}, wire.Message{ID: wire.Interested}); err != nil {
			return err
		}
		return c.readUntil(func(m wire.Message) error {
			switch m.ID {
			case wire.Unchoke:
				return c.send(wire.Message{ID: wire.Request, Index: 1, Begin: begin, Length: length})
			case wire.Piece:
				got <- bytes.Clone(m.Block)
				return errDone
			}
			return nil
		})
	})
	select {
	case b := <-got:
		off := mi.Info.PieceOffset(1) + begin
		if !bytes.Equal(b, data[off:off+length]) {
			t.Fatalf("got %d bytes, not the %d requested", len(b), length)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no answer to a 128 KiB request under a 64 KiB/s upload cap")
	}
}
