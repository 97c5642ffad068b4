package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"btfs/client"
	"btfs/engine"
	"btfs/picker"
)

// runGet downloads a whole torrent into DIR as ordinary files: the way to
// use btfs without FUSE, and the baseline for the mount's throughput.
func runGet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := newFlags("get")
	var sf swarmFlags
	sf.register(fl)
	seed := fl.Bool("seed", false, "keep seeding after the download completes, until interrupted")
	if err := parseArgs(fl, args, stdout, 0, "TORRENT", "DIR"); err != nil {
		return err
	}
	if err := checkOrder("get", fl.Arg(0), fl.Arg(1)); err != nil {
		return err
	}
	return swarm(ctx, sf, fl.Arg(0), fl.Arg(1), false, *seed, stdout, stderr)
}

// runSeed seeds the files found in DIR until interrupted.
func runSeed(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := newFlags("seed")
	var sf swarmFlags
	sf.register(fl)
	if err := parseArgs(fl, args, stdout, 0, "TORRENT", "DIR"); err != nil {
		return err
	}
	if err := checkOrder("seed", fl.Arg(0), fl.Arg(1)); err != nil {
		return err
	}
	return swarm(ctx, sf, fl.Arg(0), fl.Arg(1), true, true, stdout, stderr)
}

// swarm joins the torrent's swarm with its files under dir: downloading
// what is missing (unless readOnly) and seeding what is there.
func swarm(ctx context.Context, sf swarmFlags, arg, dir string, readOnly, keepSeeding bool, stdout, stderr io.Writer) error {
	log, closeLog, err := sf.logger(stderr)
	if err != nil {
		return err
	}
	defer closeLog()
	src, err := loadSource(ctx, arg)
	if err != nil {
		return err
	}
	cfg, err := sf.clientConfig(log, picker.FetchAll, defaultCacheDir(), src.MetaInfo != nil && src.MetaInfo.Info.Private)
	if err != nil {
		return err
	}
	c, err := client.New(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	t, err := c.Add(ctx, src, client.AddOptions{FilesDir: dir, ReadOnly: readOnly})
	if err != nil {
		return err
	}
	stopStatus, statusOn := func() {}, false
	defer func() { stopStatus() }()
	if src.MetaInfo == nil {
		stopStatus, statusOn = metadataStatus(ctx, t, log, stderr, sf.quiet)
		if err := waitFor(ctx, t, t.Attached()); err != nil {
			return err
		}
	}
	if err := waitFor(ctx, t, t.Running()); err != nil {
		return err
	}
	start := time.Now()
	eng := t.Engine()
	if !statusOn {
		stopStatus = startStatus(ctx, eng, log, stderr, sf.quiet)
	}

	select {
	case <-eng.Complete():
		if !readOnly {
			st, _ := eng.Stats(ctx)
			el := time.Since(start)
			fmt.Fprintf(stdout, "%s: complete, %d bytes in %s (%.1f MB/s)\n", t.Name(), st.Downloaded,
				el.Round(time.Millisecond), float64(st.Downloaded)/el.Seconds()/1e6)
		}
		if !keepSeeding {
			return nil
		}
		<-ctx.Done()
		return ctx.Err()
	case <-ctx.Done():
		return ctx.Err()
	case <-t.Done():
		if err := t.Err(); err != nil {
			return err
		}
		return engine.ErrClosed
	}
}
