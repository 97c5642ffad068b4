package engine

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"btfs/bitfield"
	"btfs/engine/wire"
	"btfs/internal/poll"
	"btfs/internal/swarmtest"
	"btfs/metainfo"
	"btfs/storagewrapper"
)

// hostileIP is where the hostile peers listen: its own address, so that a
// ban of it touches nobody else (bans are per IP).
const hostileIP = "127.0.0.4"

// garbage returns n pseudo-random bytes: never the block asked for.
func garbage(n int) []byte {
	b := make([]byte, n)
	rng := rand.NewChaCha8([32]byte{1})
	rng.Read(b)
	return b
}

// fullBitfield says "every piece" without BEP 6.
func fullBitfield(mi *metainfo.MetaInfo) wire.Message {
	bf := bitfield.New(mi.Info.NumPieces())
	for i := range mi.Info.NumPieces() {
		bf.Set(i)
	}
	return wire.Message{ID: wire.Bitfield, Bitfield: bf.Bytes()}
}

// soleLiar claims every piece and answers the requests for the first
// piece it is asked for with garbage, and no other: that piece fails its
// hash with the liar as its only contributor.
func soleLiar(mi *metainfo.MetaInfo) func(*rawConn) error {
	return func(c *rawConn) error {
		if err := c.send(wire.Message{ID: wire.HaveAll}, wire.Message{ID: wire.Unchoke}); err != nil {
			return err
		}
		first := int64(-1)
		return c.readUntil(func(m wire.Message) error {
			if m.ID != wire.Request {
				return nil
			}
			if first < 0 {
				first = int64(m.Index)
			}
			if int64(m.Index) != first {
				return nil
			}
			return c.send(wire.Message{ID: wire.Piece, Index: m.Index, Begin: m.Begin, Block: garbage(int(m.Length))})
		})
	}
}

// poisoner claims every piece (no BEP 6) and poisons pieces one block at a
// time: it unchokes, answers a single request with garbage, chokes (which
// discards the other requests) and unchokes again. It never sends every
// block of a piece, so every piece it poisons has honest contributors too:
// only smart ban can tell who lied.
func poisoner(mi *metainfo.MetaInfo) func(*rawConn) error {
	return func(c *rawConn) error {
		if err := c.send(fullBitfield(mi), wire.Message{ID: wire.Unchoke}); err != nil {
			return err
		}
		poisoned := map[uint32]bool{}
		return c.readUntil(func(m wire.Message) error {
			if m.ID != wire.Request || poisoned[m.Index] {
				return nil
			}
			poisoned[m.Index] = true
			if err := c.send(wire.Message{ID: wire.Piece, Index: m.Index, Begin: m.Begin, Block: garbage(int(m.Length))},
				wire.Message{ID: wire.Choke}); err != nil {
				return err
			}
			time.Sleep(20 * time.Millisecond)
			return c.send(wire.Message{ID: wire.Unchoke})
		})
	}
}

// sprayer has no piece and sends garbage blocks nobody asked for, every
// block of every piece over and over: without a check of whose request a
// block answers, some would land in blocks handed out to honest peers.
func sprayer(mi *metainfo.MetaInfo) func(*rawConn) error {
	return func(c *rawConn) error {
		if err := c.send(wire.Message{ID: wire.HaveNone}); err != nil {
			return err
		}
		c.goRead(func() { c.readUntil(func(wire.Message) error { return nil }) }) // drain
		for {
			for i := range mi.Info.NumPieces() {
				plen := mi.Info.PieceLen(i)
				for begin := int64(0); begin < plen; begin += wire.BlockSize {
					n := min(wire.BlockSize, plen-begin)
					m := wire.Message{ID: wire.Piece, Index: uint32(i), Begin: uint32(begin), Block: garbage(int(n))}
					if err := c.send(m); err != nil {
						return err
					}
				}
			}
		}
	}
}

// heapWatch samples HeapInuse and keeps the largest value seen.
type heapWatch struct{ max atomic.Uint64 }

func (h *heapWatch) sample() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	for {
		old := h.max.Load()
		if ms.HeapInuse <= old || h.max.CompareAndSwap(old, ms.HeapInuse) {
			return
		}
	}
}

// giant claims every piece (no BEP 6) and then announces a message of
// about 4 GiB with the given ID, and streams zeros after it until the
// connection breaks (at most 256 MiB), sampling our heap as it goes.
func giant(mi *metainfo.MetaInfo, id wire.ID, heap *heapWatch) func(*rawConn) error {
	return func(c *rawConn) error {
		if err := c.send(fullBitfield(mi), wire.Message{ID: wire.Unchoke}); err != nil {
			return err
		}
		c.goRead(func() { c.readUntil(func(wire.Message) error { return nil }) }) // drain
		var hdr [13]byte
		binary.BigEndian.PutUint32(hdr[:], 0xFFFFFFF0)
		hdr[4] = byte(id)
		if _, err := c.conn.Write(hdr[:]); err != nil {
			return err
		}
		zeros := make([]byte, 64<<10)
		for sent := 0; sent < 256<<20; sent += len(zeros) {
			if sent%(4<<20) == 0 {
				heap.sample()
			}
			if _, err := c.conn.Write(zeros); err != nil {
				heap.sample()
				return err
			}
		}
		return errDone
	}
}

