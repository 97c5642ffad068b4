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
}

func (f *mountFlags) register(fl *flag.FlagSet) {
	fl.StringVar(&f.cacheDir, "cache-dir", defaultCacheDir(), "keep verified pieces in this `dir` (shared by every btfs on the machine)")
	fl.StringVar(&f.cacheSize, "cache-size", "", "cap this torrent's cached pieces at this `size`, e.g. 20GB (least recently read evicted first; empty: no cap)")
	fl.DurationVar(&f.readTimeout, "read-timeout", 0, "fail a read with EIO after this `duration` (0: wait as long as it takes)")
	fl.StringVar(&f.fetch, "fetch", "all", "`all`: what readers want first, then the rest; reads: only what readers want")
	fl.BoolVar(&f.allowOther, "allow-other", false, "let other users (a media server) read the mount (needs user_allow_other in /etc/fuse.conf unless root)")
	fl.StringVar(&f.keep, "keep", "", "on exit, write the complete files into this `dir`")
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
	opts.ReadaheadMax = max(info.PieceLength, min(fs.DefaultReadaheadMax, maxBytes/4))
	opts.ReadaheadMin = min(fs.DefaultReadaheadMin, opts.ReadaheadMax)
	return mode
}

func runMount(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("mount", flag.ContinueOnError)
	fl.SetOutput(stderr)
	var sf swarmFlags
	var mf mountFlags
	sf.register(fl)
	mf.register(fl)
	fl.Usage = func() {
		fmt.Fprintln(stderr, "usage: btfs mount [flags] TORRENT|URL MOUNTPOINT")
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil || fl.NArg() != 2 {
		fl.Usage()
		return errUsage
	}
	log, closeLog, err := sf.logger(stderr)
	if err != nil {
		return err
	}
	defer closeLog()
	mi, err := loadTorrent(ctx, fl.Arg(0))
	if err != nil {
		return err
	}
	return mountAndServe(ctx, mi, fl.Arg(1), sf, mf, log, stdout, stderr, nil)
}

// mountAndServe joins the swarm for mi, mounts it at mountpoint and serves
// until ctx ends or the mount is unmounted from outside. ready, when set, is
// called once the files are visible.
func mountAndServe(ctx context.Context, mi *metainfo.MetaInfo, mountpoint string, sf swarmFlags, mf mountFlags,
	log *slog.Logger, stdout, stderr io.Writer, ready func()) error {
	mode, err := mf.mode()
	if err != nil {
		return err
	}
	maxBytes, err := mf.maxCacheBytes()
	if err != nil {
		return err
	}
	fsOpts := fs.Options{AllowOther: mf.allowOther, ReadTimeout: mf.readTimeout, Logger: log}
	mode = capped(maxBytes, mi.Info, mode, &fsOpts, log)
	cfg, err := sf.engineConfig(log, mode)
	if err != nil {
		return err
	}
	if err := checkMountpoint(mountpoint); err != nil {
		return err
	}
	dir := filepath.Join(mf.cacheDir, mi.InfoHash.String())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	if err := cache.SaveInfo(dir, mi.InfoBytes); err != nil {
		return err
	}
	// The cache directory is shared with every btfs that mounts this
	// torrent: pieces any of them verified are ours after one hash, and
	// claims split the downloading between them.
	store, err := cache.Open(dir, mi.Info, cache.Options{Logger: log, MaxBytes: maxBytes})
	if err != nil {
		return err
	}
	sw, err := storagewrapper.New(mi.Info, store, storagewrapper.Config{Logger: log})
	if err != nil {
		store.Close()
		return err
	}
	swClosed := false
	closeSW := func() {
		if !swClosed {
			swClosed = true
			sw.Close()
		}
	}
	defer closeSW()

	// Mount first: the listing appears at once, and reads simply wait while
	// the cache is checked and peers are found.
	m, err := fs.Mount(mountpoint, mi, sw, fsOpts)
	if err != nil {
		return err
	}
	unmount := func() {
		if err := m.Unmount(); err != nil {
			log.Error("unmount failed", "mountpoint", mountpoint, "err", err)
		}
	}
	defer unmount()
	fmt.Fprintf(stderr, "btfs: %s mounted at %s\n", mi.Info.Name, mountpoint)
	if ready != nil {
		ready()
	}

	// The other processes' pieces are seen from now on, Resume included
	// (a reader's miss adopts its piece at once).
	runCtx, stopRun := context.WithCancel(ctx)
	var runWG sync.WaitGroup
	runWG.Go(func() {
		if err := store.Run(runCtx, sw); err != nil && runCtx.Err() == nil {
			log.Error("cache: watching the other processes stopped", "err", err)
		}
	})
	defer func() { stopRun(); runWG.Wait() }()

	if err := sw.Resume(ctx); err != nil {
		if ctx.Err() != nil {
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

	unmounted := make(chan struct{})
	go func() { m.Wait(); close(unmounted) }()
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
	unmount()
	stopStatus()
	t.Close()
	if mf.keep != "" {
		bf := sw.Bitfield()
		closeSW()
		if err := keepFiles(mi, dir, bf, mf.keep, log); err != nil {
			return fmt.Errorf("-keep: %w", err)
		}
	}
	return nil
}

// checkMountpoint gives one clear line for a missing or non-directory
// mount point; a stale mount left by a killed btfs is recovered.
func checkMountpoint(mp string) error {
	if recovered, err := fs.Recover(mp); err != nil {
		return err
	} else if recovered {
		fmt.Fprintf(os.Stderr, "btfs: recovered a stale mount at %s (a previous btfs died)\n", mp)
	}
	fi, err := os.Stat(mp)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("mount point %s does not exist", mp)
	case err != nil:
		return fmt.Errorf("mount point %s: %w", mp, err)
	case !fi.IsDir():
		return fmt.Errorf("mount point %s is not a directory", mp)
	}
	return nil
}
