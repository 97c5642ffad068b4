package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
)

// errHelp: the user asked for a command's help (-h), which was printed on
// stdout: exit status 0.
var errHelp = errors.New("help requested")

// usageError is a command-line mistake, named in one line (exit status 2):
// a newcomer learns what to fix, not just the usage text.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// newFlags makes a command's FlagSet. It prints nothing itself: parseArgs
// turns -h into the help on stdout and a bad flag into a usageError.
func newFlags(name string) *flag.FlagSet {
	fl := flag.NewFlagSet(name, flag.ContinueOnError)
	fl.SetOutput(io.Discard)
	fl.Usage = func() {}
	return fl
}

// parseArgs parses a command's args with fl and checks its positional
// arguments: names are the required ones, in order; up to optional more
// may follow. -h anywhere prints the command's help on stdout (errHelp).
func parseArgs(fl *flag.FlagSet, args []string, stdout io.Writer, optional int, names ...string) error {
	err := fl.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		printHelp(fl, stdout)
		return errHelp
	case err != nil:
		return &usageError{err.Error()}
	}
	pos := fl.Args()
	// After "--" everything is an argument, even "-x".
	dashdash := len(args) > len(pos) && args[len(args)-len(pos)-1] == "--"
	if !dashdash {
		for _, a := range pos {
			switch {
			case a == "-h" || a == "-help" || a == "--help":
				printHelp(fl, stdout)
				return errHelp
			case len(a) > 1 && a[0] == '-':
				// Go's flag package stops at the first argument.
				return usagef("flags must come before the arguments: %s", a)
			}
		}
	}
	switch {
	case len(pos) < len(names):
		return usagef("missing %s", strings.Join(names[len(pos):], " and "))
	case len(pos) > len(names)+optional:
		return usagef("too many arguments: %s", strings.Join(pos[len(names)+optional:], " "))
	}
	return nil
}

// printHelp writes a command's usage line, what it does, and its flags.
func printHelp(fl *flag.FlagSet, w io.Writer) {
	c := lookup(fl.Name())
	fmt.Fprintf(w, "usage: btfs %s %s\n\n%s.\n", c.name, c.args, c.summary)
	if c.help != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.help))
	}
	n := 0
	fl.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintln(w, "\nflags:")
		fl.SetOutput(w)
		fl.PrintDefaults()
		fl.SetOutput(io.Discard)
	}
}

// looksLikeSource reports whether arg names a torrent as the commands take
// it: a magnet link, an http(s) URL or a .torrent file. It tells
// johang/btfs's syntax (btfs X.torrent MNT) from a mistyped command, and
// swapped arguments from right ones.
func looksLikeSource(arg string) bool {
	lower := strings.ToLower(arg)
	for _, p := range []string{"magnet:", "http://", "https://"} {
		if strings.HasPrefix(lower, p) {
			return true
		}
	}
	return strings.HasSuffix(lower, ".torrent")
}

// checkOrder catches `btfs CMD DIR X.torrent`: the first argument is an
// existing directory (never a torrent) and the second names a torrent.
func checkOrder(cmd, src, dir string) error {
	if fi, err := os.Stat(src); err == nil && fi.IsDir() && looksLikeSource(dir) {
		return usagef("the arguments are swapped: the torrent comes first (btfs %s %s %s)", cmd, dir, src)
	}
	return nil
}

// versionText is `btfs version`: the module's version and the VCS
// revision the binary was built from, as the Go toolchain stamped them.
func versionText(bi *debug.BuildInfo, ok bool) string {
	if !ok {
		return fmt.Sprintf("btfs (no build information) %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "btfs %s\n", v)
	set := map[string]string{}
	for _, s := range bi.Settings {
		set[s.Key] = s.Value
	}
	if rev := set["vcs.revision"]; rev != "" {
		fmt.Fprintf(&b, "revision %s", rev)
		var extra []string
		if t := set["vcs.time"]; t != "" {
			extra = append(extra, t)
		}
		if set["vcs.modified"] == "true" {
			extra = append(extra, "with uncommitted changes")
		}
		if len(extra) > 0 {
			fmt.Fprintf(&b, " (%s)", strings.Join(extra, ", "))
		}
		b.WriteByte('\n')
	} else {
		b.WriteString("revision unknown (built without version control information)\n")
	}
	goos, goarch := set["GOOS"], set["GOARCH"]
	if goos == "" {
		goos, goarch = runtime.GOOS, runtime.GOARCH
	}
	fmt.Fprintf(&b, "%s %s/%s\n", bi.GoVersion, goos, goarch)
	return b.String()
}
