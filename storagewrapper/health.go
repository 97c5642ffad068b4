package storagewrapper

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"syscall"
	"time"

	"btfs/picker"
)

// A full, read-only or failing disk is a state, not a loop: the first write
// that fails for a reason the disk will not forget by itself (no space, a
// read-only file system, the directory gone, an I/O error) puts the Wrapper
// in a failed state. Then NewRequest hands out nothing (RequestStoreFailed,
// and the engine cancels what it asked for), readers waiting for a piece
// that is not verified fail with the store's error (ENOSPC reaches the
// reading process as ENOSPC), the log says so once, and a probe retries
// with backoff until the Store takes data again (Prober), when everything
// resumes by itself.
//
// No space is tried harder first: a Store that can evict (Evicter, the
// shared cache) evicts the least recently read pieces that no reader holds,
// as a size cap does, and the write is tried again; only when nothing can
// be evicted does the Wrapper fail. From the first time the disk is full,
// Health().Full stays set: the engine then fetches only what readers want,
// as under a size cap, rather than fill the disk with pieces nobody reads
// and evict them again.

// Fault is why a Store does not take data.
type Fault int8

const (
	// FaultNone: the Store takes data.
	FaultNone Fault = iota
	// FaultFull: no space left (ENOSPC) or over quota (EDQUOT), and
	// nothing could be evicted.
	FaultFull
	// FaultReadOnly: the file system is read-only (EROFS) or we may not
	// write there (EACCES, EPERM).
	FaultReadOnly
	// FaultGone: the directory is gone (ENOENT, ENOTDIR, ESTALE): removed
	// while in use.
	FaultGone
	// FaultIO: an I/O error (EIO) or any other failure of the Store.
	FaultIO
)

func (f Fault) String() string {
	switch f {
	case FaultNone:
		return "ok"
	case FaultFull:
		return "no space left"
	case FaultReadOnly:
		return "read-only"
	case FaultGone:
		return "directory gone"
	case FaultIO:
		return "I/O error"
	}
	return "fault(?)"
}

// FaultOf classifies a Store's error; FaultNone for nil and for the errors
// that are not the disk's (the Wrapper or the Store closed).
func FaultOf(err error) Fault {
	var errno syscall.Errno
	switch {
	case err == nil, errors.Is(err, ErrClosed):
		return FaultNone
	case !errors.As(err, &errno):
		if errors.Is(err, fs.ErrNotExist) {
			return FaultGone
		}
		return FaultIO
	}
	switch errno {
	case syscall.ENOSPC, syscall.EDQUOT:
		return FaultFull
	case syscall.EROFS, syscall.EACCES, syscall.EPERM:
		return FaultReadOnly
	case syscall.ENOENT, syscall.ENOTDIR, syscall.ESTALE:
		return FaultGone
	}
	return FaultIO
}

// Health is the state of the Store as the Wrapper sees it.
type Health struct {
	// Fault is FaultNone while the Store takes data.
	Fault Fault
	// Err is the error that put the Store in Fault (or the last probe's);
	// nil when FaultNone.
	Err error
	// Since is when the Store failed; zero when FaultNone.
	Since time.Time
	// Full is set once a Store that evicts (Evicter: a cache) has run out
	// of space, and stays set: the disk holds less than the torrent, so
	// fetch only what readers want.
	Full bool
}

// Evicter is implemented by a Store that can free space (package cache):
// MakeRoom removes published pieces, least recently read first, never one
// a reader holds, until need bytes more than now are free (as far as it
// can tell), and returns how many bytes it removed. The Wrapper calls it
// when a write fails for want of space, and writes again if it freed any.
type Evicter interface {
	MakeRoom(need int64) (freed int64, err error)
}

// Sizer is implemented by a Store that knows the size of the file system
// it is on (package cache): once the disk was full, the Wrapper keeps the
// partial data of the pieces in flight to a quarter of it, so that the
// pieces readers wait for find room.
type Sizer interface {
	DiskSize() (int64, error)
}

// Prober is implemented by a Store that can tell whether it takes data
// again after a failure: Probe makes the Store usable if it can (recreates
// its directories, evicts to make room) and then writes need bytes
// somewhere harmless; nil means a piece can be written again. A Store
// without it is simply tried again after the backoff.
type Prober interface {
	Probe(need int64) error
}

// Probe backoff: the first probe after probeFirst, doubling up to
// probeMax. A Store that fails again within probeCalm of recovering starts
// its next backoff where the last one ended, so that a disk that flaps
// costs a probe per probeMax, not a burst.
const (
	probeFirst = 250 * time.Millisecond
	probeMax   = 5 * time.Second
	probeCalm  = time.Minute
)

