package lsd

import (
	"testing"
	"time"
)

// TestSchedule: a torrent is announced at once, then every interval, and
// after minGap when it needs peers; never more often.
func TestSchedule(t *testing.T) {
	const interval, minGap = 5 * time.Minute, time.Minute
	t0 := time.Now()
	tests := []struct {
		name   string
		last   time.Duration // since t0; -1: never
		needed bool
		at     time.Duration
		due    bool
	}{
		{"first", -1, false, 0, true},
		{"just sent", 0, false, time.Second, false},
		{"needed, too soon", 0, true, minGap - time.Second, false},
		{"needed, after the gap", 0, true, minGap, true},
		{"not needed, after the gap", 0, false, minGap, false},
		{"the interval", 0, false, interval, true},
	}
	for _, tt := range tests {
		var sc schedule
		if tt.last >= 0 {
			sc.sent(t0.Add(tt.last))
		}
		sc.needed = tt.needed
		if got := sc.due(t0.Add(tt.at), interval, minGap); got != tt.due {
			t.Errorf("%s: due = %v, want %v", tt.name, got, tt.due)
		}
	}
	var sc schedule
	sc.needed = true
	sc.sent(t0)
	if sc.needed {
		t.Error("an announce did not clear needed")
	}
	if w := sc.wait(t0.Add(time.Minute), interval, minGap); w != interval-time.Minute {
		t.Errorf("wait = %v, want %v", w, interval-time.Minute)
	}
}
