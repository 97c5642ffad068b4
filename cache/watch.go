package cache

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"btfs/storagewrapper"
)

// errRunOnce is Run's error when it was already called, or the Store is
// closed.
var errRunOnce = errors.New("cache: Run may be called once, before Close")

// Run sees the other processes' work until ctx ends or the Store is
// closed: pieces they publish are adopted into host (verified once here,
// then had, announced and served), pieces they evict or damage are
// unverified, claims that end are reported, their readers' urgency reaches
// our claims, read times are recorded and the cap is enforced. It watches
// the directory with inotify, rescans it every poll interval (everything
// inotify may have missed, or everything when inotify is unavailable), and
// checks the claims of the pieces our readers wait for several times a
// second (a dead owner's claim is taken over at once).
func (c *Store) Run(ctx context.Context, host Host) error {
	started := false
	c.runOnce.Do(func() { started = true })
	if !started {
		return errRunOnce
	}
	defer close(c.runDone)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.mu.Lock()
	c.host, c.stop = host, cancel
	c.mu.Unlock()
	if c.closed.Load() {
		return errRunOnce
	}

	var (
		wg     sync.WaitGroup
		w      *watcher
		events chan []fsEvent
		err    error
	)
	defer func() {
		cancel() // the workers watch ctx
		if w != nil {
			w.close() // the reader is parked in read(2)
		}
		wg.Wait()
	}()
	poll := c.pollInterval
	if !c.noInotify {
		w, err = newWatcher(map[dirKind]string{recordKind: filepath.Join(c.dir, recordName), claimsKind: c.claims, urgentKind: c.urgent})
		if err != nil {
			c.log.Warn("cache: inotify unavailable; polling the cache directory", "err", err)
		} else {
			events = make(chan []fsEvent, 16)
			wg.Go(func() { w.run(ctx, events) })
		}
	}
	if poll <= 0 {
		poll = DefaultPollInterval
		if events == nil {
			poll = fallbackPollInterval
		}
	}
	for range c.adoptWorkers {
		wg.Go(func() { c.adoptLoop(ctx, host) })
	}

	c.rescan(host)
	tick := time.NewTicker(poll)
	defer tick.Stop()
	staleTick := time.NewTicker(staleCheckInterval)
	defer staleTick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case batch := <-events:
			for _, ev := range batch {
				c.handle(ev, host)
			}
			c.evictIfOver()
		case <-tick.C:
			c.rescan(host)
		case <-staleTick.C:
			c.checkRefused(true)
		case <-c.wake:
			c.evictIfOver()
		}
	}
}

// handle applies one inotify event.
func (c *Store) handle(ev fsEvent, host Host) {
	if ev.mask&unix.IN_Q_OVERFLOW != 0 {
		c.rescan(host)
		return
	}
	switch ev.kind {
	case recordKind:
		c.syncRecord(host)
	case claimsKind:
		i, ok := parsePieceName(ev.name)
		if ok && ev.mask&(unix.IN_DELETE|unix.IN_MOVED_FROM) != 0 {
			c.claimGone(i)
		}
	case urgentKind:
		if i, who, ok := parseMarker(ev.name); ok {
			c.markerSeen(i, who, ev.mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0)
		}
	}
}

// syncRecord compares the record with what this process has: pieces
// marked by another process are adopted (trusted: no hash), pieces
// unmarked (evicted, discarded) are had no longer, suspect ones (their
// file changed behind btfs's back) are had no longer and hashed again.
func (c *Store) syncRecord(host Host) {
	rec := c.rec.Load()
	if rec == nil {
		return
	}
	slots, err := rec.pieces()
	if err != nil {
		c.lim.Warn("cache: cannot read the record", "err", err)
		return
	}
	c.mu.Lock()
	prev := c.seen
	c.seen = slots
	c.mu.Unlock()
	var names []int
	for i, s := range slots {
		if s.state == stateMarked {
			names = append(names, i)
		}
		changed := prev == nil || prev[i] != s
		switch {
		case s.state == stateMarked:
			if changed {
				c.mu.Lock()
				delete(c.discarded, i)
				c.mu.Unlock()
				c.sawPinnedThere(i)
			}
			if !host.DoIHave(i) {
				c.queueAdopt(i)
			}
		case host.DoIHave(i):
			c.vanished(i, host, s.state == stateSuspect)
			if s.state == stateSuspect {
				c.queueAdopt(i)
			}
		case s.state == stateSuspect && changed:
			c.queueAdopt(i)
		}
	}
	c.resetPresent(names, nil)
}

// vanished handles a had piece whose mark went (evicted or discarded by
// another process, or found changed behind btfs's back): had no longer.
func (c *Store) vanished(i int, host Host, suspect bool) {
	c.sawRemoved(i)
	if c.lostPinned(i) && !suspect {
		c.lim.Error("cache: a piece in use left the cache: removed outside the eviction protocol", "piece", i)
	}
	if host.Unverify(i) {
		if suspect {
			c.lim.Warn("cache: a file was changed behind btfs's back; verifying its pieces again", "piece", i)
		} else {
			c.lim.Info("cache: a piece left the cache; it will be fetched again when read", "piece", i)
		}
	}
}

// claimGone handles a claim file removed: a piece we set aside for it is
// adopted if published, else may be requested again.
func (c *Store) claimGone(i int) {
	c.mu.Lock()
	_, refused := c.refused[i]
	c.mu.Unlock()
	if !refused {
		return
	}
	if c.marked(i) {
		c.queueAdopt(i)
		return
	}
	c.claimEnded(i)
}

