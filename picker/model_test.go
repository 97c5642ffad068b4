package picker

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"btfs/bitfield"
)

// model is a naive O(n) reference picker: plain per-piece arrays, every
// question answered by looking at every piece. The randomized test drives it
// and a Picker with the same events and checks that every answer of the
// Picker is one the model accepts.
type model struct {
	// pieceLen and totalLen are the torrent geometry.
	pieceLen, totalLen int64
	// n is the number of pieces.
	n int
	// state is each piece's state.
	state []pieceState
	// bumped marks pieces that failed since last verified.
	bumped []bool
	// peers are the registered partial peers' bitfields.
	peers []*bitfield.Bitfield
	// seeds is the number of have-all peers.
	seeds int
	// wants are the current wants, as given.
	wants []Want
	// mode is the fetch mode.
	mode Mode
	// availCache is each piece's partial-peer count, recomputed by refresh
	// after every event so that the O(n·peers) count is done once a step.
	availCache []int
	// prioCache and deadlineCache are want's answers, recomputed by refresh.
	prioCache     []Priority
	deadlineCache []time.Time
}

// refresh recomputes the caches from the peers' bitfields and the wants.
func (m *model) refresh() {
	m.prioCache, m.deadlineCache = make([]Priority, m.n), make([]time.Time, m.n)
	for i := range m.n {
		m.prioCache[i], m.deadlineCache[i] = m.wantOf(i)
	}
	m.availCache = make([]int, m.n)
	for _, b := range m.peers {
		for i := range m.n {
			if b.Has(i) {
				m.availCache[i]++
			}
		}
	}
}

func newModel(pieceLen, totalLen int64, n int) *model {
	return &model{pieceLen: pieceLen, totalLen: totalLen, n: n, state: make([]pieceState, n), bumped: make([]bool, n)}
}

func (m *model) avail(i int) int { return m.availCache[i] }

// want returns the effective priority and deadline of piece i, ignoring
// its state, as of the last refresh.
func (m *model) want(i int) (Priority, time.Time) { return m.prioCache[i], m.deadlineCache[i] }

// wantOf computes the effective priority and deadline of piece i from the
// raw byte ranges.
func (m *model) wantOf(i int) (Priority, time.Time) {
	ps, pe := int64(i)*m.pieceLen, min(int64(i+1)*m.pieceLen, m.totalLen)
	best, dl := None, time.Time{}
	for _, w := range m.wants {
		s, e := max(w.Start, 0), min(w.End, m.totalLen)
		if w.Priority == None || e <= s || s >= pe || e <= ps {
			continue
		}
		if w.Priority > best || (w.Priority == best && earlier(w.Deadline, dl)) {
			best, dl = w.Priority, w.Deadline
		}
	}
	return best, dl
}

func (m *model) verifiedCount() int {
	c := 0
	for _, s := range m.state {
		if s == verified {
			c++
		}
	}
	return c
}

// modeWants reports whether the mode fetches piece i.
func (m *model) modeWants(i int) bool {
	if m.mode == FetchAll {
		return true
	}
	pr, _ := m.want(i)
	return pr > None
}

func (m *model) endgame() bool {
	missing := false
	for i := range m.n {
		if !m.modeWants(i) || m.state[i] == verified {
			continue
		}
		if m.state[i].pickable() {
			return false
		}
		missing = true
	}
	return missing
}

// mostUrgent returns, among pieces i with ok(i) and a want, the one first by
// (priority desc, deadline, index), restricted to priority pr when pr > None.
func (m *model) mostUrgent(ok func(int) bool, pr Priority) (int, bool) {
	best, found := 0, false
	var bp Priority
	var bd time.Time
	for i := range m.n {
		p, d := m.want(i)
		if p == None || (pr != None && p != pr) || !ok(i) {
			continue
		}
		if !found || p > bp || (p == bp && earlier(d, bd)) {
			best, bp, bd, found = i, p, d, true
		}
	}
	return best, found
}

