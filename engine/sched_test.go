package engine

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"btfs/bitfield"
	"btfs/engine/wire"
	"btfs/internal/poll"
	"btfs/internal/swarmtest"
	"btfs/metainfo"
	"btfs/picker"
	"btfs/storagewrapper"
)

func TestPipelineDepth(t *testing.T) {
	const ms = time.Millisecond
	mbps := func(n float64) float64 { return n * (1 << 20) }
	for _, tc := range []struct {
		name string
		q    pipeline
		want int
	}{
		// Without a reader waiting: queueTime of the rate, as before.
		{"background: 2 s of rate", pipeline{rate: mbps(4), srtt: 100 * ms, rttvar: 10 * ms}, 512},
		{"background: slow peer", pipeline{rate: mbps(0.5), srtt: 100 * ms}, 64},
		{"background: young, slow start counts", pipeline{rate: mbps(0.5), srtt: 100 * ms, young: true, slowStart: 200}, 200},
		// A reader waits and the RTT is known: the BDP, with a margin of
		// max(srtt/2, 4·rttvar), plus bdpExtra blocks.
		// 4 MiB/s × (100 + 50) ms = 614.4 KiB = 38.4 blocks → 39, + 2.
		{"reader: BDP, half-RTT margin", pipeline{rate: mbps(4), srtt: 100 * ms, rttvar: 10 * ms, readerWaits: true}, 41},
		// 4 MiB/s × (100 + 4·30) ms = 901.12 KiB = 56.3 blocks → 57, + 2.
		{"reader: BDP, jittery", pipeline{rate: mbps(4), srtt: 100 * ms, rttvar: 30 * ms, readerWaits: true}, 59},
		// 2 MiB/s × (160 + 80) ms = 491.52 KiB = 30.7 blocks → 31, + 2.
		{"reader: far and slow", pipeline{rate: mbps(2), srtt: 160 * ms, rttvar: 20 * ms, readerWaits: true}, 33},
		{"reader: young peer, slow start does not count", pipeline{rate: mbps(4), srtt: 100 * ms, young: true, slowStart: 512, readerWaits: true}, 41},
		{"reader: the floor", pipeline{rate: 1, srtt: ms, readerWaits: true}, minPipeline},
		{"reader: its reqq", pipeline{rate: mbps(4), srtt: 100 * ms, reqq: 16, readerWaits: true}, 16},
		{"reader: the cap", pipeline{rate: mbps(200), srtt: 100 * ms, readerWaits: true}, maxPipeline},
		{"reader: RTT unknown, 2 s of rate", pipeline{rate: mbps(0.5), readerWaits: true}, 64},
		{"snubbed", pipeline{rate: mbps(4), srtt: 100 * ms, snubbed: true, readerWaits: true}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.q.depth(); got != tc.want {
				t.Fatalf("depth(%+v) = %d; want %d", tc.q, got, tc.want)
			}
		})
	}
}

func TestRTTEstimator(t *testing.T) {
	const ms = time.Millisecond
	blk := func(i int) storagewrapper.Block {
		return storagewrapper.Block{Piece: i, Length: wire.BlockSize}
	}
	// 16 KiB at 1 MiB/s takes 15.625 ms of the latency.
	const rate = 1 << 20
	type step struct {
		sent     int           // block sent (-1 none)
		ahead    int           // bytes outstanding before it
		withdraw int           // block withdrawn (-1 none)
		arrived  int           // block arrived (-1 none)
		latency  time.Duration // of the arrival
	}
	for _, tc := range []struct {
		name  string
		steps []step
		want  time.Duration // srtt, 0 unknown
	}{
		{"no probe: a block sent behind others", []step{{0, 1 << 20, -1, 0, 200 * ms}}, 0},
		{"the probe, less its transfer", []step{{0, 0, -1, 0, 115625 * time.Microsecond}}, 100 * ms},
		{"a withdrawn probe is no sample", []step{{0, 0, 0, -1, 0}, {-1, 0, -1, 0, 50 * ms}}, 0},
		// 100 then 20: 7/8·100 + 1/8·20 = 90.
		{"a fast block lowers it", []step{{0, 0, -1, 0, 115625 * time.Microsecond}, {1, 1 << 20, -1, 1, 20 * ms}}, 90 * ms},
		{"a slow queued block does not raise it", []step{{0, 0, -1, 0, 115625 * time.Microsecond}, {1, 1 << 20, -1, 1, 900 * ms}}, 100 * ms},
		{"loopback: the floor", []step{{0, 0, -1, 0, 10 * time.Microsecond}}, minRTTSample},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e rttEstimator
			for _, s := range tc.steps {
				if s.sent >= 0 {
					e.sent(blk(s.sent), s.ahead)
				}
				if s.withdraw >= 0 {
					e.withdrawn(blk(s.withdraw))
				}
				if s.arrived >= 0 {
					e.arrived(blk(s.arrived), s.latency, rate)
				}
			}
			if got, _ := e.get(); got != tc.want {
				t.Fatalf("srtt = %v; want %v", got, tc.want)
			}
		})
	}
}

