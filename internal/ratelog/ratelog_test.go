package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"btfs/internal/leakcheck"
	"btfs/internal/poll"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// recorder is a slog.Handler that keeps every record.
type recorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec.Clone())
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

// lines returns the records of msg, each with its "suppressed" count (0
// when the attribute is absent).
func (r *recorder) lines(msg string) []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int64
	for _, rec := range r.recs {
		if rec.Message != msg {
			continue
		}
		var n int64
		rec.Attrs(func(a slog.Attr) bool {
			if a.Key == "suppressed" {
				n = a.Value.Int64()
			}
			return true
		})
		out = append(out, n)
	}
	return out
}

func TestLimiter(t *testing.T) {
	tests := []struct {
		name   string
		burst  int     // lines of kind "a" logged at once
		others int     // lines of kind "b" logged at once
		want   []int64 // "a" lines written, with their suppressed counts
	}{
		{"one line", 1, 0, []int64{0}},
		{"a burst becomes two lines", 1000, 0, []int64{0, 999}},
		{"kinds are counted apart", 5, 3, []int64{0, 4}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			l := New(slog.New(rec), 20*time.Millisecond)
			defer l.Stop()
			// The clock stands still: the whole burst falls in one
			// interval however slow the machine; the summary's timer
			// runs on real time.
			t0 := time.Now()
			l.now = func() time.Time { return t0 }
			for i := range tc.burst {
				written := l.Error("a", "i", i)
				if written != (i == 0) {
					t.Fatalf("line %d: written=%v", i, written)
				}
			}
			for range tc.others {
				l.Warn("b")
			}
			poll.Until(t, 10*time.Second, "every summary written", func() bool {
				return len(rec.lines("a")) == len(tc.want)
			})
			got := rec.lines("a")
			for i := range tc.want {
				if got[i] != tc.want[i] {
					t.Fatalf("lines of a: suppressed counts %v, want %v", got, tc.want)
				}
			}
			if tc.others > 0 {
				poll.Until(t, 10*time.Second, "the summary of b", func() bool { return len(rec.lines("b")) == 2 })
				if b := rec.lines("b"); b[1] != int64(tc.others-1) {
					t.Fatalf("lines of b: %v", b)
				}
			}
		})
	}
}

// TestLimiterAfterQuiet: a line logged after a quiet interval is written
// at once, and Stop drops a summary that is still due.
func TestLimiterAfterQuiet(t *testing.T) {
	rec := &recorder{}
	l := New(slog.New(rec), time.Hour)
	if !l.Info("x") || l.Info("x") {
		t.Fatal("first line not written, or second not suppressed")
	}
	l.Stop()
	if n := len(rec.lines("x")); n != 1 {
		t.Fatalf("%d lines after Stop, want 1", n)
	}
	// A new Limiter with a tiny interval writes a line after the quiet.
	l2 := New(slog.New(rec), time.Nanosecond)
	defer l2.Stop()
	l2.Info("y")
	poll.Until(t, 10*time.Second, "an interval to pass", func() bool { return l2.Info("y") })
}
