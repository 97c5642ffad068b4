package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
	"time"

	"btfs/internal/swarmtest"
)

// TestCommandLine runs the command line a newcomer types, mistakes
// included, without mounting: each mistake must be named in the first
// line, -h must print the usage once and exit 0.
func TestCommandLine(t *testing.T) {
	dir := t.TempDir()
	torrent, _ := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Name: "x.bin", Size: 100 << 10, Seed: 12})
	empty := filepath.Join(dir, "empty")
	full := filepath.Join(dir, "full")
	for _, d := range []string{empty, full} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(full, "mine.txt"), []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	magnet := "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567"
	// A mount that must fail before mounting: loopback only, no DHT, its
	// own cache.
	mount := func(args ...string) []string {
		return append([]string{"mount", "-no-dht", "-no-trackers", "-listen", "127.0.0.1:0", "-cache-dir", filepath.Join(dir, "cache")}, args...)
	}

	tests := []struct {
		name string
		args []string
		code int
		// first is what the first line of stderr (stdout for exit 0)
		// contains.
		first string
	}{
		{"no arguments", nil, 2, "btfs: a BitTorrent client"},
		{"help", []string{"help"}, 0, "btfs: a BitTorrent client"},
		{"help mount", []string{"help", "mount"}, 0, "usage: btfs mount"},
		{"unknown command", []string{"nope"}, 2, `unknown command "nope"`},

		{"mount -h", []string{"mount", "-h"}, 0, "usage: btfs mount"},
		{"mount --help", []string{"mount", "--help"}, 0, "usage: btfs mount"},
		{"mount args -h", []string{"mount", torrent, empty, "-h"}, 0, "usage: btfs mount"},
		{"demo -h", []string{"demo", "-h"}, 0, "usage: btfs demo"},
		{"get -h", []string{"get", "-h"}, 0, "usage: btfs get"},
		{"seed -h", []string{"seed", "-h"}, 0, "usage: btfs seed"},
		{"info -h", []string{"info", "-h"}, 0, "usage: btfs info"},
		{"create -h", []string{"create", "-h"}, 0, "usage: btfs create"},
		{"version -h", []string{"version", "-h"}, 0, "usage: btfs version"},

		{"version", []string{"version"}, 0, "btfs "},
		{"--version", []string{"--version"}, 0, "btfs "},
		{"-version", []string{"-version"}, 0, "btfs "},

		{"mount, nothing", []string{"mount"}, 2, "btfs mount: missing TORRENT and MOUNTPOINT"},
		{"mount, no mount point", []string{"mount", torrent}, 2, "btfs mount: missing MOUNTPOINT"},
		{"mount, too many", []string{"mount", torrent, empty, "extra"}, 2, "btfs mount: too many arguments: extra"},
		{"mount, flag last", []string{"mount", torrent, empty, "-no-dht"}, 2, "btfs mount: flags must come before the arguments: -no-dht"},
		{"mount, flag between", []string{"mount", torrent, "-no-dht", empty}, 2, "btfs mount: flags must come before the arguments: -no-dht"},
		{"mount, unknown flag", []string{"mount", "-bogus", torrent, empty}, 2, "btfs mount: flag provided but not defined: -bogus"},
		{"mount, swapped", []string{"mount", empty, torrent}, 2, "btfs mount: the arguments are swapped: the torrent comes first (btfs mount " + torrent + " " + empty + ")"},
		{"mount, swapped magnet", []string{"mount", empty, magnet}, 2, "the arguments are swapped"},
		{"mount, swapped URL", []string{"mount", empty, "http://127.0.0.1:1/x.torrent"}, 2, "the arguments are swapped"},
		{"mount, non-empty", mount(torrent, full), 1, "btfs mount: mount point " + full + " is not empty"},
		{"mount, missing mount point", mount(torrent, filepath.Join(dir, "nope")), 1, "does not exist"},
		{"johang/btfs syntax", []string{filepath.Join(dir, "missing.torrent"), empty}, 1, "btfs mount: metainfo: open " + filepath.Join(dir, "missing.torrent")},
		{"johang/btfs syntax, flags first", []string{"--browse-only", filepath.Join(dir, "missing.torrent"), empty}, 1, "btfs mount: metainfo: open " + filepath.Join(dir, "missing.torrent")},
		{"johang/btfs syntax, unknown flag", []string{"-o", "allow_other", filepath.Join(dir, "missing.torrent"), empty}, 2, `unknown command "-o"`},
		{"johang/btfs syntax, magnet", []string{"magnet:?xt=urn:btih:nothex", empty}, 1, "btfs mount: "},

		{"get, swapped", []string{"get", empty, torrent}, 2, "btfs get: the arguments are swapped"},
		{"get, flag last", []string{"get", torrent, empty, "-seed"}, 2, "btfs get: flags must come before the arguments: -seed"},
		{"seed, missing dir", []string{"seed", torrent}, 2, "btfs seed: missing DIR"},
		{"info, nothing", []string{"info"}, 2, "btfs info: missing TORRENT"},
		{"info, missing file", []string{"info", "/does/not/exist.torrent"}, 1, "no such file"},
		{"create, no -o", []string{"create", full}, 2, "btfs create: missing -o X.torrent"},
		{"create, nothing", []string{"create", "-o", filepath.Join(dir, "y.torrent")}, 2, "btfs create: missing PATH"},
		{"demo, too many", []string{"demo", "a", "b"}, 2, "btfs demo: too many arguments: b"},
		{"demo, bad rate", []string{"demo", "-max-download-rate", "fast"}, 2, `btfs demo: -max-download-rate "fast"`},
		{"demo, bad length", []string{"demo", "-video-seconds", "0"}, 2, "btfs demo: -video-seconds 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var so, se bytes.Buffer
			code := run(tc.args, &so, &se)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stdout %q; stderr %q", code, tc.code, so.String(), se.String())
			}
			out := se.String()
			if code == 0 {
				out = so.String()
				if se.Len() > 0 {
					t.Errorf("stderr %q, want nothing", se.String())
				}
			}
			first, _, _ := strings.Cut(out, "\n")
			if !strings.Contains(first, tc.first) {
				t.Errorf("first line %q lacks %q; all:\n%s", first, tc.first, out)
			}
			if all := so.String() + se.String(); strings.Count(all, "usage: btfs") > 1 {
				t.Errorf("the usage is printed %d times:\n%s", strings.Count(all, "usage: btfs"), all)
			}
		})
	}
	if b, err := os.ReadFile(filepath.Join(full, "mine.txt")); err != nil || string(b) != "hi" {
		t.Errorf("the non-empty mount point's file: %q, %v", b, err)
	}
}

