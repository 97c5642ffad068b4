package client

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"btfs/cache"
	"btfs/engine"
	"btfs/metainfo"
	"btfs/picker"
	"btfs/storagewrapper"
	"btfs/stream"
)

// Source is what a torrent starts from: its metainfo, or a magnet link
// whose info dictionary comes from the cache or the swarm.
type Source struct {
	MetaInfo *metainfo.MetaInfo
	Magnet   *metainfo.Magnet
}

// InfoHash is the torrent's info-hash, known in every case.
func (s Source) InfoHash() metainfo.Hash {
	if s.MetaInfo != nil {
		return s.MetaInfo.InfoHash
	}
	return s.Magnet.InfoHash
}

// Name is what to call it before the metadata says: the torrent's name,
// the link's dn, or the info-hash.
func (s Source) Name() string {
	switch {
	case s.MetaInfo != nil:
		return s.MetaInfo.Info.Name
	case s.Magnet.DisplayName != "":
		return s.Magnet.DisplayName
	}
	return s.Magnet.InfoHash.String()
}

// AddOptions say where a torrent's bytes live and what it does.
type AddOptions struct {
	// FilesDir, when set, stores the torrent as its own files under it
	// (get and seed) instead of in the shared cache.
	FilesDir string
	// ReadOnly seeds what FilesDir holds and downloads nothing; a
	// torrent with no verified piece there fails.
	ReadOnly bool
	// BrowseOnly fetches no data: the metadata only (a magnet's); reads
	// fail at once.
	BrowseOnly bool
}

// Torrent is one torrent of the client, from its metadata to seeding.
type Torrent struct {
	c    *Client
	ih   metainfo.Hash
	src  Source
	opts AddOptions
	log  *slog.Logger
	seq  int64 // order of Add, for List

	ctx    context.Context // ends with stop
	cancel context.CancelFunc

	attached chan struct{} // closed once mi and data are set
	running  chan struct{} // closed once eng is set and started
	done     chan struct{} // closed when run has returned

	// Set before attached is closed, never changed after.
	mi   *metainfo.MetaInfo
	data stream.Torrent
	sw   *storagewrapper.Wrapper // nil with BrowseOnly
	// cache is the shared cache holding the data; nil for a files
	// store and with BrowseOnly.
	cache *cache.Store
	// Set before running is closed.
	eng *engine.Torrent

	mu  sync.Mutex
	err error // why run stopped early; guarded by mu
}

// seqs numbers the torrents in the order they were added.
var seqs atomic.Int64

func newTorrent(c *Client, src Source, opts AddOptions) *Torrent {
	t := &Torrent{
		c: c, ih: src.InfoHash(), src: src, opts: opts, seq: seqs.Add(1),
		attached: make(chan struct{}), running: make(chan struct{}), done: make(chan struct{}),
	}
	t.log = c.log
	t.ctx, t.cancel = context.WithCancel(c.ctx)
	return t
}

// InfoHash is the torrent's info-hash.
func (t *Torrent) InfoHash() metainfo.Hash { return t.ih }

// Source is what the torrent was added from.
func (t *Torrent) Source() Source { return t.src }

// Name is the torrent's name once its metadata is known, before that the
// magnet link's dn or the info-hash.
func (t *Torrent) Name() string {
	if mi := t.MetaInfo(); mi != nil {
		return mi.Info.Name
	}
	return t.src.Name()
}

// Attached is closed once the metadata is known and the storage open:
// MetaInfo and Data may be read, and reads wait for their pieces.
func (t *Torrent) Attached() <-chan struct{} { return t.attached }

// Running is closed once the engine runs: for a magnet link whose
// metadata is not in the cache that is at once, before Attached (the
// engine fetches the metadata, Engine's Stats say how far). With
// BrowseOnly only then: that engine stops once the metadata is in.
func (t *Torrent) Running() <-chan struct{} { return t.running }

// Done is closed when the torrent has stopped: removed, the client
// closed, or failed (Err).
func (t *Torrent) Done() <-chan struct{} { return t.done }

// Stopping is closed as soon as the torrent is removed or the client
// closes, before its connections and storage are closed (that may take a
// tracker's "stopped" announce): whoever serves its bytes (an HTTP
// stream) ends at once rather than with the storage.
func (t *Torrent) Stopping() <-chan struct{} { return t.ctx.Done() }

// Err is why the torrent stopped by itself; nil while it runs and after a
// Remove or Close.
func (t *Torrent) Err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

// MetaInfo is the torrent; nil until Attached.
func (t *Torrent) MetaInfo() *metainfo.MetaInfo {
	select {
	case <-t.attached:
		return t.mi
	default:
		return nil
	}
}

