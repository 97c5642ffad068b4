package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"btfs/internal/poll"
	"btfs/internal/swarmtest"
)

// TestDemo runs the README's first command the way a newcomer does, and
// uses the mount it prints.
func TestDemo(t *testing.T) {
	swarmtest.Require(t, "fusermount3", "ffmpeg", "ffprobe")
	mp := mountpoint(t)
	p := startBtfs(t, "demo", "-video-seconds", "4", mp)
	waitMounted(t, p, mp)
	poll.Until(t, 30*time.Second, "the demo to print what to try", func() bool {
		return strings.Contains(p.out.String(), "Ctrl-C unmounts")
	})
	for _, name := range []string{"README.txt", "sample.mp4", "files/random-1.bin", "files/random-3.bin"} {
		if _, err := os.Stat(filepath.Join(mp, name)); err != nil {
			t.Fatalf("demo mount lacks %s: %v", name, err)
		}
	}
	if out, err := exec.Command("ffprobe", "-v", "error", "-show_format", filepath.Join(mp, "sample.mp4")).CombinedOutput(); err != nil {
		t.Fatalf("ffprobe on the demo mount: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(mp, "README.txt"))
	if err != nil || !bytes.Contains(b, []byte("btfs demo")) {
		t.Fatalf("README.txt: %q, %v", b, err)
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	if err := p.wait(t, 20*time.Second); err != nil {
		t.Fatalf("demo exit after Ctrl-C: %v\n%s", err, p.out.String())
	}
	if isMounted(mp) {
		t.Fatal("the demo left its mount behind")
	}
}

// TestKeep reads a torrent through the mount and checks that -keep writes
// the complete files on exit.
func TestKeep(t *testing.T) {
	s := startSwarm(t, swarmtest.TorrentOptions{Files: swarmtest.MultiFile, PieceLength: 64 << 10, Seed: 8}, true)
	mp := mountpoint(t)
	keep := t.TempDir()
	p := startBtfs(t, mountArgs(t, "-keep", keep, s.torrentPath, mp)...)
	waitMounted(t, p, mp)
	for _, f := range s.mi.Info.Files {
		if _, err := os.ReadFile(s.mounted(mp, f)); err != nil {
			t.Fatal(err)
		}
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(t, 20*time.Second); err != nil {
		t.Fatalf("exit: %v", err)
	}
	for _, f := range s.mi.Info.Files {
		got, err := os.ReadFile(filepath.Join(append([]string{keep, s.mi.Info.Name}, f.Path...)...))
		if err != nil {
			t.Fatalf("-keep did not write %v: %v", f.Path, err)
		}
		if !bytes.Equal(got, s.source(t, f)) {
			t.Fatalf("kept %v differs from the source", f.Path)
		}
	}
}
