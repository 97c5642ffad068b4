package engine

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"btfs/engine/choker"
	"btfs/engine/wire"
	"btfs/internal/poll"
	"btfs/internal/swarmtest"
	"btfs/metainfo"
)

// pacedLeecher is a raw peer that downloads from a seeder at a fixed pace
// while it is unchoked: one block request every 16 KiB / rate, the blocks
// chosen round-robin over the torrent (it never finishes). Its rate as
// the seeder sees it is therefore what the test chose.
type pacedLeecher struct {
	rate     int64          // bytes/s it asks for while unchoked
	addr     netip.AddrPort // its end of the connection, as the seeder names it
	unchoked atomic.Bool    // the seeder unchokes it now
	got      atomic.Int64   // payload bytes received
}

func startPacedLeecher(t *testing.T, mi *metainfo.MetaInfo, seeder netip.AddrPort, rate int64) *pacedLeecher {
	t.Helper()
	pl := &pacedLeecher{rate: rate}
	ready := make(chan netip.AddrPort, 1)
	dialRawPeer(t, mi, seeder, true, func(c *rawConn) error {
		ready <- addrOf(c.conn.LocalAddr())
		if err := c.send(wire.Message{ID: wire.HaveNone}, wire.Message{ID: wire.Interested}); err != nil {
			return err
		}
		readErr := make(chan error, 1)
		c.goRead(func() {
			readErr <- c.readUntil(func(m wire.Message) error {
				switch m.ID {
				case wire.Unchoke:
					pl.unchoked.Store(true)
				case wire.Choke:
					pl.unchoked.Store(false)
				case wire.Piece:
					pl.got.Add(int64(len(m.Block)))
				}
				return nil
			})
		})
		tick := time.NewTicker(time.Duration(float64(time.Second) * wire.BlockSize / float64(rate)))
		defer tick.Stop()
		var next int64 // torrent offset of the next block asked for
		for {
			select {
			case err := <-readErr:
				return err
			case <-tick.C:
			}
			if !pl.unchoked.Load() {
				continue
			}
			i := next / mi.Info.PieceLength
			begin := next % mi.Info.PieceLength
			n := min(wire.BlockSize, mi.Info.PieceLen(int(i))-begin)
			if err := c.send(wire.Message{ID: wire.Request, Index: uint32(i), Begin: uint32(begin), Length: uint32(n)}); err != nil {
				return err
			}
			if next += n; next >= mi.Info.TotalLength {
				next = 0
			}
		}
	})
	pl.addr = <-ready
	return pl
}

// TestChokerWithManyLeechers runs a seeder with eight leechers: four slow
// ones (16 KiB/s) that connect first and take the free slots, and four
// fast ones (320 to 800 KiB/s) that come later and start choked. Seeding,
// tit-for-tat ranks by what we send each peer, so the fast ones must win
// the four regular slots as the optimistic unchoke gives each its chance,
// and keep them; the fifth slot, the optimistic one, must then rotate
// among the slow ones.
func TestChokerWithManyLeechers(t *testing.T) {
	dir := t.TempDir()
	_, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Size: 1 << 20, PieceLength: 64 << 10, Seed: 51})
	const (
		rechoke    = 200 * time.Millisecond
		optimistic = 3 * rechoke
	)
	seeder := seedEngine(t, mi, dir, Config{
		Logger:             testLogger(t),
		RechokeInterval:    rechoke,
		OptimisticInterval: optimistic,
		Rand:               rand.New(rand.NewPCG(5, 5)),
	})
	ctx := context.Background()
	var slow, fast []*pacedLeecher
	for range 4 {
		slow = append(slow, startPacedLeecher(t, mi, seeder.ListenAddr(), 16<<10))
	}
	// The slow ones hold the regular slots before the fast ones arrive.
	poll.Until(t, swarmtest.Guard, "the slow leechers unchoked", func() bool {
		return !slices.ContainsFunc(slow, func(p *pacedLeecher) bool { return !p.unchoked.Load() })
	})
	for k := range 4 {
		fast = append(fast, startPacedLeecher(t, mi, seeder.ListenAddr(), int64(320+160*k)<<10))
	}
	state := func() (map[netip.AddrPort]PeerStats, Stats) {
		st, err := seeder.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m := map[netip.AddrPort]PeerStats{}
		for _, ps := range st.PerPeer {
			m[ps.Addr] = ps
		}
		return m, st
	}
	unchoked := func(m map[netip.AddrPort]PeerStats, ls []*pacedLeecher) (n int, who []netip.AddrPort) {
		for _, l := range ls {
			if ps, ok := m[l.addr]; ok && !ps.AmChoking {
				n++
				who = append(who, l.addr)
			}
		}
		return n, who
	}
	// Converged: every fast leecher unchoked, at most one slow one.
	poll.Until(t, swarmtest.Guard, "the fast leechers to win the regular slots", func() bool {
		m, _ := state()
		nf, _ := unchoked(m, fast)
		ns, _ := unchoked(m, slow)
		return nf == 4 && ns <= 1
	})
	// Watch eight optimistic periods (after the one under way ends, so the
	// optimistic pick is a slow leecher throughout).
	time.Sleep(optimistic)
	optimists := map[netip.AddrPort]bool{}
	gotBefore := map[*pacedLeecher]int64{}
	for _, l := range append(slices.Clone(fast), slow...) {
		gotBefore[l] = l.got.Load()
	}
	end := time.Now().Add(8 * optimistic)
	for time.Now().Before(end) {
		m, st := state()
		nf, _ := unchoked(m, fast)
		ns, who := unchoked(m, slow)
		if nf != 4 || ns > 1 {
			t.Fatalf("%d fast and %d slow leechers unchoked, want 4 and at most 1: %+v", nf, ns, st.PerPeer)
		}
		for _, a := range who {
			optimists[a] = true
		}
		time.Sleep(rechoke / 3)
	}
	// The regular winners are the four best by what we sent them over the
	// window. (Compared over the window, not sample by sample: a rate
	// sampled at one instant is 0 for a fast leecher whose requests the
	// load held back for a moment, and the test flaked on a busy machine.)
	slowestFast, fastestSlow := int64(-1), int64(0)
	for _, l := range fast {
		if n := l.got.Load() - gotBefore[l]; slowestFast < 0 || n < slowestFast {
			slowestFast = n
		}
	}
	for _, l := range slow {
		fastestSlow = max(fastestSlow, l.got.Load()-gotBefore[l])
	}
	if fastestSlow >= slowestFast {
		t.Fatalf("over the window a slow leecher got %d bytes, the slowest regular slot %d", fastestSlow, slowestFast)
	}
	t.Logf("optimistic unchokes went to %d slow leechers", len(optimists))
	if len(optimists) < 2 {
		t.Fatalf("over eight optimistic periods the optimistic unchoke went only to %v", optimists)
	}
	if choker.DefaultSlots != 4 {
		t.Fatalf("the test assumes 4 regular slots, the choker has %d", choker.DefaultSlots)
	}
}
