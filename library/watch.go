package library

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"time"

	"btfs/client"
	"btfs/metainfo"
)

// WatchInterval is how often a watched directory is listed.
//
// Polling, not inotify: a watched directory holds a few files and a
// listing a second costs nothing, while inotify instances are scarce (128
// per user by default, and each torrent's cache already takes one); a
// poll also sees a directory that was replaced or remounted, and a file
// whose writing had not finished at the last look (it is retried when its
// size or time changes).
var WatchInterval = time.Second

// Watch adds the .torrent and .magnet files (a magnet link as text) found
// in dir, and removes the torrent of a file that goes away, until ctx
// ends or the Library closes. It returns at once.
func (l *Library) Watch(ctx context.Context, dir string) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		w := watcher{l: l, dir: dir, failed: map[string]fileStamp{}}
		tick := time.NewTicker(WatchInterval)
		defer tick.Stop()
		for {
			w.scan(ctx)
			select {
			case <-ctx.Done():
				return
			case <-l.ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
}

// fileStamp tells a file's versions apart.
type fileStamp struct {
	size  int64
	mtime time.Time
}

// watcher is Watch's state.
type watcher struct {
	l   *Library
	dir string
	// failed are the files that did not add, as they were then.
	failed map[string]fileStamp
}

// scan adds what appeared and removes what went away.
func (w *watcher) scan(ctx context.Context) {
	des, err := os.ReadDir(w.dir)
	if err != nil {
		w.l.log.Warn("library: watched directory unreadable", "dir", w.dir, "err", err)
		return
	}
	present := map[string]bool{}
	for _, de := range des {
		name := de.Name()
		if strings.HasPrefix(name, ".") || !(strings.HasSuffix(name, ".torrent") || strings.HasSuffix(name, ".magnet")) {
			continue
		}
		path := filepath.Join(w.dir, name)
		present[path] = true
		if w.l.hasOrigin(path) {
			continue
		}
		if w.l.isDismissed(path) {
			w.l.log.Debug("library: watched file left alone: its torrent was removed by rm", "file", path)
			continue
		}
		fi, err := de.Info()
		if err != nil {
			continue
		}
		stamp := fileStamp{fi.Size(), fi.ModTime()}
		if old, ok := w.failed[path]; ok && old == stamp {
			continue
		}
		if err := w.add(ctx, path); err != nil {
			w.failed[path] = stamp
			w.l.log.Warn("library: watched file not added", "file", path, "err", err)
			continue
		}
		delete(w.failed, path)
	}
	for path := range w.failed {
		if !present[path] {
			delete(w.failed, path)
		}
	}
	w.l.mu.Lock()
	for path := range w.l.dismissed {
		if filepath.Dir(path) == filepath.Clean(w.dir) && !present[path] {
			delete(w.l.dismissed, path)
		}
	}
	var gone []*entry
	for _, e := range w.l.entries {
		if e.origin != "" && filepath.Dir(e.origin) == filepath.Clean(w.dir) && !present[e.origin] {
			gone = append(gone, e)
		}
	}
	w.l.mu.Unlock()
	for _, e := range gone {
		w.l.log.Info("library: watched file removed", "file", e.origin, "name", e.name)
		if _, err := w.l.remove(ctx, e); err != nil {
			w.l.log.Warn("library: torrent not removed", "name", e.name, "err", err)
		}
	}
}

// add adds the torrent of a watched file.
func (w *watcher) add(ctx context.Context, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var src client.Source
	if strings.HasSuffix(path, ".magnet") {
		m, err := metainfo.ParseMagnet(strings.TrimSpace(string(b)))
		if err != nil {
			return err
		}
		src.Magnet = m
	} else {
		mi, err := metainfo.Parse(b)
		if err != nil {
			return err
		}
		src.MetaInfo = mi
	}
	if e := w.l.byHash(src.InfoHash()); e != nil {
		// Added by hand (or by another file) already: the file now
		// stands for it.
		w.l.mu.Lock()
		e.origin, e.rec.Origin = path, path
		w.l.mu.Unlock()
		w.l.save()
		return nil
	}
	_, err = w.l.Add(ctx, src, path)
	return err
}

// hasOrigin reports whether a torrent of the library came from path.
func (l *Library) hasOrigin(path string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.entries {
		if e.origin == path {
			return true
		}
	}
	return false
}

// isDismissed reports whether `btfs rm` removed the torrent of path.
func (l *Library) isDismissed(path string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dismissed[path]
}

// byHash is the entry of ih, or nil.
func (l *Library) byHash(ih metainfo.Hash) *entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.entries[ih]
}
