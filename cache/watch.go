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
		events chan struct{} // w's wake; nil without inotify
		err    error
	)
	defer func() {
		cancel() // the workers watch ctx
		c.mu.Lock()
		c.spawnAdopt = nil // no worker starts after wg.Wait has begun
		c.mu.Unlock()
		if w != nil {
			w.close()
		}
		wg.Wait()
	}()
	poll := c.pollInterval
	if !c.noInotify {
		w, err = newWatcher(map[dirKind]string{recordKind: filepath.Join(c.dir, recordName), claimsKind: c.claims, urgentKind: c.urgent})
		if err != nil {
			c.log.Warn("cache: inotify unavailable; polling the cache directory", "err", err)
		} else {
			events = w.wake
		}
	}
	if poll <= 0 {
		poll = DefaultPollInterval
		if events == nil {
			poll = fallbackPollInterval
		}
	}
	c.mu.Lock()
	c.spawnAdopt = func() { wg.Go(func() { c.adoptLoop(ctx, host) }) }
	pending := len(c.adoptQ)
	c.mu.Unlock()
	if pending > 0 {
		c.startAdopters()
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
		case <-events:
			for _, ev := range w.take() {
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
			// slots is a snapshot, host is now: a piece marked since the
			// snapshot may be had already (adopted by a worker or a
			// reader's miss). Only the record read now says it went.
			if cur, err := c.slot(i); err == nil {
				if cur.state == stateMarked {
					names = append(names, i)
					continue
				}
				s = cur
			}
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

// queueAdopt asks the adopt workers to verify piece i, starting one if
// fewer than adoptWorkers run.
func (c *Store) queueAdopt(i int) {
	c.mu.Lock()
	c.adoptQ[i] = struct{}{}
	c.mu.Unlock()
	c.startAdopters()
}

// startAdopters starts workers while some pieces wait and fewer than
// adoptWorkers run.
func (c *Store) startAdopters() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.spawnAdopt != nil && c.adopting < c.adoptWorkers && c.adopting < len(c.adoptQ) {
		c.adopting++
		c.spawnAdopt()
	}
}

// popAdopt takes the lowest piece to adopt (readers go forward); false,
// and the worker is counted out, when there is none or ctx ended.
func (c *Store) popAdopt(ctx context.Context) (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.adoptQ) == 0 || ctx.Err() != nil {
		c.adopting--
		return 0, false
	}
	i := -1
	for p := range c.adoptQ {
		if i < 0 || p < i {
			i = p
		}
	}
	delete(c.adoptQ, i)
	return i, true
}

// adoptLoop verifies queued pieces into host until none is left or ctx
// ends.
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

// watchMask is what each directory is watched for.
var watchMask = map[dirKind]uint32{
	recordKind: unix.IN_MODIFY,
	claimsKind: unix.IN_DELETE | unix.IN_MOVED_FROM,
	urgentKind: unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_DELETE | unix.IN_MOVED_FROM,
}

// The process has one inotify instance, shared by the Stores whose Run is
// running: an instance per Store would cost a descriptor and a reader
// goroutine per torrent, and the kernel allows few instances per user
// (fs.inotify.max_user_instances, 128 by default), while watches are
// plentiful. One reader goroutine routes each event to the Stores that
// watch its directory; it exists while some Store does.

// notifier is the shared inotify instance.
type notifier struct {
	mu sync.Mutex
	// f is the inotify descriptor, non-blocking, on Go's poller: Read
	// parks the reader and Close wakes it; nil while nobody watches.
	f *os.File
	// subs are the subscriptions by watch descriptor (two Stores of one
	// directory in one process share its descriptor).
	subs map[int32][]watchTarget
	// users counts the subscriptions.
	users int
	// done is closed when the reader of f has returned.
	done chan struct{}
}

// watchTarget is a subscription and what its directory is to it.
type watchTarget struct {
	s    *watcher
	kind dirKind
}

// notify is the process's notifier.
var notify = &notifier{subs: map[int32][]watchTarget{}}

// maxPending bounds the events a Store has not taken yet; past it they
// are dropped for one overflow event (the Store rescans).
const maxPending = 4096

// watcher is one Store's subscription to the notifier: its directories'
// events, queued until Run takes them.
type watcher struct {
	// wake has a value when events are pending.
	wake chan struct{}
	// wds are its watch descriptors, set once by watch.
	wds []int32

	// mu guards pending.
	mu      sync.Mutex
	pending []fsEvent
}

