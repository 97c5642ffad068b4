// Package library is a library mount's logic: the torrents of a
// client.Client shown as directories of an fs library mount, added and
// removed while mounted (by the control socket and a watched directory),
// and remembered across restarts in a small state file.
package library

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"btfs/cache"
	"btfs/client"
	"btfs/control"
	"btfs/fs"
	"btfs/metainfo"
)

// Errors of the commands, for a caller that answers each differently (the
// HTTP control endpoints: 400, 404).
var (
	// ErrBadSource: what add was given is not a torrent (a .torrent that
	// does not parse, a URL that serves none, a bad magnet link).
	ErrBadSource = errors.New("not a torrent")
	// ErrNotFound: rm of a name or info-hash the library does not have.
	ErrNotFound = errors.New("not in the library")
)

// Config wires a Library.
type Config struct {
	Client *client.Client
	// Mount is a library mount (fs.MountLibrary).
	Mount *fs.Mounted
	// CacheDir is the client's: a restored torrent's metadata is there.
	CacheDir string
	// StatePath keeps the list of torrents between runs ("": none).
	StatePath string
	// LoadTorrent reads a .torrent from an http(s) URL (add by URL).
	LoadTorrent func(ctx context.Context, url string) (*metainfo.MetaInfo, error)
	Logger      *slog.Logger
}

// Library keeps the client's torrents and the mount's directories in step.
type Library struct {
	cfg Config
	log *slog.Logger
	ctx context.Context
	end context.CancelFunc
	wg  sync.WaitGroup

	mu      sync.Mutex
	entries map[metainfo.Hash]*entry
	// dismissed are watched files whose torrent `btfs rm` removed: the
	// watcher leaves them alone until they are deleted.
	dismissed map[string]bool
	saveMu    sync.Mutex // one state write at a time, in order
}

// entry is one torrent of the library.
type entry struct {
	t    *client.Torrent
	name string
	// origin is the watched file it came from ("" otherwise).
	origin string
	// rec is what the state file keeps.
	rec record
}

// record is one torrent in the state file. Every torrent is restored as
// a magnet link of its info-hash and trackers, whose metadata the cache
// normally has.
type record struct {
	InfoHash string     `json:"infohash"`
	Name     string     `json:"name"`
	Magnet   string     `json:"magnet"`
	Trackers [][]string `json:"trackers,omitempty"`
	WebSeeds []string   `json:"webseeds,omitempty"`
	Created  int64      `json:"created,omitempty"`
	Origin   string     `json:"origin,omitempty"`
}

// state is the state file.
type state struct {
	Torrents []record `json:"torrents"`
}

// New returns a Library over an empty library mount.
func New(cfg Config) *Library {
	l := &Library{cfg: cfg, log: cfg.Logger, entries: map[metainfo.Hash]*entry{}, dismissed: map[string]bool{}}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	l.ctx, l.end = context.WithCancel(context.Background())
	return l
}

// Close stops the library's goroutines (the torrents are the client's).
func (l *Library) Close() {
	l.end()
	l.wg.Wait()
}

// Restore adds the torrents of the state file, with their names.
func (l *Library) Restore(ctx context.Context) error {
	if l.cfg.StatePath == "" {
		return nil
	}
	b, err := os.ReadFile(l.cfg.StatePath)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("library: %w", err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("library: %s: %w", l.cfg.StatePath, err)
	}
	for _, r := range st.Torrents {
		src, err := l.restoreSource(r)
		if err != nil {
			l.log.Warn("library: torrent not restored", "infohash", r.InfoHash, "err", err)
			continue
		}
		if _, err := l.add(ctx, src, r.Name, r.Origin, false); err != nil {
			l.log.Warn("library: torrent not restored", "infohash", r.InfoHash, "err", err)
		}
	}
	l.log.Info("library restored", "torrents", len(st.Torrents))
	return nil
}