// acceptable returns the answers Next may give for a peer with has (nil:
// have-all), and which rule they come from; an empty set means "none".
func (m *model) acceptable(has *bitfield.Bitfield) ([]int, string) {
	peerHas := func(i int) bool { return has == nil || has.Has(i) }
	pick := func(i int) bool { return m.state[i].pickable() && peerHas(i) }
	if i, ok := m.mostUrgent(pick, Now); ok {
		return []int{i}, "now"
	}
	if i, ok := m.mostUrgent(pick, Readahead); ok {
		return []int{i}, "readahead"
	}
	var set []int
	if m.mode == FetchAll {
		for i := range m.n {
			if m.state[i] == started && peerHas(i) {
				set = append(set, i)
			}
		}
		if len(set) > 0 {
			return set, "started"
		}
		if verifiedCount := m.verifiedCount(); verifiedCount < randomFirstPieces {
			for i := range m.n {
				if pick(i) {
					set = append(set, i)
				}
			}
			if len(set) > 0 {
				return set, "random"
			}
		}
		bestRank := -1
		for i := range m.n {
			if !pick(i) {
				continue
			}
			rk := 2 * m.avail(i)
			if m.bumped[i] {
				rk++
			}
			switch {
			case bestRank < 0 || rk < bestRank:
				bestRank, set = rk, append(set[:0], i)
			case rk == bestRank:
				set = append(set, i)
			}
		}
		if len(set) > 0 {
			return set, "rarest"
		}
	}
	if !m.endgame() {
		return nil, "none"
	}
	inFull := func(i int) bool { return m.state[i] == full && peerHas(i) }
	if i, ok := m.mostUrgent(inFull, None); ok {
		return []int{i}, "endgame-wanted"
	}
	if m.mode == FetchAll {
		for i := range m.n {
			if inFull(i) {
				set = append(set, i)
			}
		}
	}
	return set, "endgame"
}

// checkInvariants verifies the Picker's internal structures (the package
// documentation's invariants 1-5) against its own per-piece state.
func checkInvariants(t *testing.T, p *Picker) {
	t.Helper()
	seen := make([]bool, p.n)
	for k, lv := range p.levels {
		for part, items := range lv.parts {
			for j, i := range items {
				switch {
				case seen[i]:
					t.Fatalf("piece %d in two buckets", i)
				case int(p.avail[i]) != k:
					t.Fatalf("piece %d in bucket %d, avail %d", i, k, p.avail[i])
				case p.part(int(i)) != part:
					t.Fatalf("piece %d in part %d, bumped=%v", i, part, p.bumped.Has(int(i)))
				case int(p.levelPos[i]) != j:
					t.Fatalf("piece %d at %d, levelPos %d", i, j, p.levelPos[i])
				}
				seen[i] = true
			}
		}
	}
	for i := range p.n {
		if p.state[i].pickable() && int(p.wordMin[i/wordPieces]) > p.rank(i) {
			t.Fatalf("piece %d rank %d below its word bound %d", i, p.rank(i), p.wordMin[i/wordPieces])
		}
	}
	verifiedCount := 0
	for i := range p.n {
		s := p.state[i]
		if seen[i] != s.pickable() || p.pickable.Has(i) != s.pickable() {
			t.Fatalf("piece %d state %d: in buckets %v, pickable bit %v", i, s, seen[i], p.pickable.Has(i))
		}
		if p.full.Has(i) != (s == full) || p.missing.Has(i) != (s != verified) {
			t.Fatalf("piece %d state %d: full bit %v, missing bit %v", i, s, p.full.Has(i), p.missing.Has(i))
		}
		if s == verified {
			verifiedCount++
			if p.bumped.Has(i) {
				t.Fatalf("verified piece %d still bumped", i)
			}
		}
	}
	if verifiedCount != p.verifiedCount {
		t.Fatalf("verifiedCount %d, counted %d", p.verifiedCount, verifiedCount)
	}
	for name, set := range map[pieceState]indexSet{started: p.startedSet, full: p.fullSet} {
		count := 0
		for j, i := range set.items {
			if p.state[i] != name || int(p.flightPos[i]) != j {
				t.Fatalf("set of state %d holds piece %d (state %d, pos %d)", name, i, p.state[i], p.flightPos[i])
			}
		}
		for i := range p.n {
			if p.state[i] == name {
				count++
			}
		}
		if count != len(set.items) {
			t.Fatalf("set of state %d has %d items, %d pieces in that state", name, len(set.items), count)
		}
	}
	runs := p.wants.byIndex
	for k, s := range runs {
		if s.lo >= s.hi || s.prio == None || (k > 0 && runs[k-1].hi > s.lo) {
			t.Fatalf("bad want runs %+v", runs)
		}
	}
	if len(p.wants.byUrgency) != len(runs) || !slices.IsSortedFunc(p.wants.byUrgency, compareUrgency) {
		t.Fatalf("byUrgency %+v not the runs %+v in urgency order", p.wants.byUrgency, runs)
	}
}

