package main

import (
	"strings"
	"testing"
	"time"

	"btfs/engine"
)

// TestFlowRates: the status line's rates are what flowed in the last
// statusRateWindow, so ↓ reads 0 once nothing flows, however fast it was.
func TestFlowRates(t *testing.T) {
	type tick struct {
		sec      float64 // since the start
		down, up int64   // totals
		// wantDown, wantUp in bytes/s
		wantDown, wantUp float64
	}
	tests := []struct {
		name  string
		ticks []tick
	}{
		{"first sample", []tick{{0, 100, 0, 0, 0}}},
		{"steady", []tick{{0, 0, 0, 0, 0}, {1, 1000, 10, 1000, 10}, {2, 2000, 20, 1000, 10}, {3, 3000, 30, 1000, 10}, {4, 4000, 40, 1000, 10}}},
		{"stops", []tick{
			{0, 0, 0, 0, 0}, {1, 4 << 20, 0, 4 << 20, 0}, {2, 8 << 20, 0, 4 << 20, 0},
			// nothing more: the window still holds the last bytes...
			{3, 8 << 20, 0, 8 << 20 / 3.0, 0}, {4, 8 << 20, 0, 4 << 20 / 3.0, 0},
			// ...then it is all idle: 0, not a decaying average.
			{5, 8 << 20, 0, 0, 0}, {6, 8 << 20, 0, 0, 0}, {60, 8 << 20, 0, 0, 0},
		}},
		{"resumes", []tick{{0, 0, 0, 0, 0}, {10, 0, 0, 0, 0}, {11, 500, 0, 500, 0}, {12, 1500, 0, 750, 0}}},
		{"slow log ticks", []tick{{0, 0, 0, 0, 0}, {10, 10000, 0, 1000, 0}, {20, 10000, 0, 0, 0}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r flowRates
			start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			for _, k := range tc.ticks {
				d, u := r.add(start.Add(time.Duration(k.sec*float64(time.Second))), k.down, k.up)
				if d != k.wantDown || u != k.wantUp {
					t.Errorf("at %vs: rates %v, %v; want %v, %v", k.sec, d, u, k.wantDown, k.wantUp)
				}
			}
		})
	}
}

func TestFormatStatusIdle(t *testing.T) {
	st := engine.Stats{VerifiedBytes: 1 << 20, Total: 2 << 20, Peers: 1, KnownPeers: 2}
	var r flowRates
	start := time.Now()
	r.add(start, 5<<20, 0)
	st.DownloadRate, st.UploadRate = r.add(start.Add(statusRateWindow+time.Second), 5<<20, 0)
	got := formatStatus(st)
	for _, want := range []string{"↓ 0 B/s", "↑ 0 B/s", "ETA ∞", "(50.0%)"} {
		if !strings.Contains(got, want) {
			t.Errorf("status %q lacks %q", got, want)
		}
	}
}
