package cache

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"btfs/storagewrapper"
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
	if ents, err := os.ReadDir(c.ds.PartialDir()); err == nil {
		for _, e := range ents {
			_, tag, ok := storagewrapper.ParsePartialName(e.Name())
			if !ok || tag == "" {
				continue
			}
			if fi, err := e.Info(); err == nil && gone(tag, fi.ModTime()) {
				remove(filepath.Join(c.ds.PartialDir(), e.Name()))
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
		}
	}
	if len(removed) > 0 {
		c.log.Info("cache: cleaned what dead processes left", "files", len(removed), "first", removed[0])
	}
	names, _, err := c.scanPieces()
	if err != nil {
		return err
	}
	c.resetPresent(names, nil)
	return nil
}