// TestAgainstModel drives a Picker and the naive model with the same random
// event sequences and compares every answer.
func TestAgainstModel(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	deadlines := []time.Time{{}, base, base.Add(time.Second), base.Add(2 * time.Second)}
	const runs = 300
	for run := range runs {
		t.Run(fmt.Sprint(run), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(run), 99))
			pieceLen := int64(1 + rng.IntN(6))
			n := 1 + rng.IntN(150)
			if run%10 == 0 {
				n = 1 + rng.IntN(5) // tiny torrents hit the edges
			}
			totalLen := int64(n-1)*pieceLen + 1 + rng.Int64N(pieceLen)
			p, err := New(pieceLen, totalLen, rand.New(rand.NewPCG(uint64(run), 7)))
			if err != nil {
				t.Fatal(err)
			}
			if p.NumPieces() != n {
				t.Fatalf("NumPieces = %d, want %d", p.NumPieces(), n)
			}
			if run%3 == 0 {
				p.scanBudget = 1 + rng.IntN(3) // exercise scanPeer
			}
			m := newModel(pieceLen, totalLen, n)
			var log []string
			for step := range 200 {
				ev := rng.IntN(100)
				i := rng.IntN(n)
				switch {
				case ev < 8:
					bf := bitfield.New(n)
					d := rng.Float64()
					for j := range n {
						if rng.Float64() < d {
							bf.Set(j)
						}
					}
					if err := p.AddPeer(bf); err != nil {
						t.Fatal(err)
					}
					m.peers = append(m.peers, bf)
					log = append(log, fmt.Sprintf("AddPeer(%d pieces)", bf.Count()))
				case ev < 11 && len(m.peers) > 0:
					k := rng.IntN(len(m.peers))
					if err := p.RemovePeer(m.peers[k]); err != nil {
						t.Fatal(err)
					}
					m.peers = slices.Delete(m.peers, k, k+1)
					log = append(log, fmt.Sprintf("RemovePeer(%d)", k))
				case ev < 25 && len(m.peers) > 0:
					k := rng.IntN(len(m.peers))
					if m.peers[k].Set(i) {
						p.Have(i)
					}
					log = append(log, fmt.Sprintf("Have(peer %d, %d)", k, i))
				case ev < 28:
					p.AddSeed()
					m.seeds++
					log = append(log, "AddSeed")
				case ev < 30:
					p.RemoveSeed()
					m.seeds = max(m.seeds-1, 0)
					log = append(log, "RemoveSeed")
				case ev < 42:
					p.Started(i)
					if m.state[i] != verified {
						m.state[i] = started
					}
					log = append(log, fmt.Sprintf("Started(%d)", i))
				case ev < 56:
					p.FullyRequested(i)
					if m.state[i] != verified {
						m.state[i] = full
					}
					log = append(log, fmt.Sprintf("FullyRequested(%d)", i))
				case ev < 60:
					p.Unrequested(i)
					if m.state[i] != verified {
						m.state[i] = idle
					}
					log = append(log, fmt.Sprintf("Unrequested(%d)", i))
				case ev < 72:
					p.Verified(i)
					m.state[i], m.bumped[i] = verified, false
					log = append(log, fmt.Sprintf("Verified(%d)", i))
				case ev < 76:
					p.Unverified(i)
					if m.state[i] == verified {
						m.state[i] = idle
					}
					log = append(log, fmt.Sprintf("Unverified(%d)", i))
				case ev < 82:
					p.Failed(i)
					if m.state[i] != verified {
						m.state[i], m.bumped[i] = idle, true
					}
					log = append(log, fmt.Sprintf("Failed(%d)", i))
				case ev < 92:
					ws := make([]Want, rng.IntN(4))
					for k := range ws {
						s := rng.Int64N(totalLen+3) - 1
						ws[k] = Want{
							Start:    s,
							End:      s + rng.Int64N(3*pieceLen+2),
							Priority: Priority(rng.IntN(3)),
							Deadline: deadlines[rng.IntN(len(deadlines))],
						}
					}
					if err := p.SetWants(ws); err != nil {
						t.Fatal(err)
					}
					m.wants = ws
					log = append(log, fmt.Sprintf("SetWants(%+v)", ws))
				case ev < 95:
					mode := Mode(rng.IntN(2))
					p.SetMode(mode)
					m.mode = mode
					log = append(log, fmt.Sprintf("SetMode(%v)", mode))
				default:
					// an out-of-range index must change nothing
					p.Verified(n + i)
					p.Have(-1 - i)
					p.Failed(n)
				}
				fail := func(format string, args ...any) {
					t.Helper()
					t.Fatalf("after step %d, events:\n%s\n%s", step, joinLast(log, 12), fmt.Sprintf(format, args...))
				}
				checkInvariants(t, p)
				m.refresh()
				compareWithModel(p, m, fail)
			}
		})
	}
}

