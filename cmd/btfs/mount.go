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
	"time"

	"btfs/engine"
	"btfs/fs"
	"btfs/metainfo"
	"btfs/picker"
	"btfs/storagewrapper"
)

// mountFlags are btfs mount's own flags, beside the swarm's.
type mountFlags struct {
	cacheDir    string
	readTimeout time.Duration
	fetch       string
	allowOther  bool
	keep        string
}

func (f *mountFlags) register(fl *flag.FlagSet) {
	fl.StringVar(&f.cacheDir, "cache-dir", defaultCacheDir(), "keep verified pieces in this `dir` (shared by every btfs on the machine)")
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
	if err := saveMetainfo(dir, mi); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	store, err := storagewrapper.NewDirStore(dir, mi.Info)
	if err != nil {
		return fmt.Errorf("cache: %w", err)
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
	m, err := fs.Mount(mountpoint, mi, sw, fs.Options{AllowOther: mf.allowOther, ReadTimeout: mf.readTimeout, Logger: log})
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

	if err := sw.Resume(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		log.Warn("some cached pieces could not be read; they will be downloaded", "err", err)
	}
	t, err := engine.New(mi, sw, cfg)
	if err != nil {
		return err
	}
	if err := t.Start(ctx); err != nil {
		return err
	}
	defer t.Close()
	if ap := t.ListenAddr(); ap.IsValid() {
		log.Info("listening", "addr", ap)
	}
	statusCtx, stopStatus := context.WithCancel(ctx)
	statusDone := make(chan struct{})
	go func() {
		defer close(statusDone)
		statusLine(statusCtx, t, stderr, log, sf.quiet)
	}()
	defer func() { stopStatus(); <-statusDone }()

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

// saveMetainfo keeps the torrent in its cache directory, so a later mount
// (or a magnet) starts without the network.
func saveMetainfo(dir string, mi *metainfo.MetaInfo) error {
	path := filepath.Join(dir, "info")
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	tmp, err := os.CreateTemp(dir, ".info-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(mi.InfoBytes); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