// TestHelpListsEveryFlag checks that `btfs COMMAND -h` documents each flag
// of the command's FlagSet.
func TestHelpListsEveryFlag(t *testing.T) {
	for _, c := range commands {
		var so, se bytes.Buffer
		if code := run([]string{c.name, "-h"}, &so, &se); code != 0 {
			t.Fatalf("%s -h: exit %d", c.name, code)
		}
		fl := newFlags(c.name)
		switch c.name {
		case "mount":
			new(swarmFlags).register(fl)
			new(mountFlags).register(fl)
		case "get", "seed":
			new(swarmFlags).register(fl)
		}
		fl.VisitAll(func(f *flag.Flag) {
			if !strings.Contains(so.String(), "\n  -"+f.Name) {
				t.Errorf("btfs %s -h does not list -%s", c.name, f.Name)
			}
		})
	}
}

func TestVersionText(t *testing.T) {
	bi := func(v string, settings ...string) *debug.BuildInfo {
		b := &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: "btfs", Version: v}}
		for i := 0; i+1 < len(settings); i += 2 {
			b.Settings = append(b.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
		}
		return b
	}
	tests := []struct {
		name string
		bi   *debug.BuildInfo
		want []string
	}{
		{"clean", bi("v0.0.0-20261206023539-22d5ede5e0a1", "vcs.revision", "22d5ede5e0a1aaaa", "vcs.time", "2026-12-06T02:35:39Z", "vcs.modified", "false", "GOOS", "linux", "GOARCH", "arm64"),
			[]string{"btfs v0.0.0-20261206023539-22d5ede5e0a1\n", "revision 22d5ede5e0a1aaaa (2026-12-06T02:35:39Z)\n", "go1.26.0 linux/arm64\n"}},
		{"modified", bi("v1.2.3+dirty", "vcs.revision", "abc", "vcs.modified", "true"),
			[]string{"btfs v1.2.3+dirty\n", "revision abc (with uncommitted changes)\n"}},
		{"no vcs", bi("(devel)"), []string{"btfs (devel)\n", "revision unknown"}},
		{"empty version", bi(""), []string{"btfs (devel)\n"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := versionText(tc.bi, true)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("versionText = %q, lacks %q", got, w)
				}
			}
		})
	}
	if got := versionText(nil, false); !strings.HasPrefix(got, "btfs (no build information)") {
		t.Errorf("without build info: %q", got)
	}
}