// newWatcher watches dirs through the shared instance.
func newWatcher(dirs map[dirKind]string) (*watcher, error) {
	return notify.watch(dirs)
}

func (n *notifier) watch(dirs map[dirKind]string) (*watcher, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.f == nil {
		fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
		if err != nil {
			return nil, fmt.Errorf("inotify_init1: %w", err)
		}
		n.f = os.NewFile(uintptr(fd), "inotify")
		n.done = make(chan struct{})
		go n.read(n.f, n.done)
	}
	w := &watcher{wake: make(chan struct{}, 1)}
	fd := int(n.f.Fd())
	for kind, dir := range dirs {
		// IN_MASK_ADD: another Store of the same directory keeps what it
		// watches for.
		wd, err := unix.InotifyAddWatch(fd, dir, watchMask[kind]|unix.IN_MASK_ADD)
		if err != nil {
			n.unwatchLocked(w)
			n.closeIfUnused()
			return nil, fmt.Errorf("inotify_add_watch %s: %w", dir, err)
		}
		w.wds = append(w.wds, int32(wd))
		n.subs[int32(wd)] = append(n.subs[int32(wd)], watchTarget{w, kind})
	}
	n.users++
	return w, nil
}

// unwatchLocked removes w's targets, and the watches nobody else uses;
// n.mu held.
func (n *notifier) unwatchLocked(w *watcher) {
	for _, wd := range w.wds {
		ts := slices.DeleteFunc(n.subs[wd], func(t watchTarget) bool { return t.s == w })
		if len(ts) == 0 {
			delete(n.subs, wd)
			unix.InotifyRmWatch(int(n.f.Fd()), uint32(wd))
		} else {
			n.subs[wd] = ts
		}
	}
	w.wds = nil
}

// closeIfUnused closes the instance when nobody watches; n.mu held. It
// returns the reader's done channel to wait on (after unlocking), or nil.
func (n *notifier) closeIfUnused() chan struct{} {
	if n.users > 0 || n.f == nil {
		return nil
	}
	n.f.Close()
	n.f = nil
	clear(n.subs)
	return n.done
}

// close ends w's subscription; the last one closes the instance and waits
// for its reader.
func (w *watcher) close() {
	n := notify
	n.mu.Lock()
	if w.wds == nil && n.f == nil {
		n.mu.Unlock()
		return
	}
	n.unwatchLocked(w)
	n.users--
	done := n.closeIfUnused()
	n.mu.Unlock()
	if done != nil {
		<-done
	}
}

// take returns the events pending.
func (w *watcher) take() []fsEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.pending
	w.pending = nil
	return out
}

// add queues ev for w and wakes its Run.
func (w *watcher) add(ev fsEvent) {
	w.mu.Lock()
	switch {
	case len(w.pending) < maxPending:
		w.pending = append(w.pending, ev)
	case w.pending[len(w.pending)-1].mask&unix.IN_Q_OVERFLOW == 0:
		w.pending = append(w.pending, fsEvent{mask: unix.IN_Q_OVERFLOW}) // rescan
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// read routes the events of f until it is closed.
func (n *notifier) read(f *os.File, done chan struct{}) {
	defer close(done)
	buf := make([]byte, 64<<10)
	for {
		k, err := f.Read(buf)
		if err != nil {
			return
		}
		n.route(buf[:k])
	}
}

// route hands each event of b to the watchers of its directory; an
// overflow of the instance goes to every watcher.
func (n *notifier) route(b []byte) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, ev := range parseEvents(b) {
		if ev.mask&unix.IN_Q_OVERFLOW != 0 {
			for _, ts := range n.subs {
				for _, t := range ts {
					t.s.add(fsEvent{mask: ev.mask})
				}
			}
			continue
		}
		for _, t := range n.subs[ev.wd] {
			t.s.add(fsEvent{kind: t.kind, name: ev.name, mask: ev.mask})
		}
	}
}

// rawEvent is one struct inotify_event.
type rawEvent struct {
	wd   int32
	mask uint32
	name string
}

// parseEvents decodes the events in b (struct inotify_event, then the
// name, NUL-padded).
func parseEvents(b []byte) []rawEvent {
	var out []rawEvent
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
		out = append(out, rawEvent{wd: wd, mask: mask, name: name})
	}
	return out
}