// Log lines of the failed state. Each goes through the Wrapper's limiter:
// one line per kind and interval, however often the disk flaps.
const (
	msgFailed    = "storagewrapper: cannot write to the cache: stopped downloading; reads of pieces not cached fail until it recovers"
	msgRecovered = "storagewrapper: the cache takes data again: downloading resumes"
	msgFull      = "storagewrapper: the cache disk is full: evicting the least recently read pieces; fetching only what readers want"
)

// healthState is the Wrapper's view of its Store; its fields are guarded
// by Wrapper.mu.
type healthState struct {
	// fault, err and since are Health's.
	fault Fault
	err   error
	since time.Time
	// full is Health.Full; fullCap is the in-flight cap from then on
	// (fullCap).
	full    bool
	fullCap int
	// failed is closed when the Store fails, waking the readers that wait
	// (they fail with the Store's error); a new one replaces it when the
	// Store recovers.
	failed chan struct{}
	// probing is set while a probe goroutine runs.
	probing bool
	// backoff is the next probe's wait; recovered is when the Store last
	// recovered.
	backoff   time.Duration
	recovered time.Time
}

// roomState serializes the Wrapper's calls to Evicter.MakeRoom: when many
// blocks find the disk full at once, one eviction makes room for all of
// them, instead of one eviction each. Its fields are guarded by
// Wrapper.mu (MakeRoom itself runs without it).
type roomState struct {
	// busy is closed when the MakeRoom under way returns; nil when none
	// is under way.
	busy chan struct{}
	// at is when the last MakeRoom returned.
	at time.Time
}

// Health returns the state of the Store.
func (w *Wrapper) Health() Health {
	w.mu.Lock()
	defer w.mu.Unlock()
	return Health{Fault: w.hs.fault, Err: w.hs.err, Since: w.hs.since, Full: w.hs.full}
}

// storeErrLocked is the error a reader of a piece that is not verified
// gets while the Store has failed; nil when it has not.
func (w *Wrapper) storeErrLocked() error {
	if w.hs.fault == FaultNone {
		return nil
	}
	return fmt.Errorf("%w: %s: %w", ErrStore, w.hs.fault, w.hs.err)
}

// makeRoom is called when a write of piece failed with err: if the Store
// is out of space, it makes room and reports whether the write should be
// tried again. Room comes first from published pieces no reader holds
// (Evicter), then from the partial data of the pieces in flight that no
// reader waits for (they are dropped, and fetched again when wanted). The
// caller holds a Store operation.
func (w *Wrapper) makeRoom(piece int, err error) bool {
	ev, ok := w.store.(Evicter)
	if !ok || FaultOf(err) != FaultFull {
		return false // a Store that holds the data itself (btfs get) just fails
	}
	w.mu.Lock()
	full := w.hs.full
	w.mu.Unlock()
	fc := 0
	if !full {
		fc = w.fullCap() // file system I/O: without the lock
	}
	w.mu.Lock()
	first := !w.hs.full
	if first {
		w.hs.full, w.hs.fullCap = true, fc
	}
	failed := w.hs.fault != FaultNone
	w.mu.Unlock()
	if first {
		w.lim.Warn(msgFull, "err", err, "max_in_flight", fc)
		w.signal() // the engine reads Health().Full
	}
	if failed {
		return false
	}
	failedAt := time.Now()
	w.mu.Lock()
	if w.room.at.After(failedAt) {
		w.mu.Unlock()
		return true // room was made since this write failed: try it
	}
	if busy := w.room.busy; busy != nil {
		w.mu.Unlock()
		<-busy // bounded: one eviction
		return true
	}
	busy := make(chan struct{})
	w.room.busy = busy
	w.mu.Unlock()
	freed, eerr := ev.MakeRoom(w.info.PieceLength)
	if eerr != nil {
		w.lim.Warn("storagewrapper: cannot evict to make room", "err", eerr)
	}
	dropped := 0
	if freed == 0 {
		dropped = w.dropInFlight(func(p int) bool { return p == piece || w.urgentLocked(p) })
	}
	w.mu.Lock()
	w.room.busy, w.room.at = nil, time.Now()
	w.mu.Unlock()
	close(busy)
	return freed > 0 || dropped > 0
}

// fullCap is the in-flight cap once the disk was full: the partial data
// may take a quarter of the file system (Sizer), or a quarter of the usual
// cap when its size is unknown.
func (w *Wrapper) fullCap() int {
	n := w.maxInFlight / 4
	if sz, ok := w.store.(Sizer); ok {
		if size, err := sz.DiskSize(); err == nil && size > 0 {
			n = int(min(size/4/w.info.PieceLength, int64(w.maxInFlight)))
		}
	}
	return max(n, 1)
}

