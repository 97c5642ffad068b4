package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/dustin/go-humanize"

	"btfs/cache"
	"btfs/fs"
	"btfs/metainfo"
	"btfs/picker"
	"btfs/storagewrapper"
)

// mountFlags are btfs mount's own flags, beside the swarm's.
type mountFlags struct {
	cacheDir    string
	cacheSize   string
	readTimeout time.Duration
	fetch       string
	allowOther  bool
	keep        string
	browseOnly  bool
	nonEmpty    bool
	passthrough bool
	http        httpFlags
}

func (f *mountFlags) register(fl *flag.FlagSet) {
	fl.StringVar(&f.cacheDir, "cache-dir", defaultCacheDir(), "keep verified pieces in this `dir` (shared by every btfs on the machine)")
	fl.StringVar(&f.cacheSize, "cache-size", "", "cap this torrent's cached pieces at this `size`, e.g. 20GB (least recently read evicted first; empty: no cap)")
	fl.DurationVar(&f.readTimeout, "read-timeout", 0, "fail a read with EIO after this `duration` (0: wait as long as it takes)")
	fl.StringVar(&f.fetch, "fetch", "all", "`all`: what readers want first, then the rest; reads: only what readers want")
	fl.BoolVar(&f.allowOther, "allow-other", false, "let other users (a media server) read the mount (needs user_allow_other in /etc/fuse.conf unless root)")
	fl.StringVar(&f.keep, "keep", "", "on exit, write the complete files into this `dir`")
	fl.BoolVar(&f.passthrough, "passthrough", true, "let the kernel read complete files from the cache directly (FUSE passthrough; false: every read goes through btfs)")
	fl.BoolVar(&f.nonEmpty, "nonempty", false, "mount over a directory that is not empty (its files are hidden until the unmount)")
	f.http.register(fl)
	fl.BoolVar(&f.browseOnly, "browse-only", false, "show the files and fetch nothing: only the metadata of a magnet link; reads fail at once")
}

// defaultCacheDir is $XDG_CACHE_HOME/btfs, else ~/.cache/btfs.
func defaultCacheDir() string {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "btfs")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".cache", "btfs")
	}
	return filepath.Join(os.TempDir(), "btfs-cache")
}

func (f *mountFlags) mode() (picker.Mode, error) {
	switch f.fetch {
	case "all":
		return picker.FetchAll, nil
	case "reads":
		return picker.FetchReads, nil
	}
	return 0, fmt.Errorf("-fetch %q: want all or reads", f.fetch)
}

// maxCacheBytes parses -cache-size; 0 means no cap.
func (f *mountFlags) maxCacheBytes() (int64, error) {
	if f.cacheSize == "" {
		return 0, nil
	}
	n, err := humanize.ParseBytes(f.cacheSize)
	if err != nil || n > 1<<62 {
		return 0, fmt.Errorf("-cache-size %q: want a size such as 20GB", f.cacheSize)
	}
	return int64(n), nil
}

// capped adapts a mount to a cache smaller than its torrent: fetching
// everything would only evict what it fetched (so only what readers want
// is fetched), and a readahead window bigger than a fraction of the cache
// would evict pieces before they are read.
func capped(maxBytes int64, info *metainfo.Info, mode picker.Mode, opts *fs.Options, log *slog.Logger) picker.Mode {
	if maxBytes <= 0 || maxBytes >= info.TotalLength {
		return mode
	}
	if mode == picker.FetchAll {
		log.Info("the cache is smaller than the torrent: fetching only what readers want",
			"cache_size", humanize.IBytes(uint64(maxBytes)), "torrent", humanize.IBytes(uint64(info.TotalLength)))
		mode = picker.FetchReads
	}
	if opts != nil {
		opts.ReadaheadMax = max(info.PieceLength, min(fs.DefaultReadaheadMax, maxBytes/4))
		opts.ReadaheadMin = min(fs.DefaultReadaheadMin, opts.ReadaheadMax)
	}
	return mode
}

// cappedUnknown is capped's readahead bound for a mount whose torrent is
// not known yet (a magnet link): a quarter of the cache, whatever the
// torrent's size turns out to be.
func cappedUnknown(maxBytes int64, opts *fs.Options) {
	if maxBytes <= 0 {
		return
	}
	opts.ReadaheadMax = max(1<<20, min(fs.DefaultReadaheadMax, maxBytes/4))
	opts.ReadaheadMin = min(fs.DefaultReadaheadMin, opts.ReadaheadMax)
}

