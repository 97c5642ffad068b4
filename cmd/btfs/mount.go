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

	"github.com/dustin/go-humanize"
	"golang.org/x/sys/unix"

	"btfs/client"
	"btfs/fs"
	"btfs/metainfo"
	"btfs/picker"
	"btfs/stream"
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
	// watch: -watch DIR, a library's watched directory.
	watch string
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
	fl.StringVar(&f.watch, "watch", "", "library mount: add the .torrent and .magnet files dropped into this `dir`, remove those deleted")
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

// capped adapts a mount to a cache smaller than its torrent: a readahead
// window bigger than a fraction of the cache would evict pieces before
// they are read. (The client fetches only what readers want then.)
func capped(maxBytes int64, info *metainfo.Info, opts *fs.Options) {
	if maxBytes <= 0 || maxBytes >= info.TotalLength {
		return
	}
	opts.ReadaheadMax = max(info.PieceLength, min(fs.DefaultReadaheadMax, maxBytes/4))
	opts.ReadaheadMin = min(fs.DefaultReadaheadMin, opts.ReadaheadMax)
}

// freeSpace is the room left on the file system of dir (or of its nearest
// existing parent), 0 when unknown.
func freeSpace(dir string) int64 {
	for {
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err == nil {
			return int64(st.Bavail) * st.Bsize
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return 0
		}
		dir = parent
	}
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

Without TORRENT, MOUNTPOINT is a library: a directory per torrent, added
and removed while mounted by 'btfs add MOUNTPOINT TORRENT', 'btfs rm
MOUNTPOINT NAME' and -watch DIR; 'btfs ls MOUNTPOINT' lists them (with
-http, also over HTTP: GET, POST and DELETE /api/torrents). A library
mounted again at the same place with the same -cache-dir has the same
torrents.

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
	if err := parseArgs(fl, args, stdout, 2); err != nil {
		return err
	}
	switch {
	case fl.NArg() == 0:
		return usagef("missing TORRENT and MOUNTPOINT")
	case fl.NArg() == 1 && looksLikeSource(fl.Arg(0)):
		return usagef("missing MOUNTPOINT")
	}
	r := &mountRun{sf: sf, mf: mf, stdout: stdout, stderr: stderr, readers: stream.NewRegistry()}
	var err error
	var closeLog func()
	if r.log, closeLog, err = sf.logger(stderr); err != nil {
		return err
	}
	defer closeLog()
	if fl.NArg() == 1 {
		return r.library(ctx, fl.Arg(0))
	}
	if mf.watch != "" {
		return usagef("-watch is for a library mount (btfs mount -watch DIR MOUNTPOINT)")
	}
	if err := checkOrder("mount", fl.Arg(0), fl.Arg(1)); err != nil {
		return err
	}
	src, err := loadSource(ctx, fl.Arg(0))
	if err != nil {
		return err
	}
	return r.one(ctx, src, fl.Arg(1), nil)
}

// mountRun is one `btfs mount`: its flags and where it writes.
type mountRun struct {
	sf             swarmFlags
	mf             mountFlags
	log            *slog.Logger
	stdout, stderr io.Writer
	// readers lists the open readers of the mount and of HTTP alike, for
	// the status page and /metrics.
	readers *stream.Registry
}

// newClient starts the process's client as the flags say.
func (r *mountRun) newClient(ctx context.Context, private, offline bool) (*client.Client, error) {
	mode, err := r.mf.mode()
	if err != nil {
		return nil, err
	}
	maxBytes, err := r.mf.maxCacheBytes()
	if err != nil {
		return nil, err
	}
	cfg, err := r.sf.clientConfig(r.log, mode, r.mf.cacheDir, private)
	if err != nil {
		return nil, err
	}
	cfg.MaxCacheBytes = maxBytes
	if offline { // -browse-only of a torrent file: no peer is needed
		cfg.Listen, cfg.UTP, cfg.DHT, cfg.LSD, cfg.PortMap = "", false, false, false, false
	}
	return client.New(ctx, cfg)
}

// fsOptions are the mount's options; info, when known, sizes the readahead
// to a capped cache, or to a cache disk with less room than -cache-size.
func (r *mountRun) fsOptions(info *metainfo.Info) fs.Options {
	opts := fs.Options{AllowOther: r.mf.allowOther, ReadTimeout: r.mf.readTimeout, Logger: r.log, Readers: r.readers,
		NoPassthrough: !r.mf.passthrough}
	maxBytes, _ := r.mf.maxCacheBytes()
	if room := freeSpace(r.mf.cacheDir); room > 0 && (maxBytes <= 0 || room < maxBytes) {
		// A readahead window larger than the disk thrashes once the disk
		// is full: each piece fetched ahead evicts the one the reader
		// needs next (the oldest published), which is fetched again and
		// evicts the next, and a sequential read crawls.
		maxBytes = room
	}
	if info != nil {
		capped(maxBytes, info, &opts)
	} else {
		cappedUnknown(maxBytes, &opts)
	}
	return opts
}

