package engine

import (
	"context"
	"testing"
	"time"

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
