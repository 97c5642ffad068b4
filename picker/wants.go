package picker

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// ErrBadWant is wrapped by SetWants for a want it cannot honour.
var ErrBadWant = errors.New("bad want")

// segment is a run of pieces [lo, hi) with one effective priority and
// deadline: what the wants say about every piece in it.
type segment struct {
	// lo is the first piece of the run.
	lo int
	// hi is one past the last piece of the run.
	hi int
	// prio is the highest priority of the wants covering the run.
	prio Priority
	// deadline is the earliest deadline among the covering wants of that
	// priority; zero when none of them has one.
	deadline time.Time
}

// wantSet is the readers' wants mapped to pieces (invariant 5). There are
// few wants (one or two per open file handle), so it is rebuilt whole on
// every SetWants; its slices are reused so that steady-state updates do not
// allocate.
type wantSet struct {
	// byIndex are the disjoint runs in piece order, for Priority.
	byIndex []segment
	// byUrgency are the same runs in the order Next visits them.
	byUrgency []segment
	// ranges is scratch: each want as a piece range.
	ranges []segment
	// points is scratch: the run boundaries.
	points []int
}

// earlier reports whether deadline a comes before b, a zero deadline (none
// given) being later than any set one.
func earlier(a, b time.Time) bool {
	if a.IsZero() {
		return false
	}
	return b.IsZero() || a.Before(b)
}

// compareUrgency orders runs for Next: higher priority, then earlier
// deadline, then lower index.
func compareUrgency(a, b segment) int {
	switch {
	case a.prio != b.prio:
		return int(b.prio) - int(a.prio)
	case earlier(a.deadline, b.deadline):
		return -1
	case earlier(b.deadline, a.deadline):
		return 1
	}
	return a.lo - b.lo
}

// SetWants replaces every want with ws. Byte ranges are clipped to the
// torrent; empty ranges and wants of priority None are dropped (a want
// released by its reader simply is not in the next set). A want of an
// unknown priority is an error and leaves the old wants in place. A piece
// is wanted if any byte of it is, so a range that straddles a piece
// boundary wants both pieces. The cost is O(w²) in the number of wants,
// independent of the ranges' sizes.
func (p *Picker) SetWants(ws []Want) error {
	for k, w := range ws {
		if w.Priority < None || w.Priority > Now {
			return fmt.Errorf("picker: want %d [%d, %d): priority %d: %w", k, w.Start, w.End, int8(w.Priority), ErrBadWant)
		}
	}
	s := &p.wants
	s.ranges = s.ranges[:0]
	s.points = s.points[:0]
	for _, w := range ws {
		start, end := max(w.Start, 0), min(w.End, p.totalLen)
		if w.Priority == None || end <= start {
			continue
		}
		r := segment{
			lo:       int(start / p.pieceLen),
			hi:       int((end-1)/p.pieceLen) + 1,
			prio:     w.Priority,
			deadline: w.Deadline,
		}
		s.ranges = append(s.ranges, r)
		s.points = append(s.points, r.lo, r.hi)
	}
	slices.Sort(s.points)
	s.points = slices.Compact(s.points)

	s.byIndex = s.byIndex[:0]
	for k := 0; k+1 < len(s.points); k++ {
		run := segment{lo: s.points[k], hi: s.points[k+1]}
		for _, r := range s.ranges {
			if r.lo > run.lo || r.hi < run.hi {
				continue
			}
			if r.prio > run.prio || (r.prio == run.prio && earlier(r.deadline, run.deadline)) {
				run.prio, run.deadline = r.prio, r.deadline
			}
		}
		if run.prio == None {
			continue
		}
		if last := len(s.byIndex) - 1; last >= 0 {
			prev := &s.byIndex[last]
			if prev.hi == run.lo && prev.prio == run.prio && prev.deadline.Equal(run.deadline) {
				prev.hi = run.hi
				continue
			}
		}
		s.byIndex = append(s.byIndex, run)
	}
	s.byUrgency = append(s.byUrgency[:0], s.byIndex...)
	slices.SortFunc(s.byUrgency, compareUrgency)
	p.egDirty = true
	return nil
}

// segmentOf returns the run covering piece i, if any.
func (p *Picker) segmentOf(i int) (segment, bool) {
	runs := p.wants.byIndex
	k, found := slices.BinarySearchFunc(runs, i, func(s segment, i int) int {
		switch {
		case s.hi <= i:
			return -1
		case s.lo > i:
			return 1
		}
		return 0
	})
	if !found {
		return segment{}, false
	}
	return runs[k], true
}

// Priority is the effective priority of piece i: the highest priority of
// the wants covering any of its bytes, or None when no want covers it or it
// is verified (there is nothing left to hurry). The engine uses it to treat
// urgent pieces specially (time-critical requests, duplicate requests to
// fast peers, not cancelling them).
func (p *Picker) Priority(i int) Priority {
	if !p.valid(i) || p.state[i] == verified {
		return None
	}
	s, ok := p.segmentOf(i)
	if !ok {
		return None
	}
	return s.prio
}

// Deadline is the earliest deadline among the wants of piece i's effective
// priority; ok is false when the piece has no priority or no deadline.
func (p *Picker) Deadline(i int) (deadline time.Time, ok bool) {
	if !p.valid(i) || p.state[i] == verified {
		return time.Time{}, false
	}
	s, found := p.segmentOf(i)
	if !found || s.deadline.IsZero() {
		return time.Time{}, false
	}
	return s.deadline, true
}

// wanted reports whether the mode fetches piece i at all.
func (p *Picker) wanted(i int) bool {
	if p.mode == FetchAll {
		return true
	}
	_, ok := p.segmentOf(i)
	return ok
}
