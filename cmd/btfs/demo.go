package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"btfs/client"
	"btfs/engine"
	"btfs/metainfo"
	"btfs/stream"
)

// defaultDemoRate is -max-download-rate's default for the demo: the rate
// that makes the whole sample take demoSeconds, slow enough to watch a
// player start before the download is done, and pieces arrive in the
// order the reads ask for them.
const (
	defaultDemoRate = "auto"
	demoSeconds     = 30
)

// demoHelp is `btfs demo -h`'s explanation.
const demoHelp = `
The demo needs no internet and no torrent: it makes a sample (a short 720p
video when ffmpeg is installed, and a few files of random bytes), seeds it
from this process on 127.0.0.1 and mounts it with an empty cache, as a
second client would, at MOUNTPOINT (default: a temporary directory). The
mounted client's download is capped so that the whole sample takes about
30 s: play the video while it streams. Ctrl-C unmounts and removes
everything the demo made.`

// runDemo is the README's "run" command: on a machine with no internet it
// makes a sample (a short real video when ffmpeg is installed, plus a few
// files), seeds it in this process on 127.0.0.1, mounts it as a second,
// empty client and waits for Ctrl-C. Everything is real: two BitTorrent
// peers talking over loopback, a FUSE mount, SHA-1 verification.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := newFlags("demo")
	rate := fl.String("max-download-rate", defaultDemoRate, "cap the mounted client's download `rate` in bytes/s, e.g. 2MB (auto: the whole sample in about 30 s, to watch it stream; 0: unlimited)")
	seconds := fl.Int("video-seconds", 30, "length of the sample video in `seconds` (made with ffmpeg when installed)")
	logLevel := fl.String("log-level", "warn", "log `level`: debug, info, warn, error")
	if err := parseArgs(fl, args, stdout, 1); err != nil {
		return err
	}
	if _, err := parseRate("-max-download-rate", *rate); err != nil && *rate != defaultDemoRate {
		return &usageError{err.Error()}
	}
	if *seconds < 1 {
		return usagef("-video-seconds %d: want at least 1", *seconds)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	work, err := os.MkdirTemp("", "btfs-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work) // after every deferred unmount below has run
	mountpoint := fl.Arg(0)
	if mountpoint == "" {
		mountpoint = filepath.Join(work, "mnt")
		if err := os.Mkdir(mountpoint, 0o755); err != nil {
			return err
		}
	}

	fmt.Fprintln(stderr, "btfs demo: making a sample torrent…")
	seedDir := filepath.Join(work, "seed")
	mi, err := makeSample(ctx, seedDir, *seconds, stderr)
	if err != nil {
		return err
	}

	// The seeder: a complete copy, in this process, on loopback: a
	// client of its own.
	seeder, err := client.New(ctx, client.Config{Logger: log.With("peer", "seeder"), Listen: "127.0.0.1:0", Trackers: [][]string{}})
	if err != nil {
		return err
	}
	defer seeder.Close()
	st, err := seeder.Add(ctx, client.Source{MetaInfo: mi}, client.AddOptions{FilesDir: seedDir, ReadOnly: true})
	if err != nil {
		return err
	}
	if err := waitFor(ctx, st, st.Running()); err != nil {
		return err
	}

	// The client: an empty cache, mounted.
	auto := *rate == defaultDemoRate
	if auto {
		*rate = fmt.Sprint(max(64<<10, mi.Info.TotalLength/demoSeconds))
	}
	shown := "with no cap"
	if n, err := parseRate("-max-download-rate", *rate); err != nil {
		return &usageError{err.Error()}
	} else if n > 0 {
		shown = "capped at " + rateString(float64(n))
		if auto {
			shown += fmt.Sprintf(" (the whole sample in about %d s)", demoSeconds)
		}
		shown += " so that you can watch it stream"
	}
	sf := swarmFlags{listen: "127.0.0.1:0", maxDown: *rate, noTrackers: true, noDHT: true, logLevel: *logLevel, maxPeers: engine.DefaultMaxPeers,
		peers: multiFlag{seeder.ListenAddr().String()}}
	mf := mountFlags{cacheDir: filepath.Join(work, "cache"), fetch: "all"}
	ready := func() {
		video := filepath.Join(mountpoint, "sample.mp4")
		fmt.Fprintf(stdout, `
btfs demo: %s (%d files, %s) is mounted at %s
A seeder on %s sends it to the mounted client, %s.
Try, in another terminal:
  ls -lR %s
  ffprobe %s                          # reads the index at the end first
  ffmpeg -ss %d -i %s -frames:v 1 -f null -   # seeks to the middle
  mpv %s
  getfattr -d %s                      # progress, piece map, info-hash
  cmp %s %s
Ctrl-C unmounts and cleans up.
`, mi.Info.Name, len(mi.Info.Files), fmtBytes(mi.Info.TotalLength), mountpoint, seeder.ListenAddr(), shown,
			mountpoint, video, *seconds/2, video, video, video,
			filepath.Join(mountpoint, "files", "random-1.bin"),
			filepath.Join(seedDir, mi.Info.Name, "files", "random-1.bin"))
	}
	r := &mountRun{sf: sf, mf: mf, log: log, stdout: stdout, stderr: stderr, readers: stream.NewRegistry()}
	return r.one(ctx, client.Source{MetaInfo: mi}, mountpoint, ready)
}

// makeSample writes the demo's content under dir/btfs-demo and returns its
// torrent.
func makeSample(ctx context.Context, dir string, seconds int, stderr io.Writer) (*metainfo.MetaInfo, error) {
	root := filepath.Join(dir, "btfs-demo")
	if err := os.MkdirAll(filepath.Join(root, "files"), 0o755); err != nil {
		return nil, err
	}
	readme := "This torrent was made by `btfs demo`. Its files are streamed from a seeder on 127.0.0.1.\n"
	if err := os.WriteFile(filepath.Join(root, "README.txt"), []byte(readme), 0o644); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i, size := range []int{3<<20 + 17, 1 << 20, 100 << 10} {
		b := make([]byte, size)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		if err := os.WriteFile(filepath.Join(root, "files", fmt.Sprintf("random-%d.bin", i+1)), b, 0o644); err != nil {
			return nil, err
		}
	}
	if _, err := exec.LookPath("ffmpeg"); err == nil {
		// A 720p H.264 MP4 with its moov atom at the end (no +faststart):
		// the hard case for streaming, as real downloads often are.
		cmd := exec.CommandContext(ctx, "ffmpeg", "-nostdin", "-loglevel", "error", "-y",
			"-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30", "-f", "lavfi", "-i", "sine=frequency=440",
			"-t", fmt.Sprint(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "2M", "-c:a", "aac",
			filepath.Join(root, "sample.mp4"))
		cmd.Stderr = stderr
		start := time.Now()
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("ffmpeg: %w", err)
		}
		fmt.Fprintf(stderr, "btfs demo: encoded a %d s sample video in %s\n", seconds, time.Since(start).Round(100*time.Millisecond))
	} else {
		fmt.Fprintln(stderr, "btfs demo: ffmpeg is not installed; the sample has no video")
	}
	data, err := metainfo.Build(ctx, root, metainfo.BuildOptions{PieceLength: 256 << 10, CreatedBy: "btfs demo", CreationDate: time.Now()})
	if err != nil {
		return nil, err
	}
	return metainfo.Parse(data)
}