func TestDiagnoseMount(t *testing.T) {
	ok := fuseFacts{fusermount: "/usr/bin/fusermount3", fusermountSetuid: true, userAllowOther: true, devFuseMode: "mode 0666"}
	with := func(f func(*fuseFacts)) fuseFacts { c := ok; f(&c); return c }
	tests := []struct {
		name       string
		facts      fuseFacts
		allowOther bool
		want       string // "" : nothing to explain
	}{
		{"all fine", ok, true, ""},
		{"no /dev/fuse", with(func(f *fuseFacts) { f.devFuse = os.ErrNotExist }), false, "/dev/fuse does not exist"},
		{"no /dev/fuse, root", with(func(f *fuseFacts) { f.root = true; f.devFuse = os.ErrNotExist }), false, "/dev/fuse does not exist"},
		{"root, allow-other", with(func(f *fuseFacts) { f.root = true; f.userAllowOther = false }), true, ""},
		{"/dev/fuse not ours", with(func(f *fuseFacts) { f.devFuse = syscall.EACCES; f.devFuseMode = "mode 0600, owner 0:0" }), false, "no permission to use /dev/fuse (mode 0600, owner 0:0)"},
		{"no fusermount3", with(func(f *fuseFacts) { f.fusermount = "" }), false, "fusermount3 is not installed"},
		{"fusermount3 not setuid", with(func(f *fuseFacts) { f.fusermountSetuid = false }), false, "/usr/bin/fusermount3 is not setuid root"},
		{"allow-other, no user_allow_other", with(func(f *fuseFacts) { f.userAllowOther = false }), true, "-allow-other needs user_allow_other in /etc/fuse.conf"},
		{"no user_allow_other, not asked", with(func(f *fuseFacts) { f.userAllowOther = false }), false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := diagnoseMount(tc.facts, tc.allowOther)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("diagnoseMount = %q, want %q", got, tc.want)
			}
		})
	}
	for conf, want := range map[string]bool{
		"user_allow_other\n":                       true,
		"# mount_max = 1000\n  user_allow_other  ": true,
		"#user_allow_other\n":                      false,
		"mount_max = 10\n":                         false,
		"":                                         false,
	} {
		if got := hasUserAllowOther(strings.NewReader(conf)); got != want {
			t.Errorf("hasUserAllowOther(%q) = %v", conf, got)
		}
	}
}

