package engine

import (
	"net/netip"
	"testing"
	"time"

	"btfs/internal/poll"
	"btfs/internal/swarmtest"
	"btfs/picker"
)

// TestBudget: two leechers share a budget of 2 connections, with three
// seeders known to each: together they never hold more than 2. A slot
// stays with the torrent that holds it (a complete torrent keeps its
// connections to seeders: the budget caps, it does not rebalance), so the
// second gets its torrent once the first closes and gives its slots back;
// every slot is given back when both have closed.
func TestBudget(t *testing.T) {
	log := testLogger(t)
	budget := NewBudget(2)
	var seeders []netip.AddrPort
	dir := t.TempDir()
	_, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Size: 512 << 10, PieceLength: 32 << 10, Seed: 90})
	for _, ip := range []string{"127.0.0.21", "127.0.0.22", "127.0.0.23"} {
		s := seedEngine(t, mi, dir, Config{Logger: log, Listen: ip + ":0"})
		seeders = append(seeders, s.ListenAddr())
	}
	var leechers []*Torrent
	for range 2 {
		l, _ := leechEngine(t, mi, Config{Logger: log, Mode: picker.FetchAll, Peers: seeders, Budget: budget})
		leechers = append(leechers, l)
	}
	// waitOne waits for one of ls to complete, checking the cap all along.
	waitOne := func(ls ...*Torrent) *Torrent {
		var done *Torrent
		poll.Until(t, time.Minute, "one of the torrents to complete", func() bool {
			if n := budget.InUse(); n > 2 {
				t.Fatalf("%d connections in use, budget 2", n)
			}
			for _, l := range ls {
				select {
				case <-l.Complete():
					done = l
					return true
				default:
				}
			}
			return false
		})
		return done
	}
	first := waitOne(leechers...)
	other := leechers[0]
	if other == first {
		other = leechers[1]
	}
	first.Close()
	waitOne(other)
	other.Close()
	poll.Until(t, 10*time.Second, "every slot given back", func() bool { return budget.InUse() == 0 })
}
