package engine

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"btfs/engine/wire"
	"btfs/internal/swarmtest"
	"btfs/storagewrapper"
)

// TestSmartBanRecordsTheCompletingBlock: the block that completes a piece
// is verified by the storagewrapper before its event reaches the loop. Its
// record must still count: a liar whose bad block sat at the same place in
// the failed attempt is found only by comparing with it.
func TestSmartBanRecordsTheCompletingBlock(t *testing.T) {
	dir := t.TempDir()
	_, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Size: 64 << 10, PieceLength: 2 * wire.BlockSize, Seed: 12})
	data, err := os.ReadFile(filepath.Join(dir, mi.Info.Name))
	if err != nil {
		t.Fatal(err)
	}
	tor := idleTorrent(t, mi)
	s, sw := tor.s, tor.sw
	liar, honest := netip.MustParseAddr("127.0.0.4"), netip.MustParseAddr("127.0.0.5")
	block := func(idx int) storagewrapper.Block {
		return storagewrapper.Block{Piece: 0, Begin: int64(idx * wire.BlockSize), Length: wire.BlockSize}
	}
	good := func(idx int) []byte { return data[idx*wire.BlockSize : (idx+1)*wire.BlockSize] }
	sum := func(b []byte) uint64 { return blockSum(tor.sumSeed, b) }

	// The failed attempt: the liar sent block 0, the honest peer block 1.
	s.recordBlock(liar, block(0), 0, sum(garbage(wire.BlockSize)))
	s.recordBlock(honest, block(1), 0, sum(good(1)))
	s.pieceFailed(0)

	// The next attempt, all from the honest peer, block 0 last: it
	// completes the piece, which the storagewrapper verifies before the
	// loop files the block.
	gen := tor.gens.get(0)
	for {
		if _, st := sw.NewRequest(0); st != storagewrapper.RequestGranted {
			break
		}
	}
	var res storagewrapper.Result
	for _, idx := range []int{1, 0} {
		if res, err = sw.PieceCameIn(0, int64(idx*wire.BlockSize), good(idx), honest.String()); err != nil {
			t.Fatal(err)
		}
	}
	if !res.Verified || !sw.DoIHave(0) {
		t.Fatalf("the second attempt: %+v, want piece 0 verified", res)
	}
	s.recordBlock(honest, block(1), gen, sum(good(1)))
	s.recordBlock(honest, block(0), gen, sum(good(0)))
	s.pieceDone(res)

	if !s.banned[liar] {
		t.Error("the liar was not banned")
	}
	if s.banned[honest] {
		t.Error("the honest peer was banned")
	}
}
