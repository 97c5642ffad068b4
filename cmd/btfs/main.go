// Command btfs mounts a torrent as a read-only directory and streams it;
// it also downloads, seeds, inspects and creates torrents.
//
//	btfs mount  [flags] TORRENT MOUNTPOINT
//	btfs demo   [MOUNTPOINT]
//	btfs get    [flags] TORRENT DIR
//	btfs seed   [flags] TORRENT DIR
//	btfs info   TORRENT
//	btfs create [flags] PATH -o X.torrent
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
)

// command is one subcommand.
type command struct {
	name  string
	usage string
	run   func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands []command

func init() {
	commands = []command{
		{"mount", "mount [flags] TORRENT MOUNTPOINT     mount a torrent read-only and stream it", runMount},
		{"demo", "demo [MOUNTPOINT]                  seed a sample on loopback and mount it", runDemo},
		{"info", "info TORRENT                       show a torrent's name, files, pieces, trackers", runInfo},
		{"create", "create [flags] PATH -o X.torrent    make a torrent of a file or directory", runCreate},
		{"get", "get [flags] TORRENT DIR             download every file into DIR (no FUSE)", runGet},
		{"seed", "seed [flags] TORRENT DIR            seed the files found in DIR", runSeed},
	}
}

// errUsage marks a command-line mistake: exit status 2.
var errUsage = errors.New("usage")

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		ctx, stop := signalContext(stderr)
		defer stop()
		err := c.run(ctx, args[1:], stdout, stderr)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, errUsage):
			return 2
		case errors.Is(err, context.Canceled) && ctx.Err() != nil:
			return 0 // interrupted by the user: a normal way to stop seeding
		default:
			fmt.Fprintf(stderr, "btfs %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "btfs: unknown command %q\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "btfs: a BitTorrent client that mounts torrents and streams them")
	fmt.Fprintln(w, "\nusage:")
	for _, c := range commands {
		fmt.Fprintf(w, "  btfs %s\n", c.usage)
	}
	fmt.Fprintln(w, "\nRun 'btfs COMMAND -h' for a command's flags.")
}
