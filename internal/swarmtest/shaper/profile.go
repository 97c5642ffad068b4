package shaper

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Seeder is one seeder of a profile: which program, its address, its link.
type Seeder struct {
	// Kind is "libtorrent" (python3-libtorrent) or "aria2c".
	Kind string `json:"kind"`
	// Addr is its own 127/8 address.
	Addr netip.Addr `json:"addr"`
	// Link is its path to everyone else.
	Link Link `json:"link"`
}

// Profile is a shaped swarm: heterogeneous seeders, one that comes and
// goes, one that is very slow, and the events of a hostile playback.
// A zero address means "none".
type Profile struct {
	// Name names it (bench/run --wan NAME).
	Name string `json:"name"`
	// Seeders are the swarm.
	Seeders []Seeder `json:"seeders"`
	// Churn leaves for ChurnDown every ChurnEvery (RunChurn).
	Churn                 netip.Addr    `json:"churn"`
	ChurnEvery, ChurnDown time.Duration `json:"-"`
	// Slow is the very slow seeder (its Link says how slow).
	Slow netip.Addr `json:"slow"`
	// Leave leaves for good LeaveAt into playback, and Stall stops
	// forwarding StallAt into it, its connections kept open (RunEvents).
	Leave    netip.Addr    `json:"leave"`
	LeaveAt  time.Duration `json:"-"`
	Stall    netip.Addr    `json:"stall"`
	StallAt  time.Duration `json:"-"`
	StallFor time.Duration `json:"-"`
}

// Links is the shaper's configuration for the profile.
func (p Profile) Links() map[netip.Addr]Link {
	m := make(map[netip.Addr]Link, len(p.Seeders))
	for _, s := range p.Seeders {
		m[s.Addr] = s.Link
	}
	return m
}

// SwarmRate is the sum of the seeders' upload caps, bytes/s.
func (p Profile) SwarmRate() float64 {
	var r float64
	for _, s := range p.Seeders {
		r += s.Link.RateOut
	}
	return r
}

// Fastest is the seeder with the highest upload cap.
func (p Profile) Fastest() netip.Addr {
	var best Seeder
	for _, s := range p.Seeders {
		if s.Link.RateOut > best.Link.RateOut {
			best = s
		}
	}
	return best.Addr
}

// String describes the profile in one line, for a bench's header.
func (p Profile) String() string {
	var rtts []time.Duration
	var rates []float64
	kinds := map[string]int{}
	for _, s := range p.Seeders {
		rtts = append(rtts, s.Link.RTT)
		rates = append(rates, s.Link.RateOut)
		kinds[s.Kind]++
	}
	b := &strings.Builder{}
	fmt.Fprintf(b, "%s: %d seeders (%d libtorrent, %d aria2c), RTT %v-%v, %s-%s each, %s in all",
		p.Name, len(p.Seeders), kinds["libtorrent"], kinds["aria2c"], slices.Min(rtts), slices.Max(rtts),
		rateString(slices.Min(rates)), rateString(slices.Max(rates)), rateString(p.SwarmRate()))
	if p.Slow.IsValid() {
		fmt.Fprintf(b, "; very slow: %v", p.Slow)
	}
	if p.Churn.IsValid() {
		fmt.Fprintf(b, "; churn: %v leaves for %v every %v", p.Churn, p.ChurnDown, p.ChurnEvery)
	}
	if p.Stall.IsValid() {
		fmt.Fprintf(b, "; %v stalls %v into playback (open, forwarding nothing)", p.Stall, p.StallAt)
		if p.StallFor > 0 {
			fmt.Fprintf(b, " for %v", p.StallFor)
		}
	}
	if p.Leave.IsValid() {
		fmt.Fprintf(b, "; the fastest, %v, leaves %v into playback", p.Leave, p.LeaveAt)
	}
	return b.String()
}

func rateString(r float64) string {
	switch {
	case r <= 0:
		return "uncapped"
	case r >= 1e6:
		return fmt.Sprintf("%.3g MB/s", r/1e6)
	default:
		return fmt.Sprintf("%.3g KB/s", r/1e3)
	}
}

// seederAddr is the address of the i-th seeder of a profile: 127.0.13.10
// on, clear of the addresses other tests and the bench use for themselves
// (127.0.0.0/24): the shaper proxies every connection of its addresses.
func seederAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{127, 0, 13, byte(10 + i)}) }

// build makes the seeders of rtts (ms) and rates (bytes/s): libtorrent and
// aria2c alternating, each with 5 % of its RTT as jitter.
func build(rtts []int, rates []float64) []Seeder {
	out := make([]Seeder, len(rtts))
	for i := range rtts {
		kind := "libtorrent"
		if i%2 == 1 {
			kind = "aria2c"
		}
		rtt := time.Duration(rtts[i]) * time.Millisecond
		out[i] = Seeder{Kind: kind, Addr: seederAddr(i),
			Link: Link{RTT: rtt, Jitter: rtt / 20, RateOut: rates[i], RateIn: rates[i]}}
	}
	return out
}

// The RTTs of the nine regular seeders of every bench profile: the issue's
// 40-160 ms.
var rtts9 = []int{40, 55, 70, 85, 100, 115, 130, 145, 160}

