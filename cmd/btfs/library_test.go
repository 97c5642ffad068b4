package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"btfs/internal/poll"
	"btfs/internal/swarmtest"
)

// lib is a library mount run by a test: the btfs process, its mount
// point, cache and runtime directory (the control socket's).
type lib struct {
	p        *proc
	mp       string
	cacheDir string
	runDir   string
}

// runtimeDir makes an XDG_RUNTIME_DIR for a test (the control socket
// lives under it), removed after it. Every directory above it can be
// traversed by anyone (it is not under t.TempDir's 0700 directory), so
// that what keeps another user out is btfs's own directory and socket.
func runtimeDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "btfs-run-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// startLibrary mounts a library at mp with the given cache and runtime
// directories and extra flags, and waits until it serves.
func startLibrary(t *testing.T, mp, cacheDir, runDir string, extra ...string) *lib {
	t.Helper()
	args := append([]string{"mount", "-listen", "127.0.0.1:0", "-cache-dir", cacheDir, "-log-level", "debug"}, extra...)
	args = noPublicDHT(append(args, mp))
	cmd := exec.Command(btfsBin, args...)
	cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+runDir)
	p := startProc(t, cmd, args)
	poll.Until(t, time.Minute, "the library mount", func() bool {
		select {
		case <-p.waited:
			t.Fatalf("btfs exited: %v\n%s", p.err, p.out.String())
		default:
		}
		return isMounted(mp) && strings.Contains(p.out.String(), "library mounted at")
	})
	return &lib{p: p, mp: mp, cacheDir: cacheDir, runDir: runDir}
}

// btfs runs a btfs command against the library and returns its stdout.
func (l *lib) btfs(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(btfsBin, args...)
	cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+l.runDir)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("btfs %s: %w: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), err
}

// must is btfs that fails the test on error.
func (l *lib) must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := l.btfs(t, args...)
	if err != nil {
		t.Fatalf("%v\nserver:\n%s", err, l.p.out.String())
	}
	return out
}

// names lists the library's root.
func names(t *testing.T, mp string) []string {
	t.Helper()
	des, err := os.ReadDir(mp)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		out = append(out, de.Name())
	}
	return out
}