// TestNonRootMountSaysWhy mounts as the user nobody, in a mount namespace
// of its own where /dev/fuse and /etc/fuse.conf are what each case needs
// (bind mounts: the machine's own are not touched), and checks that the
// failure names the cause instead of fusermount's exit status.
func TestNonRootMountSaysWhy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make the namespace")
	}
	swarmtest.Require(t, "fusermount3", "unshare", "setpriv", "mknod")
	if _, err := os.Stat(fuseConf); err != nil {
		t.Skipf("no %s to bind over: %v", fuseConf, err)
	}
	// Everything nobody needs: the binary, a torrent, an owned mount point.
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} { // t.TempDir's are 0700
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "btfs")
	if data, err := os.ReadFile(btfsBin); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	torrent, _ := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Name: "x.bin", Size: 100 << 10, Seed: 13})
	home := filepath.Join(dir, "home")
	mp := filepath.Join(dir, "mnt")
	for _, d := range []string{home, mp} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { unmountAll(t, mp) })

	tests := []struct {
		name       string
		devMode    string // of the /dev/fuse node bound over the real one
		conf       string // the fuse.conf bound over the real one
		allowOther bool
		want       string
	}{
		{"/dev/fuse for root only", "0600", "user_allow_other\n", false, "no permission to use /dev/fuse (mode 0600, owner 0:0)"},
		{"-allow-other without user_allow_other", "0666", "# mount_max = 1000\n", true, "-allow-other needs user_allow_other in /etc/fuse.conf"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			node := filepath.Join(dir, fmt.Sprintf("fuse%d", i))
			conf := filepath.Join(dir, fmt.Sprintf("fuse%d.conf", i))
			if err := os.WriteFile(conf, []byte(tc.conf), 0o644); err != nil {
				t.Fatal(err)
			}
			args := []string{"mount", "-no-dht", "-no-trackers", "-listen", "127.0.0.1:0"}
			if tc.allowOther {
				args = append(args, "-allow-other")
			}
			args = append(args, torrent, mp)
			script := fmt.Sprintf(`set -e
mknod -m %s %s c 10 229
mount --bind %s /dev/fuse
mount --bind %s %s
exec setpriv --reuid=65534 --regid=65534 --clear-groups env HOME=%s "$@"`, tc.devMode, node, node, conf, fuseConf, home)
			cmd := exec.Command("unshare", append([]string{"-m", "--propagation", "private", "--", "bash", "-c", script, "bash", bin}, args...)...)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			done := make(chan error, 1)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { done <- cmd.Wait() }()
			var err error
			select {
			case err = <-done:
			case <-time.After(60 * time.Second):
				cmd.Process.Kill()
				<-done
				t.Fatalf("btfs as nobody still runs after 60 s:\n%s", out.String())
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("exit: %v, want status 1\n%s", err, out.String())
			}
			if !strings.Contains(out.String(), "btfs mount: cannot mount: "+tc.want) {
				t.Errorf("the output does not say %q:\n%s", tc.want, out.String())
			}
			if strings.Contains(out.String(), "exited with code") {
				t.Errorf("the output still gives a raw wait status:\n%s", out.String())
			}
			if isMounted(mp) {
				t.Error("a failed mount left a mount behind")
			}
		})
	}
}

// TestMountNonEmpty mounts over a directory with a file in it when asked
// (-nonempty): the file is hidden while mounted and there again after.
func TestMountNonEmpty(t *testing.T) {
	swarmtest.Require(t, "fusermount3")
	torrent, mi := swarmtest.MakeTorrent(t, t.TempDir(), swarmtest.TorrentOptions{Name: "x.bin", Size: 100 << 10, Seed: 14})
	mp := mountpoint(t)
	mine := filepath.Join(mp, "mine.txt")
	if err := os.WriteFile(mine, []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startBtfs(t, mountArgs(t, "-no-trackers", "-nonempty", torrent, mp)...)
	waitMounted(t, p, mp)
	if _, err := os.Stat(filepath.Join(mp, mi.Info.Name)); err != nil {
		t.Fatalf("the torrent's file: %v", err)
	}
	if _, err := os.Stat(mine); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the directory's own file is visible through the mount: %v", err)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(t, 20*time.Second); err != nil {
		t.Fatalf("exit: %v", err)
	}
	if b, err := os.ReadFile(mine); err != nil || string(b) != "hi" {
		t.Errorf("after the unmount: %q, %v", b, err)
	}
}

// TestREADMEListsEveryFlag: every flag of every command is in the README,
// where a newcomer looks first.
func TestREADMEListsEveryFlag(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range commands {
		var so, se bytes.Buffer
		if code := run([]string{c.name, "-h"}, &so, &se); code != 0 {
			t.Fatalf("%s -h: exit %d", c.name, code)
		}
		for _, line := range strings.Split(so.String(), "\n") {
			name, ok := strings.CutPrefix(line, "  -")
			if !ok {
				continue
			}
			name, _, _ = strings.Cut(name, " ")
			if !bytes.Contains(readme, []byte("`-"+name)) {
				t.Errorf("README.md does not document btfs %s -%s", c.name, name)
			}
		}
	}
}