// rescan compares the directory with what this process has: the poll.
func (c *Store) rescan(host Host) {
	c.checkStamps()
	c.syncRecord(host)
	c.syncMarkers()
	c.checkRefused(false)
	c.flushReads()
	c.evictIfOver()
}

// queueAdopt asks the adopt workers to verify piece i.
func (c *Store) queueAdopt(i int) {
	c.mu.Lock()
	c.adoptQ[i] = struct{}{}
	c.mu.Unlock()
	select {
	case c.adoptWake <- struct{}{}:
	default:
	}
}

// popAdopt takes the lowest piece to adopt (readers go forward), waiting
// for one; false when ctx ends.
func (c *Store) popAdopt(ctx context.Context) (int, bool) {
	for {
		c.mu.Lock()
		if len(c.adoptQ) > 0 {
			i := -1
			for p := range c.adoptQ {
				if i < 0 || p < i {
					i = p
				}
			}
			delete(c.adoptQ, i)
			more := len(c.adoptQ) > 0
			c.mu.Unlock()
			if more {
				select { // wake another worker
				case c.adoptWake <- struct{}{}:
				default:
				}
			}
			return i, true
		}
		c.mu.Unlock()
		select {
		case <-c.adoptWake:
		case <-ctx.Done():
			return 0, false
		}
	}
}

// adoptLoop verifies queued pieces into host until ctx ends.
func (c *Store) adoptLoop(ctx context.Context, host Host) {
	for {
		i, ok := c.popAdopt(ctx)
		if !ok {
			return
		}
		ok, err := host.Adopt(ctx, i)
		if err != nil && ctx.Err() == nil && !errors.Is(err, storagewrapper.ErrClosed) {
			c.lim.Warn("cache: cannot verify a cached piece", "piece", i, "err", err)
		}
		c.adopted(i, ok)
	}
}

// adopted follows up an adoption: a piece not adopted whose file is gone
// (it failed its hash and was removed, or was evicted) is requested again
// if we had set it aside.
func (c *Store) adopted(i int, ok bool) {
	if ok {
		c.mu.Lock()
		delete(c.refused, i)
		c.mu.Unlock()
		return
	}
	if s, err := c.slot(i); err == nil && s.state != stateNone {
		return // in flight here, or being adopted by a reader: the next scan retries
	}
	c.sawRemoved(i)
	c.claimEnded(i)
}

// dirKind names the watched files and directories.
type dirKind int8

const (
	recordKind dirKind = iota
	claimsKind
	urgentKind
)

// fsEvent is one inotify event.
type fsEvent struct {
	// kind is the directory it happened in.
	kind dirKind
	// name is the file's name in it.
	name string
	// mask is inotify's.
	mask uint32
}

// watcher is an inotify instance over the watched directories.
type watcher struct {
	// f is the inotify descriptor, non-blocking, on Go's poller: Read
	// parks the goroutine and Close wakes it.
	f *os.File
	// kinds maps watch descriptors to directories.
	kinds map[int32]dirKind
	// closeOnce guards f.Close.
	closeOnce sync.Once
}

// watchMask is what each directory is watched for.
var watchMask = map[dirKind]uint32{
	recordKind: unix.IN_MODIFY,
	claimsKind: unix.IN_DELETE | unix.IN_MOVED_FROM,
	urgentKind: unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_DELETE | unix.IN_MOVED_FROM,
}

// newWatcher watches dirs.
func newWatcher(dirs map[dirKind]string) (*watcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("inotify_init1: %w", err)
	}
	w := &watcher{kinds: map[int32]dirKind{}}
	for kind, dir := range dirs {
		wd, err := unix.InotifyAddWatch(fd, dir, watchMask[kind])
		if err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("inotify_add_watch %s: %w", dir, err)
		}
		w.kinds[int32(wd)] = kind
	}
	w.f = os.NewFile(uintptr(fd), "inotify")
	return w, nil
}

// close ends the watcher; run returns.
func (w *watcher) close() { w.closeOnce.Do(func() { w.f.Close() }) }

// run reads events and sends them in batches until the watcher is closed
// or ctx ends.
func (w *watcher) run(ctx context.Context, out chan<- []fsEvent) {
	buf := make([]byte, 64<<10)
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			return
		}
		batch := w.parse(buf[:n])
		if len(batch) == 0 {
			continue
		}
		select {
		case out <- batch:
		case <-ctx.Done():
			return
		}
	}
}

// parse decodes the events in b (struct inotify_event, then the name,
// NUL-padded).
func (w *watcher) parse(b []byte) []fsEvent {
	var out []fsEvent
	for len(b) >= unix.SizeofInotifyEvent {
		wd := int32(binary.NativeEndian.Uint32(b[0:]))
		mask := binary.NativeEndian.Uint32(b[4:])
		nameLen := int(binary.NativeEndian.Uint32(b[12:]))
		end := unix.SizeofInotifyEvent + nameLen
		if end > len(b) {
			break
		}
		name := string(bytes.TrimRight(b[unix.SizeofInotifyEvent:end], "\x00"))
		b = b[end:]
		if mask&unix.IN_Q_OVERFLOW != 0 {
			out = append(out, fsEvent{mask: mask})
			continue
		}
		if kind, ok := w.kinds[wd]; ok {
			out = append(out, fsEvent{kind: kind, name: name, mask: mask})
		}
	}
	return slices.Clip(out)
}
