package stream

import (
	"slices"
	"strings"
	"sync"
	"time"
)

// Registry is the set of open Readers of a process, whatever opened them
// (a FUSE handle, an HTTP response), and the counts of their reads by
// kind: a status page shows each reader's position and window, and
// /metrics exports how long reads waited and how often the readahead
// window had the bytes ready. A Reader joins it at NewReader (Config.Registry)
// and leaves at Close. The zero value is not usable: NewRegistry.
//
// Lock order: Registry.mu is never held while calling into a Reader
// (Readers snapshots the set first, then asks each one).
type Registry struct {
	// mu guards the fields below.
	mu sync.Mutex
	// readers holds the open Readers.
	readers map[*Reader]struct{}
	// kinds holds the read counts by Config.Kind.
	kinds map[string]*ReadStats
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry {
	return &Registry{readers: map[*Reader]struct{}{}, kinds: map[string]*ReadStats{}}
}

// WaitBuckets are the upper bounds, in seconds, of the histogram of read
// waits: 0.5 ms to about 131 s, ×4 each. A read served at once lands in the
// first.
var WaitBuckets = []float64{0.0005, 0.002, 0.008, 0.032, 0.128, 0.512, 2.048, 8.192, 32.768, 131.072}

// ReadStats counts the reads of one kind of Reader.
type ReadStats struct {
	// Reads counts the reads (ReadAt, and reads served elsewhere and told
	// through Observe).
	Reads uint64
	// ReadaheadHits counts the reads whose bytes were all verified when
	// they came and lay inside the reader's readahead window (or its
	// head/tail wants): the window did its job.
	ReadaheadHits uint64
	// WaitSum is the total wait in seconds; WaitCounts[i] counts the reads
	// that waited at most WaitBuckets[i] (and more than the bucket
	// before); the last element counts those above every bound.
	WaitSum    float64
	WaitCounts []uint64
}

// clone returns a deep copy.
func (s *ReadStats) clone() ReadStats {
	c := *s
	c.WaitCounts = slices.Clone(s.WaitCounts)
	return c
}

// record counts one read of kind that waited wait, a readahead hit or not.
func (g *Registry) record(kind string, wait time.Duration, hit bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.kinds[kind]
	if s == nil {
		s = &ReadStats{WaitCounts: make([]uint64, len(WaitBuckets)+1)}
		g.kinds[kind] = s
	}
	s.Reads++
	if hit {
		s.ReadaheadHits++
	}
	sec := wait.Seconds()
	s.WaitSum += sec
	i, _ := slices.BinarySearch(WaitBuckets, sec)
	s.WaitCounts[i]++
}

// Stats returns a copy of the read counts, by kind.
func (g *Registry) Stats() map[string]ReadStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]ReadStats, len(g.kinds))
	for k, s := range g.kinds {
		out[k] = s.clone()
	}
	return out
}

func (g *Registry) add(r *Reader) {
	g.mu.Lock()
	g.readers[r] = struct{}{}
	g.mu.Unlock()
}

func (g *Registry) remove(r *Reader) {
	g.mu.Lock()
	delete(g.readers, r)
	g.mu.Unlock()
}

// ReaderInfo is a snapshot of one open Reader.
type ReaderInfo struct {
	// Torrent is what the Reader reads (compare it with a torrent's own
	// value to find its readers).
	Torrent Torrent
	// Kind and Name are the Reader's Config.Kind and Config.Name.
	Kind, Name string
	// Off and Size are the range: torrent offset and length.
	Off, Size int64
	// Pos is where the next read is expected (range offset); 0 before the
	// first read.
	Pos int64
	// WindowStart and WindowEnd are the readahead window registered now
	// (range offsets); equal when there is none.
	WindowStart, WindowEnd int64
	// Random is set for a reader that seeks too often for a window.
	Random bool
	// Opened is when the Reader was made.
	Opened time.Time
}

// Readers returns a snapshot of the open Readers, ordered by kind, name
// and opening time.
func (g *Registry) Readers() []ReaderInfo {
	g.mu.Lock()
	rs := make([]*Reader, 0, len(g.readers))
	for r := range g.readers {
		rs = append(rs, r)
	}
	g.mu.Unlock()
	out := make([]ReaderInfo, 0, len(rs))
	for _, r := range rs {
		if info, ok := r.info(); ok {
			out = append(out, info)
		}
	}
	slices.SortFunc(out, func(a, b ReaderInfo) int {
		if c := strings.Compare(a.Kind, b.Kind); c != 0 {
			return c
		}
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return a.Opened.Compare(b.Opened)
	})
	return out
}
