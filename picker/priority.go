package picker

import "time"

// Priority orders the wants readers place on byte ranges. The zero value
// means "not wanted"; larger values are more urgent. It is a small ordered
// enum (anacrolix/torrent's PiecePriority idea) so that comparisons are
// plain integer comparisons.
type Priority int8

const (
	// None: nobody is asking for this range.
	None Priority = iota
	// Readahead: a reader will probably read this soon (the window ahead of
	// a sequential reader, the head and tail of an opened media file).
	Readahead
	// Now: a reader is blocked on this range at this moment.
	Now
)

func (p Priority) String() string {
	switch p {
	case None:
		return "none"
	case Readahead:
		return "readahead"
	case Now:
		return "now"
	}
	return "priority(?)"
}

// Want is a byte range [Start, End) of the torrent's concatenated data that a
// reader asks for, with how urgently and by when. Deadline orders wants of
// the same priority: earlier first. A zero Deadline sorts after any set one.
type Want struct {
	Start, End int64
	Priority   Priority
	Deadline   time.Time
}
