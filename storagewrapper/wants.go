package storagewrapper

import (
	"sort"

	"btfs/picker"
)

// Want registers demand for a byte range of the torrent (a reader's
// readahead window, a blocked ReadAt) until release is called. The range is
// clipped to the torrent; an empty range or picker.None registers nothing.
// release may be called more than once. The engine learns of the change
// through Kick and reads the wants with Wants: the wrapper never calls the
// engine.
func (w *Wrapper) Want(want picker.Want) (release func()) {
	want.Start = max(want.Start, 0)
	want.End = min(want.End, w.info.TotalLength)
	if want.Start >= want.End || want.Priority <= picker.None {
		return func() {}
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return func() {}
	}
	id := w.nextWant
	w.nextWant++
	w.wants[id] = want
	w.mu.Unlock()
	w.signal()
	return func() {
		w.mu.Lock()
		_, ok := w.wants[id]
		delete(w.wants, id)
		w.mu.Unlock()
		if ok {
			w.signal()
		}
	}
}

// Wants returns a snapshot of the registered wants, most urgent first:
// higher priority, then earlier deadline (a zero deadline last), then lower
// start. Wants over pieces already verified are included; the picker skips
// them with the verified bitfield.
func (w *Wrapper) Wants() []picker.Want {
	w.mu.Lock()
	out := make([]picker.Want, 0, len(w.wants))
	for _, want := range w.wants {
		out = append(out, want)
	}
	w.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Priority != b.Priority {
			return a.Priority > b.Priority
		}
		if !a.Deadline.Equal(b.Deadline) {
			switch {
			case a.Deadline.IsZero():
				return false
			case b.Deadline.IsZero():
				return true
			}
			return a.Deadline.Before(b.Deadline)
		}
		if a.Start != b.Start {
			return a.Start < b.Start
		}
		return a.End < b.End
	})
	return out
}

// Kick returns a channel with capacity 1 that receives a value whenever the
// wants changed since it was last drained, or pieces changed state outside
// the engine's own downloads (TakeChanges): the engine's loop selects on it,
// drains TakeChanges and re-reads Wants. Several changes may fold into one
// signal.
func (w *Wrapper) Kick() <-chan struct{} { return w.kick }

// signal kicks without blocking.
func (w *Wrapper) signal() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}
