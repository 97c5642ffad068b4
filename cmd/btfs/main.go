// Command btfs mounts a torrent as a read-only directory and streams it;
// it also downloads, seeds, inspects and creates torrents.
//
//	btfs mount  [flags] TORRENT MOUNTPOINT
//	btfs mount  [flags] MOUNTPOINT          (a library)
//	btfs add    MOUNTPOINT TORRENT
//	btfs rm     MOUNTPOINT NAME|INFOHASH
//	btfs ls     MOUNTPOINT
//	btfs demo   [flags] [MOUNTPOINT]
//	btfs get    [flags] TORRENT DIR
//	btfs seed   [flags] TORRENT DIR
//	btfs info   TORRENT
//	btfs create [flags] PATH -o X.torrent
//	btfs version
//
// `btfs X.torrent MOUNTPOINT` (johang/btfs's syntax) is `btfs mount`.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
)

// command is one subcommand.
type command struct {
	name string
	// args is the synopsis after the name; summary says what it does in
	// a line, help (optional) more.
	args, summary, help string
	run                 func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands []command

func init() {
	commands = []command{
		{name: "mount", args: "[flags] [TORRENT|URL|MAGNET] MOUNTPOINT", summary: "mount a torrent read-only and stream it; without TORRENT, a library", help: mountHelp, run: runMount},
		{name: "add", args: "MOUNTPOINT TORRENT|URL|MAGNET", summary: "add a torrent to the library mounted at MOUNTPOINT", run: runAdd},
		{name: "rm", args: "MOUNTPOINT NAME|INFOHASH", summary: "remove a torrent from a library (its cache stays)", run: runRm},
		{name: "ls", args: "MOUNTPOINT", summary: "list a library's torrents: size, done, rates, peers", run: runLs},
		{name: "demo", args: "[flags] [MOUNTPOINT]", summary: "seed a sample on loopback and mount it", help: demoHelp, run: runDemo},
		{name: "info", args: "TORRENT", summary: "show a torrent's name, files, pieces, trackers", run: runInfo},
		{name: "create", args: "[flags] PATH -o X.torrent", summary: "make a torrent of a file or directory", run: runCreate},
		{name: "get", args: "[flags] TORRENT|URL|MAGNET DIR", summary: "download every file into DIR (no FUSE)", run: runGet},
		{name: "seed", args: "[flags] TORRENT|URL|MAGNET DIR", summary: "seed the files found in DIR", run: runSeed},
		{name: "version", args: "", summary: "print btfs's version and the revision it was built from", run: runVersion},
	}
}

// lookup returns the command called name; nil if there is none.
func lookup(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		if len(args) > 1 && lookup(args[1]) != nil { // btfs help mount
			return run([]string{args[1], "-h"}, stdout, stderr)
		}
		usage(stdout)
		return 0
	case "-version", "--version":
		args = []string{"version"}
	}
	c := lookup(args[0])
	if c == nil {
		if !johangSyntax(args) {
			fmt.Fprintf(stderr, "btfs: unknown command %q\n", args[0])
			usage(stderr)
			return 2
		}
		c, args = lookup("mount"), append([]string{"mount"}, args...)
	}
	ctx, stop := signalContext(stderr)
	defer stop()
	err := c.run(ctx, args[1:], stdout, stderr)
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, errHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "btfs %s: %s\nusage: btfs %s %s\n", c.name, ue.msg, c.name, c.args)
		fmt.Fprintf(stderr, "Run 'btfs %s -h' for its flags.\n", c.name)
		return 2
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		return 0 // interrupted by the user: a normal way to stop seeding
	default:
		fmt.Fprintf(stderr, "btfs %s: %v\n", c.name, err)
		return 1
	}
}

// johangSyntax reports whether args are johang/btfs's command line, which
// its users type: `btfs [flags] X.torrent MNT`, a torrent where a command
// should be (after flags, which mount then parses: --browse-only is ours
// too).
func johangSyntax(args []string) bool {
	for _, a := range args {
		switch {
		case looksLikeSource(a):
			return true
		case !strings.HasPrefix(a, "-"):
			return false
		}
	}
	return false
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "btfs: a BitTorrent client that mounts torrents and streams them")
	fmt.Fprintln(w, "\nusage:")
	for _, c := range commands {
		fmt.Fprintf(w, "  btfs %-45s %s\n", c.name+" "+c.args, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'btfs COMMAND -h' for a command's flags.")
}

func runVersion(_ context.Context, args []string, stdout, _ io.Writer) error {
	if err := parseArgs(newFlags("version"), args, stdout, 0); err != nil {
		return err
	}
	bi, ok := debug.ReadBuildInfo()
	fmt.Fprint(stdout, versionText(bi, ok))
	return nil
}