// inFlightCapLocked is how many pieces may be in flight: MaxInFlight, or
// fewer once the disk was full.
func (w *Wrapper) inFlightCapLocked() int {
	if w.hs.full {
		return w.hs.fullCap
	}
	return w.maxInFlight
}

// dropInFlight drops the pieces in flight but those keep keeps (called
// with Wrapper.mu held; nil keeps none) and those being hashed, with
// their partial data and claims; the engine hears of them through
// TakeChanges (as requestable) and requests them afresh. It returns how
// many it dropped. The caller holds a Store operation.
func (w *Wrapper) dropInFlight(keep func(int) bool) int {
	w.mu.Lock()
	var dropped []int
	var releases []func()
	for p, d := range w.downloads {
		if d.hashing || (keep != nil && keep(p)) {
			continue
		}
		dropped = append(dropped, p)
		releases = append(releases, w.leaveFlightLocked(p))
		w.changed[p] = struct{}{}
	}
	w.mu.Unlock()
	for _, release := range releases {
		release()
	}
	for _, p := range dropped {
		if derr := w.store.Piece(p).Discard(); derr != nil && !errors.Is(derr, fs.ErrNotExist) {
			w.log.Debug("storagewrapper: cannot discard a dropped piece", "piece", p, "err", derr)
		}
	}
	if len(dropped) > 0 {
		w.signal()
	}
	return len(dropped)
}

// storeFailed puts the Wrapper in the failed state for err, a Store
// failure, unless it is there already or err is not the disk's. It drops
// the pieces in flight and their partial data (kept are, on a full disk,
// the pieces readers wait for: their data is still good and will be
// finished once there is room), wakes the waiting readers, says so once,
// and starts the probe. The caller holds a Store operation.
func (w *Wrapper) storeFailed(err error) {
	f := FaultOf(err)
	if f == FaultNone {
		return
	}
	w.mu.Lock()
	if w.closed || w.hs.fault != FaultNone {
		w.mu.Unlock()
		return
	}
	w.hs.fault, w.hs.err, w.hs.since = f, err, time.Now()
	// Which pieces readers wait for is decided here, before the close
	// below wakes them: a woken reader fails and releases its want at
	// once, so asking urgentLocked later (in dropInFlight) would race
	// with it and drop the very pieces this keeps.
	var keep func(int) bool
	if f == FaultFull {
		urgent := make(map[int]bool)
		for p := range w.downloads {
			if w.urgentLocked(p) {
				urgent[p] = true
			}
		}
		keep = func(p int) bool { return urgent[p] }
	}
	close(w.hs.failed)
	start := !w.hs.probing
	w.hs.probing = true
	if w.hs.recovered.IsZero() || time.Since(w.hs.recovered) > probeCalm {
		w.hs.backoff = probeFirst
	}
	w.mu.Unlock()
	dropped := w.dropInFlight(keep)
	w.lim.Error(msgFailed, "fault", f.String(), "err", err, "dropped_in_flight", dropped)
	if start {
		go w.probeLoop()
	}
	w.signal()
}

// urgentLocked reports whether a reader waits for piece p (a picker.Now
// want covers it).
func (w *Wrapper) urgentLocked(p int) bool {
	start, end := w.info.PieceOffset(p), w.info.PieceOffset(p)+w.info.PieceLen(p)
	for _, want := range w.wants {
		if want.Priority >= picker.Now && want.Start < end && want.End > start {
			return true
		}
	}
	return false
}

// probeLoop probes the failed Store with backoff until it takes data again
// or the Wrapper closes. It holds a Store operation only while it probes,
// so that Close never waits for its sleep.
func (w *Wrapper) probeLoop() {
	for {
		w.mu.Lock()
		wait := w.hs.backoff
		w.hs.backoff = min(2*w.hs.backoff, probeMax)
		w.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-w.closedCh:
			t.Stop()
			return
		}
		w.mu.Lock()
		if w.beginOpLocked() != nil {
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		var err error
		if pr, ok := w.store.(Prober); ok {
			err = pr.Probe(w.info.PieceLength)
		}
		w.ops.Done()
		w.mu.Lock()
		if err != nil {
			if f := FaultOf(err); f != FaultNone {
				w.hs.fault, w.hs.err = f, err
			}
			w.mu.Unlock()
			continue
		}
		since := w.hs.since
		w.hs.fault, w.hs.err, w.hs.since = FaultNone, nil, time.Time{}
		w.hs.failed = make(chan struct{})
		w.hs.probing = false
		w.hs.recovered = time.Now()
		w.mu.Unlock()
		// At the failure's level, less one: whoever saw the failure (with
		// -quiet too) sees that it is over.
		w.lim.Log(slog.LevelWarn, msgRecovered, "after", time.Since(since).Round(time.Millisecond))
		w.signal()
		return
	}
}