// mountHelp is `btfs mount -h`'s explanation.
const mountHelp = `
TORRENT is a .torrent file, an http(s) URL of one, or a magnet link. The
files appear under MOUNTPOINT (an empty directory) at once; a read waits
for its pieces, which are fetched first. btfs runs in the foreground until
Ctrl-C, SIGTERM or SIGHUP (or fusermount3 -u MOUNTPOINT), which unmount.

Verified pieces are kept in -cache-dir (default ~/.cache/btfs, shared by
every btfs of the user) with no size limit unless -cache-size says one;
delete the directory to clear it. A mount left by a btfs that was killed
("Transport endpoint is not connected") is removed by the next mount at
the same place, or by fusermount3 -u MOUNTPOINT.`

func runMount(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := newFlags("mount")
	var sf swarmFlags
	var mf mountFlags
	sf.register(fl)
	mf.register(fl)
	if err := parseArgs(fl, args, stdout, 0, "TORRENT", "MOUNTPOINT"); err != nil {
		return err
	}
	if err := checkOrder("mount", fl.Arg(0), fl.Arg(1)); err != nil {
		return err
	}
	log, closeLog, err := sf.logger(stderr)
	if err != nil {
		return err
	}
	defer closeLog()
	src, err := loadSource(ctx, fl.Arg(0))
	if err != nil {
		return err
	}
	return mountAndServe(ctx, src, fl.Arg(1), sf, mf, log, stdout, stderr, nil)
}

// mountAndServe joins the swarm for src, mounts it at mountpoint and serves
// until ctx ends or the mount is unmounted from outside. ready, when set, is
// called once the mount point is mounted (for a magnet link whose metadata
// is not in the cache, before the files are visible).
func mountAndServe(ctx context.Context, src source, mountpoint string, sf swarmFlags, mf mountFlags,
	log *slog.Logger, stdout, stderr io.Writer, ready func()) error {
	mode, err := mf.mode()
	if err != nil {
		return err
	}
	maxBytes, err := mf.maxCacheBytes()
	if err != nil {
		return err
	}
	cfg, err := sf.engineConfig(log, mode)
	if err != nil {
		return err
	}
	if err := checkMountpoint(mountpoint, mf.nonEmpty); err != nil {
		return err
	}
	dir := filepath.Join(mf.cacheDir, src.infoHash().String())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	if src.mi == nil {
		// A magnet link mounted before: its metadata is in the cache,
		// and the mount needs no peer to show its files.
		if info, err := cache.LoadInfo(dir); err == nil {
			if src.mi, err = src.magnet.MetaInfo(info); err != nil {
				log.Warn("cache: the saved metadata is unusable; fetching it again", "err", err)
			} else {
				log.Info("metadata from the cache", "torrent", src.mi.Info.Name)
			}
		}
	}
	private := src.mi != nil && src.mi.Info.Private
	if !mf.browseOnly || src.mi == nil { // browsing a magnet needs peers for its metadata
		closeSwarm, err := sf.join(ctx, &cfg, private, filepath.Join(mf.cacheDir, dhtStateName), log)
		if err != nil {
			return err
		}
		defer closeSwarm()
	}

	// Mount first: the mount point is there at once (a magnet's files
	// appear when its metadata comes), and reads simply wait while the
	// cache is checked and peers are found.
	fsOpts := fs.Options{AllowOther: mf.allowOther, ReadTimeout: mf.readTimeout, Logger: log, NoPassthrough: !mf.passthrough}
	var att *attached
	if src.mi != nil {
		mode = capped(maxBytes, src.mi.Info, mode, &fsOpts, log)
		if att, err = attach(src.mi, dir, maxBytes, mf.browseOnly, log); err != nil {
			return err
		}
		defer att.close()
	} else {
		cappedUnknown(maxBytes, &fsOpts)
	}
	// The mount is registered so that a second signal or SIGQUIT, which
	// end the process without coming back here, unmount it first.
	m, unmount, err := liveMounts.mount(func() (*fs.Mounted, error) {
		if src.mi != nil {
			return fs.Mount(mountpoint, src.mi, att.torrent, fsOpts)
		}
		return fs.MountPending(mountpoint, src.infoHash(), fsOpts)
	}, log)
	if err != nil {
		return explainMountError(err, mf.allowOther)
	}
	defer unmount()
	fmt.Fprintf(stderr, "btfs: %s mounted at %s\n", src.name(), mountpoint)
	if ready != nil {
		ready()
	}
	unmounted := make(chan struct{})
	go func() { m.Wait(); close(unmounted) }()
	// serveCtx ends when the user stops btfs or unmounts from outside.
	serveCtx, stopServe := context.WithCancel(ctx)
	defer stopServe()
	go func() {
		select {
		case <-unmounted:
			stopServe()
		case <-serveCtx.Done():
		}
	}()

	if src.mi == nil {
		mi, peers, err := fetchMetadata(serveCtx, src.magnet, cfg, log, stderr, sf.quiet)
		if err != nil {
			if serveCtx.Err() != nil {
				return nil // stopped while fetching
			}
			return err
		}
		src.mi = mi
		cfg.Peers = append(cfg.Peers, peers...)
		if err := cache.SaveInfo(dir, mi.InfoBytes); err != nil {
			log.Warn("the metadata could not be cached; the next mount fetches it again", "err", err)
		}
		mode = capped(maxBytes, mi.Info, mode, nil, log)
		if att, err = attach(mi, dir, maxBytes, mf.browseOnly, log); err != nil {
			return err
		}
		defer att.close()
		if err := m.Ready(mi, att.torrent); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "btfs: %s: %d files, %s\n", mi.Info.Name, len(mi.Info.Files), fmtBytes(mi.Info.TotalLength))
	} else if err := cache.SaveInfo(dir, src.mi.InfoBytes); err != nil {
		log.Warn("the metadata could not be cached", "err", err)
	}
	mi := src.mi
	cfg.Mode = mode

	if mf.browseOnly {
		log.Info("browse only: the files are listed, reads fail")
		select {
		case <-ctx.Done():
		case <-unmounted:
		}
		unmount()
		return nil
	}

	// The other processes' pieces are seen from now on, Resume included
	// (a reader's miss adopts its piece at once).
	sw := att.sw
	runCtx, stopRun := context.WithCancel(ctx)
	var runWG sync.WaitGroup
	runWG.Go(func() {
		if err := att.store.Run(runCtx, sw); err != nil && runCtx.Err() == nil {
			log.Error("cache: watching the other processes stopped", "err", err)
		}
	})
	defer func() { stopRun(); runWG.Wait() }()

	if err := sw.Resume(serveCtx); err != nil {
		if serveCtx.Err() != nil {
			return nil
		}
		log.Warn("some cached pieces could not be read; they will be downloaded", "err", err)
	}
	t, stopStatus, err := startTorrent(ctx, mi, sw, cfg, log, stderr, sf.quiet)
	if err != nil {
		return err
	}
	defer t.Close()
	defer stopStatus()
	stopHTTP, err := startHTTP(ctx, mf.http, mi, sw, t, log, stderr)
	if err != nil {
		return err
	}
	defer stopHTTP()

	select {
	case <-ctx.Done():
		log.Info("stopping: unmounting", "mountpoint", mountpoint)
	case <-unmounted:
		log.Info("unmounted from outside; stopping")
	case <-t.Done():
		return errors.New("the torrent stopped unexpectedly")
	}
	// Unmount fails the reads still waiting, so no reader hangs on a piece
	// nobody has; then the swarm hears "stopped".
	stopHTTP()
	unmount()
	stopStatus()
	t.Close()
	if mf.keep != "" {
		bf := sw.Bitfield()
		att.close()
		if err := keepFiles(mi, dir, bf, mf.keep, log); err != nil {
			return fmt.Errorf("-keep: %w", err)
		}
	}
	return nil
}

