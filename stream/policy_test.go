package stream

import (
	"math"
	"testing"
	"time"
)

func TestNewRAPolicy(t *testing.T) {
	tests := []struct {
		name             string
		minIn, maxIn     int64
		wantMin, wantMax int64
	}{
		{"defaults", 0, 0, DefaultReadaheadMin, DefaultReadaheadMax},
		{"negative means default", -1, -1, DefaultReadaheadMin, DefaultReadaheadMax},
		{"min only", 8 << 20, 0, 8 << 20, DefaultReadaheadMax},
		{"min above the default max", 100 << 20, 0, 100 << 20, 100 << 20},
		{"max below min is raised", 10, 5, 10, 10},
		{"given", 10, 80, 10, 80},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewPolicy(tt.minIn, tt.maxIn)
			if p.Min() != tt.wantMin || p.Max() != tt.wantMax {
				t.Errorf("Min, Max = %d, %d, want %d, %d", p.Min(), p.Max(), tt.wantMin, tt.wantMax)
			}
			if p.min != tt.wantMin || p.max != tt.wantMax || p.slack != p.min/2 {
				t.Errorf("NewPolicy(%d, %d) = %+v, want min %d max %d slack min/2", tt.minIn, tt.maxIn, p, tt.wantMin, tt.wantMax)
			}
		})
	}
}

func TestWindowGrowsWithStreak(t *testing.T) {
	p := NewPolicy(10, 80)
	tests := []struct {
		streak int64
		seeks  int
		want   int64
	}{
		{0, 0, 10},
		{9, 0, 10},
		{10, 0, 20},
		{19, 0, 20},
		{20, 0, 40},
		{39, 0, 40},
		{40, 0, 80},
		{1 << 40, 0, 80},
		{0, 1, 10},
		{0, randomAfter - 1, 10},
		{0, randomAfter, 0},
		{1000, randomAfter, 0},
	}
	for _, tt := range tests {
		// A streak too young for its rate: the ladder alone.
		now := time.Unix(1000, 0)
		s := state{started: true, streak: tt.streak, seeks: tt.seeks, since: now}
		if got := p.window(&s, now); got != tt.want {
			t.Errorf("window(streak %d, seeks %d) = %d, want %d", tt.streak, tt.seeks, got, tt.want)
		}
	}
	// A max that is not min times a power of two is reached, not passed,
	// and a huge max does not overflow.
	odd := NewPolicy(10, 70)
	if got := odd.window(&state{streak: 1 << 40}, time.Time{}); got != 70 {
		t.Errorf("window with max 70 = %d", got)
	}
	huge := NewPolicy(1, 1<<62+1)
	if got := huge.window(&state{streak: 1<<63 - 1}, time.Time{}); got != 1<<62+1 {
		t.Errorf("window with a huge max = %d", got)
	}
}

