package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
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

	"golang.org/x/sys/unix"

	"btfs/internal/poll"
	"btfs/internal/swarmtest"
	"btfs/metainfo"
)

// testSwarm is an opentracker with an aria2c seeder of a fresh torrent.
type testSwarm struct {
	dir         string // the seeder's data: dir/NAME
	torrentPath string
	mi          *metainfo.MetaInfo
}

func startSwarm(t *testing.T, opts swarmtest.TorrentOptions, seed bool) testSwarm {
	t.Helper()
	swarmtest.Require(t, "opentracker", "aria2c", "fusermount3")
	_, probe := swarmtest.MakeTorrent(t, t.TempDir(), opts)
	tr := swarmtest.StartTracker(t, probe.InfoHash)
	dir := t.TempDir()
	opts.AnnounceList = [][]string{{tr.HTTPURL()}}
	torrentPath, mi := swarmtest.MakeTorrent(t, dir, opts)
	if seed {
		s := swarmtest.StartAria2Seeder(t, torrentPath, dir, "127.0.0.2")
		tr.WaitForPeer(t, mi.InfoHash, s.Addr())
	}
	return testSwarm{dir: dir, torrentPath: torrentPath, mi: mi}
}

// mountArgs are the flags every test mount uses: loopback only, a fresh cache.
func mountArgs(t *testing.T, extra ...string) []string {
	return append([]string{"mount", "-listen", "127.0.0.1:0", "-cache-dir", t.TempDir(), "-log-level", "debug"}, extra...)
}

