package cache

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"btfs/storagewrapper"
)

// A full or failing disk, from the cache's side (the state itself belongs
// to the storagewrapper, see storagewrapper/health.go): MakeRoom evicts as
// the size cap does when a write finds no space, and Probe tells the
// storagewrapper when the directory takes data again, recreating the
// torrent's layout first if it was removed while in use.

// probeName begins the file Probe writes in the torrent's directory
// (followed by our owner name, so that two processes never probe the same
// file); Probe removes it, and Open removes those of dead processes.
const probeName = ".probe."

// roomSlack is how many pieces beyond the one asked for MakeRoom frees, so
// that it does not run for every block.
const roomSlack = 4

// MakeRoom implements storagewrapper.Evicter: it evicts marked pieces,
// least recently read first and never one pinned by any process, until
// need bytes (plus a slack of a few pieces) are free, as far as removing
// pieces can free them; it returns the bytes it removed. The disk may be
// full of something else (other torrents, partial files): then it frees
// what it can, perhaps nothing.
func (c *Store) MakeRoom(need int64) (int64, error) {
	if c.closed.Load() {
		return 0, storagewrapper.ErrClosed
	}
	if err := c.lockDir(); err != nil {
		return 0, err
	}
	names, total, err := c.scanPieces()
	var evicted []int
	if err == nil {
		evicted = c.evictLocked(names, total, total-need-roomSlack*c.info.PieceLength, -1)
	}
	c.unlockDir()
	c.evicted(evicted)
	if err != nil {
		return 0, err
	}
	c.resetPresent(names, evicted)
	var freed int64
	for _, i := range evicted {
		freed += c.info.PieceLen(i)
	}
	return freed, nil
}

// Probe implements storagewrapper.Prober: it recreates the torrent's
// directory layout if it is gone (removed while in use) and writes need
// bytes into a file of its own in the directory (space reserved with
// fallocate(2) where the file system has it), making room first when the
// disk is full. nil means a piece can be written again.
func (c *Store) Probe(need int64) error {
	if c.closed.Load() {
		return storagewrapper.ErrClosed
	}
	if err := c.restoreLayout(); err != nil {
		return err
	}
	err := c.probeWrite(need)
	if storagewrapper.FaultOf(err) == storagewrapper.FaultFull {
		if freed, _ := c.MakeRoom(need); freed > 0 {
			err = c.probeWrite(need)
		}
	}
	return err
}

// probeWrite writes need bytes into the probe file and removes it.
func (c *Store) probeWrite(need int64) error {
	path := filepath.Join(c.dir, probeName+c.me.String())
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("cache: probe: %w", err)
	}
	defer os.Remove(path)
	defer f.Close()
	err = unix.Fallocate(int(f.Fd()), 0, 0, need)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		buf := make([]byte, min(need, 1<<20))
		for off := int64(0); off < need && err == nil; off += int64(len(buf)) {
			_, err = f.WriteAt(buf[:min(int64(len(buf)), need-off)], off)
		}
		if err == nil {
			err = f.Sync()
		}
	}
	if err != nil {
		return fmt.Errorf("cache: probe: %w", &fs.PathError{Op: "write", Path: path, Err: err})
	}
	return nil
}

// restoreLayout recreates the torrent's directories and lock files when
// they are gone (the directory was removed while in use): a new lock file
// and pins file (our pins are taken again on it, so that no eviction
// removes a piece a reader of ours holds) and a new owner file. The
// pieces that were there are gone: Run's rescan unverifies them, and the
// file pool forgets its handles on the files removed.
func (c *Store) restoreLayout() error {
	lockPath := filepath.Join(c.dir, lockName)
	c.dirMu.Lock()
	intact := same(c.lock, lockPath)
	c.dirMu.Unlock()
	if intact {
		return nil
	}
	for _, d := range []string{DataDir(c.dir), c.claims, c.urgent} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("cache: recreate %s: %w", c.dir, err)
		}
	}
	c.claimMu.Lock()
	defer c.claimMu.Unlock()
	c.dirMu.Lock()
	defer c.dirMu.Unlock()
	c.pinMu.Lock()
	defer c.pinMu.Unlock()
	if c.pinFile == nil {
		return storagewrapper.ErrClosed
	}
	lock, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("cache: recreate %s: %w", c.dir, err)
	}
	pinsPath := filepath.Join(c.dir, pinsName)
	pins, err := os.OpenFile(pinsPath, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		lock.Close()
		return fmt.Errorf("cache: recreate %s: %w", c.dir, err)
	}
	for i, n := range c.pins {
		if n > 0 {
			if err := lockByte(pins, i, unix.F_RDLCK, true); err != nil {
				c.log.Warn("cache: cannot pin a piece again", "piece", i, "err", err)
			}
		}
	}
	for _, f := range []*os.File{c.lock, c.pinFile} {
		f.Close()
	}
	rec, _, err := openRecord(filepath.Join(c.dir, recordName), c.info)
	if err != nil {
		lock.Close()
		pins.Close()
		return err
	}
	c.lock, c.pinFile = lock, pins
	if old := c.rec.Swap(rec); old != nil {
		old.close()
	}
	ownerFile := filepath.Join(c.claims, ownerPrefix+c.me.String())
	if err := os.WriteFile(ownerFile, []byte(c.me.String()+"\n"), 0o644); err != nil {
		ownerFile = ""
	}
	c.mu.Lock()
	c.ownerFile = ownerFile
	c.mu.Unlock()
	c.fst.ForgetAll()
	c.log.Warn("cache: the torrent's cache directory was removed while in use; recreated it", "dir", c.dir)
	return nil
}

// same reports whether path names the file f has open.
func same(f *os.File, path string) bool {
	if f == nil {
		return false
	}
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	if err != nil {
		return false
	}
	return os.SameFile(a, b)
}

// DiskSize implements storagewrapper.Sizer: the size of the file system
// the torrent's directory is on.
func (c *Store) DiskSize() (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(c.dir, &st); err != nil {
		return 0, fmt.Errorf("cache: statfs %s: %w", c.dir, err)
	}
	return int64(st.Blocks) * st.Bsize, nil
}