func TestObserve(t *testing.T) {
	p := NewPolicy(10, 80) // slack 5
	type read struct {
		off, n int64
		seek   bool // expected
	}
	seq := func(from, to int64) []read { // 5-byte sequential reads
		var rs []read
		for off := from; off < to; off += 5 {
			rs = append(rs, read{off, 5, false})
		}
		return rs
	}
	cat := func(parts ...[]read) []read {
		var rs []read
		for _, p := range parts {
			rs = append(rs, p...)
		}
		return rs
	}
	tests := []struct {
		name       string
		reads      []read
		wantPos    int64
		wantStreak int64
		wantSeeks  int
		wantWindow int64
	}{
		{"sequential reads grow the window", seq(0, 40), 40, 40, 0, 80},
		{"the first read is not a seek, wherever it is", []read{{1000, 5, false}}, 1005, 5, 0, 10},
		{"a seek resets the window", cat(seq(0, 40), []read{{300, 5, true}}), 305, 5, 1, 10},
		{"a jump inside the window is in the stream (page cache hits)",
			cat(seq(0, 10), []read{{20, 5, false}}), 25, 25, 0, 40},
		{"a jump past the window is a seek", []read{{0, 5, false}, {21, 5, true}}, 26, 5, 1, 10},
		{"a read reordered within slack changes nothing",
			cat(seq(0, 10), []read{{15, 5, false}, {10, 5, false}}), 20, 20, 0, 40},
		{"a retried read is in the stream", []read{{0, 5, false}, {0, 5, false}}, 5, 5, 0, 10},
		{"a read further back is a seek", cat(seq(0, 25), []read{{10, 5, true}}), 15, 5, 1, 10},
		{"two short seeks are not random yet",
			[]read{{0, 5, false}, {300, 5, true}, {100, 5, true}}, 105, 5, 2, 10},
		{"three short seeks make a random reader",
			[]read{{0, 5, false}, {300, 5, true}, {100, 5, true}, {200, 5, true}}, 205, 5, randomAfter, 0},
		{"more seeks stay random, without overflowing the count",
			[]read{{0, 5, false}, {300, 5, true}, {100, 5, true}, {200, 5, true}, {400, 5, true}, {50, 5, true}}, 55, 5, randomAfter, 0},
		{"streaming min bytes ends random",
			[]read{{0, 5, false}, {300, 5, true}, {100, 5, true}, {200, 5, true}, {205, 5, false}}, 210, 10, 0, 20},
		{"min bytes between seeks resets the count",
			[]read{{0, 5, false}, {300, 5, true}, {305, 5, false}, {100, 5, true}, {200, 5, true}}, 205, 5, 2, 10},
		{"a seek with a long read still counts", []read{{0, 5, false}, {300, 100, true}}, 400, 100, 1, 80},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s state
			now := time.Unix(1000, 0)
			for i, r := range tt.reads {
				if got := p.observe(&s, r.off, r.n, now); got != r.seek {
					t.Fatalf("read %d (%d+%d): seek = %v, want %v (state %+v)", i, r.off, r.n, got, r.seek, s)
				}
			}
			if s.pos != tt.wantPos || s.streak != tt.wantStreak || s.seeks != tt.wantSeeks {
				t.Errorf("state %+v, want pos %d streak %d seeks %d", s, tt.wantPos, tt.wantStreak, tt.wantSeeks)
			}
			if got := p.window(&s, now); got != tt.wantWindow {
				t.Errorf("window = %d, want %d", got, tt.wantWindow)
			}
		})
	}
}

func TestWant(t *testing.T) {
	p := NewPolicy(10, 80)
	tests := []struct {
		name string
		s    state
		size int64
		want span
	}{
		{"not started", state{}, 100, span{}},
		{"ahead of the reader", state{started: true, pos: 20, streak: 20}, 100, span{20, 60}},
		{"clipped at the end of the file", state{started: true, pos: 90, streak: 20}, 100, span{90, 100}},
		{"nothing at the end", state{started: true, pos: 100, streak: 20}, 100, span{}},
		{"nothing for a random reader", state{started: true, pos: 20, seeks: randomAfter}, 100, span{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.want(&tt.s, tt.size, time.Time{}); got != tt.want {
				t.Errorf("want(%+v, %d) = %v, want %v", tt.s, tt.size, got, tt.want)
			}
		})
	}
}

func TestMoved(t *testing.T) {
	tests := []struct {
		name      string
		cur, next span
		want      bool
	}{
		{"both empty", span{}, span{}, false},
		{"first window", span{}, span{0, 40}, true},
		{"window dropped", span{0, 40}, span{}, true},
		{"same", span{0, 40}, span{0, 40}, false},
		{"moved less than a quarter", span{0, 40}, span{5, 44}, false},
		{"moved a quarter", span{0, 40}, span{10, 50}, true},
		{"grew by a quarter", span{0, 40}, span{0, 80}, true},
		{"reader went back (a seek)", span{20, 60}, span{19, 29}, true},
		{"reader outran the window", span{0, 40}, span{40, 48}, true},
		{"shrank after a seek inside it", span{0, 80}, span{30, 40}, true},
		{"end of file holds the end still", span{90, 100}, span{95, 100}, false},
		{"tiny window always moves by a byte", span{0, 1}, span{1, 2}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := moved(tt.cur, tt.next); got != tt.want {
				t.Errorf("moved(%v, %v) = %v, want %v", tt.cur, tt.next, got, tt.want)
			}
		})
	}
}

func TestDeadline(t *testing.T) {
	p := NewPolicy(10, 80)
	t0 := time.Unix(1000, 0)
	streaming := state{started: true, streak: 10 << 20, since: t0}
	young := state{started: true, streak: 10 << 20, since: t0.Add(950 * time.Millisecond)}
	now := t0.Add(time.Second)
	tests := []struct {
		name     string
		s        state
		distance int64
		want     time.Time
	}{
		{"missing byte under the reader", streaming, 0, now},
		{"negative distance", streaming, -5, now},
		{"at the reader's rate", streaming, 5 << 20, now.Add(500 * time.Millisecond)},
		{"young streak uses the fallback rate", young, fallbackRate, now.Add(time.Second)},
		{"not started uses the fallback rate", state{}, 2 * fallbackRate, now.Add(2 * time.Second)},
		{"capped", streaming, 1 << 62, now.Add(maxDeadline)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.deadline(&tt.s, now, tt.distance); !got.Equal(tt.want) {
				t.Errorf("deadline(distance %d) = %v, want %v", tt.distance, got, tt.want)
			}
		})
	}
}