// babbler answers the handshake with text and noise instead of messages.
func babbler() func(*rawConn) error {
	return func(c *rawConn) error {
		noise := append([]byte("GET /announce HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"), garbage(4096)...)
		if _, err := c.conn.Write(noise); err != nil {
			return err
		}
		return c.readUntil(func(wire.Message) error { return nil })
	}
}

func TestHostilePeers(t *testing.T) {
	dir := t.TempDir()
	_, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Size: 4 << 20, PieceLength: 64 << 10, Seed: 21})
	var heap heapWatch
	for _, tc := range []struct {
		name   string
		behave func(*rawConn) error
		fast   bool // the hostile peer offers BEP 6
		// first: btfs meets the hostile peer alone and must ban it
		// before it is given an honest seeder.
		first        bool
		rate         int64 // MaxDownloadRate, to give the hostile peer time
		banned       bool  // the hostile peer must end up banned
		hashFailures bool  // some piece must have failed (else none may)
		fileStore    bool  // download into files rather than memory
	}{
		{name: "sole liar is banned at once", behave: soleLiar(mi), fast: true, first: true, banned: true, hashFailures: true, fileStore: true},
		{name: "one bad block per piece: smart ban", behave: poisoner(mi), rate: 2 << 20, banned: true, hashFailures: true, fileStore: true},
		{name: "blocks nobody asked for", behave: sprayer(mi), fast: true},
		{name: "4 GiB piece message", behave: giant(mi, wire.Piece, &heap)},
		{name: "4 GiB extended message", behave: giant(mi, wire.Extended, &heap)},
		{name: "4 GiB unknown message", behave: giant(mi, 99, &heap)},
		{name: "garbage after the handshake", behave: babbler()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := testLogger(t)
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			base := ms.HeapInuse
			heap.max.Store(base)

			hostile := listenRawPeer(t, mi, hostileIP, tc.fast, tc.behave)
			honest := seedEngine(t, mi, dir, Config{Logger: log})
			cfg := Config{Logger: log, MaxDownloadRate: tc.rate, Peers: []netip.AddrPort{hostile.addr, honest.ListenAddr()}}
			if tc.first {
				cfg.Peers = cfg.Peers[:1]
			}
			var leecher *Torrent
			var sw *storagewrapper.Wrapper
			if tc.fileStore {
				leecher, sw = fileStoreEngine(t, mi, t.TempDir(), false, cfg)
			} else {
				leecher, sw = leechEngine(t, mi, cfg)
			}
			ctx := context.Background()
			if tc.first {
				hostile.waitDropped(t, 30*time.Second)
				st, err := leecher.Stats(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if st.Banned != 1 || st.HashFailures != 1 {
					t.Fatalf("after the liar's one piece: banned %d, hash failures %d; want 1 and 1", st.Banned, st.HashFailures)
				}
				if err := leecher.AddPeers(ctx, honest.ListenAddr()); err != nil {
					t.Fatal(err)
				}
			}
			waitComplete(t, leecher, 60*time.Second)
			checkData(t, mi, sw, dir)
			hostile.waitDropped(t, 30*time.Second)
			if tc.banned {
				// The drop seen may be the honest seeder's (see below).
				poll.Until(t, 30*time.Second, "the leecher to ban the hostile peer", func() bool {
					st, err := leecher.Stats(ctx)
					return err == nil && st.Banned == 1
				})
			}
			st, err := leecher.Stats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if wantBanned := map[bool]int{true: 1}[tc.banned]; st.Banned != wantBanned {
				t.Errorf("banned %d addresses, want %d", st.Banned, wantBanned)
			}
			if (st.HashFailures > 0) != tc.hashFailures {
				t.Errorf("%d hash failures, want some: %v", st.HashFailures, tc.hashFailures)
			}
			for _, ps := range st.PerPeer {
				if ps.Addr.Addr() == hostile.addr.Addr() {
					t.Errorf("still connected to the hostile peer: %+v", ps)
				}
			}
			// Only the leecher's dials count: the honest seeder may
			// learn the hostile peer's address from the leecher's PEX
			// before the ban, and dial it too.
			if n := hostile.connectionsFrom(leecher.cfg.PeerID); tc.banned && n != 1 {
				t.Errorf("the banned peer was dialled %d times by the leecher", n)
			}
			if grew := int64(heap.max.Load()) - int64(base); grew > 64<<20 {
				t.Errorf("heap in use grew by %d MiB while a peer claimed a 4 GiB message", grew>>20)
			}
		})
	}
}
