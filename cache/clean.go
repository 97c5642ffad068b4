package cache

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// clean removes, under the directory lock, what processes that died left in
// the directory: their claims (stale ones, by the same rule as a take-over),
// their owner files, partial files and urgency markers (when their owner is
// dead, or, in another PID namespace, idle for the claim time-out), and
// temp files of the metainfo. It then counts the published pieces for the cap.
func (c *Store) clean() error {
	if err := c.lockDir(); err != nil {
		return err
	}
	defer c.unlockDir()
	var removed []string
	remove := func(path string) {
		if err := os.Remove(path); err == nil {
			removed = append(removed, filepath.Base(path))
		} else if !errors.Is(err, fs.ErrNotExist) {
			c.log.Warn("cache: cannot clean", "file", path, "err", err)
		}
	}
	// Partial files, urgency markers and owner files, by their owner's
	// name.
	gone := func(name string, mtime time.Time) bool {
		o, ok := parseOwner(name)
		if !ok {
			return time.Since(mtime) > c.claimTimeout
		}
		switch o.liveness(c.me) {
		case dead:
			return true
		case unknownLiveness:
			return time.Since(mtime) > c.claimTimeout
		}
		return false
	}
	// Claims (stale ones, by the rule of a take-over), and the owner files
	// of dead processes.
	if ents, err := os.ReadDir(c.claims); err == nil {
		for _, e := range ents {
			path := filepath.Join(c.claims, e.Name())
			if who, ok := strings.CutPrefix(e.Name(), ownerPrefix); ok {
				if fi, err := e.Info(); err == nil && gone(who, fi.ModTime()) {
					remove(path)
				}
				continue
			}
			if h, err := readClaimFile(path); err == nil && c.staleAt(h, time.Time{}, time.Now()) {
				remove(path)
			}
		}
	}
	if ents, err := os.ReadDir(c.urgent); err == nil {
		for _, e := range ents {
			_, who, ok := parseMarker(e.Name())
			if fi, err := e.Info(); ok && err == nil && gone(who, fi.ModTime()) {
				remove(filepath.Join(c.urgent, e.Name()))
			}
		}
	}
	// Temp files of the metainfo (SaveInfo) that a crash left.
	if ents, err := os.ReadDir(c.dir); err == nil {
		for _, e := range ents {
			if fi, err := e.Info(); err == nil && strings.HasPrefix(e.Name(), infoTempPrefix) &&
				time.Since(fi.ModTime()) > c.claimTimeout {
				remove(filepath.Join(c.dir, e.Name()))
			}
			if who, ok := strings.CutPrefix(e.Name(), probeName); ok {
				if fi, err := e.Info(); err == nil && gone(who, fi.ModTime()) {
					remove(filepath.Join(c.dir, e.Name()))
				}
			}
		}
	}
	if len(removed) > 0 {
		c.log.Info("cache: cleaned what dead processes left", "files", len(removed), "first", removed[0])
	}
	c.checkStampsLocked()
	c.punchLeftoversLocked()
	names, _, err := c.scanPieces()
	if err != nil {
		return err
	}
	c.resetPresent(names, nil)
	return nil
}

// checkStamps looks for data files changed behind btfs's back (see
// checkStampsLocked), under the directory lock.
func (c *Store) checkStamps() {
	if !c.stampsDiffer() {
		return // the common case takes no lock: a process frozen while
		// holding it (SIGSTOP) would stop the others' take-overs
	}
	if err := c.lockDir(); err != nil {
		c.lim.Warn("cache: cannot check the files", "err", err)
		return
	}
	defer c.unlockDir()
	c.checkStampsLocked()
}

// stampsDiffer reports whether some data file differs from its stamp
// (read without the lock: checkStampsLocked decides under it).
func (c *Store) stampsDiffer() bool {
	rec := c.rec.Load()
	if rec == nil {
		return false
	}
	for k, f := range c.info.Files {
		path := c.fst.Path(k)
		if path == "" || f.Length == 0 {
			continue
		}
		now, err := statStamp(path)
		if err != nil {
			continue
		}
		if was, ok, err := rec.stamp(k); err == nil && (!ok || was != now) {
			return true
		}
	}
	return false
}

// checkStampsLocked compares each data file with its stamp (its size and
// mtime as btfs last left it). A file that differs while no process holds
// a claim on any of its pieces (a download in progress changes it, and
// stamps it when its claim ends) was changed behind btfs's back: its
// marked pieces become suspect, to be hashed again before they are served
// (by every process: the record says so). Its stamp is then renewed. The
// caller holds the directory lock.
//
// What it cannot see: a change made while a download writes to the same
// file is taken for the download's (the next stamp absorbs it), and a
// change that restores the mtime goes unseen; verification by the
// swarm's peers (hash failures) is the last line there.
func (c *Store) checkStampsLocked() {
	rec := c.rec.Load()
	if rec == nil {
		return
	}
	claimed := map[int]bool{}
	if ents, err := os.ReadDir(c.claims); err == nil {
		for _, e := range ents {
			if i, ok := parsePieceName(e.Name()); ok {
				claimed[i] = true
			}
		}
	}
	var slots []pieceSlot
	for k, f := range c.info.Files {
		path := c.fst.Path(k)
		if path == "" || f.Length == 0 {
			continue
		}
		now, err := statStamp(path)
		if err != nil {
			continue
		}
		was, ok, err := rec.stamp(k)
		if err != nil || (ok && was == now) {
			continue
		}
		first, end := c.info.FileRange(k)
		busy := false
		for i := first; i < end && !busy; i++ {
			busy = claimed[i]
		}
		if busy {
			continue
		}
		if slots == nil {
			if slots, err = rec.pieces(); err != nil {
				return
			}
		}
		suspect := 0
		for i := first; i < end; i++ {
			if slots[i].state == stateMarked {
				if err := rec.setPiece(i, stateSuspect); err == nil {
					slots[i].state = stateSuspect
					suspect++
				}
			}
		}
		if suspect > 0 {
			c.log.Warn("cache: a file was changed behind btfs's back; its pieces will be verified again before they are served",
				"file", path, "pieces", suspect, "size", now.size, "recorded_size", was.size)
		}
		if err := rec.setStamp(k, now); err != nil {
			c.lim.Warn("cache: cannot stamp a file", "file", path, "err", err)
		}
	}
}

// punchLeftoversLocked punches out the pieces that are neither marked
// nor claimed: what downloads of dead processes wrote (never served: no
// mark) takes no disk space. The caller holds the directory lock, after
// the stale claims were removed.
func (c *Store) punchLeftoversLocked() {
	rec := c.rec.Load()
	if rec == nil {
		return
	}
	slots, err := rec.pieces()
	if err != nil {
		return
	}
	ents, err := os.ReadDir(c.claims)
	if err != nil {
		return
	}
	claimed := map[int]bool{}
	for _, e := range ents {
		if i, ok := parsePieceName(e.Name()); ok {
			claimed[i] = true
		}
	}
	touched := map[int]bool{}
	for i, s := range slots {
		if s.state != stateNone || claimed[i] {
			continue
		}
		if err := c.fst.PunchPiece(i); err != nil {
			c.lim.Warn("cache: cannot free a dead download's disk space", "piece", i, "err", err)
			return
		}
		for _, k := range c.fst.FilesOf(i) {
			touched[k] = true
		}
	}
	for k := range touched {
		if st, err := statStamp(c.fst.Path(k)); err == nil {
			rec.setStamp(k, st)
		}
	}
}
