package engine

import "sync/atomic"

// Budget is a number of peer connections shared by Torrents (a process
// with many torrents must not open MaxPeers for each). A dial takes a
// slot when it starts and keeps it for the connection it makes; an
// incoming connection takes one when it is admitted; both give it back
// when they end. A nil *Budget is unlimited.
type Budget struct {
	max  int64
	used atomic.Int64
}

// NewBudget returns a budget of n connections; n <= 0 means unlimited
// (nil).
func NewBudget(n int) *Budget {
	if n <= 0 {
		return nil
	}
	return &Budget{max: int64(n)}
}

// take takes a slot; false when none is free.
func (b *Budget) take() bool {
	if b == nil {
		return true
	}
	if b.used.Add(1) > b.max {
		b.used.Add(-1)
		return false
	}
	return true
}

// give returns a slot.
func (b *Budget) give() {
	if b != nil {
		b.used.Add(-1)
	}
}

// InUse is the number of slots taken.
func (b *Budget) InUse() int {
	if b == nil {
		return 0
	}
	return int(b.used.Load())
}