// compareWithModel checks every query of p against m.
func compareWithModel(p *Picker, m *model, fail func(string, ...any)) {
	endgame := m.endgame()
	if got := p.Endgame(); got != endgame {
		fail("Endgame = %v, model %v", got, endgame)
	}
	if p.NumVerified() != m.verifiedCount() || p.Seeds() != m.seeds || p.Mode() != m.mode {
		fail("counters: verified %d/%d seeds %d/%d", p.NumVerified(), m.verifiedCount(), p.Seeds(), m.seeds)
	}
	for i := range m.n {
		pr, dl := m.want(i)
		if m.state[i] == verified {
			pr, dl = None, time.Time{}
		}
		if got := p.Priority(i); got != pr {
			fail("Priority(%d) = %v, model %v", i, got, pr)
		}
		gotDL, ok := p.Deadline(i)
		if ok != !dl.IsZero() || !gotDL.Equal(dl) {
			fail("Deadline(%d) = %v,%v, model %v", i, gotDL, ok, dl)
		}
		if got, want := p.Availability(i), m.avail(i)+m.seeds; got != want {
			fail("Availability(%d) = %d, model %d", i, got, want)
		}
		wantCand := endgame && m.state[i] == full && m.modeWants(i)
		if got := p.EndgameCandidate(i); got != wantCand {
			fail("EndgameCandidate(%d) = %v, model %v", i, got, wantCand)
		}
	}
	peers := append([]*bitfield.Bitfield{nil}, m.peers...)
	for k, has := range peers {
		acc, rule := m.acceptable(has)
		// ask a few times: random tie-breaks may land anywhere in the set
		for range 3 {
			got, ok := p.Next(has)
			switch {
			case len(acc) == 0 && ok:
				fail("peer %d: Next = %d, model: nothing (%s)", k, got, rule)
			case len(acc) > 0 && !ok:
				fail("peer %d: Next = none, model %s %v", k, rule, acc)
			case ok && !slices.Contains(acc, got):
				fail("peer %d: Next = %d (rank %d), model %s %v", k, got, p.rank(got), rule, acc)
			}
		}
		var wantEG []int
		if endgame {
			for i := range m.n {
				if m.state[i] == full && m.modeWants(i) && (has == nil || has.Has(i)) {
					wantEG = append(wantEG, i)
				}
			}
		}
		gotEG := p.AppendEndgame(nil, has)
		slices.Sort(gotEG)
		if !slices.Equal(gotEG, wantEG) {
			fail("peer %d: AppendEndgame = %v, model %v", k, gotEG, wantEG)
		}
		interesting := false
		for i := range m.n {
			if m.state[i] != verified && m.modeWants(i) && (has == nil || has.Has(i)) {
				interesting = true
			}
		}
		if got := p.Interesting(has); got != interesting {
			fail("peer %d: Interesting = %v, model %v", k, got, interesting)
		}
	}
}

func joinLast(log []string, k int) string {
	if len(log) > k {
		log = log[len(log)-k:]
	}
	s := ""
	for _, l := range log {
		s += "  " + l + "\n"
	}
	return s
}