// TestWindowFromRate: once the streak is minRateWindow old, the window is
// Lead at the reader's own rate, clamped to [min, ladder]: a slow stream
// stops short of the ladder, a fast one keeps the ladder, and a young
// streak has the ladder alone.
func TestWindowFromRate(t *testing.T) {
	const mib = 1 << 20
	p := NewPolicy(4*mib, 64*mib)
	t0 := time.Unix(1000, 0)
	lead := int64(Lead.Seconds())
	tests := []struct {
		name    string
		streak  int64
		elapsed time.Duration
		seeks   int
		want    int64
	}{
		{"young streak: the ladder", 64 * mib, minRateWindow - time.Millisecond, 0, 64 * mib},
		// 1 MiB/s: Lead seconds of it, below the ladder's 64 MiB.
		{"slow stream: rate × lead", 100 * mib, 100 * time.Second, 0, lead * mib},
		// 2 MiB/s after 32 MiB: the ladder (64) is above 2×Lead MiB.
		{"faster stream: rate × lead", 32 * mib, 16 * time.Second, 0, 2 * lead * mib},
		// 100 KiB/s: Lead of it is below min.
		{"very slow stream: never below min", 10 * mib, 100 * time.Second, 0, 4 * mib},
		// 100 MiB/s: far above max, and the ladder caps the growth.
		{"fast copy: the ladder", 10 * mib, 100 * time.Millisecond, 0, 16 * mib},
		{"fast copy, long streak: max", 1000 * mib, 10 * time.Second, 0, 64 * mib},
		{"random reader: none", 100 * mib, 100 * time.Second, randomAfter, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := state{started: true, streak: tt.streak, seeks: tt.seeks, since: t0}
			if got := p.window(&s, t0.Add(tt.elapsed)); got != tt.want {
				t.Errorf("window(streak %d over %v) = %d, want %d", tt.streak, tt.elapsed, got, tt.want)
			}
		})
	}
}

// TestRateDiscountsPauses: the rate is the streak over the time the reader
// spent reading, where a gap between two reads counts for at most
// pauseAfter (a paused player), and a seek starts a new measurement.
func TestRateDiscountsPauses(t *testing.T) {
	const mib = 1 << 20
	p := NewPolicy(4*mib, 64*mib)
	t0 := time.Unix(1000, 0)
	type read struct {
		at     time.Duration // since t0
		off, n int64
	}
	// steady reads 1 MiB per second from off for secs seconds, starting at
	// start.
	steady := func(start time.Duration, off int64, secs int) []read {
		var rs []read
		for i := range secs {
			rs = append(rs, read{start + time.Duration(i)*time.Second, off + int64(i)*mib, mib})
		}
		return rs
	}
	tests := []struct {
		name  string
		reads []read
		at    time.Duration // when the rate is asked
		want  float64       // bytes per second
	}{
		// 10 reads of 1 MiB, the last at 9 s: 10 MiB over 9 s.
		{"steady", steady(0, 0, 10), 9 * time.Second, 10 * mib / 9.0},
		// The same, then a 600 s pause and one more read: the pause counts
		// pauseAfter, so 11 MiB over 9 s + pauseAfter.
		{"after a pause", append(steady(0, 0, 10), read{609 * time.Second, 10 * mib, mib}), 609 * time.Second,
			11 * mib / (9 + pauseAfter.Seconds())},
		// A gap shorter than pauseAfter is consumption time.
		{"short gaps count", []read{{0, 0, mib}, {3 * time.Second, mib, mib}}, 3 * time.Second, 2 * mib / 3.0},
		// A seek after the pause starts afresh: 2 MiB over 1 s.
		{"a seek resets", append(steady(0, 0, 10), read{600 * time.Second, 500 * mib, mib}, read{601 * time.Second, 501 * mib, mib}),
			601 * time.Second, 2 * mib},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s state
			for _, r := range tt.reads {
				p.observe(&s, r.off, r.n, t0.Add(r.at))
			}
			got, ok := p.measuredRate(&s, t0.Add(tt.at))
			if !ok || math.Abs(got-tt.want) > 1e-6*tt.want {
				t.Errorf("rate = %v (%v), want %v", got, ok, tt.want)
			}
		})
	}
}
