package cache

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

// markedPiece is one marked piece found by a scan.
type markedPiece struct {
	// i is its piece.
	i int
	// read is its last read (Unix ns, readsName).
	read uint64
}

// scanPieces lists the marked pieces of the record: the set and their
// total length.
func (c *Store) scanPieces() ([]int, int64, error) {
	rec := c.rec.Load()
	if rec == nil {
		return nil, 0, fmt.Errorf("cache: scan: %w", storagewrapper.ErrClosed)
	}
	slots, err := rec.pieces()
	if err != nil {
		return nil, 0, err
	}
	var out []int
	var total int64
	for i, s := range slots {
		if s.state == stateMarked {
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

// makeRoomLocked makes room under the cap for piece i, about to be marked,
// evicting least recently read pieces; the caller holds the directory
// lock. It returns the pieces evicted.
func (c *Store) makeRoomLocked(i int) []int {
	names, total, err := c.scanPieces()
	if err != nil {
		c.lim.Error("cache: cannot scan before a publish", "err", err)
		return nil
	}
	if slices.Contains(names, i) {
		total -= c.info.PieceLen(i) // marked again, not added
	}
	if total+c.info.PieceLen(i) <= c.maxBytes {
		return nil
	}
	return c.evictLocked(names, total, c.maxBytes-c.slack()-c.info.PieceLen(i), i)
}

// evictIfOver evicts down to the cap's low mark when the marked pieces
// exceed the cap (another process without a cap filled it).
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

// readTimes returns the read times of every piece (zero for those never
// read, or when the file cannot be read).
// The reads file is opened for each use, not held: a torrent idle in a
// library costs no descriptor for it.
func (c *Store) readTimes() []uint64 {
	n := c.info.NumPieces()
	b := make([]byte, readSlot*n)
	m := 0
	if f, err := os.Open(filepath.Join(c.dir, readsName)); err == nil {
		m, _ = f.ReadAt(b, 0)
		f.Close()
	}
	out := make([]uint64, n)
	for i := range m / readSlot {
		out[i] = binary.LittleEndian.Uint64(b[readSlot*i:])
	}
	return out
}

// evictLocked evicts marked pieces, least recently read first, until
// total is at most target; never piece keep, and never a piece any process
// pins (the probe's write lock on its byte fails). Each eviction clears
// the mark first (from then on no process serves the piece: a read that
// raced with it sees the record change and fetches it again), then punches
// the hole that frees its disk space. It runs under the directory lock and
// returns the pieces evicted.
//
// The probe is an open file description of the pins file of its own (so
// that it conflicts with this process's pins too), opened for each
// eviction rather than held: an idle torrent costs no descriptor for it.
func (c *Store) evictLocked(names []int, total, target int64, keep int) []int {
	if total <= target {
		return nil
	}
	probe, err := os.OpenFile(filepath.Join(c.dir, pinsName), os.O_RDWR, 0)
	if err != nil {
		c.lim.Error("cache: cannot open the pins file to evict", "err", err)
		return nil
	}
	defer probe.Close()
	reads := c.readTimes()
	cands := make([]markedPiece, 0, len(names))
	for _, i := range names {
		if i != keep {
			cands = append(cands, markedPiece{i: i, read: reads[i]})
		}
	}
	slices.SortFunc(cands, func(a, b markedPiece) int {
		if a.read != b.read {
			return cmp.Compare(a.read, b.read)
		}
		return a.i - b.i
	})
	var evicted []int
	pinned := 0
	for _, f := range cands {
		if total <= target {
			break
		}
		if err := lockByte(probe, f.i, unix.F_WRLCK, false); err != nil {
			if errors.Is(err, unix.EAGAIN) {
				pinned++
			} else {
				c.lim.Warn("cache: cannot probe a piece before evicting it", "piece", f.i, "err", err)
			}
			continue
		}
		err := c.setState(f.i, stateNone)
		if err == nil {
			if perr := c.fst.PunchPiece(f.i); perr != nil {
				c.lim.Warn("cache: cannot free an evicted piece's disk space", "piece", f.i, "err", perr)
			}
			c.restamp(f.i)
		}
		if uerr := lockByte(probe, f.i, unix.F_UNLCK, false); uerr != nil {
			c.lim.Warn("cache: cannot release an eviction probe", "piece", f.i, "err", uerr)
		}
		if err != nil {
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

// evicted updates this process for pieces it evicted: had here, they are
// no longer.
func (c *Store) evicted(pieces []int) {
	if len(pieces) == 0 {
		return
	}
	c.evictions.Add(int64(len(pieces)))
	c.mu.Lock()
	host := c.host
	c.mu.Unlock()
	for _, i := range pieces {
		c.sawRemoved(i)
		if host != nil {
			host.Unverify(i)
		}
	}
}

// resetPresent sets the marked set to names minus gone (a scan).
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
// flush into the reads file: the least-recently-read order that every
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
	if err := c.writeReads(read, time.Now()); err != nil {
		c.log.Debug("cache: cannot record reads", "err", err)
	}
}

// writeReads sets the read time of pieces to at. The reads file is
// opened for each batch, not held (see readTimes).
func (c *Store) writeReads(pieces []int, at time.Time) error {
	if len(pieces) == 0 {
		return nil
	}
	f, err := os.OpenFile(filepath.Join(c.dir, readsName), os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	var b [readSlot]byte
	binary.LittleEndian.PutUint64(b[:], readTime(at))
	for _, i := range pieces {
		if _, werr := f.WriteAt(b[:], readSlot*int64(i)); werr != nil {
			err = werr
		}
	}
	return errors.Join(err, f.Close())
}