// wireLog records the requests and cancels a raw peer received.
type wireLog struct {
	mu       sync.Mutex
	requests map[storagewrapper.Block]int
	cancels  map[storagewrapper.Block]int
}

func newWireLog() *wireLog {
	return &wireLog{requests: map[storagewrapper.Block]int{}, cancels: map[storagewrapper.Block]int{}}
}

func (l *wireLog) note(m wire.Message) {
	b := storagewrapper.Block{Piece: int(m.Index), Begin: int64(m.Begin), Length: int(m.Length)}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch m.ID {
	case wire.Request:
		l.requests[b]++
	case wire.Cancel:
		l.cancels[b]++
	}
}

func (l *wireLog) asked(b storagewrapper.Block) (requests, cancels int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.requests[b], l.cancels[b]
}

func (l *wireLog) askedPiece(i int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for b := range l.requests {
		if b.Piece == i {
			return true
		}
	}
	return false
}

// blockOf reads a block of the torrent's single file under dir.
func blockOf(mi *metainfo.MetaInfo, dir string, b storagewrapper.Block) ([]byte, error) {
	f, err := os.Open(filepath.Join(dir, mi.Info.Name))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, b.Length)
	_, err = f.ReadAt(buf, mi.Info.PieceOffset(b.Piece)+b.Begin)
	return buf, err
}

// bitfieldLacking says "every piece but lacking".
func bitfieldLacking(mi *metainfo.MetaInfo, lacking int) wire.Message {
	bf := bitfield.New(mi.Info.NumPieces())
	for i := range mi.Info.NumPieces() {
		if i != lacking {
			bf.Set(i)
		}
	}
	return wire.Message{ID: wire.Bitfield, Bitfield: bf.Bytes()}
}

// recordingSeed has every piece but lacking, unchokes, logs what it is sent and
// answers each request with the block at once.
func recordingSeed(mi *metainfo.MetaInfo, dir string, lacking int, log *wireLog) func(*rawConn) error {
	return func(c *rawConn) error {
		if err := c.send(bitfieldLacking(mi, lacking), wire.Message{ID: wire.Unchoke}); err != nil {
			return err
		}
		return c.readUntil(func(m wire.Message) error {
			log.note(m)
			if m.ID != wire.Request {
				return nil
			}
			data, err := blockOf(mi, dir, storagewrapper.Block{Piece: int(m.Index), Begin: int64(m.Begin), Length: int(m.Length)})
			if err != nil {
				return err
			}
			return c.send(wire.Message{ID: wire.Piece, Index: m.Index, Begin: m.Begin, Block: data})
		})
	}
}

// stallUntilCancel has every piece but lacking and unchokes, logs what it is sent,
// and sits on every request until it is cancelled; then it sends the
// block anyway (true data, as a slow honest peer whose answer crossed our
// cancel would). After n such late copies it chokes: a marker the test
// sees in the leecher's stats once its loop has handled the copies.
func stallUntilCancel(mi *metainfo.MetaInfo, dir string, lacking int, log *wireLog, n int) func(*rawConn) error {
	return func(c *rawConn) error {
		if err := c.send(bitfieldLacking(mi, lacking), wire.Message{ID: wire.Unchoke}); err != nil {
			return err
		}
		return c.readUntil(func(m wire.Message) error {
			log.note(m)
			if m.ID != wire.Cancel {
				return nil
			}
			data, err := blockOf(mi, dir, storagewrapper.Block{Piece: int(m.Index), Begin: int64(m.Begin), Length: int(m.Length)})
			if err != nil {
				return err
			}
			if err := c.send(wire.Message{ID: wire.Piece, Index: m.Index, Begin: m.Begin, Block: data}); err != nil {
				return err
			}
			if n--; n == 0 {
				return c.send(wire.Message{ID: wire.Choke})
			}
			return nil
		})
	}
}