// dhtStateName is the DHT's routing table in the cache directory, shared by
// the mounts of every torrent.
const dhtStateName = "dht.state"

// attached is what a mount reads through: the shared cache and its
// storagewrapper, or, with -browse-only, nothing.
type attached struct {
	// torrent is what the mount reads.
	torrent fs.Torrent
	// store and sw are nil with -browse-only.
	store *cache.Store
	sw    *storagewrapper.Wrapper
	// closed is set once close ran.
	closed bool
}

// attach opens the torrent's pieces in the shared cache directory dir, or
// with browseOnly a torrent whose reads fail at once.
func attach(mi *metainfo.MetaInfo, dir string, maxBytes int64, browseOnly bool, log *slog.Logger) (*attached, error) {
	if browseOnly {
		return &attached{torrent: browseTorrent{n: mi.Info.NumPieces()}}, nil
	}
	// The cache directory is shared with every btfs that mounts this
	// torrent: pieces any of them verified are ours after one hash, and
	// claims split the downloading between them.
	store, err := cache.Open(dir, mi.Info, cache.Options{Logger: log, MaxBytes: maxBytes})
	if err != nil {
		return nil, err
	}
	sw, err := storagewrapper.New(mi.Info, store, storagewrapper.Config{Logger: log})
	if err != nil {
		store.Close()
		return nil, err
	}
	return &attached{torrent: sw, store: store, sw: sw}, nil
}

// close closes the storagewrapper (and its store); it may be called again.
func (a *attached) close() {
	if a.closed || a.sw == nil {
		return
	}
	a.closed = true
	a.sw.Close()
}
