package fs

import (
	"math"
	"time"
)

// The readahead policy of one open file handle, as pure code: no locks, no
// I/O and no clock of its own (the caller passes now), so that it is
// table-tested apart from FUSE. The handle (handle.go) applies it under its
// mutex and turns its window into a picker.Readahead want.
//
// The idea is anacrolix/torrent's Reader: a consumer has a position and a
// window ahead of it that the swarm should fetch before the consumer blocks.
// The window starts at min after a seek and doubles each time the reader
// has consumed as much as the window since the seek, up to max: a reader
// that keeps streaming earns a longer window, a reader that just seeked has
// not yet shown it will read far. A reader that seeks again and again
// before consuming even min bytes (a database, a file scanner, a player
// being scrubbed) is random: it gets no readahead at all, only the Now wants
// its reads register, until it streams min bytes again.
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

// Readahead defaults: the window bounds of Options.
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

// maxDeadline caps how far in the future a readahead deadline is put.
const maxDeadline = time.Hour

// span is a byte range [start, end); empty when start >= end.
type span struct {
	// start is the first byte, end one past the last.
	start, end int64
}

func (s span) empty() bool { return s.start >= s.end }

// raPolicy holds the bounds of the readahead of every handle of a mount.
type raPolicy struct {
	// min is the window after a seek; max bounds its growth. 0 < min <= max.
	min, max int64
	// slack is how far behind the position a read may end and still be in
	// the stream: min/2, so that tiny windows (tests) still see seeks.
	slack int64
}

// newRAPolicy returns the policy for the window bounds of Options, with
// defaults for zero or negative values and max raised to min if below it.
func newRAPolicy(minWin, maxWin int64) raPolicy {
	if minWin <= 0 {
		minWin = DefaultReadaheadMin
	}
	if maxWin <= 0 {
		maxWin = max(DefaultReadaheadMax, minWin)
	}
	maxWin = max(maxWin, minWin)
	return raPolicy{min: minWin, max: maxWin, slack: minWin / 2}
}

// raState is where one handle's reader stands. The zero value is a handle
// that has not read yet.
type raState struct {
	// started is set by the first read.
	started bool
	// pos is where the next read of the stream is expected: the end of the
	// furthest read in the stream.
	pos int64
	// streak counts the bytes consumed in the stream since the last seek
	// (including ranges the page cache served, which the reader skipped).
	streak int64
	// since is when the streak began, for the consumption rate.
	since time.Time
	// seeks counts the seeks in a row, each made before the reader had
	// consumed min bytes since the previous one; capped at randomAfter.
	seeks int
}

// random reports whether the reader seeks too often to deserve readahead.
func (s *raState) random() bool { return s.seeks >= randomAfter }

// window returns the readahead window for the state: 0 for a random
// reader, else min doubled once for each window's worth consumed in the
// stream, up to max.
func (p raPolicy) window(s *raState) int64 {
	if s.random() {
		return 0
	}
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
func (p raPolicy) inStream(s *raState, off, n int64) bool {
	if !s.started {
		return true
	}
	ahead := max(p.window(s), p.slack)
	return off <= satAdd(s.pos, ahead) && satAdd(off, n) >= s.pos-p.slack
}

// observe records a read of n bytes at off, made at now, and reports
// whether it was a seek.
func (p raPolicy) observe(s *raState, off, n int64, now time.Time) (seek bool) {
	n = max(n, 0)
	end := satAdd(off, n)
	if !p.inStream(s, off, n) {
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

// want returns the readahead window ahead of the reader, clipped to a file
// of size bytes (file offsets); empty for a random reader or at the end.
func (p raPolicy) want(s *raState, size int64) span {
	w := p.window(s)
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
func (p raPolicy) rate(s *raState, now time.Time) float64 {
	elapsed := now.Sub(s.since)
	if !s.started || elapsed < minRateWindow || s.streak <= 0 {
		return fallbackRate
	}
	return float64(s.streak) / elapsed.Seconds()
}

// deadline returns when the reader, at its rate, will have consumed
// distance more bytes: the deadline of a want whose first missing byte is
// distance ahead of it. Capped at maxDeadline from now.
func (p raPolicy) deadline(s *raState, now time.Time, distance int64) time.Time {
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