// Data reads the torrent's verified bytes, waiting for them; nil until
// Attached.
func (t *Torrent) Data() stream.Torrent {
	select {
	case <-t.attached:
		return t.data
	default:
		return nil
	}
}

// Wrapper is the torrent's storagewrapper; nil until Attached and with
// BrowseOnly.
func (t *Torrent) Wrapper() *storagewrapper.Wrapper {
	select {
	case <-t.attached:
		return t.sw
	default:
		return nil
	}
}

// Cache is the shared cache store holding the torrent's data; nil until
// Attached, for a files store (get, seed) and with BrowseOnly.
func (t *Torrent) Cache() *cache.Store {
	select {
	case <-t.attached:
		return t.cache
	default:
		return nil
	}
}

// Engine is the torrent's engine; nil until Running.
func (t *Torrent) Engine() *engine.Torrent {
	select {
	case <-t.running:
		return t.eng
	default:
		return nil
	}
}

// Stats is what `btfs ls` and the status line show of a torrent.
type Stats struct {
	// Total is the size in bytes, 0 before the metadata; Verified the
	// bytes verified.
	Total, Verified int64
	// DownloadRate and UploadRate in bytes/s; Peers connected.
	DownloadRate, UploadRate float64
	Peers                    int
	// State is "metadata", "checking", "running", "browsing" or "failed".
	State string
}

// Stats returns a snapshot.
func (t *Torrent) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	if err := t.Err(); err != nil {
		st.State = "failed"
		return st, nil
	}
	mi := t.MetaInfo()
	if mi == nil {
		st.State = "metadata"
		if e := t.Engine(); e != nil {
			if es, err := e.Stats(ctx); err == nil {
				st.DownloadRate, st.UploadRate, st.Peers = es.DownloadRate, es.UploadRate, es.Peers
			}
		}
		return st, nil
	}
	st.Total = mi.Info.TotalLength
	if t.sw == nil {
		st.State = "browsing"
		return st, nil
	}
	if e := t.Engine(); e != nil {
		es, err := e.Stats(ctx)
		if err == nil {
			st.State, st.Verified = "running", es.VerifiedBytes
			st.DownloadRate, st.UploadRate, st.Peers = es.DownloadRate, es.UploadRate, es.Peers
			return st, nil
		}
	}
	st.State = "checking"
	st.Verified = t.sw.Stats().VerifiedBytes
	return st, nil
}

// stop ends the torrent; run cleans up and closes done.
func (t *Torrent) stop() { t.cancel() }

// fail records why the torrent stopped by itself.
func (t *Torrent) fail(err error) {
	t.mu.Lock()
	t.err = err
	t.mu.Unlock()
	t.log.Error("torrent stopped", "torrent", t.Name(), "err", err)
}

// run brings the torrent up; the cleanup (closing what start opened, in
// reverse, then done) runs once the torrent is stopped. An idle torrent
// so costs no goroutine here: after start, nothing waits but a
// context.AfterFunc. (Its engine's loop ends only when its context does.)
// release is called once the cleanup has run.
func (t *Torrent) run(release func()) {
	var closers []func()
	cleanup := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
		close(t.done)
		release()
	}
	if err := t.start(&closers); err != nil {
		if t.ctx.Err() == nil {
			t.fail(err)
		}
		cleanup()
		return
	}
	context.AfterFunc(t.ctx, cleanup)
}

// start brings the torrent up to its engine, appending to closers what
// run must close. A magnet link whose metadata is not in the cache starts
// its engine at once, without the info: the engine fetches it from peers
// (BEP 9) and goes on with the same connections once openStorage has
// opened the storage.
func (t *Torrent) start(closers *[]func()) error {
	ctx := t.ctx
	cacheDir := ""
	if t.opts.FilesDir == "" {
		cacheDir = filepath.Join(t.c.cfg.CacheDir, t.ih.String())
		if err := mkdir(cacheDir); err != nil {
			return fmt.Errorf("cache: %w", err)
		}
	}
	mi := t.src.MetaInfo
	if mi == nil && cacheDir != "" {
		// A magnet link seen before: its metadata is in the cache, and
		// the torrent needs no peer to show its files.
		if info, err := cache.LoadInfo(cacheDir); err == nil {
			if mi, err = t.src.Magnet.MetaInfo(info); err != nil {
				t.log.Warn("cache: the saved metadata is unusable; fetching it again", "err", err)
				mi = nil
			} else {
				t.log.Info("metadata from the cache", "torrent", mi.Info.Name)
			}
		}
	}
	if mi == nil {
		return t.startMagnet(closers, cacheDir)
	}
	sw, mode, err := t.openStorage(ctx, mi, cacheDir, closers)
	if err != nil || sw == nil { // sw nil: BrowseOnly, no engine
		return err
	}
	var peers []netip.AddrPort
	if m := t.src.Magnet; m != nil { // its metadata was cached: its x.pe peers still count
		peers = resolvePeers(ctx, m.Peers, t.log)
	}
	e, err := engine.New(mi, sw, t.c.engineConfig(mode, peers))
	if err != nil {
		return err
	}
	if err := e.Start(ctx); err != nil {
		return err
	}
	t.eng = e
	*closers = append(*closers, func() {
		t.c.setRunning(t.ih, nil)
		e.Close()
	})
	t.c.setRunning(t.ih, e)
	close(t.running)
	return nil
}

