package stream

import (
	"math"
	"time"
)

// The readahead policy of one Reader, as pure code: no locks, no I/O and no
// clock of its own (the caller passes now), so that it is table-tested
// apart from any consumer. The Reader (reader.go) applies it under its
// mutex and turns its window into a picker.Readahead want.
//
// The idea is anacrolix/torrent's Reader: a consumer has a position and a
// window ahead of it that the swarm should fetch before the consumer blocks.
// Two bounds decide the window, and the smaller one wins:
//   - the ladder: min after a seek, doubled each time the reader has
//     consumed as much as the window since the seek, up to max. A reader
//     that keeps streaming earns a longer window; one that just seeked has
//     not yet shown it will read far.
//   - the lead: once the reader's own consumption rate is known (its streak
//     is minRateWindow old), Lead seconds of it, and never less than min.
//     A 2 Mbit/s video wants about 4 MiB ahead, not max: when bandwidth is
//     scarce every byte fetched before the player needs it delays the ones
//     it does need. A fast copy still reaches max through the ladder.
//
// A reader that seeks again and again before consuming even min bytes (a
// database, a file scanner, a player being scrubbed) is random: it gets no
// readahead at all, only the Now wants its reads register, until it
// streams min bytes again. A seek replaces the window at once: the want
// ahead of the old position is released, not left for the swarm to fetch.
//
// What counts as sequential. The kernel does not deliver a streaming
// reader's reads one after the other at exactly the expected offset:
//   - page cache hits (the mount keeps the cache, FOPEN_KEEP_CACHE) skip
//     the ranges already cached, so the next read lands further ahead;
//   - the kernel's asynchronous reads (several in flight per file) arrive
//     out of order, so a read may land a little behind;
//   - a read interrupted by a signal is retried at the same offset.
//
// So a read is in the stream when it starts no further ahead of the
// position than the window and ends no further behind it than slack.
// Anything else is a seek.

// Readahead defaults: the window bounds of NewPolicy.
const (
	// DefaultReadaheadMin is the window after a seek: 4 MiB, a few seconds
	// of a high bitrate video.
	DefaultReadaheadMin = 4 << 20
	// DefaultReadaheadMax bounds the window of a reader that keeps
	// streaming: 64 MiB.
	DefaultReadaheadMax = 64 << 20
)

// randomAfter is how many seeks in a row, each after less than min bytes
// consumed, make a reader random.
const randomAfter = 3

// fallbackRate is the consumption rate assumed (bytes per second) while a
// reader's own is not known yet: about a 32 Mbit/s video.
const fallbackRate = 4 << 20

// minRateWindow is how long a streak must last before its rate is trusted:
// the first reads of a streak come in a burst (the kernel's own readahead).
const minRateWindow = 100 * time.Millisecond

// Lead is how far ahead of the reader, in time at its own consumption rate,
// the window reaches once that rate is known: long enough to ride out a
// slow or departing peer and a piece or two in flight at real latencies,
// short enough that a seek throws little away.
const Lead = 15 * time.Second

// pauseAfter is the longest gap between two reads that counts as
// consumption time in the rate: a longer gap is a pause (a paused player),
// and only pauseAfter of it counts, so that a reader resuming after a
// pause does not carry a rate diluted by it. A reader that really reads
// less often than that is overestimated, to at most one read per
// pauseAfter: a larger window, never a smaller one.
const pauseAfter = 5 * time.Second

// maxDeadline caps how far in the future a readahead deadline is put.
const maxDeadline = time.Hour

// span is a byte range [start, end); empty when start >= end.
type span struct {
	// start is the first byte, end one past the last.
	start, end int64
}

func (s span) empty() bool { return s.start >= s.end }

// within reports whether non-empty s lies inside o.
func (s span) within(o span) bool { return !s.empty() && s.start >= o.start && s.end <= o.end }

// Policy holds the bounds of the readahead of a set of Readers (every
// handle of a mount, say). Make one with NewPolicy; a Reader given the
// zero value uses NewPolicy(0, 0).
type Policy struct {
	// min is the window after a seek; max bounds its growth. 0 < min <= max.
	min, max int64
	// slack is how far behind the position a read may end and still be in
	// the stream: min/2, so that tiny windows (tests) still see seeks.
	slack int64
}

// NewPolicy returns the policy for the window bounds minWin (after a seek)
// and maxWin, with defaults (DefaultReadaheadMin, DefaultReadaheadMax) for
// zero or negative values and maxWin raised to minWin if below it.
func NewPolicy(minWin, maxWin int64) Policy {
	if minWin <= 0 {
		minWin = DefaultReadaheadMin
	}
	if maxWin <= 0 {
		maxWin = max(DefaultReadaheadMax, minWin)
	}
	maxWin = max(maxWin, minWin)
	return Policy{min: minWin, max: maxWin, slack: minWin / 2}
}

// Min is the window after a seek.
func (p Policy) Min() int64 { return p.min }

// Max is the largest window.
func (p Policy) Max() int64 { return p.max }

