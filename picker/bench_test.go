package picker

import (
	"math/rand/v2"
	"testing"

	"btfs/bitfield"
)

// benchSwarm describes a benchmark torrent and swarm.
type benchSwarm struct {
	// seeds is the number of have-all peers.
	seeds int
	// partial is the number of partial peers; peer k has each piece with
	// probability minDensity + (maxDensity-minDensity)*k/partial.
	partial                int
	minDensity, maxDensity float64
	// verified is the fraction of pieces already verified.
	verified float64
	// started and full are how many pieces are in flight in each state.
	started, full int
	// wants adds a Now want and a readahead window, partly in flight.
	wants bool
}

const benchPieces = 100_000

// build returns a picker for benchPieces pieces in the described state and
// the partial peers' bitfields (nil entries are the seeds).
func (s benchSwarm) build(b *testing.B) (*Picker, []*bitfield.Bitfield) {
	b.Helper()
	const pieceLen = 256 << 10
	p, err := New(pieceLen, benchPieces*pieceLen-1000, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	var peers []*bitfield.Bitfield
	for range s.seeds {
		p.AddSeed()
		peers = append(peers, nil)
	}
	for k := range s.partial {
		d := s.minDensity + (s.maxDensity-s.minDensity)*float64(k)/float64(s.partial)
		bf := bitfield.New(benchPieces)
		for i := range benchPieces {
			if rng.Float64() < d {
				bf.Set(i)
			}
		}
		if err := p.AddPeer(bf); err != nil {
			b.Fatal(err)
		}
		peers = append(peers, bf)
	}
	rng.Shuffle(len(peers), func(i, j int) { peers[i], peers[j] = peers[j], peers[i] })
	for i := range benchPieces {
		if rng.Float64() < s.verified {
			p.Verified(i)
		}
	}
	for range s.started {
		p.Started(rng.IntN(benchPieces))
	}
	for range s.full {
		p.FullyRequested(rng.IntN(benchPieces))
	}
	if s.wants {
		// a reader blocked at piece 50,000 (in flight) with a 64-piece
		// readahead window whose first half is in flight, and a second
		// reader's window elsewhere
		const w = 50_000
		for i := w; i < w+34; i++ {
			p.FullyRequested(i)
		}
		err := p.SetWants([]Want{
			{Start: w * pieceLen, End: w*pieceLen + 2*pieceLen, Priority: Now, Deadline: t0},
			{Start: w*pieceLen + 2*pieceLen, End: (w + 66) * pieceLen, Priority: Readahead, Deadline: at(1)},
			{Start: 10_000 * pieceLen, End: 10_016 * pieceLen, Priority: Readahead, Deadline: at(2)},
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	return p, peers
}

// BenchmarkNext asks for the next piece for each of 200 peers in turn; the
// state does not change between calls (steady state).
func BenchmarkNext(b *testing.B) {
	cases := []struct {
		name  string
		swarm benchSwarm
		// build, when set, replaces swarm.build.
		build func(b *testing.B) (*Picker, []*bitfield.Bitfield)
	}{
		{
			// the usual case: wants, pieces in flight, a mixed swarm
			name:  "mixed",
			swarm: benchSwarm{seeds: 50, partial: 150, minDensity: 0.05, maxDensity: 0.95, verified: 0.2, started: 300, full: 300, wants: true},
		},
		{
			// nothing started or wanted: every call goes to rarest-first
			name:  "rarest",
			swarm: benchSwarm{seeds: 50, partial: 150, minDensity: 0.05, maxDensity: 0.95, verified: 0.2, full: 300},
		},
		{
			// mostly seeds; partial peers with little: bucket 0 is huge
			// and partial peers must skip it
			name:  "rarest-seed-heavy",
			swarm: benchSwarm{seeds: 180, partial: 20, minDensity: 0.01, maxDensity: 0.1, verified: 0.2},
		},
		{
			// partial peers with very few pieces: the bucket walk misses
			// and scanPeer takes over
			name:  "rarest-sparse-peers",
			swarm: benchSwarm{seeds: 0, partial: 200, minDensity: 0.0005, maxDensity: 0.002, verified: 0.2},
		},
		{
			// the asking peers hold only common pieces while the rare
			// bucket is huge: the bucket walk runs out of budget every
			// time and scanPeer answers
			name:  "rarest-streamers",
			build: buildStreamers,
		},
		{
			name:  "endgame",
			swarm: benchSwarm{seeds: 50, partial: 150, minDensity: 0.5, maxDensity: 0.99, verified: 1},
		},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var p *Picker
			var peers []*bitfield.Bitfield
			if c.build != nil {
				p, peers = c.build(b)
			} else {
				p, peers = c.swarm.build(b)
			}
			if c.name == "endgame" {
				for i := range 200 {
					p.Unverified(i * 500)
					p.FullyRequested(i * 500)
				}
				if !p.Endgame() {
					b.Fatal("not in endgame")
				}
			}
			found := 0
			k := 0
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := p.Next(peers[k]); ok {
					found++
				}
				if k++; k == len(peers) {
					k = 0
				}
			}
			if found == 0 {
				b.Fatal("Next never found a piece")
			}
		})
	}
}

// buildStreamers is a swarm of 100 peers that each hold a hundredth of the
// second half of the torrent (availability 1) and 10 sequential streamers
// that hold the first half (availability 10); the streamers ask.
func buildStreamers(b *testing.B) (*Picker, []*bitfield.Bitfield) {
	b.Helper()
	const n = benchPieces
	p, err := New(1, n, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		b.Fatal(err)
	}
	verify(p, 0, 1, 2, 3)
	for k := range 100 {
		bf := bitfield.New(n)
		for i := n/2 + k; i < n; i += 100 {
			bf.Set(i)
		}
		if err := p.AddPeer(bf); err != nil {
			b.Fatal(err)
		}
	}
	var streamers []*bitfield.Bitfield
	for range 10 {
		bf := bitfield.New(n)
		for i := range n / 2 {
			bf.Set(i)
		}
		if err := p.AddPeer(bf); err != nil {
			b.Fatal(err)
		}
		streamers = append(streamers, bf)
	}
	return p, streamers
}

// BenchmarkPeerJoinLeave registers and unregisters a peer with half of
// 100,000 pieces, in a swarm of 200 peers.
func BenchmarkPeerJoinLeave(b *testing.B) {
	p, _ := benchSwarm{seeds: 50, partial: 150, minDensity: 0.05, maxDensity: 0.95, verified: 0.2}.build(b)
	rng := rand.New(rand.NewPCG(5, 6))
	bf := bitfield.New(benchPieces)
	for i := range benchPieces {
		if rng.IntN(2) == 0 {
			bf.Set(i)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := p.AddPeer(bf); err != nil {
			b.Fatal(err)
		}
		if err := p.RemovePeer(bf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHave records HAVEs for pieces spread over the torrent.
func BenchmarkHave(b *testing.B) {
	p, _ := benchSwarm{seeds: 50, partial: 150, minDensity: 0.05, maxDensity: 0.95, verified: 0.2}.build(b)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		p.Have(i)
		if i += 7919; i >= benchPieces {
			i -= benchPieces
		}
	}
}

// BenchmarkPieceLifecycle runs one piece through started, fully requested
// and verified, then evicts it again: the state events of one download.
func BenchmarkPieceLifecycle(b *testing.B) {
	p, _ := benchSwarm{seeds: 50, partial: 150, minDensity: 0.05, maxDensity: 0.95, verified: 0.2}.build(b)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		p.Started(i)
		p.FullyRequested(i)
		p.Verified(i)
		p.Unverified(i)
		if i += 7919; i >= benchPieces {
			i -= benchPieces
		}
	}
}

// BenchmarkSetWants replaces the wants of four readers, as a read does.
func BenchmarkSetWants(b *testing.B) {
	p, _ := benchSwarm{seeds: 50, partial: 150, minDensity: 0.05, maxDensity: 0.95, verified: 0.2}.build(b)
	const pl = 256 << 10
	ws := []Want{
		{Start: 100 * pl, End: 101 * pl, Priority: Now, Deadline: t0},
		{Start: 101 * pl, End: 165 * pl, Priority: Readahead, Deadline: t0},
		{Start: 9000 * pl, End: 9001 * pl, Priority: Now, Deadline: at(1)},
		{Start: 9001 * pl, End: 9065 * pl, Priority: Readahead, Deadline: at(1)},
	}
	b.ReportAllocs()
	for b.Loop() {
		ws[0].Start += pl
		if err := p.SetWants(ws); err != nil {
			b.Fatal(err)
		}
	}
}
