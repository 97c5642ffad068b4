package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"btfs/engine"
	"btfs/picker"
	"btfs/storagewrapper"
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
func swarm(ctx context.Context, sf swarmFlags, src, dir string, readOnly, keepSeeding bool, stdout, stderr io.Writer) error {
	log, closeLog, err := sf.logger(stderr)
	if err != nil {
		return err
	}
	defer closeLog()
	source, err := loadSource(ctx, src)
	if err != nil {
		return err
	}
	cfg, err := sf.engineConfig(log, picker.FetchAll)
	if err != nil {
		return err
	}
	closeSwarm, err := sf.join(ctx, &cfg, source.mi != nil && source.mi.Info.Private, filepath.Join(defaultCacheDir(), dhtStateName), log)
	if err != nil {
		return err
	}
	defer closeSwarm()
	mi := source.mi
	var (
		t           *engine.Torrent
		stopStatus  func()
		giveStorage func(*storagewrapper.Wrapper, picker.Mode)
	)
	if mi == nil {
		if t, stopStatus, giveStorage, err = startMagnet(ctx, source.magnet, cfg, log, stderr, sf.quiet); err != nil {
			return err
		}
		defer t.Close()
		defer stopStatus()
		if mi, err = t.Info(ctx); err != nil {
			return fmt.Errorf("fetching the metadata of %s: %w", source.name(), err)
		}
	}
	if !readOnly {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	store, err := storagewrapper.NewFileStore(dir, mi.Info, readOnly)
	if err != nil {
		return err
	}
	sw, err := openWrapper(ctx, mi, store, log)
	if err != nil {
		return err
	}
	defer sw.Close()
	if readOnly && sw.Stats().VerifiedPieces == 0 {
		return fmt.Errorf("nothing to seed: no piece of %s verifies under %s", mi.Info.Name, dir)
	}
	start := time.Now()
	if t == nil {
		if t, stopStatus, err = startTorrent(ctx, mi, sw, cfg, log, stderr, sf.quiet); err != nil {
			return err
		}
	} else {
		giveStorage(sw, picker.FetchAll) // the magnet's engine goes on with its peers
	}
	defer t.Close() // before sw.Close
	defer stopStatus()

	select {
	case <-t.Complete():
		if !readOnly {
			st, _ := t.Stats(ctx)
			el := time.Since(start)
			fmt.Fprintf(stdout, "%s: complete, %d bytes in %s (%.1f MB/s)\n", mi.Info.Name, st.Downloaded,
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
		return engine.ErrClosed
	}
}