// Profiles are the bench's, by name. The video bench/run plays is a
// ~2.1 Mbit/s (≈0.27 MB/s) H.264 MP4.
//   - easy: the swarm, 2-6 MB/s each (≈36 MB/s), plus one very
//     slow peer (16 KB/s, 400 ms) and one that leaves for 3 s every 10 s:
//     the stream is < 1 % of the swarm;
//   - tight: 9 seeders at 35-60 KB/s (≈0.42 MB/s) and a very slow one:
//     the stream is ~60 % of the swarm; one leaves for 3 s every 10 s;
//   - slow: the slow swarm, 9 seeders at 40-60 KB/s (≈0.45 MB/s);
//   - hostile: a fast seeder (1 MB/s, 40 ms) and 8 at 40-60 KB/s; 3 s into
//     playback one of the slow ones stops forwarding (connections open),
//     10 s in the fast one leaves for good.
func Profiles() map[string]Profile {
	k := func(kbs ...float64) []float64 {
		out := make([]float64, len(kbs))
		for i, v := range kbs {
			out[i] = v * 1e3
		}
		return out
	}
	easy := build(append(rtts9, 400), k(2000, 3000, 4000, 5000, 6000, 2500, 3500, 4500, 5500, 16))
	tight := build(append(rtts9, 400), k(35, 60, 40, 55, 45, 50, 38, 58, 42, 8))
	slow := build(rtts9, k(40, 60, 45, 55, 50, 42, 58, 48, 52))
	hostile := build(rtts9, k(1000, 60, 45, 55, 50, 42, 58, 48, 52))
	return map[string]Profile{
		"easy": {Name: "easy", Seeders: easy, Slow: easy[9].Addr,
			Churn: easy[1].Addr, ChurnEvery: 10 * time.Second, ChurnDown: 3 * time.Second},
		"tight": {Name: "tight", Seeders: tight, Slow: tight[9].Addr,
			Churn: tight[3].Addr, ChurnEvery: 10 * time.Second, ChurnDown: 3 * time.Second},
		"slow": {Name: "slow", Seeders: slow},
		"hostile": {Name: "hostile", Seeders: hostile,
			Stall: hostile[6].Addr, StallAt: 3 * time.Second,
			Leave: hostile[0].Addr, LeaveAt: 10 * time.Second},
	}
}

// Lookup returns the named profile of Profiles.
func Lookup(name string) (Profile, error) {
	p, ok := Profiles()[name]
	if !ok {
		var names []string
		for n := range Profiles() {
			names = append(names, n)
		}
		slices.Sort(names)
		return Profile{}, fmt.Errorf("shaper: no profile %q (have %s)", name, strings.Join(names, ", "))
	}
	return p, nil
}

// RunChurn makes the profile's churning seeder leave for ChurnDown every
// ChurnEvery until ctx ends, and brings it back then. Without a churning
// seeder it returns at once.
func (s *Shaper) RunChurn(ctx context.Context, p Profile) error {
	if !p.Churn.IsValid() || p.ChurnEvery <= 0 {
		return nil
	}
	defer func() { _ = s.SetDown(context.Background(), p.Churn, false) }() // back for whoever comes next
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(p.ChurnEvery):
		}
		if err := s.SetDown(ctx, p.Churn, true); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(p.ChurnDown):
		}
		if err := s.SetDown(ctx, p.Churn, false); err != nil {
			return err
		}
	}
}

// RunEvents plays the profile's hostile events from now (the start of
// playback): the stall at StallAt (ended after StallFor when set) and the
// departure at LeaveAt. It returns when they have happened or ctx ends;
// Reset undoes them.
func (s *Shaper) RunEvents(ctx context.Context, p Profile) error {
	type ev struct {
		at time.Duration
		do func() error
	}
	var evs []ev
	if p.Stall.IsValid() {
		evs = append(evs, ev{p.StallAt, func() error { return s.SetStalled(p.Stall, true) }})
		if p.StallFor > 0 {
			evs = append(evs, ev{p.StallAt + p.StallFor, func() error { return s.SetStalled(p.Stall, false) }})
		}
	}
	if p.Leave.IsValid() {
		evs = append(evs, ev{p.LeaveAt, func() error { return s.SetDown(ctx, p.Leave, true) }})
	}
	slices.SortFunc(evs, func(a, b ev) int { return int(a.at - b.at) })
	t0 := time.Now()
	for _, e := range evs {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Until(t0.Add(e.at))):
		}
		if err := e.do(); err != nil {
			return err
		}
	}
	return nil
}

// Reset brings every peer back and ends every stall.
func (s *Shaper) Reset(ctx context.Context) error {
	s.mu.Lock()
	addrs := make([]netip.Addr, 0, len(s.peers))
	for a := range s.peers {
		addrs = append(addrs, a)
	}
	s.mu.Unlock()
	for _, a := range addrs {
		if err := s.SetStalled(a, false); err != nil {
			return err
		}
		if err := s.SetDown(ctx, a, false); err != nil {
			return err
		}
	}
	return nil
}
