package engine

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"btfs/internal/swarmtest"
)

// fakeLocal is a LocalFinder that records its joins and answers each
// with addrs at once.
type fakeLocal struct {
	addrs []netip.AddrPort
	mu    sync.Mutex
	joins []fakeLookup
	needs int
}

func (f *fakeLocal) Join(ctx context.Context, ih [20]byte, port int, found func([]netip.AddrPort)) func() {
	f.mu.Lock()
	f.joins = append(f.joins, fakeLookup{ih, port})
	f.mu.Unlock()
	if len(f.addrs) > 0 {
		found(f.addrs)
	}
	return func() {
		f.mu.Lock()
		f.needs++
		f.mu.Unlock()
	}
}

func (f *fakeLocal) joined() []fakeLookup {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeLookup(nil), f.joins...)
}

// TestLocalFinderFindsPeers: a leecher with no tracker, no DHT and no
// peer finds the seeder through its local finder, which it joins once
// with its info-hash and listen port.
func TestLocalFinderFindsPeers(t *testing.T) {
	dir := t.TempDir()
	_, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Size: 512 << 10, PieceLength: 32 << 10, Seed: 16})
	log := testLogger(t)
	seeder := seedEngine(t, mi, dir, Config{Logger: log})
	f := &fakeLocal{addrs: []netip.AddrPort{seeder.ListenAddr()}}
	leecher, _ := leechEngine(t, mi, Config{Logger: log, Local: f})
	waitComplete(t, leecher, 60*time.Second)
	st, err := leecher.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Learned["lsd"] != 1 {
		t.Errorf("learned %v, want one address from LSD", st.Learned)
	}
	want := fakeLookup{[20]byte(mi.InfoHash), int(leecher.ListenAddr().Port())}
	if got := f.joined(); len(got) != 1 || got[0] != want {
		t.Errorf("joins %v, want [%v]", got, want)
	}
}

// TestLocalFinderPrivate: a private torrent (BEP 27) never joins the
// local finder; a public one does, at start.
func TestLocalFinderPrivate(t *testing.T) {
	for _, private := range []bool{false, true} {
		dir := t.TempDir()
		_, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Size: 64 << 10, PieceLength: 16 << 10, Seed: 17})
		mi.Info.Private = private // only the engine's reading of the flag matters here
		f := &fakeLocal{}
		seeder := seedEngine(t, mi, dir, Config{Logger: testLogger(t), Local: f})
		if _, err := seeder.Stats(context.Background()); err != nil { // the loop has started
			t.Fatal(err)
		}
		want := 1
		if private {
			want = 0
		}
		if got := len(f.joined()); got != want {
			t.Errorf("private=%v: %d joins, want %d", private, got, want)
		}
	}
}
