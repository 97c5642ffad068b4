package engine

import (
	"context"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// meter counts bytes and estimates a recent rate. Peer goroutines Add
// (atomically, on the hot path of every block); the torrent's loop calls
// Tick once a second and reads Rate. The estimate is an exponentially
// weighted moving average over about rateWindow, which is what the choker
// and the request pipeline need: responsive to a peer speeding up, but not
// jumping on a single burst.
type meter struct {
	total atomic.Int64 // bytes ever counted

	// Owned by the loop:
	last     int64     // total at the previous tick
	lastTick time.Time // when the previous tick ran
	rate     float64   // bytes/s, EWMA
}

// rateWindow is the time constant of the moving average.
const rateWindow = 5 * time.Second

// Add counts n bytes. Safe from any goroutine.
func (m *meter) Add(n int) { m.total.Add(int64(n)) }

// Total returns the bytes counted so far. Safe from any goroutine.
func (m *meter) Total() int64 { return m.total.Load() }

// Tick folds the bytes since the previous tick into the rate. Loop only.
func (m *meter) Tick(now time.Time) {
	total := m.total.Load()
	if m.lastTick.IsZero() {
		m.last, m.lastTick = total, now
		return
	}
	dt := now.Sub(m.lastTick)
	if dt <= 0 {
		return
	}
	inst := float64(total-m.last) / dt.Seconds()
	alpha := dt.Seconds() / rateWindow.Seconds()
	if alpha > 1 {
		alpha = 1
	}
	m.rate += alpha * (inst - m.rate)
	m.last, m.lastTick = total, now
}

// Rate returns the smoothed rate in bytes/s. Loop only.
func (m *meter) Rate() float64 { return m.rate }

// waitN waits until lim allows n bytes; a nil lim allows everything. It
// asks in pieces no larger than the burst: a block larger than the burst
// (a 128 KiB request under a low upload cap) must be delayed, not refused
// — rate.Limiter.WaitN fails at once for n above the burst.
func waitN(ctx context.Context, lim *rate.Limiter, n int) error {
	if lim == nil {
		return nil
	}
	for n > 0 {
		k := min(n, lim.Burst())
		if err := lim.WaitN(ctx, k); err != nil {
			return err
		}
		n -= k
	}
	return nil
}
