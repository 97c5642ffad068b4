package cache

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"btfs/storagewrapper"
)

// lockDir takes the directory lock: dirMu within this process (flock(2)
// locks belong to the open file, which every goroutine of this Store
// shares), then flock across processes.
func (c *Store) lockDir() error {
	c.dirMu.Lock()
	for {
		err := unix.Flock(int(c.lock.Fd()), unix.LOCK_EX)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EINTR) {
			c.dirMu.Unlock()
			return fmt.Errorf("cache: lock %s: %w", c.dir, err)
		}
	}
}

// unlockDir releases lockDir.
func (c *Store) unlockDir() {
	if err := unix.Flock(int(c.lock.Fd()), unix.LOCK_UN); err != nil {
		c.log.Error("cache: cannot unlock the cache directory", "err", err)
	}
	c.dirMu.Unlock()
}

// pieceFile is one published piece file found by a scan.
type pieceFile struct {
	// i is its piece.
	i int
	// size is its length on disk.
	size int64
	// mtime is when it was published or last read (the read times are
	// written in batches by Run).
	mtime time.Time
}

// scanPieces lists the published pieces by name (no stat): the set and
// their total length by the torrent's piece lengths.
func (c *Store) scanPieces() ([]int, int64, error) {
	ents, err := os.ReadDir(c.ds.PiecesDir())
	if err != nil {
		return nil, 0, fmt.Errorf("cache: %w", err)
	}
	var out []int
	var total int64
	for _, e := range ents {
		if i, ok := storagewrapper.ParsePieceName(e.Name()); ok && i < c.info.NumPieces() {
			out = append(out, i)
			total += c.info.PieceLen(i)
		}
	}
	return out, total, nil
}

// slack is how far below the cap an eviction goes, so that it does not run
// again for every piece published.
func (c *Store) slack() int64 {
	return min(c.maxBytes/8, 8*c.info.PieceLength)
}

// aroundRename is the DirStore's publish hook under a cap: with the
// directory locked, it makes room for piece i (evicting least recently
// read pieces) and keeps the lock across the rename, so that processes
// publishing at once cannot overshoot the cap together.
func (c *Store) aroundRename(i int) (after func()) {
	if err := c.lockDir(); err != nil {
		c.lim.Error("cache: publishing over the cap", "piece", i, "err", err)
		return func() {}
	}
	var evicted []int
	if names, total, err := c.scanPieces(); err != nil {
		c.lim.Error("cache: cannot scan before a publish", "err", err)
	} else {
		if slices.Contains(names, i) {
			total -= c.info.PieceLen(i) // replaced, not added
		}
		if total+c.info.PieceLen(i) > c.maxBytes {
			evicted = c.evictLocked(names, total, c.maxBytes-c.slack()-c.info.PieceLen(i), i)
		}
	}
	return func() {
		c.unlockDir()
		c.evicted(evicted)
	}
}

// evictIfOver evicts down to the cap's low mark when the published pieces
// exceed the cap (another process without a cap filled it, or files were
// added by hand).
func (c *Store) evictIfOver() {
	if c.maxBytes <= 0 {
		return
	}
	c.mu.Lock()
	over := c.presentBytes > c.maxBytes
	c.mu.Unlock()
	if !over {
		return
	}
	if err := c.lockDir(); err != nil {
		c.lim.Error("cache: cannot evict", "err", err)
		return
	}
	var evicted []int
	names, total, err := c.scanPieces()
	if err != nil {
		c.lim.Error("cache: cannot scan to evict", "err", err)
	} else if total > c.maxBytes {
		evicted = c.evictLocked(names, total, c.maxBytes-c.slack(), -1)
	}
	c.unlockDir()
	c.evicted(evicted)
	if err == nil {
		c.resetPresent(names, evicted)
	}
}

// evictLocked removes published pieces, least recently read first, until
// total is at most target; never piece keep, and never a piece any process
// pins (the probe's write lock on its byte fails). It runs under the
// directory lock and returns the pieces removed.
func (c *Store) evictLocked(names []int, total, target int64, keep int) []int {
	files := make([]pieceFile, 0, len(names))
	for _, i := range names {
		if i == keep {
			continue
		}
		st, err := os.Stat(c.ds.PiecePath(i))
		if err != nil {
			continue
		}
		files = append(files, pieceFile{i: i, size: st.Size(), mtime: st.ModTime()})
	}
	slices.SortFunc(files, func(a, b pieceFile) int {
		if c := a.mtime.Compare(b.mtime); c != 0 {
			return c
		}
		return a.i - b.i
	})
	var evicted []int
	pinned := 0
	for _, f := range files {
		if total <= target {
			break
		}
		if err := lockByte(c.evictProbe, f.i, unix.F_WRLCK, false); err != nil {
			if errors.Is(err, unix.EAGAIN) {
				pinned++
			} else {
				c.lim.Warn("cache: cannot probe a piece before evicting it", "piece", f.i, "err", err)
			}
			continue
		}
		err := os.Remove(c.ds.PiecePath(f.i))
		if uerr := lockByte(c.evictProbe, f.i, unix.F_UNLCK, false); uerr != nil {
			c.lim.Warn("cache: cannot release an eviction probe", "piece", f.i, "err", uerr)
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			c.lim.Warn("cache: cannot evict a piece", "piece", f.i, "err", err)
			continue
		}
		total -= c.info.PieceLen(f.i)
		evicted = append(evicted, f.i)
	}
	if len(evicted) > 0 || pinned > 0 {
		c.lim.Info("cache: evicted least recently read pieces", "evicted", len(evicted), "pinned_kept", pinned,
			"bytes", total, "cap", c.maxBytes)
	}
	if total > target && pinned > 0 {
		c.lim.Warn("cache: over the cap: the pieces left are in use", "bytes", total, "cap", c.maxBytes)
	}
	return evicted
}

// evicted updates this process for pieces it evicted: their handles are
// closed and, had here, they are no longer.
func (c *Store) evicted(pieces []int) {
	if len(pieces) == 0 {
		return
	}
	c.evictions.Add(int64(len(pieces)))
	c.mu.Lock()
	host := c.host
	c.mu.Unlock()
	for _, i := range pieces {
		c.ds.Forget(i)
		c.sawRemoved(i)
		if host != nil {
			host.Unverify(i)
		}
	}
}

// resetPresent sets the published set to names minus gone (a scan).
func (c *Store) resetPresent(names, gone []int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.present.ClearAll()
	c.presentBytes = 0
	for _, i := range names {
		if !slices.Contains(gone, i) && c.present.Set(i) {
			c.presentBytes += c.info.PieceLen(i)
		}
	}
}

// flushReads writes the read times of the pieces pinned since the last
// flush into their files' mtimes: the least-recently-read order that every
// process's eviction sees. Batched (Run calls it every poll), so that a
// read costs no system call.
func (c *Store) flushReads() {
	c.mu.Lock()
	read := make([]int, 0, len(c.read))
	for i := range c.read {
		read = append(read, i)
	}
	clear(c.read)
	c.mu.Unlock()
	now := time.Now()
	for _, i := range read {
		if err := os.Chtimes(c.ds.PiecePath(i), now, now); err != nil && !errors.Is(err, fs.ErrNotExist) {
			c.log.Debug("cache: cannot record a read", "piece", i, "err", err)
		}
	}
}
