// Package choker decides which peers we upload to: the seed's Choker
// (tit-for-tat). It is pure and single-owner like the picker: the torrent's
// goroutine owns one Choker, hands it a snapshot of its peers every rechoke
// period and applies the answer. Time and randomness are passed in, so the
// rules are tested without clocks.
//
// The rules (BEP 3 and the original client):
//   - Every Interval (10 s) the choker rechokes: the Slots (4) interested
//     peers with the best rate win a regular unchoke. While downloading the
//     rate is what they send us (reciprocation); once we seed it is what we
//     send them (the peers that take the most spread the data fastest).
//     Snubbed peers (they have sent us nothing for a while although we asked)
//     do not win a regular slot while we download.
//   - One more interested peer gets the optimistic unchoke, rotated every
//     OptimisticInterval (30 s). A peer connected within the last
//     NewPeerWindow is three times as likely to be chosen: new peers have
//     nothing to trade yet and must be given a first piece.
//   - Uninterested peers may stay unchoked (they are cheap and it saves an
//     unchoke when they become interested) but never take a slot.
package choker

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"time"
)

// Defaults from the original client.
const (
	DefaultSlots              = 4
	DefaultInterval           = 10 * time.Second
	DefaultOptimisticInterval = 30 * time.Second
	DefaultNewPeerWindow      = 60 * time.Second
)

// Peer is the choker's view of one connection at rechoke time.
type Peer[K comparable] struct {
	// Key identifies the connection to the caller.
	Key K
	// Interested: the peer wants data from us.
	Interested bool
	// DownloadRate is what it sent us recently, bytes/s.
	DownloadRate float64
	// UploadRate is what we sent it recently, bytes/s.
	UploadRate float64
	// Snubbed: we asked it for blocks and it has sent none for a while.
	Snubbed bool
	// ConnectedAt is when the connection was made.
	ConnectedAt time.Time
}

// Choker holds what must persist between rechokes: the optimistic pick and
// when it was made.
type Choker[K comparable] struct {
	// Slots is the number of regular unchokes.
	Slots int
	// OptimisticInterval is how long an optimistic unchoke lasts.
	OptimisticInterval time.Duration
	// NewPeerWindow is how young a connection must be to get the new-peer
	// bonus in the optimistic draw.
	NewPeerWindow time.Duration

	rng           *rand.Rand // injected randomness (tests seed it)
	optimistic    K          // current optimistic peer, valid when hasOpt
	hasOpt        bool       // an optimistic unchoke is in force
	optimisticSet time.Time  // when optimistic was chosen
}

// New returns a Choker with the original client's defaults.
func New[K comparable](rng *rand.Rand) *Choker[K] {
	return &Choker[K]{
		Slots:              DefaultSlots,
		OptimisticInterval: DefaultOptimisticInterval,
		NewPeerWindow:      DefaultNewPeerWindow,
		rng:                rng,
	}
}

// Result is the outcome of one rechoke.
type Result[K comparable] struct {
	// Unchoke holds the peers that should be unchoked now; every other
	// interested peer should be choked.
	Unchoke map[K]bool
	// Regular are the rate-ordered slot winners, best first.
	Regular []K
	// Optimistic is the optimistic pick; valid when HasOptimistic.
	Optimistic    K
	HasOptimistic bool
}

// Rechoke decides the unchoke set for peers at time now. seeding selects the
// rate that orders regular slots.
func (c *Choker[K]) Rechoke(peers []Peer[K], seeding bool, now time.Time) Result[K] {
	res := Result[K]{Unchoke: make(map[K]bool, c.Slots+1)}

	candidates := make([]Peer[K], 0, len(peers))
	for _, p := range peers {
		if p.Interested && (seeding || !p.Snubbed) {
			candidates = append(candidates, p)
		}
	}
	rate := func(p Peer[K]) float64 {
		if seeding {
			return p.UploadRate
		}
		return p.DownloadRate
	}
	// Best rate first; ties go to the older connection (stable under churn).
	slices.SortStableFunc(candidates, func(a, b Peer[K]) int {
		if r := cmp.Compare(rate(b), rate(a)); r != 0 {
			return r
		}
		return a.ConnectedAt.Compare(b.ConnectedAt)
	})

	// Keep the optimistic pick while it lasts and the peer is still here
	// and interested.
	if c.hasOpt {
		alive := slices.ContainsFunc(peers, func(p Peer[K]) bool { return p.Key == c.optimistic && p.Interested })
		if !alive || now.Sub(c.optimisticSet) >= c.OptimisticInterval {
			c.hasOpt = false
		}
	}

	for _, p := range candidates {
		if len(res.Regular) == c.Slots {
			break
		}
		if c.hasOpt && p.Key == c.optimistic {
			continue // it holds the optimistic slot; do not count it twice
		}
		res.Regular = append(res.Regular, p.Key)
		res.Unchoke[p.Key] = true
	}

	if !c.hasOpt {
		c.pickOptimistic(peers, res.Unchoke, now)
	}
	if c.hasOpt {
		res.Optimistic, res.HasOptimistic = c.optimistic, true
		res.Unchoke[c.optimistic] = true
	}
	return res
}

// pickOptimistic draws the optimistic peer among interested peers that did
// not win a regular slot, new connections weighted three to one.
func (c *Choker[K]) pickOptimistic(peers []Peer[K], regular map[K]bool, now time.Time) {
	total := 0
	weight := func(p Peer[K]) int {
		if !p.Interested || regular[p.Key] {
			return 0
		}
		if now.Sub(p.ConnectedAt) < c.NewPeerWindow {
			return 3
		}
		return 1
	}
	for _, p := range peers {
		total += weight(p)
	}
	if total == 0 {
		return
	}
	n := c.rng.IntN(total)
	for _, p := range peers {
		if n -= weight(p); n < 0 {
			c.optimistic, c.hasOpt, c.optimisticSet = p.Key, true, now
			return
		}
	}
}