// state is where one Reader stands. The zero value is a reader that has
// not read yet.
type state struct {
	// started is set by the first read.
	started bool
	// pos is where the next read of the stream is expected: the end of the
	// furthest read in the stream.
	pos int64
	// streak counts the bytes consumed in the stream since the last seek
	// (including ranges the page cache served, which the reader skipped).
	streak int64
	// since is when the streak began, for the consumption rate, moved
	// later by the pauses in it (pauseAfter).
	since time.Time
	// last is when the last read was observed.
	last time.Time
	// seeks counts the seeks in a row, each made before the reader had
	// consumed min bytes since the previous one; capped at randomAfter.
	seeks int
}

// random reports whether the reader seeks too often to deserve readahead.
func (s *state) random() bool { return s.seeks >= randomAfter }

// window returns the readahead window for the state at now: 0 for a
// random reader, else the smaller of the ladder (min doubled once for each
// window's worth consumed in the stream, up to max) and, once the rate is
// known, Lead at the reader's rate (at least min).
func (p Policy) window(s *state, now time.Time) int64 {
	if s.random() {
		return 0
	}
	w := p.ladder(s)
	if r, ok := p.measuredRate(s, now); ok {
		lead := r * Lead.Seconds()
		if lead < float64(w) {
			w = max(int64(lead), p.min)
		}
	}
	return w
}

// ladder returns min doubled once for each window's worth consumed in the
// stream, up to max.
func (p Policy) ladder(s *state) int64 {
	w := p.min
	for w < p.max && s.streak >= w {
		if w > p.max/2 {
			return p.max
		}
		w *= 2
	}
	return min(w, p.max)
}

// inStream reports whether a read of n bytes at off continues the stream.
func (p Policy) inStream(s *state, off, n int64, now time.Time) bool {
	if !s.started {
		return true
	}
	ahead := max(p.window(s, now), p.slack)
	return off <= satAdd(s.pos, ahead) && satAdd(off, n) >= s.pos-p.slack
}

// observe records a read of n bytes at off, made at now, and reports
// whether it was a seek.
func (p Policy) observe(s *state, off, n int64, now time.Time) (seek bool) {
	n = max(n, 0)
	end := satAdd(off, n)
	if gap := now.Sub(s.last); s.started && gap > pauseAfter {
		// A pause: only pauseAfter of it counts against the rate.
		s.since = s.since.Add(gap - pauseAfter)
	}
	s.last = now
	if !p.inStream(s, off, n, now) {
		s.seeks = min(s.seeks+1, randomAfter)
		s.pos, s.streak, s.since = end, n, now
		return true
	}
	if !s.started {
		s.started = true
		s.pos, s.since = off, now
	}
	if end > s.pos {
		s.streak = satAdd(s.streak, end-s.pos)
		s.pos = end
	}
	if s.streak >= p.min {
		s.seeks = 0
	}
	return false
}

// want returns the readahead window ahead of the reader at now, clipped to
// a file of size bytes (file offsets); empty for a random reader or at the
// end.
func (p Policy) want(s *state, size int64, now time.Time) span {
	return s.ahead(p.window(s, now), size)
}

// ahead returns the w bytes ahead of the reader, clipped to a file of size
// bytes; empty when w is 0, before the first read or at the end.
func (s *state) ahead(w, size int64) span {
	if w == 0 || !s.started || s.pos >= size {
		return span{}
	}
	return span{start: s.pos, end: min(satAdd(s.pos, w), size)}
}

// moved reports whether the registered window cur should be replaced by
// next: when one of them is empty and the other not, when the reader left
// cur (a seek back, or it outran it), or when the end moved by a quarter of
// the window or more. Updating only then keeps at least three quarters of
// the window wanted ahead of the reader without re-registering on every
// read (each update wakes the engine).
func moved(cur, next span) bool {
	switch {
	case cur.empty() && next.empty():
		return false
	case cur.empty() || next.empty():
		return true
	case next.start < cur.start || next.start >= cur.end:
		return true
	}
	step := max((next.end-next.start)/4, 1)
	d := next.end - cur.end
	return d >= step || -d >= step
}

// rate returns the reader's consumption rate in bytes per second over its
// current streak, or fallbackRate while the streak is too young to tell.
func (p Policy) rate(s *state, now time.Time) float64 {
	if r, ok := p.measuredRate(s, now); ok {
		return r
	}
	return fallbackRate
}

// measuredRate returns the reader's consumption rate in bytes per second
// over its current streak, and false while the streak is younger than
// minRateWindow (or empty): then nobody knows it yet.
func (p Policy) measuredRate(s *state, now time.Time) (float64, bool) {
	elapsed := now.Sub(s.since)
	if !s.started || elapsed < minRateWindow || s.streak <= 0 {
		return 0, false
	}
	return float64(s.streak) / elapsed.Seconds(), true
}

// deadline returns when the reader, at its rate, will have consumed
// distance more bytes: the deadline of a want whose first missing byte is
// distance ahead of it. Capped at maxDeadline from now.
func (p Policy) deadline(s *state, now time.Time, distance int64) time.Time {
	if distance <= 0 {
		return now
	}
	secs := float64(distance) / p.rate(s, now)
	if secs >= maxDeadline.Seconds() {
		return now.Add(maxDeadline)
	}
	return now.Add(time.Duration(secs * float64(time.Second)))
}

// satAdd adds non-negative b to a without overflowing.
func satAdd(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