func (s testSwarm) source(t *testing.T, f metainfo.File) []byte {
	t.Helper()
	p := filepath.Join(s.dir, s.mi.Info.Name)
	if s.mi.Info.MultiFile {
		p = filepath.Join(append([]string{p}, f.Path...)...)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// downloadDiffers returns an error naming the first file under out (a
// download of the torrent: out/<name>/<path>) that is not the source.
func (s testSwarm) downloadDiffers(t *testing.T, out string) error {
	t.Helper()
	for _, f := range s.mi.Info.Files {
		got, err := os.ReadFile(filepath.Join(append([]string{out, s.mi.Info.Name}, f.Path...)...))
		if err != nil || !bytes.Equal(got, s.source(t, f)) {
			return fmt.Errorf("%s: %d bytes, %v: not the source", filepath.Join(f.Path...), len(got), err)
		}
	}
	return nil
}

// listenAddr waits for p to log the address re's first group matches.
func listenAddr(t *testing.T, p *proc, re *regexp.Regexp, what string) netip.AddrPort {
	t.Helper()
	var addr netip.AddrPort
	poll.UntilNil(t, time.Minute, what, func() error {
		m := re.FindStringSubmatch(p.out.String())
		if m == nil {
			return fmt.Errorf("not yet:\n%s", p.out.String())
		}
		var err error
		addr, err = netip.ParseAddrPort(m[1])
		return err
	})
	return addr
}

// waitSeeding waits for a libtorrent leecher to have every byte.
func waitSeeding(t *testing.T, leecher *swarmtest.LibtorrentSeeder, total int64, what string) {
	t.Helper()
	poll.UntilNil(t, 2*time.Minute, what, func() error {
		st, err := leecher.Status()
		if err != nil {
			return err
		}
		if !st.Seeding {
			return fmt.Errorf("has %d of %d bytes; peers %+v", st.Done, total, st.Peers)
		}
		return nil
	})
}

// mounted returns the path of file f under the mount point.
func (s testSwarm) mounted(mp string, f metainfo.File) string {
	if !s.mi.Info.MultiFile {
		return filepath.Join(mp, s.mi.Info.Name)
	}
	return filepath.Join(append([]string{mp}, f.Path...)...)
}

func getxattr(t *testing.T, path, name string) string {
	t.Helper()
	buf := make([]byte, 1<<16)
	n, err := unix.Getxattr(path, name, buf)
	if err != nil {
		t.Fatalf("getxattr %s %s: %v", path, name, err)
	}
	return string(buf[:n])
}

// verifiedBytes reads user.btfs.progress ("done/total") of path.
func verifiedBytes(t *testing.T, path string) int64 {
	t.Helper()
	v := getxattr(t, path, "user.btfs.progress")
	done, _, _ := strings.Cut(v, "/")
	n, err := strconv.ParseInt(strings.TrimSpace(done), 10, 64)
	if err != nil {
		t.Fatalf("user.btfs.progress = %q", v)
	}
	return n
}

func TestMountStreamsFromAria2(t *testing.T) {
	s := startSwarm(t, swarmtest.TorrentOptions{Name: "big.bin", Size: 32 << 20, PieceLength: 256 << 10, Seed: 3}, true)
	mp := mountpoint(t)
	// A capped rate keeps most pieces missing while the middle read is served.
	p := startBtfs(t, mountArgs(t, "-max-download-rate", "2MB", s.torrentPath, mp)...)
	waitMounted(t, p, mp)

	f := s.mi.Info.Files[0]
	path := s.mounted(mp, f)
	fi, err := os.Stat(path)
	if err != nil || fi.Size() != f.Length {
		t.Fatalf("stat: %v, size %v want %d", err, fi, f.Length)
	}
	src := s.source(t, f)
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	buf := make([]byte, 64<<10)
	mid := f.Length / 2
	if _, err := fh.ReadAt(buf, mid); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, src[mid:mid+int64(len(buf))]) {
		t.Fatal("the middle 64 KiB differ from the source")
	}
	if done := verifiedBytes(t, path); done > f.Length/2 {
		t.Fatalf("after one read in the middle %d of %d bytes are verified: the read did not come first", done, f.Length)
	}
}

func TestMountReadsEverythingCorrectly(t *testing.T) {
	s := startSwarm(t, swarmtest.TorrentOptions{Files: swarmtest.MultiFile, PieceLength: 64 << 10, Seed: 4}, true)
	mp := mountpoint(t)
	p := startBtfs(t, mountArgs(t, s.torrentPath, mp)...)
	waitMounted(t, p, mp)

	// 8 concurrent readers at different offsets of the biggest file.
	big := s.mi.Info.Files[1]
	src := s.source(t, big)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			fh, err := os.Open(s.mounted(mp, big))
			if err != nil {
				errs <- err
				return
			}
			defer fh.Close()
			off := int64(i) * big.Length / 8
			b := make([]byte, 100_000)
			n, err := fh.ReadAt(b, off)
			if err != nil && err != io.EOF {
				errs <- err
				return
			}
			if !bytes.Equal(b[:n], src[off:off+int64(n)]) {
				errs <- errors.New("concurrent reader got wrong bytes at " + strconv.FormatInt(off, 10))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Every file, whole, compared with the source, and nothing else listed.
	checkAllFiles(t, s, mp)
}

func TestMountMP4MoovAtEnd(t *testing.T) {
	swarmtest.Require(t, "ffmpeg", "ffprobe")
	data := t.TempDir()
	video := filepath.Join(data, "f.mp4")
	// 20 s of 720p without +faststart: the moov atom is at the end.
	out, err := exec.Command("ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
		"-f", "lavfi", "-i", "sine", "-t", "20", "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "2M", "-c:a", "aac", video).CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	s := startSwarmFromFile(t, video)
	mp := mountpoint(t)
	p := startBtfs(t, mountArgs(t, s.torrentPath, mp)...)
	waitMounted(t, p, mp)
	path := filepath.Join(mp, "f.mp4")
	if out, err := exec.Command("ffprobe", "-v", "error", "-show_format", path).CombinedOutput(); err != nil {
		t.Fatalf("ffprobe on a fresh mount: %v\n%s", err, out)
	}
	if out, err := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-ss", "10", "-i", path, "-frames:v", "1", "-f", "null", "-").CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg seek to the middle: %v\n%s", err, out)
	}
}

// startSwarmFromFile seeds an existing file through opentracker and aria2c.
func startSwarmFromFile(t *testing.T, file string) testSwarm {
	t.Helper()
	swarmtest.Require(t, "opentracker", "aria2c", "fusermount3")
	data, err := metainfo.Build(t.Context(), file, metainfo.BuildOptions{PieceLength: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	probe, err := metainfo.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	tr := swarmtest.StartTracker(t, probe.InfoHash)
	data, err = metainfo.Build(t.Context(), file, metainfo.BuildOptions{PieceLength: 256 << 10, AnnounceList: [][]string{{tr.HTTPURL()}}})
	if err != nil {
		t.Fatal(err)
	}
	mi, err := metainfo.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	torrentPath := filepath.Join(t.TempDir(), "x.torrent")
	if err := os.WriteFile(torrentPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	sd := swarmtest.StartAria2Seeder(t, torrentPath, filepath.Dir(file), "127.0.0.2")
	tr.WaitForPeer(t, mi.InfoHash, sd.Addr())
	return testSwarm{dir: filepath.Dir(file), torrentPath: torrentPath, mi: mi}
}

// readerProc starts `dd` reading path at offset off (a piece nobody has):
// a separate process, so that it can be signalled like a user's reader.
// dd catches SIGINT, so the signal does not kill it: with O_DIRECT its read
// is the process's own FUSE request, which the kernel interrupts, and btfs
// must answer EINTR. (A buffered read waits on the page cache, which only
// a fatal signal wakes; that case is covered by the fs package's tests.)
func readerProc(t *testing.T, path string, off int64) (*exec.Cmd, *bytes.Buffer, chan error) {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command("dd", "if="+path, "of=/dev/null", "bs=65536", "count=1", "iflag=skip_bytes,direct", "skip="+strconv.FormatInt(off, 10))
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	return cmd, &out, done
}

// waitBlockedInFUSE waits until process pid sleeps in a FUSE request,
// waiting for btfs's answer (its wchan, the kernel function it sleeps in, is
// request_wait_answer): its read has reached btfs and is blocked there.
func waitBlockedInFUSE(t *testing.T, pid int) {
	t.Helper()
	wchan := fmt.Sprintf("/proc/%d/wchan", pid)
	poll.Until(t, 10*time.Second, fmt.Sprintf("the reader (pid %d) to block in a FUSE request", pid), func() bool {
		b, _ := os.ReadFile(wchan)
		return string(b) == "request_wait_answer"
	})
}

func waitErr(t *testing.T, done chan error, d time.Duration, what string) error {
	t.Helper()
	select {
	case err := <-done:
		done <- err // keep it for the cleanup
		return err
	case <-time.After(d):
		t.Fatalf("%s: still blocked after %v", what, d)
		return nil
	}
}

func TestBlockedReaders(t *testing.T) {
	// No seeder: every read waits for a piece nobody has.
	s := startSwarm(t, swarmtest.TorrentOptions{Name: "lonely.bin", Size: 4 << 20, PieceLength: 256 << 10, Seed: 5}, false)
	path := func(mp string) string { return filepath.Join(mp, "lonely.bin") }

	t.Run("interrupted by a signal", func(t *testing.T) {
		mp := mountpoint(t)
		p := startBtfs(t, mountArgs(t, s.torrentPath, mp)...)
		waitMounted(t, p, mp)
		cmd, _, done := readerProc(t, path(mp), 1<<20)
		waitBlockedInFUSE(t, cmd.Process.Pid)
		cmd.Process.Signal(syscall.SIGINT)
		waitErr(t, done, 10*time.Second, "reader after SIGINT")
		if _, err := os.Stat(path(mp)); err != nil {
			t.Fatalf("mount unusable after an interrupted read: %v", err)
		}
	})
	t.Run("read timeout gives EIO", func(t *testing.T) {
		mp := mountpoint(t)
		p := startBtfs(t, mountArgs(t, "-read-timeout", "500ms", s.torrentPath, mp)...)
		waitMounted(t, p, mp)
		fh, err := os.Open(path(mp))
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		_, err = fh.ReadAt(make([]byte, 4096), 2<<20)
		if !errors.Is(err, syscall.EIO) {
			t.Fatalf("read with -read-timeout: %v, want EIO", err)
		}
	})
	t.Run("SIGTERM with blocked readers", func(t *testing.T) {
		mp := mountpoint(t)
		p := startBtfs(t, mountArgs(t, s.torrentPath, mp)...)
		waitMounted(t, p, mp)
		cmd, _, done := readerProc(t, path(mp), 3<<20)
		waitBlockedInFUSE(t, cmd.Process.Pid)
		p.cmd.Process.Signal(syscall.SIGTERM)
		if err := p.wait(t, 20*time.Second); err != nil {
			t.Fatalf("btfs exit after SIGTERM: %v\n%s", err, p.out.String())
		}
		if err := waitErr(t, done, 10*time.Second, "reader after SIGTERM to btfs"); err == nil {
			t.Fatal("the blocked reader got no error")
		}
		if isMounted(mp) {
			t.Fatal("SIGTERM left a mount behind")
		}
	})
	t.Run("kill -9 then mount again", func(t *testing.T) {
		mp := mountpoint(t)
		cache := t.TempDir()
		args := []string{"mount", "-listen", "127.0.0.1:0", "-cache-dir", cache, s.torrentPath, mp}
		p := startBtfs(t, args...)
		waitMounted(t, p, mp)
		p.cmd.Process.Kill()
		p.wait(t, 10*time.Second)
		p2 := startBtfs(t, args...)
		waitMounted(t, p2, mp)
		if _, err := os.Stat(path(mp)); err != nil {
			t.Fatalf("after kill -9 and a new mount: %v", err)
		}
	})
	t.Run("bad mount points", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "file")
		os.WriteFile(file, nil, 0o644)
		for _, mp := range []string{filepath.Join(t.TempDir(), "missing"), file} {
			var so, se bytes.Buffer
			if code := run([]string{"mount", "-listen", "127.0.0.1:0", "-cache-dir", t.TempDir(), s.torrentPath, mp}, &so, &se); code != 1 {
				t.Errorf("mount on %s: exit %d, want 1; %s", mp, code, se.String())
			}
			if lines := strings.Count(strings.TrimSpace(se.String()), "\n"); lines > 0 || !strings.Contains(se.String(), "mount point") {
				t.Errorf("mount on %s: want one clear line, got %q", mp, se.String())
			}
		}
	})
}