// inode is path's inode number.
func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestLibraryAddRemove: an empty library; a torrent added (btfs add)
// appears as a directory whose files read back right; a second torrent of
// the same name gets a suffix; `btfs ls` lists both; removing one while
// readers wait on its pieces fails their reads (EIO, never a hang), its
// directory disappears and its cache stays; the other reads on.
func TestLibraryAddRemove(t *testing.T) {
	s := startSwarm(t, swarmtest.TorrentOptions{Name: "movie.bin", Size: 6<<20 + 5, PieceLength: 64 << 10, Seed: 140}, true)
	// A second torrent with the same name, seeded too.
	dir2 := t.TempDir()
	path2, mi2 := swarmtest.MakeTorrent(t, dir2, swarmtest.TorrentOptions{Name: "movie.bin", Size: 1<<20 + 9, PieceLength: 32 << 10, Seed: 141})
	seeder2 := swarmtest.StartAria2Seeder(t, path2, dir2, "127.0.0.3")

	mp := mountpoint(t)
	cacheDir := t.TempDir()
	// Slow: the first torrent's pieces are still missing when it is removed.
	l := startLibrary(t, mp, cacheDir, runtimeDir(t), "-max-download-rate", "512KiB", "-peer", seeder2.Addr().String())
	if got := names(t, mp); len(got) != 0 {
		t.Fatalf("an empty library lists %v", got)
	}
	if out := l.must(t, "add", mp, s.torrentPath); !strings.Contains(out, "added movie.bin") {
		t.Fatalf("btfs add said %q", out)
	}
	if out := l.must(t, "add", mp, path2); !strings.Contains(out, "added movie.bin (2)") {
		t.Fatalf("btfs add of a second movie.bin said %q", out)
	}
	poll.Until(t, 10*time.Second, "two directories", func() bool { return len(names(t, l.mp)) == 2 })
	// The root's link count follows (find(1) trusts it).
	var st syscall.Stat_t
	if err := syscall.Stat(mp, &st); err != nil || st.Nlink != 4 {
		t.Errorf("the root's link count is %d with 2 torrents (%v), want 4", st.Nlink, err)
	}

	// The second reads back whole.
	got, err := os.ReadFile(filepath.Join(mp, "movie.bin (2)", "movie.bin"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(dir2, "movie.bin"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("movie.bin (2): %d bytes, %v: not the source", len(got), err)
	}
	ls := l.must(t, "ls", mp)
	for _, w := range []string{"movie.bin ", "movie.bin (2)", "100.0%", s.mi.InfoHash.String(), mi2.InfoHash.String(), "2 torrents"} {
		if !strings.Contains(ls, w) {
			t.Errorf("btfs ls lacks %q:\n%s", w, ls)
		}
	}

	// Readers of the first, at offsets far apart: most wait for pieces.
	path := filepath.Join(mp, "movie.bin", "movie.bin")
	size := s.mi.Info.TotalLength
	type result struct {
		n   int
		err error
	}
	const readers = 4
	results := make(chan result, readers)
	var wg sync.WaitGroup
	started := make(chan struct{}, readers)
	for i := range readers {
		wg.Go(func() {
			f, err := os.Open(path)
			if err != nil {
				results <- result{err: err}
				return
			}
			defer f.Close()
			buf := make([]byte, 256<<10)
			off := int64(i) * size / readers
			n := 0
			started <- struct{}{}
			for {
				k, err := f.ReadAt(buf, off)
				n += k
				if err != nil {
					results <- result{n, err}
					return
				}
				off = (off + int64(k)) % (size - int64(len(buf)))
			}
		})
	}
	for range readers {
		<-started
	}
	l.must(t, "rm", mp, "movie.bin")
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("readers of a removed torrent still wait 30 s after the removal")
	}
	close(results)
	for r := range results {
		if r.err == nil || errors.Is(r.err, io.EOF) || !(errors.Is(r.err, syscall.EIO) || errors.Is(r.err, syscall.ENODEV) || errors.Is(r.err, syscall.ENOENT)) {
			t.Errorf("a reader of the removed torrent ended with %v after %d bytes, want EIO", r.err, r.n)
		}
	}
	if got := names(t, mp); len(got) != 1 || got[0] != "movie.bin (2)" {
		t.Errorf("after rm the library lists %v", got)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the removed torrent's file: %v, want ENOENT", err)
	}
	if _, err := os.Stat(filepath.Join(cacheDir, s.mi.InfoHash.String())); err != nil {
		t.Errorf("the removed torrent's cache: %v", err)
	}
	// The other torrent is untouched; rm by info-hash works too.
	if _, err := os.ReadFile(filepath.Join(mp, "movie.bin (2)", "movie.bin")); err != nil {
		t.Fatal(err)
	}
	l.must(t, "rm", mp, mi2.InfoHash.String())
	poll.Until(t, 10*time.Second, "an empty library", func() bool { return len(names(t, l.mp)) == 0 })
	if _, err := l.btfs(t, "rm", mp, "nothing"); err == nil || !strings.Contains(err.Error(), "no torrent named") {
		t.Errorf("rm of an unknown name: %v", err)
	}
}

// TestLibraryRestart: a library mounted again with the same cache dir has
// the same torrents (a torrent and a magnet link, its metadata cached)
// under the same names, with the same inode numbers.
func TestLibraryRestart(t *testing.T) {
	s := startSwarm(t, swarmtest.TorrentOptions{Files: []swarmtest.FileSpec{{Path: "a/one.bin", Size: 70 << 10}, {Path: "two.bin", Size: 30 << 10}}, PieceLength: 16 << 10, Seed: 150}, true)
	dir2 := t.TempDir()
	path2, mi2 := swarmtest.MakeTorrent(t, dir2, swarmtest.TorrentOptions{Name: "other.bin", Size: 50 << 10, PieceLength: 16 << 10, Seed: 151})
	seeder2 := swarmtest.StartAria2Seeder(t, path2, dir2, "127.0.0.3")
	mp := mountpoint(t)
	cacheDir, runDir := t.TempDir(), runtimeDir(t)

	l := startLibrary(t, mp, cacheDir, runDir)
	l.must(t, "add", mp, s.torrentPath)
	l.must(t, "add", mp, magnetOf(mi2, nil, seeder2.Addr()))
	name1, name2 := s.mi.Info.Name, mi2.Info.Name // the magnet's dn
	files := []string{name1, filepath.Join(name1, "a"), filepath.Join(name1, "a", "one.bin"), filepath.Join(name1, "two.bin"), name2, filepath.Join(name2, "other.bin")}
	poll.UntilNil(t, time.Minute, "every file", func() error {
		for _, f := range files {
			if _, err := os.Stat(filepath.Join(mp, f)); err != nil {
				return err
			}
		}
		return nil
	})
	inos := map[string]uint64{}
	for _, f := range files {
		inos[f] = inode(t, filepath.Join(mp, f))
	}
	l.p.stop(t)
	unmountAll(t, mp)

	l = startLibrary(t, mp, cacheDir, runDir)
	poll.UntilNil(t, time.Minute, "every file again", func() error {
		for _, f := range files {
			if _, err := os.Stat(filepath.Join(mp, f)); err != nil {
				return err
			}
		}
		return nil
	})
	for _, f := range files {
		if got := inode(t, filepath.Join(mp, f)); got != inos[f] {
			t.Errorf("%s: inode %d after the restart, %d before", f, got, inos[f])
		}
	}
	got, err := os.ReadFile(filepath.Join(mp, name1, "two.bin"))
	if err != nil || !bytes.Equal(got, s.source(t, s.mi.Info.Files[1])) {
		t.Errorf("two.bin after the restart: %d bytes, %v", len(got), err)
	}
	if ls := l.must(t, "ls", mp); !strings.Contains(ls, "2 torrents") {
		t.Errorf("btfs ls after the restart:\n%s", ls)
	}
}

// TestLibraryWatch: -watch DIR adds the .torrent and .magnet files put
// there, leaves alone a file whose torrent `btfs rm` removed, and removes
// the torrent of a file deleted from it.
func TestLibraryWatch(t *testing.T) {
	s := startSwarm(t, swarmtest.TorrentOptions{Name: "watched.bin", Size: 200 << 10, PieceLength: 16 << 10, Seed: 160}, true)
	dir2 := t.TempDir()
	path2, mi2 := swarmtest.MakeTorrent(t, dir2, swarmtest.TorrentOptions{Name: "magnetic.bin", Size: 40 << 10, PieceLength: 16 << 10, Seed: 161})
	seeder2 := swarmtest.StartAria2Seeder(t, path2, dir2, "127.0.0.3")
	watch := t.TempDir()
	mp := mountpoint(t)
	l := startLibrary(t, mp, t.TempDir(), runtimeDir(t), "-watch", watch)

	raw, err := os.ReadFile(s.torrentPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(watch, "x.torrent"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(watch, "y.magnet"), []byte(magnetOf(mi2, nil, seeder2.Addr())+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	poll.UntilNil(t, time.Minute, "the watched torrents' files", func() error {
		for _, p := range []string{filepath.Join("watched.bin", "watched.bin"), filepath.Join("magnetic.bin", "magnetic.bin")} {
			if _, err := os.Stat(filepath.Join(l.mp, p)); err != nil {
				return err
			}
		}
		return nil
	})
	got, err := os.ReadFile(filepath.Join(mp, "magnetic.bin", "magnetic.bin"))
	want, _ := os.ReadFile(filepath.Join(dir2, "magnetic.bin"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the watched magnet's file: %d bytes, %v", len(got), err)
	}
	// btfs rm of a watched torrent keeps it out while its file stays.
	l.must(t, "rm", mp, "magnetic.bin")
	poll.Until(t, 10*time.Second, "the rm'd torrent to go", func() bool { return len(names(t, l.mp)) == 1 })
	added := strings.Count(l.p.out.String(), "torrent added to the library")
	poll.Until(t, 10*time.Second, "two scans to leave the rm'd file alone", func() bool {
		return strings.Count(l.p.out.String(), "watched file left alone") >= 2
	})
	if n := names(t, mp); len(n) != 1 || n[0] != "watched.bin" || strings.Count(l.p.out.String(), "torrent added to the library") != added {
		t.Fatalf("after rm of a watched torrent the library lists %v", n)
	}
	// Deleting a watched file removes its torrent.
	if err := os.Remove(filepath.Join(watch, "x.torrent")); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 30*time.Second, "the removed file's torrent to go", func() bool { return len(names(t, l.mp)) == 0 })
	// A file that is not a torrent is logged, not added, and not retried
	// while it stays the same.
	if err := os.WriteFile(filepath.Join(watch, "junk.torrent"), []byte("not bencode"), 0o644); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 30*time.Second, "the junk file to be refused", func() bool {
		return strings.Contains(l.p.out.String(), "watched file not added")
	})
	if n := names(t, mp); len(n) != 0 {
		t.Errorf("after a junk file the library lists %v", n)
	}
}

// TestLibrarySocketRefusesOtherUser: `btfs ls` run as another user
// (nobody) fails: the socket's directory is closed to it; and when the
// socket is opened to everyone by mistake, the server still refuses it by
// its uid (SO_PEERCRED).
func TestLibrarySocketRefusesOtherUser(t *testing.T) {
	swarmtest.Require(t, "setpriv", "fusermount3")
	mp := mountpoint(t)
	runDir := runtimeDir(t)
	l := startLibrary(t, mp, t.TempDir(), runDir)
	// A copy of btfs nobody can run.
	binDir, err := os.MkdirTemp("", "btfs-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(binDir) })
	if err := os.Chmod(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(binDir, "btfs")
	data, err := os.ReadFile(btfsBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	asNobody := func() (string, error) {
		cmd := exec.Command("setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", bin, "ls", mp)
		cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+runDir)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := asNobody(); err == nil || !strings.Contains(out, "permission denied") {
		t.Errorf("btfs ls as nobody: %v\n%s", err, out)
	}
	// The owner is served.
	if out := l.must(t, "ls", mp); !strings.Contains(out, "0 torrents") {
		t.Errorf("btfs ls as the owner:\n%s", out)
	}
	// Opened by mistake: the uid check refuses.
	sock := filepath.Join(runDir, "btfs")
	if err := os.Chmod(sock, 0o755); err != nil {
		t.Fatal(err)
	}
	des, _ := os.ReadDir(sock)
	for _, de := range des {
		os.Chmod(filepath.Join(sock, de.Name()), 0o777)
	}
	if out, err := asNobody(); err == nil || !strings.Contains(out, "refused: this btfs belongs to uid 0, you are uid 65534") {
		t.Errorf("btfs ls as nobody on an open socket: %v\n%s", err, out)
	}
	if !strings.Contains(l.p.out.String(), "connection refused: not the owner") {
		t.Errorf("the server did not log the refusal:\n%s", l.p.out.String())
	}
}

// procStat reads a process's open fds and resident set.
func procStat(t *testing.T, pid int) (fds int, rssKiB int64) {
	t.Helper()
	des, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(status)
	if m != nil {
		rssKiB, _ = strconv.ParseInt(string(m[1]), 10, 64)
	}
	return len(des), rssKiB
}

// lsGoroutines runs btfs ls and returns its torrents in state "running"
// and the server's goroutines.
func (l *lib) lsGoroutines(t *testing.T) (running, goroutines int) {
	t.Helper()
	out := l.must(t, "ls", l.mp)
	running = strings.Count(out, " running ")
	m := regexp.MustCompile(`(\d+) goroutines`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("btfs ls:\n%s", out)
	}
	goroutines, _ = strconv.Atoi(m[1])
	return running, goroutines
}

// listenSockets counts the TCP sockets process pid listens on (other
// tests of the run may listen in the same namespace).
func listenSockets(t *testing.T, pid int) int {
	t.Helper()
	des, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	own := map[string]bool{}
	for _, de := range des {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, de.Name()))
		if ino, ok := strings.CutPrefix(l, "socket:["); err == nil && ok {
			own[strings.TrimSuffix(ino, "]")] = true
		}
	}
	n := 0
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			if fs := strings.Fields(line); len(fs) > 9 && fs[3] == "0A" && own[fs[9]] {
				n++
			}
		}
	}
	return n
}

// TestLibrary200: 200 idle torrents (no peers, no trackers, no readers)
// in one process, added through -watch: one listening port, and bounded
// goroutines and fds per torrent. It logs the RSS per torrent and the
// time to list the root (measured, not asserted).
func TestLibrary200(t *testing.T) {
	swarmtest.Require(t, "fusermount3")
	if testing.Short() {
		t.Skip("200 torrents: not in -short")
	}
	const n = 200
	watch, data := t.TempDir(), t.TempDir()
	mp := mountpoint(t)
	l := startLibrary(t, mp, t.TempDir(), runtimeDir(t), "-watch", watch)
	if got := listenSockets(t, l.p.cmd.Process.Pid); got != 1 {
		t.Fatalf("btfs listens on %d TCP sockets, want 1", got)
	}
	_, g0 := l.lsGoroutines(t)
	fd0, rss0 := procStat(t, l.p.cmd.Process.Pid)
	for i := range n {
		path, _ := swarmtest.MakeTorrent(t, data, swarmtest.TorrentOptions{Name: fmt.Sprintf("t%03d.bin", i), Size: 20<<10 + int64(i), PieceLength: 16 << 10, Seed: uint64(1000 + i)})
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(watch, filepath.Base(path)), raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	poll.Until(t, 3*time.Minute, "200 running torrents", func() bool {
		running, _ := l.lsGoroutines(t)
		return running == n
	})
	// Idle: the counts settle (no dial, no lookup, no announce under way).
	var g1, fd1 int
	var rss1 int64
	poll.Until(t, time.Minute, "the goroutines to settle", func() bool {
		_, a := l.lsGoroutines(t)
		_, b := l.lsGoroutines(t)
		g1 = b
		return a == b
	})
	fd1, rss1 = procStat(t, l.p.cmd.Process.Pid)
	start := time.Now()
	des, err := os.ReadDir(mp)
	listing := time.Since(start)
	if err != nil || len(des) != n {
		t.Fatalf("the root lists %d entries, %v", len(des), err)
	}
	start = time.Now()
	for _, de := range des {
		if _, err := os.Stat(filepath.Join(mp, de.Name(), de.Name())); err != nil {
			t.Fatal(err)
		}
	}
	statAll := time.Since(start)
	perG := float64(g1-g0) / n
	perFD := float64(fd1-fd0) / n
	t.Logf("200 idle torrents: goroutines %d → %d (%.1f per torrent), fds %d → %d (%.2f per torrent), RSS %d → %d KiB (%.0f KiB per torrent, -race build); listing the root %v, stat of every file %v",
		g0, g1, perG, fd0, fd1, perFD, rss0, rss1, float64(rss1-rss0)/n, listing, statAll)
	if k := strings.Count(l.p.out.String(), "inotify unavailable"); k > 0 {
		t.Errorf("%d of the torrents' caches poll instead of using inotify: the process's caches should share one instance", k)
	}
	// Today 2: the engine's loop and the cache's (its rescan timer).
	if perG > 4 {
		t.Errorf("%.1f goroutines per idle torrent, want at most 4", perG)
	}
	// Today 3: the cache directory's lock file, its pins file (this
	// process's pin locks) and its record of verified pieces; the reads
	// file, the eviction probe and the data files are opened on use.
	if perFD > 4 {
		t.Errorf("%.2f fds per idle torrent, want at most 4", perFD)
	}
	if got := listenSockets(t, l.p.cmd.Process.Pid); got != 1 {
		t.Errorf("btfs listens on %d TCP sockets with 200 torrents, want 1", got)
	}
}
