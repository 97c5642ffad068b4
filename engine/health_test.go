package engine

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"btfs/engine/wire"
	"btfs/internal/poll"
	"btfs/internal/swarmtest"
	"btfs/storagewrapper"
)

// TestStoreFailureStopsRequests drives the loop's state over a real
// FileStore whose directory is moved away mid-download: the first block
// that cannot be stored puts the store in its failed state, the loop
// cancels every request it has out (the swarm sends nothing we cannot
// keep) and asks for nothing more, and it requests again by itself once
// the directory is back and the store recovers.
func TestStoreFailureStopsRequests(t *testing.T) {
	_, mi := swarmtest.MakeTorrent(t, t.TempDir(), swarmtest.TorrentOptions{Size: 4 << 20, PieceLength: 64 << 10})
	base := t.TempDir()
	dir := filepath.Join(base, "store")
	ds, err := storagewrapper.NewFileStore(dir, mi.Info, false)
	if err != nil {
		t.Fatal(err)
	}
	sw, err := storagewrapper.New(mi.Info, ds, storagewrapper.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sw.Close() })
	tor, err := New(mi, sw, Config{Trackers: [][]string{}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	tor.ctx, tor.cancel = context.WithCancel(context.Background())
	t.Cleanup(tor.cancel)
	s := tor.s
	p := idlePeer(t, tor, 1001)
	s.fill(p)
	asked := len(p.outstanding)
	if asked == 0 {
		t.Fatal("no requests to a seed")
	}
	p.out.take(nil) // the requests: sent

	// The directory goes; a block of a piece not written yet cannot be.
	if err := os.Rename(dir, filepath.Join(base, "away")); err != nil {
		t.Fatal(err)
	}
	var b storagewrapper.Block
	for b = range p.outstanding {
		break
	}
	res, err := sw.PieceCameIn(b.Piece, b.Begin, make([]byte, b.Length), p.key)
	if err == nil {
		t.Fatal("a block stored into a directory that is gone")
	}
	s.onBlock(p, b, res, err)
	if h := sw.Health(); h.Fault != storagewrapper.FaultGone {
		t.Fatalf("health after the failure: %+v", h)
	}
	if !s.store.failed || len(p.outstanding) != 0 {
		t.Fatalf("after the failure: failed %v, %d requests still out", s.store.failed, len(p.outstanding))
	}
	msgs, _, _ := p.out.take(nil)
	cancels := 0
	for _, m := range msgs {
		switch m.ID {
		case wire.Cancel:
			cancels++
		case wire.Request:
			t.Fatalf("a request sent while the store fails: %+v", m)
		case wire.NotInterested:
			t.Fatal("not-interested sent: the peer would choke us and recovery wait for its choke round")
		}
	}
	if cancels != asked-1 {
		t.Fatalf("%d cancels, want %d (every request out but the block that came)", cancels, asked-1)
	}
	s.fillAll()
	s.rerequestLate(time.Now())
	if len(p.outstanding) != 0 {
		t.Fatalf("%d requests made while the store fails", len(p.outstanding))
	}

	// The directory is back: the store's probe recovers it, the loop
	// requests again.
	if err := os.Rename(filepath.Join(base, "away"), dir); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 20*time.Second, "the store to recover", func() bool { return sw.Health().Fault == storagewrapper.FaultNone })
	s.checkStore()
	if s.store.failed || len(p.outstanding) == 0 {
		t.Fatalf("after the recovery: failed %v, %d requests out", s.store.failed, len(p.outstanding))
	}
}