// restoreSource is a record's source: its metainfo when the cache has
// its metadata, else its magnet link.
func (l *Library) restoreSource(r record) (client.Source, error) {
	m, err := metainfo.ParseMagnet(r.Magnet)
	if err != nil {
		return client.Source{}, err
	}
	info, err := cache.LoadInfo(filepath.Join(l.cfg.CacheDir, m.InfoHash.String()))
	if err != nil {
		return client.Source{Magnet: m}, nil
	}
	mi, err := m.MetaInfo(info)
	if err != nil {
		return client.Source{Magnet: m}, nil
	}
	if r.Trackers != nil {
		mi.AnnounceList = r.Trackers
		if len(r.Trackers) > 0 && len(r.Trackers[0]) > 0 {
			mi.Announce = r.Trackers[0][0]
		}
	}
	mi.URLList = r.WebSeeds
	if r.Created != 0 {
		mi.CreationDate = time.Unix(r.Created, 0)
	}
	return client.Source{MetaInfo: mi}, nil
}

// Add adds a torrent to the client and its directory to the mount.
func (l *Library) Add(ctx context.Context, src client.Source, origin string) (control.Entry, error) {
	return l.add(ctx, src, src.Name(), origin, true)
}

func (l *Library) add(ctx context.Context, src client.Source, name, origin string, save bool) (control.Entry, error) {
	t, err := l.cfg.Client.Add(ctx, src, client.AddOptions{})
	if err != nil {
		return control.Entry{}, err
	}
	ih := t.InfoHash()
	var mi *metainfo.MetaInfo
	var data fs.Torrent
	if src.MetaInfo != nil {
		// The directory shows the files at once; reads wait while the
		// storage opens.
		select {
		case <-t.Attached():
			mi, data = t.MetaInfo(), t.Data()
		case <-t.Done():
		case <-ctx.Done():
		}
	}
	if mi == nil && src.MetaInfo != nil {
		l.cfg.Client.Remove(context.Background(), ih)
		if err := t.Err(); err != nil {
			return control.Entry{}, err
		}
		return control.Entry{}, fmt.Errorf("library: %s did not start: %w", src.Name(), ctx.Err())
	}
	got, err := l.cfg.Mount.Add(ih, name, mi, data)
	if err != nil {
		l.cfg.Client.Remove(context.Background(), ih)
		return control.Entry{}, err
	}
	e := &entry{t: t, name: got, origin: origin, rec: recordOf(src, got, origin)}
	l.mu.Lock()
	l.entries[ih] = e
	l.mu.Unlock()
	if mi == nil {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.fillWhenReady(e)
		}()
	}
	if save {
		l.save()
	}
	return l.entryOf(ctx, e), nil
}

// fillWhenReady fills a magnet's directory when its metadata comes.
func (l *Library) fillWhenReady(e *entry) {
	select {
	case <-e.t.Attached():
		if err := l.cfg.Mount.Fill(e.t.InfoHash(), e.t.MetaInfo(), e.t.Data()); err != nil {
			l.log.Warn("library: directory not filled", "name", e.name, "err", err)
		}
	case <-e.t.Done():
	case <-l.ctx.Done():
	}
}

// recordOf is what the state file keeps of a source.
func recordOf(src client.Source, name, origin string) record {
	r := record{InfoHash: src.InfoHash().String(), Name: name, Origin: origin}
	if mi := src.MetaInfo; mi != nil {
		m := metainfo.Magnet{InfoHash: mi.InfoHash, DisplayName: mi.Info.Name}
		r.Magnet = m.String()
		r.Trackers = mi.AnnounceList
		if len(r.Trackers) == 0 && mi.Announce != "" {
			r.Trackers = [][]string{{mi.Announce}}
		}
		r.WebSeeds = mi.URLList
		if !mi.CreationDate.IsZero() {
			r.Created = mi.CreationDate.Unix()
		}
	} else {
		r.Magnet = src.Magnet.String()
	}
	return r
}

// Remove takes a torrent (by directory name or info-hash) out of the mount
// and the client; its cache stays.
func (l *Library) Remove(ctx context.Context, name string) (control.Entry, error) {
	l.mu.Lock()
	var e *entry
	for _, x := range l.entries {
		if x.name == name || strings.EqualFold(x.t.InfoHash().String(), name) {
			e = x
			break
		}
	}
	l.mu.Unlock()
	if e == nil {
		return control.Entry{}, fmt.Errorf("no torrent named %q: %w", name, ErrNotFound)
	}
	if e.origin != "" {
		l.mu.Lock()
		l.dismissed[e.origin] = true
		l.mu.Unlock()
	}
	return l.remove(ctx, e)
}

