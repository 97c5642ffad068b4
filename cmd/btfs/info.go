package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"btfs/metainfo"
)

func runInfo(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fl := newFlags("info")
	if err := parseArgs(fl, args, stdout, 0, "TORRENT"); err != nil {
		return err
	}
	mi, err := metainfo.Load(fl.Arg(0))
	if err != nil {
		return err
	}
	printInfo(stdout, mi)
	return nil
}

func printInfo(w io.Writer, mi *metainfo.MetaInfo) {
	info := mi.Info
	fmt.Fprintf(w, "name:         %s\n", info.Name)
	fmt.Fprintf(w, "info-hash:    %s\n", mi.InfoHash)
	fmt.Fprintf(w, "version:      %s\n", info.Version())
	fmt.Fprintf(w, "size:         %s (%d bytes)\n", humanize.IBytes(uint64(info.TotalLength)), info.TotalLength)
	fmt.Fprintf(w, "pieces:       %d × %s\n", info.NumPieces(), humanize.IBytes(uint64(info.PieceLength)))
	if info.Private {
		fmt.Fprintf(w, "private:      yes (no DHT, no PEX)\n")
	}
	if !mi.CreationDate.IsZero() {
		fmt.Fprintf(w, "created:      %s\n", mi.CreationDate.UTC().Format(time.RFC3339))
	}
	if mi.CreatedBy != "" {
		fmt.Fprintf(w, "created by:   %s\n", mi.CreatedBy)
	}
	if mi.Comment != "" {
		fmt.Fprintf(w, "comment:      %s\n", mi.Comment)
	}
	for i, tier := range mi.Trackers() {
		fmt.Fprintf(w, "tracker tier %d: %s\n", i, strings.Join(tier, " "))
	}
	for _, u := range mi.URLList {
		fmt.Fprintf(w, "web seed:     %s\n", u)
	}
	files := 0
	for _, f := range info.Files {
		if !f.Padding {
			files++
		}
	}
	fmt.Fprintf(w, "files:        %d\n", files)
	for _, f := range info.Files {
		if f.Padding {
			continue
		}
		name := info.Name
		if info.MultiFile {
			name = path.Join(append([]string{info.Name}, f.Path...)...)
		}
		fmt.Fprintf(w, "  %10s  %s\n", humanize.IBytes(uint64(f.Length)), name)
	}
}

func runCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := newFlags("create")
	out := fl.String("o", "", "write the torrent to this `file` (required)")
	var trackers multiFlag
	fl.Var(&trackers, "t", "tracker announce `URL` (repeat for more; each is its own tier)")
	var webSeeds multiFlag
	fl.Var(&webSeeds, "w", "web seed `URL` (BEP 19 url-list; repeatable)")
	pieceLen := fl.String("piece-length", "", "piece `size` such as 256KiB or 1MiB (default: chosen for ~1500 pieces)")
	private := fl.Bool("private", false, "set the private flag (BEP 27)")
	comment := fl.String("comment", "", "comment `text`")
	name := fl.String("name", "", "torrent `name` (default: the base name of PATH)")
	// Accept flags after PATH too ("btfs create dir -o x.torrent"): the
	// synopsis puts -o last.
	var paths []string
	for rest := args; ; {
		err := fl.Parse(rest)
		if errors.Is(err, flag.ErrHelp) {
			printHelp(fl, stdout)
			return errHelp
		} else if err != nil {
			return &usageError{err.Error()}
		}
		if fl.NArg() == 0 {
			break
		}
		paths = append(paths, fl.Arg(0))
		rest = fl.Args()[1:]
	}
	switch {
	case len(paths) == 0:
		return usagef("missing PATH")
	case len(paths) > 1:
		return usagef("too many arguments: %s", strings.Join(paths[1:], " "))
	case *out == "":
		return usagef("missing -o X.torrent")
	}
	opt := metainfo.BuildOptions{
		Private:      *private,
		Comment:      *comment,
		CreatedBy:    "btfs",
		CreationDate: time.Now(),
		Name:         *name,
		WebSeeds:     webSeeds,
	}
	for _, t := range trackers {
		opt.AnnounceList = append(opt.AnnounceList, []string{t})
	}
	if *pieceLen != "" {
		n, err := humanize.ParseBytes(*pieceLen)
		if err != nil {
			return fmt.Errorf("-piece-length: %w", err)
		}
		opt.PieceLength = int64(n)
	}
	data, err := metainfo.Build(ctx, paths[0], opt)
	if err != nil {
		return err
	}
	mi, err := metainfo.Parse(data)
	if err != nil {
		return fmt.Errorf("the torrent just built does not parse: %w", err)
	}
	if _, err := os.Stat(*out); err == nil {
		return fmt.Errorf("%s exists; not overwriting", *out)
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.WriteFile(*out, data, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %s, %d pieces, info-hash %s\n", *out,
		humanize.IBytes(uint64(mi.Info.TotalLength)), mi.Info.NumPieces(), mi.InfoHash)
	return nil
}

// multiFlag collects a repeated flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