// TestHedgedRequest: a reader's blocks asked of a peer that sits on them
// are asked of another peer too once overdue (the stalled peer is
// bypassed); the first copy wins, the stalled peer is sent a CANCEL for
// each, and the copy it sends anyway is neither blamed nor a reason to
// drop it.
func TestHedgedRequest(t *testing.T) {
	dir := t.TempDir()
	_, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Size: 1 << 20, PieceLength: 32 << 10, Seed: 13})
	// A second reader waits on a piece nobody has: a wanted piece
	// nobody can be asked for keeps the leecher out of endgame, whose
	// duplicate requests would otherwise fetch the first reader's piece
	// from the seed with no hedging.
	piece, nobodys := 5, 6
	blocks := int(mi.Info.PieceLen(piece) / wire.BlockSize)
	stalledLog, seedLog := newWireLog(), newWireLog()
	stalled := listenRawPeer(t, mi, "127.0.0.5", true, stallUntilCancel(mi, dir, nobodys, stalledLog, blocks))
	seed := listenRawPeer(t, mi, "127.0.0.6", true, recordingSeed(mi, dir, nobodys, seedLog))
	leecher, sw := leechEngine(t, mi, Config{Logger: testLogger(t), Mode: picker.FetchReads, Peers: []netip.AddrPort{stalled.addr}})
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		buf := make([]byte, 1)
		sw.ReadAt(ctx, buf, mi.Info.PieceOffset(nobodys)) // ends with ctx
	}()

	type result struct {
		data []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		buf := make([]byte, mi.Info.PieceLen(piece))
		_, err := sw.ReadAt(rctx, buf, mi.Info.PieceOffset(piece))
		done <- result{buf, err}
	}()
	// The stalled peer, alone, is asked for the reader's piece; then a
	// peer that answers arrives.
	poll.Until(t, 30*time.Second, "the stalled peer to be asked for the piece", func() bool { return stalledLog.askedPiece(piece) })
	if err := leecher.AddPeers(ctx, seed.addr); err != nil {
		t.Fatal(err)
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("the read did not return")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	want, err := blockOf(mi, dir, storagewrapper.Block{Piece: piece, Length: int(mi.Info.PieceLen(piece))})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.data, want) {
		t.Fatal("the read returned other data than the piece's")
	}
	for begin := int64(0); begin < mi.Info.PieceLen(piece); begin += wire.BlockSize {
		b := storagewrapper.Block{Piece: piece, Begin: begin, Length: wire.BlockSize}
		poll.Until(t, 30*time.Second, "the stalled peer's request to be cancelled", func() bool {
			_, c := stalledLog.asked(b)
			return c > 0
		})
		if req, _ := stalledLog.asked(b); req != 1 {
			t.Errorf("block %+v asked %d times of the stalled peer; want once", b, req)
		}
		if req, c := seedLog.asked(b); req != 1 || c != 0 {
			t.Errorf("block %+v at the seed: %d requests, %d cancels; want 1 and 0", b, req, c)
		}
	}
	// The stalled peer's copies come after our cancels: expected, not a
	// lie, not a protocol violation. Its choke after them shows when the
	// loop has handled them (a peer's messages reach the loop in order).
	var st Stats
	poll.Until(t, 30*time.Second, "the leecher to handle the stalled peer's late copies", func() bool {
		var err error
		if st, err = leecher.Stats(ctx); err != nil {
			return false
		}
		for _, ps := range st.PerPeer {
			if ps.Addr == stalled.addr {
				return ps.PeerChoking
			}
		}
		t.Fatalf("the stalled peer is no longer connected: %+v", st.PerPeer)
		return false
	})
	if st.Hedged < int64(blocks) {
		t.Errorf("%d hedged requests; want at least %d", st.Hedged, blocks)
	}
	if st.Banned != 0 || st.HashFailures != 0 {
		t.Errorf("banned %d, hash failures %d; want none", st.Banned, st.HashFailures)
	}
}
