package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"btfs/control"
	"btfs/fs"
	"btfs/library"
	"btfs/metainfo"
)

// library mounts an empty library at mountpoint (or the one it had, from
// its state file in the cache directory), serves its control socket, and
// runs until ctx ends or the mount is unmounted from outside.
func (r *mountRun) library(ctx context.Context, mountpoint string) error {
	if r.mf.browseOnly || r.mf.keep != "" {
		return usagef("-browse-only and -keep are for a mount of one torrent")
	}
	if err := checkMountpoint(mountpoint, r.mf.nonEmpty); err != nil {
		return err
	}
	abs, err := filepath.Abs(mountpoint)
	if err != nil {
		return err
	}
	c, err := r.newClient(ctx, false, false)
	if err != nil {
		return err
	}
	defer c.Close()
	sock := control.SocketPath(abs)
	opts := r.fsOptions(nil)
	opts.Control = sock
	m, unmount, err := liveMounts.mount(func() (*fs.Mounted, error) { return fs.MountLibrary(mountpoint, opts) }, r.log)
	if err != nil {
		return explainMountError(err, r.mf.allowOther)
	}
	defer unmount()
	lib := library.New(library.Config{
		Client: c, Mount: m, CacheDir: r.mf.cacheDir,
		StatePath:   libraryStatePath(r.mf.cacheDir, abs),
		LoadTorrent: loadTorrent,
		Logger:      r.log,
	})
	defer lib.Close()
	srv, err := control.Listen(sock, lib.Handler(), r.log)
	if err != nil {
		return err
	}
	defer srv.Close()
	// The HTTP control endpoints go through the socket's handler: one
	// way to add, remove and list.
	stopHTTP, err := startHTTP(ctx, r.mf.http, c, libraryControl{h: lib.Handler(), c: c}, r.readers, r.log, r.stderr)
	if err != nil {
		return err
	}
	defer stopHTTP()
	unmounted := make(chan struct{})
	go func() { m.Wait(); close(unmounted) }()
	if err := lib.Restore(ctx); err != nil {
		r.log.Warn("library: not restored", "err", err)
	}
	if r.mf.watch != "" {
		lib.Watch(ctx, r.mf.watch)
	}
	fmt.Fprintf(r.stderr, "btfs: library mounted at %s (btfs add %s TORRENT)\n", mountpoint, mountpoint)
	statusCtx, stopStatus := context.WithCancel(ctx)
	statusDone := make(chan struct{})
	go func() {
		defer close(statusDone)
		libraryStatus(statusCtx, lib, r)
	}()
	defer func() { stopStatus(); <-statusDone }()
	select {
	case <-ctx.Done():
		r.log.Info("stopping: unmounting", "mountpoint", mountpoint)
	case <-unmounted:
		r.log.Info("unmounted from outside; stopping")
	}
	stopHTTP()
	srv.Close()
	lib.Close()
	unmount()
	return nil
}

// libraryStatus is a library's status line: its torrents together (done,
// rates, peers), redrawn every second on a terminal, logged every 10 s
// elsewhere (and only when something flows).
func libraryStatus(ctx context.Context, lib *library.Library, r *mountRun) {
	if r.sf.quiet {
		return
	}
	term := isTerminal(r.stderr)
	every := 10 * time.Second
	if term {
		every = time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if term {
				fmt.Fprintln(r.stderr)
			}
			return
		case <-tick.C:
		}
		es, err := lib.List(ctx)
		if err != nil {
			continue
		}
		var size, verified int64
		var down, up float64
		peers := 0
		for _, e := range es {
			size, verified, down, up, peers = size+e.Size, verified+e.Verified, down+e.Down, up+e.Up, peers+e.Peers
		}
		if term {
			fmt.Fprintf(r.stderr, "\r\033[K%d torrents  %s of %s  ↓ %s  ↑ %s  peers %d", len(es),
				fmtBytes(verified), fmtBytes(size), rateString(down), rateString(up), peers)
		} else if down+up > 0 {
			r.log.Info("library status", "torrents", len(es), "verified", verified, "size", size,
				"down", rateString(down), "up", rateString(up), "peers", peers)
		}
	}
}

// libraryStatePath is the state file of the library mounted at abs: one
// per mount point in the cache directory, so that two libraries sharing a
// cache keep their own lists.
func libraryStatePath(cacheDir, abs string) string {
	sum := sha256.Sum256([]byte(abs))
	return filepath.Join(cacheDir, "libraries", hex.EncodeToString(sum[:10])+".json")
}

// socketOf finds the control socket of the library mounted at mnt: the
// root's user.btfs.control, else where it would be by default.
func socketOf(mnt string) string {
	buf := make([]byte, 4096)
	if n, err := unix.Getxattr(mnt, fs.XattrControl, buf); err == nil && n > 0 {
		return string(buf[:n])
	}
	return control.SocketPath(mnt)
}

// controlTimeout bounds a command sent to a library.
const controlTimeout = 2 * time.Minute

func runAdd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := newFlags("add")
	if err := parseArgs(fl, args, stdout, 0, "MOUNTPOINT", "TORRENT"); err != nil {
		return err
	}
	req := control.Request{Op: "add"}
	arg := fl.Arg(1)
	if strings.HasPrefix(arg, "magnet:") || strings.HasPrefix(arg, "http://") || strings.HasPrefix(arg, "https://") {
		req.Source = arg
	} else {
		b, err := os.ReadFile(arg)
		if err != nil {
			return err
		}
		if _, err := metainfo.Parse(b); err != nil {
			return fmt.Errorf("%s: %w", arg, err)
		}
		req.Torrent = b
	}
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	es, err := control.Call(ctx, socketOf(fl.Arg(0)), req)
	if err != nil {
		return err
	}
	for _, e := range es {
		fmt.Fprintf(stdout, "added %s (%s)\n", e.Name, e.InfoHash)
	}
	return nil
}

func runRm(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := newFlags("rm")
	if err := parseArgs(fl, args, stdout, 0, "MOUNTPOINT", "NAME"); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	es, err := control.Call(ctx, socketOf(fl.Arg(0)), control.Request{Op: "rm", Name: fl.Arg(1)})
	if err != nil {
		return err
	}
	for _, e := range es {
		fmt.Fprintf(stdout, "removed %s (%s)\n", e.Name, e.InfoHash)
	}
	return nil
}

func runLs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := newFlags("ls")
	if err := parseArgs(fl, args, stdout, 0, "MOUNTPOINT"); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	resp, err := control.Do(ctx, socketOf(fl.Arg(0)), control.Request{Op: "ls"})
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSIZE\tDONE\tDOWN\tUP\tPEERS\tSTATE\tINFOHASH")
	for _, e := range resp.Entries {
		done := "-"
		if e.Size > 0 {
			done = fmt.Sprintf("%.1f%%", 100*float64(e.Verified)/float64(e.Size))
		}
		size := "?"
		if e.Size > 0 {
			size = fmtBytes(e.Size)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", e.Name, size, done, rateString(e.Down), rateString(e.Up), e.Peers, e.State, e.InfoHash)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d torrents; %d goroutines\n", len(resp.Entries), resp.Goroutines)
	return nil
}