// startMagnet starts the engine of a magnet link without its info
// dictionary: from the link's x.pe peers and the client's, its trackers
// (or the client's), the DHT, and the connections the client's listener
// hands it (it is reachable by its info-hash from now on). Running closes
// now, Attached once the metadata has arrived and openStorage has opened
// the storage; the engine then swarms on with the same connections. With
// BrowseOnly the engine stops once the metadata is in.
func (t *Torrent) startMagnet(closers *[]func(), cacheDir string) error {
	ctx := t.ctx
	m := t.src.Magnet
	// What openStorage opens, closed after the engine (which waits for
	// openStorage to return: no append races the cleanup).
	var opened []func()
	engCtx, stopEng := context.WithCancel(ctx)
	cfg := t.c.engineConfig(t.c.cfg.Mode, resolvePeers(ctx, m.Peers, t.log))
	cfg.OpenStorage = func(ctx context.Context, mi *metainfo.MetaInfo) (*storagewrapper.Wrapper, picker.Mode, error) {
		sw, mode, err := t.openStorage(ctx, mi, cacheDir, &opened)
		switch {
		case err != nil:
			if ctx.Err() == nil {
				t.fail(err)
				t.cancel() // the cleanup closes the engine, then what was opened
			}
			return nil, 0, err
		case sw == nil: // BrowseOnly: the files are listed, no data is fetched
			t.c.setRunning(t.ih, nil)
			stopEng()
			return nil, 0, context.Canceled
		}
		return sw, mode, nil
	}
	e, err := engine.New(m.Torrent(), nil, cfg)
	if err != nil {
		stopEng()
		return err
	}
	trackers := len(m.Trackers)
	if cfg.Trackers != nil {
		trackers = len(cfg.Trackers)
	}
	t.log.Info("fetching metadata", "torrent", t.src.Name(), "peers", len(cfg.Peers), "trackers", trackers, "dht", cfg.Finder != nil)
	if err := e.Start(engCtx); err != nil {
		stopEng()
		return err
	}
	t.eng = e
	*closers = append(*closers, func() {
		t.c.setRunning(t.ih, nil)
		stopEng()
		e.Close()
		for i := len(opened) - 1; i >= 0; i-- {
			opened[i]()
		}
	})
	t.c.setRunning(t.ih, e)
	close(t.running)
	// A dictionary that hashes right but does not parse stops the engine
	// before openStorage: the torrent fails with it. Nothing waits here
	// once the metadata is in (openStorage reports its own errors).
	go func() {
		if _, err := e.Info(ctx); err != nil && ctx.Err() == nil {
			t.fail(err)
			t.cancel()
		}
	}()
	return nil
}

