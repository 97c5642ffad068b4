package engine

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	"btfs/internal/poll"
	"btfs/internal/swarmtest"
)

// lanTracker is an HTTP tracker written in the test: it answers every
// announce with the peers it is told about, an interval of 30 minutes and
// a min interval of one second, and counts the announces.
type lanTracker struct {
	mu        sync.Mutex
	peers     []netip.AddrPort // what the next announces return
	announces int              // announces received
}

func (lt *lanTracker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	lt.announces++
	var compact []byte
	for _, p := range lt.peers {
		a := p.Addr().As4()
		compact = append(compact, a[:]...)
		compact = binary.BigEndian.AppendUint16(compact, p.Port())
	}
	fmt.Fprintf(w, "d8:intervali1800e12:min intervali1e5:peers%d:%se", len(compact), compact)
}

func (lt *lanTracker) set(peers ...netip.AddrPort) {
	lt.mu.Lock()
	lt.peers = peers
	lt.mu.Unlock()
}

func (lt *lanTracker) count() int {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	return lt.announces
}

// TestShortOfPeersAnnouncesAgain: the first announce finds nobody; the
// seeder registers afterwards. The regular interval is 30 minutes, so the
// download completes only if the engine, short of peers, asks for an
// announce (tracker.Announcer.Need), which goes out after the min interval.
func TestShortOfPeersAnnouncesAgain(t *testing.T) {
	dir := t.TempDir()
	_, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Size: 1 << 20, PieceLength: 64 << 10, Seed: 41})
	lt := &lanTracker{}
	srv := httptest.NewServer(lt) // 127.0.0.1
	t.Cleanup(srv.Close)
	log := testLogger(t)
	seeder := seedEngine(t, mi, dir, Config{Logger: log})
	leecher, sw := leechEngine(t, mi, Config{
		Logger:              log,
		Trackers:            [][]string{{srv.URL + "/announce"}},
		MinAnnounceInterval: time.Second,
	})
	poll.Until(t, 30*time.Second, "the first announce", func() bool { return lt.count() > 0 })
	lt.set(seeder.ListenAddr())
	waitComplete(t, leecher, 30*time.Second)
	checkData(t, mi, sw, dir)
	if n := lt.count(); n < 2 {
		t.Fatalf("%d announces", n)
	}
}

// waitScrapeCompleted waits until the tracker has counted a "completed"
// event for the torrent of tr: the engine must send it when the download
// completes, not at its next regular announce (30 minutes later).
func waitScrapeCompleted(t *testing.T, tr *swarmtest.Tracker, tor *Torrent) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), swarmtest.Guard)
	defer cancel()
	poll.UntilNil(t, swarmtest.Guard, "the tracker to hear of the completion", func() error {
		sc, err := tr.Scrape(ctx, tor.mi.InfoHash)
		if err == nil && sc.Completed < 1 {
			err = fmt.Errorf("last scrape %+v", sc)
		}
		return err
	})
}
