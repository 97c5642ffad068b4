// Package ratelog keeps a repeated log line from flooding the log. A full
// disk, a peer that keeps sending junk or a directory that vanished can
// produce the same error thousands of times a second; the log needs it
// once, and how often it happened since.
//
// It is a leaf (it imports nothing of ours), so that storagewrapper,
// cache and engine can all use it without breaking the import rules.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// DefaultInterval is Limiter's interval when New is given 0.
const DefaultInterval = 10 * time.Second

// Limiter logs the first line of each kind at once and counts the ones
// that follow within the interval; at the end of the interval, if any were
// counted, it logs the last of them once more with "suppressed" set to how
// many were counted. A kind is the message text: lines that differ only in
// their attributes are one kind. It is safe for concurrent use; the zero
// value is not usable (use New).
type Limiter struct {
	// log receives the lines; never nil.
	log *slog.Logger
	// every is the interval.
	every time.Duration
	// now is the clock that decides which lines fall in an interval
	// (time.Now; tests stop it). The summaries' timers run on real time.
	now func() time.Time

	// mu guards kinds and stopped.
	mu sync.Mutex
	// kinds holds, per message, what was logged and counted.
	kinds map[string]*kind
	// stopped is set by Stop: no summary is scheduled any more.
	stopped bool
}

// kind is the state of one message.
type kind struct {
	// last is when a line of this kind was last written.
	last time.Time
	// suppressed counts the lines not written since last.
	suppressed int
	// level and args are those of the latest suppressed line, for the
	// summary.
	level slog.Level
	args  []any
	// timer writes the summary at the end of the interval; nil when none
	// is due.
	timer *time.Timer
}

// New returns a Limiter writing to log (nil discards) at most one line of a
// kind per every (0 means DefaultInterval).
func New(log *slog.Logger, every time.Duration) *Limiter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if every <= 0 {
		every = DefaultInterval
	}
	return &Limiter{log: log, every: every, now: time.Now, kinds: map[string]*kind{}}
}

// Log writes msg at level with args, unless a line with the same msg was
// written less than the interval ago: then it only counts it, and the
// count is written at the end of the interval. It reports whether the line
// was written now.
func (l *Limiter) Log(level slog.Level, msg string, args ...any) bool {
	now := l.now()
	l.mu.Lock()
	k := l.kinds[msg]
	if k == nil {
		k = &kind{}
		l.kinds[msg] = k
	}
	if k.last.IsZero() || now.Sub(k.last) >= l.every {
		k.last = now
		l.mu.Unlock()
		l.log.Log(context.Background(), level, msg, args...)
		return true
	}
	k.suppressed++
	k.level, k.args = level, args
	if k.timer == nil && !l.stopped {
		k.timer = time.AfterFunc(max(k.last.Add(l.every).Sub(now), 0), func() { l.summary(msg) })
	}
	l.mu.Unlock()
	return false
}

// summary writes the count of the lines of kind msg suppressed in the
// interval that just ended; that line starts the next interval.
func (l *Limiter) summary(msg string) {
	l.mu.Lock()
	k := l.kinds[msg]
	k.timer = nil
	n, level, args := k.suppressed, k.level, k.args
	k.suppressed, k.args = 0, nil
	if n == 0 {
		l.mu.Unlock()
		return
	}
	k.last = l.now()
	l.mu.Unlock()
	l.log.Log(context.Background(), level, msg, append(append([]any(nil), args...), "suppressed", n, "in", l.every)...)
}

// Error is Log at slog.LevelError.
func (l *Limiter) Error(msg string, args ...any) bool { return l.Log(slog.LevelError, msg, args...) }

// Warn is Log at slog.LevelWarn.
func (l *Limiter) Warn(msg string, args ...any) bool { return l.Log(slog.LevelWarn, msg, args...) }

// Info is Log at slog.LevelInfo.
func (l *Limiter) Info(msg string, args ...any) bool { return l.Log(slog.LevelInfo, msg, args...) }

// Stop cancels the summaries still due and schedules no more (the counts
// are dropped): call it when the owner closes, so that no timer outlives
// it. Lines logged afterwards are still written once per interval.
func (l *Limiter) Stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
	for _, k := range l.kinds {
		if k.timer != nil {
			k.timer.Stop()
			k.timer = nil
		}
	}
}
