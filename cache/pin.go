package cache

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Pin implements storagewrapper.Pinner: pieces first..last are in use by a
// reader (waiting for them or reading them) until unpin. Each is
// read-locked as byte i of the pins file (an OFD lock: it dies with the
// process, and conflicts with the eviction probe of any process, this one
// included), so that no process evicts it; a pinned piece that another
// process claimed gets an urgency marker; and the pin counts as a read for
// the least-recently-read order.
func (c *Store) Pin(first, last int) (unpin func()) {
	first, last = max(first, 0), min(last, c.info.NumPieces()-1)
	if first > last || c.closed.Load() {
		return func() {}
	}
	var mark []int
	c.pinMu.Lock()
	for i := first; i <= last; i++ {
		if c.pins[i] == 0 && c.pinFile != nil {
			if err := lockByte(c.pinFile, i, unix.F_RDLCK, true); err != nil {
				c.lim.Warn("cache: cannot pin piece; it may be evicted while in use", "piece", i, "err", err)
			} else if c.marked(i) {
				c.pinnedThere[i] = struct{}{}
			}
		}
		c.pins[i]++
	}
	c.mu.Lock()
	for i := first; i <= last; i++ {
		c.read[i] = struct{}{}
		_, refused := c.refused[i]
		_, marked := c.markers[i]
		_, there := c.pinnedThere[i] // published: nobody to hurry
		if refused && !marked && !there {
			c.markers[i] = time.Now()
			mark = append(mark, i)
		}
	}
	c.mu.Unlock()
	c.pinMu.Unlock()
	for _, i := range mark {
		c.writeMarker(i)
	}
	var once sync.Once
	return func() { once.Do(func() { c.unpin(first, last) }) }
}

// unpin ends a Pin of first..last.
func (c *Store) unpin(first, last int) {
	var unmark []int
	c.pinMu.Lock()
	for i := first; i <= last; i++ {
		if c.pins[i]--; c.pins[i] > 0 {
			continue
		}
		delete(c.pins, i)
		delete(c.pinnedThere, i)
		if c.pinFile != nil {
			if err := lockByte(c.pinFile, i, unix.F_UNLCK, false); err != nil {
				c.lim.Warn("cache: cannot unpin piece", "piece", i, "err", err)
			}
		}
		c.mu.Lock()
		if _, ok := c.markers[i]; ok {
			delete(c.markers, i)
			unmark = append(unmark, i)
		}
		c.mu.Unlock()
	}
	c.pinMu.Unlock()
	for _, i := range unmark {
		c.removeMarker(i)
	}
}

// Pinned reports whether piece i is pinned by this Store (for tests and the
// status of a mount).
func (c *Store) Pinned(i int) bool {
	c.pinMu.Lock()
	defer c.pinMu.Unlock()
	return c.pins[i] > 0
}

// sawPinnedThere records that pinned piece i's file exists (it was
// published while a reader of ours waited for it).
func (c *Store) sawPinnedThere(i int) {
	c.pinMu.Lock()
	defer c.pinMu.Unlock()
	if c.pins[i] > 0 && c.marked(i) {
		c.pinnedThere[i] = struct{}{}
	}
}

// lostPinned reports whether piece i, whose file is gone, was pinned here
// and there while pinned: removed outside the eviction protocol, which
// never removes a pinned piece (by hand, by another program, or as a
// damaged file by another process).
func (c *Store) lostPinned(i int) bool {
	c.pinMu.Lock()
	_, there := c.pinnedThere[i]
	delete(c.pinnedThere, i)
	c.pinMu.Unlock()
	c.mu.Lock()
	_, discarded := c.discarded[i]
	c.mu.Unlock()
	return there && !discarded
}