// openStorage opens the torrent's storage once its metadata is known:
// saves the info to the cache directory, opens the cache store (or the
// files store under FilesDir) and its storagewrapper, checks what is
// stored, and picks the mode (a cache smaller than the torrent fetches
// only what readers want). Attached closes on the way, before the check,
// so that reads may wait for their pieces meanwhile. With BrowseOnly it
// only attaches and returns a nil wrapper. What it opens goes to closers.
func (t *Torrent) openStorage(ctx context.Context, mi *metainfo.MetaInfo, cacheDir string, closers *[]func()) (*storagewrapper.Wrapper, picker.Mode, error) {
	if cacheDir != "" {
		if err := cache.SaveInfo(cacheDir, mi.InfoBytes); err != nil {
			t.log.Warn("the metadata could not be cached; the next start fetches it again", "err", err)
		}
	}
	mode := t.c.cfg.Mode
	if max := t.c.cfg.MaxCacheBytes; max > 0 && max < mi.Info.TotalLength && mode == picker.FetchAll && cacheDir != "" {
		t.log.Info("the cache is smaller than the torrent: fetching only what readers want",
			"cache_size", max, "torrent", mi.Info.TotalLength)
		mode = picker.FetchReads
	}

	var store *cache.Store
	if t.opts.BrowseOnly {
		t.mi, t.data = mi, browseTorrent{n: mi.Info.NumPieces()}
		close(t.attached)
		return nil, mode, nil
	}
	var st storagewrapper.Store
	if cacheDir != "" {
		// The cache directory is shared with every btfs that has this
		// torrent: pieces any of them verified are ours after one hash,
		// and claims split the downloading between them.
		s, err := cache.Open(cacheDir, mi.Info, cache.Options{Logger: t.log, MaxBytes: t.c.cfg.MaxCacheBytes})
		if err != nil {
			return nil, 0, err
		}
		store, st = s, s
	} else {
		if !t.opts.ReadOnly {
			if err := mkdir(t.opts.FilesDir); err != nil {
				return nil, 0, err
			}
		}
		s, err := storagewrapper.NewFileStore(t.opts.FilesDir, mi.Info, t.opts.ReadOnly)
		if err != nil {
			return nil, 0, err
		}
		st = s
	}
	sw, err := storagewrapper.New(mi.Info, st, storagewrapper.Config{Logger: t.log})
	if err != nil {
		st.Close()
		return nil, 0, err
	}
	*closers = append(*closers, func() { sw.Close() })
	t.mi, t.data, t.sw, t.cache = mi, sw, sw, store
	close(t.attached)

	if store != nil {
		// The other processes' pieces are seen from now on, Resume
		// included (a reader's miss adopts its piece at once).
		runCtx, stopRun := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() {
			if err := store.Run(runCtx, sw); err != nil && runCtx.Err() == nil {
				t.log.Error("cache: watching the other processes stopped", "err", err)
			}
		})
		*closers = append(*closers, func() { stopRun(); wg.Wait() })
	}
	start := time.Now()
	if err := sw.Resume(ctx); err != nil {
		if ctx.Err() != nil {
			return nil, 0, ctx.Err()
		}
		t.log.Warn("some stored pieces could not be read; they will be downloaded", "err", err)
	}
	ss := sw.Stats()
	t.log.Info("checked stored data", "verified", ss.VerifiedPieces, "pieces", ss.Pieces, "took", time.Since(start).Round(time.Millisecond))
	if t.opts.ReadOnly && ss.VerifiedPieces == 0 {
		return nil, 0, fmt.Errorf("nothing to seed: no piece of %s verifies under %s", mi.Info.Name, t.opts.FilesDir)
	}
	return sw, mode, nil
}

// engineConfig is a torrent's engine config: the client's shared parts,
// and peers of the torrent's own (a magnet link's x.pe).
func (c *Client) engineConfig(mode picker.Mode, peers []netip.AddrPort) engine.Config {
	cfg := engine.Config{
		Logger:          c.log,
		PeerID:          c.peerID,
		ListenAddr:      c.ListenAddr(),
		MaxPeers:        c.cfg.MaxPeers,
		Budget:          c.budget,
		DownloadLimiter: c.down,
		UploadLimiter:   c.up,
		Mode:            mode,
		Peers:           append(append([]netip.AddrPort(nil), c.cfg.Peers...), peers...),
		Trackers:        c.cfg.Trackers,
		Finder:          c.finder,
		Local:           c.local,
		NoWebSeeds:      c.cfg.NoWebSeeds,
		Transport:       c.tr,
		ExternalPort:    c.extern,
	}
	if c.cfg.Engine != nil {
		c.cfg.Engine(&cfg)
	}
	return cfg
}

// resolvePeers turns x.pe's host:port strings into addresses; a name that
// does not resolve is logged and skipped.
func resolvePeers(ctx context.Context, peers []string, log *slog.Logger) []netip.AddrPort {
	var out []netip.AddrPort
	for _, p := range peers {
		if ap, err := netip.ParseAddrPort(p); err == nil {
			out = append(out, ap)
			continue
		}
		host, port, err := net.SplitHostPort(p)
		if err == nil {
			var pn uint16
			if _, err = fmt.Sscan(port, &pn); err == nil {
				var ips []netip.Addr
				ips, err = net.DefaultResolver.LookupNetIP(ctx, "ip", host)
				for _, ip := range ips {
					out = append(out, netip.AddrPortFrom(ip.Unmap(), pn))
				}
			}
		}
		if err != nil {
			log.Warn("magnet peer skipped", "peer", p, "err", err)
		}
	}
	return out
}