func (l *Library) remove(ctx context.Context, e *entry) (control.Entry, error) {
	ih := e.t.InfoHash()
	out := l.entryOf(ctx, e)
	// The directory first: its reads fail at once, whatever the client
	// is still doing.
	if _, err := l.cfg.Mount.Remove(ih); err != nil {
		l.log.Warn("library: directory not removed", "name", e.name, "err", err)
	}
	l.mu.Lock()
	delete(l.entries, ih)
	l.mu.Unlock()
	err := l.cfg.Client.Remove(ctx, ih)
	l.save()
	return out, err
}

// List describes every torrent, by name.
func (l *Library) List(ctx context.Context) ([]control.Entry, error) {
	l.mu.Lock()
	es := make([]*entry, 0, len(l.entries))
	for _, e := range l.entries {
		es = append(es, e)
	}
	l.mu.Unlock()
	out := make([]control.Entry, 0, len(es))
	for _, e := range es {
		out = append(out, l.entryOf(ctx, e))
	}
	slices.SortFunc(out, func(a, b control.Entry) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// entryOf describes e.
func (l *Library) entryOf(ctx context.Context, e *entry) control.Entry {
	st, _ := e.t.Stats(ctx)
	return control.Entry{
		Name: e.name, InfoHash: e.t.InfoHash().String(), Size: st.Total, Verified: st.Verified,
		Down: st.DownloadRate, Up: st.UploadRate, Peers: st.Peers, State: st.State,
	}
}

// save writes the state file atomically (a temporary file renamed over
// it), so that a crash leaves the old list or the new one.
func (l *Library) save() {
	if l.cfg.StatePath == "" {
		return
	}
	l.saveMu.Lock()
	defer l.saveMu.Unlock()
	l.mu.Lock()
	st := state{Torrents: make([]record, 0, len(l.entries))}
	for _, e := range l.entries {
		st.Torrents = append(st.Torrents, e.rec)
	}
	l.mu.Unlock()
	slices.SortFunc(st.Torrents, func(a, b record) int { return strings.Compare(a.Name, b.Name) })
	if err := writeAtomic(l.cfg.StatePath, st); err != nil {
		l.log.Warn("library: the list of torrents was not saved; a restart may not restore it", "err", err)
	}
}

func writeAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".state-*")
	if err != nil {
		return err
	}
	if _, err = f.Write(append(b, '\n')); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// AddRequest carries out a control add: a .torrent's bytes, an http(s)
// URL or a magnet link. What does not give a torrent wraps ErrBadSource.
func (l *Library) AddRequest(ctx context.Context, req control.Request) (control.Entry, error) {
	var src client.Source
	switch {
	case len(req.Torrent) > 0:
		mi, err := metainfo.Parse(req.Torrent)
		if err != nil {
			return control.Entry{}, badSource(err)
		}
		src.MetaInfo = mi
	case strings.HasPrefix(req.Source, "magnet:"):
		m, err := metainfo.ParseMagnet(req.Source)
		if err != nil {
			return control.Entry{}, badSource(err)
		}
		src.Magnet = m
	case strings.HasPrefix(req.Source, "http://") || strings.HasPrefix(req.Source, "https://"):
		if l.cfg.LoadTorrent == nil {
			return control.Entry{}, errors.New("library: no loader for URLs")
		}
		mi, err := l.cfg.LoadTorrent(ctx, req.Source)
		if err != nil {
			return control.Entry{}, badSource(err)
		}
		src.MetaInfo = mi
	default:
		return control.Entry{}, badSource(fmt.Errorf("library: %q is not a magnet link or an http(s) URL", req.Source))
	}
	return l.Add(ctx, src, "")
}

// sourceError is an add's source that gave no torrent: its message is
// err's, and it is both ErrBadSource and err.
type sourceError struct{ err error }

func badSource(err error) error       { return sourceError{err} }
func (e sourceError) Error() string   { return e.err.Error() }
func (e sourceError) Unwrap() []error { return []error{ErrBadSource, e.err} }

// Handler is the library as the control server's handler.
func (l *Library) Handler() control.Handler { return handler{l} }

type handler struct{ l *Library }

func (h handler) Add(ctx context.Context, req control.Request) (control.Entry, error) {
	return h.l.AddRequest(ctx, req)
}
func (h handler) Remove(ctx context.Context, name string) (control.Entry, error) {
	return h.l.Remove(ctx, name)
}
func (h handler) List(ctx context.Context) ([]control.Entry, error) { return h.l.List(ctx) }