// one mounts the torrent src at mountpoint and serves it until ctx ends or
// the mount is unmounted from outside. ready, when set, is called once
// the mount point is mounted (for a magnet link, before the files are
// visible).
func (r *mountRun) one(ctx context.Context, src client.Source, mountpoint string, ready func()) error {
	if _, err := r.mf.mode(); err != nil {
		return err
	}
	if _, err := r.mf.maxCacheBytes(); err != nil {
		return err
	}
	if err := checkMountpoint(mountpoint, r.mf.nonEmpty); err != nil {
		return err
	}
	mi := src.MetaInfo
	c, err := r.newClient(ctx, mi != nil && mi.Info.Private, r.mf.browseOnly && mi != nil)
	if err != nil {
		return err
	}
	defer c.Close()
	tor, err := c.Add(ctx, src, client.AddOptions{BrowseOnly: r.mf.browseOnly})
	if err != nil {
		return err
	}
	if mi != nil {
		// The files are listed at once; reads wait while the cache is
		// checked and peers are found.
		if err := waitFor(ctx, tor, tor.Attached()); err != nil {
			return err
		}
	}
	// The mount is registered so that a second signal or SIGQUIT, which
	// end the process without coming back here, unmount it first.
	m, unmount, err := liveMounts.mount(func() (*fs.Mounted, error) {
		if mi != nil {
			return fs.Mount(mountpoint, mi, tor.Data(), r.fsOptions(mi.Info))
		}
		return fs.MountPending(mountpoint, src.InfoHash(), r.fsOptions(nil))
	}, r.log)
	if err != nil {
		return explainMountError(err, r.mf.allowOther)
	}
	defer unmount()
	fmt.Fprintf(r.stderr, "btfs: %s mounted at %s\n", src.Name(), mountpoint)
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

	stopStatus, statusOn := func() {}, false
	defer func() { stopStatus() }()
	if mi == nil {
		stopStatus, statusOn = metadataStatus(ctx, tor, r.log, r.stderr, r.sf.quiet)
		err := waitFor(serveCtx, tor, tor.Attached())
		if err != nil {
			if serveCtx.Err() != nil {
				return nil // stopped while fetching
			}
			return err
		}
		mi = tor.MetaInfo()
		if err := m.Ready(mi, tor.Data()); err != nil {
			return err
		}
		fmt.Fprintf(r.stderr, "btfs: %s: %d files, %s\n", mi.Info.Name, len(mi.Info.Files), fmtBytes(mi.Info.TotalLength))
	}

	if r.mf.browseOnly {
		stopStatus()
		r.log.Info("browse only: the files are listed, reads fail")
		select {
		case <-ctx.Done():
		case <-unmounted:
		}
		unmount()
		return nil
	}
	if err := waitFor(serveCtx, tor, tor.Running()); err != nil {
		if serveCtx.Err() != nil {
			return nil
		}
		return err
	}
	eng, sw := tor.Engine(), tor.Wrapper()
	if !statusOn {
		stopStatus = startStatus(ctx, eng, r.log, r.stderr, r.sf.quiet)
	}
	stopHTTP, err := startHTTP(ctx, r.mf.http, c, nil, r.readers, r.log, r.stderr)
	if err != nil {
		return err
	}
	defer stopHTTP()

	select {
	case <-ctx.Done():
		r.log.Info("stopping: unmounting", "mountpoint", mountpoint)
	case <-unmounted:
		r.log.Info("unmounted from outside; stopping")
	case <-tor.Done():
		return tor.Err()
	}
	// Unmount fails the reads still waiting, so no reader hangs on a piece
	// nobody has; then the swarm hears "stopped".
	stopHTTP()
	unmount()
	stopStatus()
	c.Close()
	if r.mf.keep != "" {
		if err := keepFiles(mi, filepath.Join(r.mf.cacheDir, mi.InfoHash.String()), sw.Bitfield(), r.mf.keep, r.log); err != nil {
			return fmt.Errorf("-keep: %w", err)
		}
	}
	return nil
}

// waitFor waits for ch, or for the torrent to fail (its error) or ctx.
func waitFor(ctx context.Context, t *client.Torrent, ch <-chan struct{}) error {
	select {
	case <-ch:
		return nil
	case <-t.Done():
		select {
		case <-ch: // done after getting there
			return nil
		default:
		}
		if err := t.Err(); err != nil {
			return err
		}
		return errors.New("the torrent stopped")
	case <-ctx.Done():
		return ctx.Err()
	}
}