// lockByte sets (typ F_RDLCK or F_WRLCK) or clears (F_UNLCK) an OFD lock on
// byte i of f; with wait it waits for a conflicting lock to go, else it
// fails with unix.EAGAIN.
func lockByte(f *os.File, i int, typ int16, wait bool) error {
	cmd := unix.F_OFD_SETLK
	if wait {
		cmd = unix.F_OFD_SETLKW
	}
	lk := unix.Flock_t{Type: typ, Whence: 0, Start: int64(i), Len: 1}
	for {
		err := unix.FcntlFlock(f.Fd(), cmd, &lk)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if errors.Is(err, unix.EACCES) {
			err = unix.EAGAIN // POSIX allows either for a conflict
		}
		return err
	}
}

// markerPath is this Store's urgency marker for piece i.
func (c *Store) markerPath(i int) string {
	return filepath.Join(c.urgent, pieceName(i)+"."+c.me.String())
}

// parseMarker returns the piece and the owner name of a marker's file name.
func parseMarker(name string) (int, string, bool) {
	num, who, ok := strings.Cut(name, ".")
	if !ok || who == "" || strings.Contains(who, ".") {
		return 0, "", false
	}
	i, ok := parsePieceName(num)
	return i, who, ok
}

// writeMarker tells the owner of piece i's claim that a reader of ours
// waits for it.
func (c *Store) writeMarker(i int) {
	if _, err := c.exclusive(c.markerPath(i)); err != nil && !errors.Is(err, fs.ErrExist) {
		c.lim.Warn("cache: cannot mark a piece urgent", "piece", i, "err", err)
	}
}

// removeMarker removes our urgency marker of piece i.
func (c *Store) removeMarker(i int) {
	if err := os.Remove(c.markerPath(i)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		c.lim.Warn("cache: cannot remove an urgency marker", "piece", i, "err", err)
	}
}

// markerSeen records that owner who's marker on piece i appeared (on) or
// went (!on), and makes our claim on i urgent, or not, accordingly.
func (c *Store) markerSeen(i int, who string, on bool) {
	if who == c.me.String() || i < 0 || i >= c.info.NumPieces() {
		return
	}
	c.mu.Lock()
	set := c.urgentBy[i]
	if on {
		if set == nil {
			set = map[string]struct{}{}
			c.urgentBy[i] = set
		}
		set[who] = struct{}{}
	} else {
		delete(set, who)
		if len(set) == 0 {
			delete(c.urgentBy, i)
		}
	}
	c.mu.Unlock()
	c.urgencyChanged(i)
}

// urgencyChanged registers or releases the urgent want of our claim on
// piece i as the other processes' markers say.
func (c *Store) urgencyChanged(i int) {
	c.mu.Lock()
	oc := c.own[i]
	urgent := len(c.urgentBy[i]) > 0
	want := oc != nil && urgent && oc.want == nil
	var release func()
	if oc != nil && !urgent && oc.want != nil {
		release, oc.want = oc.want, nil
	}
	c.mu.Unlock()
	if release != nil {
		release()
	}
	if oc != nil && urgent {
		c.ackUrgent(i)
	}
	if want {
		c.wantUrgent(i)
	}
}

// syncMarkers replaces the other processes' markers with a fresh listing of
// the marker directory (the poll's view).
func (c *Store) syncMarkers() {
	ents, err := os.ReadDir(c.urgent)
	if err != nil {
		c.log.Debug("cache: cannot list urgency markers", "err", err)
		return
	}
	fresh := map[int]map[string]struct{}{}
	for _, e := range ents {
		i, who, ok := parseMarker(e.Name())
		if !ok || who == c.me.String() || i >= c.info.NumPieces() {
			continue
		}
		if fresh[i] == nil {
			fresh[i] = map[string]struct{}{}
		}
		fresh[i][who] = struct{}{}
	}
	c.mu.Lock()
	changed := map[int]struct{}{}
	for i := range c.urgentBy {
		if _, ok := fresh[i]; !ok {
			changed[i] = struct{}{}
		}
	}
	for i := range fresh {
		if _, ok := c.urgentBy[i]; !ok {
			changed[i] = struct{}{}
		}
	}
	c.urgentBy = fresh
	c.mu.Unlock()
	for i := range changed {
		c.urgencyChanged(i)
	}
}
