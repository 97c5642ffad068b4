package choker

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"btfs/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func old(key string, interested bool, down, up float64) Peer[string] {
	return Peer[string]{Key: key, Interested: interested, DownloadRate: down, UploadRate: up, ConnectedAt: t0.Add(-time.Hour)}
}

func TestRegularSlots(t *testing.T) {
	tests := []struct {
		name    string
		peers   []Peer[string]
		seeding bool
		want    []string // regular slots, best first
	}{
		{
			name: "downloading: by rate to us",
			peers: []Peer[string]{
				old("a", true, 10, 900), old("b", true, 50, 0), old("c", true, 30, 0),
				old("d", true, 40, 0), old("e", true, 20, 0), old("f", true, 5, 0),
			},
			want: []string{"b", "d", "c", "e"},
		},
		{
			name: "seeding: by our rate to them",
			peers: []Peer[string]{
				old("a", true, 0, 900), old("b", true, 50, 1), old("c", true, 0, 300),
				old("d", true, 0, 200), old("e", true, 0, 100), old("f", true, 0, 5),
			},
			seeding: true,
			want:    []string{"a", "c", "d", "e"},
		},
		{
			name: "uninterested peers never take a slot",
			peers: []Peer[string]{
				old("a", false, 999, 0), old("b", true, 1, 0), old("c", false, 500, 0),
			},
			want: []string{"b"},
		},
		{
			name: "snubbed peers lose their slot while downloading",
			peers: []Peer[string]{
				{Key: "a", Interested: true, DownloadRate: 999, Snubbed: true, ConnectedAt: t0.Add(-time.Hour)},
				old("b", true, 3, 0), old("c", true, 2, 0), old("d", true, 1, 0), old("e", true, 0, 0),
			},
			want: []string{"b", "c", "d", "e"},
		},
		{
			name: "equal rates: the older connection first",
			peers: []Peer[string]{
				{Key: "young", Interested: true, DownloadRate: 5, ConnectedAt: t0.Add(-time.Minute)},
				{Key: "old", Interested: true, DownloadRate: 5, ConnectedAt: t0.Add(-time.Hour)},
			},
			want: []string{"old", "young"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := New[string](rand.New(rand.NewPCG(1, 2)))
			res := c.Rechoke(tc.peers, tc.seeding, t0)
			if !slices.Equal(res.Regular, tc.want) {
				t.Fatalf("regular = %v, want %v", res.Regular, tc.want)
			}
			for _, k := range res.Regular {
				if !res.Unchoke[k] {
					t.Errorf("regular peer %s not in the unchoke set", k)
				}
			}
			if res.HasOptimistic {
				if slices.Contains(res.Regular, res.Optimistic) {
					t.Errorf("optimistic %s also holds a regular slot", res.Optimistic)
				}
				if !res.Unchoke[res.Optimistic] {
					t.Errorf("optimistic %s not unchoked", res.Optimistic)
				}
			}
			if len(res.Unchoke) > c.Slots+1 {
				t.Errorf("%d unchoked, at most %d allowed", len(res.Unchoke), c.Slots+1)
			}
		})
	}
}

func TestOptimisticRotation(t *testing.T) {
	peers := []Peer[string]{
		old("a", true, 50, 0), old("b", true, 40, 0), old("c", true, 30, 0), old("d", true, 20, 0),
		old("e", true, 0, 0), old("f", true, 0, 0), old("g", true, 0, 0), old("h", true, 0, 0),
	}
	c := New[string](rand.New(rand.NewPCG(7, 7)))
	first := c.Rechoke(peers, false, t0)
	if !first.HasOptimistic {
		t.Fatal("no optimistic unchoke with four losers waiting")
	}
	if slices.Contains([]string{"a", "b", "c", "d"}, first.Optimistic) {
		t.Fatalf("optimistic %s is a regular winner", first.Optimistic)
	}
	// Rechokes within the optimistic interval keep the same pick.
	for _, dt := range []time.Duration{10 * time.Second, 20 * time.Second, 29 * time.Second} {
		if r := c.Rechoke(peers, false, t0.Add(dt)); r.Optimistic != first.Optimistic {
			t.Fatalf("at +%v optimistic changed from %s to %s", dt, first.Optimistic, r.Optimistic)
		}
	}
	// Over many rotations every loser gets its turn.
	seen := map[string]bool{}
	for i := 1; i <= 200; i++ {
		r := c.Rechoke(peers, false, t0.Add(time.Duration(i)*30*time.Second))
		seen[r.Optimistic] = true
	}
	for _, k := range []string{"e", "f", "g", "h"} {
		if !seen[k] {
			t.Errorf("peer %s never got the optimistic unchoke in 200 rotations", k)
		}
	}
}

func TestOptimisticReplacedWhenItLeaves(t *testing.T) {
	peers := []Peer[string]{old("a", true, 0, 0), old("b", true, 0, 0)}
	c := New[string](rand.New(rand.NewPCG(3, 4)))
	c.Slots = 1
	r := c.Rechoke(peers, false, t0)
	if !r.HasOptimistic {
		t.Fatal("no optimistic pick")
	}
	gone := r.Optimistic
	remaining := slices.DeleteFunc(slices.Clone(peers), func(p Peer[string]) bool { return p.Key == gone })
	remaining = append(remaining, old("z", true, 0, 0))
	r2 := c.Rechoke(remaining, false, t0.Add(time.Second))
	if r2.HasOptimistic && r2.Optimistic == gone {
		t.Fatalf("optimistic pick %s survived its peer leaving", gone)
	}
	if !r2.HasOptimistic {
		t.Fatal("no new optimistic pick after the old one left")
	}
}

func TestNewPeersFavoured(t *testing.T) {
	// One new and one old loser: over many draws the new one must win
	// about three times as often (weights 3:1). Deterministic seed.
	peers := []Peer[string]{
		old("winner", true, 100, 0),
		old("old", true, 0, 0),
		{Key: "new", Interested: true, ConnectedAt: t0.Add(-time.Second)},
	}
	c := New[string](rand.New(rand.NewPCG(11, 13)))
	c.Slots = 1
	counts := map[string]int{}
	for i := range 4000 {
		now := t0.Add(time.Duration(i) * c.OptimisticInterval)
		peers[2].ConnectedAt = now.Add(-time.Second) // stays new
		r := c.Rechoke(peers, false, now)
		counts[r.Optimistic]++
	}
	if counts["winner"] != 0 {
		t.Fatalf("the regular winner drew the optimistic slot %d times", counts["winner"])
	}
	ratio := float64(counts["new"]) / float64(counts["old"])
	if ratio < 2.5 || ratio > 3.5 {
		t.Fatalf("new:old optimistic draws = %d:%d (ratio %.2f), want about 3", counts["new"], counts["old"], ratio)
	}
}

func TestNobodyInterested(t *testing.T) {
	c := New[string](rand.New(rand.NewPCG(1, 1)))
	r := c.Rechoke([]Peer[string]{old("a", false, 10, 10)}, true, t0)
	if len(r.Unchoke) != 0 || r.HasOptimistic {
		t.Fatalf("unchoked %v with nobody interested", r.Unchoke)
	}
}
