package fs

import (
	"bufio"
	"errors"
	iofs "io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"btfs/storagewrapper"
)

func TestMountErrors(t *testing.T) {
	fx := newFixture(t, "fixture", 5, false, multiSpecs)
	w, err := storagewrapper.New(fx.mi.Info, storagewrapper.NewMemStore(fx.mi.Info), storagewrapper.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	live := newEnv(t, fx, Options{}) // a mount point in use
	tmp := t.TempDir()
	file := filepath.Join(tmp, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		dir  string
		want error
	}{
		{"missing", filepath.Join(tmp, "missing"), iofs.ErrNotExist},
		{"empty path", "", iofs.ErrNotExist},
		{"not a directory", file, syscall.ENOTDIR},
		{"already mounted", live.dir, syscall.EBUSY},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Mount(tt.dir, fx.mi, w, Options{})
			if err == nil {
				m.Unmount()
				t.Fatalf("Mount(%q) succeeded", tt.dir)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("Mount(%q): %v, want an error wrapping %v", tt.dir, err, tt.want)
			}
		})
	}
	t.Run("no torrent", func(t *testing.T) {
		if _, err := Mount(t.TempDir(), nil, w, Options{}); err == nil {
			t.Error("Mount with a nil MetaInfo succeeded")
		}
		if _, err := Mount(t.TempDir(), fx.mi, nil, Options{}); err == nil {
			t.Error("Mount with a nil Torrent succeeded")
		}
	})
	// The live mount is untouched.
	live.checkUsable(t)
}

// staleMount leaves a stale mount at dir: a child process (this test binary,
// see TestMain) mounts there, and is killed with SIGKILL as a crashed btfs
// would be.
func staleMount(t *testing.T, dir string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envServe+"="+dir)
	cmd.Stderr = t.Output()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Whatever happens, leave no mount behind the test (cleanups run
	// before t.TempDir's removal).
	t.Cleanup(func() {
		if mounted, _ := isMountPoint(dir); mounted {
			if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
				t.Errorf("cleanup: umount -l %s: %v", dir, err)
			}
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child server: %q, %v", line, err)
	}
	if st, err := os.Stat(filepath.Join(dir, "a.txt")); err != nil || st.Size() != 7 {
		t.Fatalf("child's mount: stat a.txt: %v", err)
	}
	if _, err := os.Stat(dir); err != nil { // caches the root's attributes
		t.Fatalf("child's mount: stat: %v", err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	// The root's attributes are cached (the child statted it), so stat may
	// still succeed; statfs always reaches the (dead) server.
	var sf unix.Statfs_t
	if err := unix.Statfs(dir, &sf); !errors.Is(err, unix.ENOTCONN) {
		t.Fatalf("statfs of the dead server's mount: %v, want ENOTCONN", err)
	}
	if _, err := os.ReadDir(dir); !errors.Is(err, unix.ENOTCONN) {
		t.Fatalf("ls of the dead server's mount: %v, want ENOTCONN", err)
	}
}

func TestRecover(t *testing.T) {
	fx := newFixture(t, "fixture", 5, false, multiSpecs)
	t.Run("Recover detaches a stale mount", func(t *testing.T) {
		dir := t.TempDir()
		staleMount(t, dir)
		if ok, err := Recover(dir); !ok || err != nil {
			t.Fatalf("Recover(stale) = %v, %v; want true", ok, err)
		}
		if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
			t.Errorf("after Recover: ReadDir = %d entries, %v; want the empty directory", len(ents), err)
		}
		if ok, err := Recover(dir); ok || err != nil {
			t.Errorf("Recover(plain directory) = %v, %v; want false", ok, err)
		}
		newEnvAt(t, dir, fx, Options{}, true).checkUsable(t)
	})
	t.Run("Mount recovers a stale mount by itself", func(t *testing.T) {
		dir := t.TempDir()
		staleMount(t, dir)
		newEnvAt(t, dir, fx, Options{}, true).checkUsable(t)
	})
	t.Run("Recover leaves the rest alone", func(t *testing.T) {
		live := newEnv(t, fx, Options{})
		for _, dir := range []string{live.dir, t.TempDir(), filepath.Join(t.TempDir(), "missing")} {
			if ok, err := Recover(dir); ok || err != nil {
				t.Errorf("Recover(%s) = %v, %v; want false, nil", dir, ok, err)
			}
		}
		live.checkUsable(t)
	})
}

// TestUnmountedFromOutside unmounts with fusermount3 behind the mount's
// back: Wait returns, and Unmount still succeeds.
func TestUnmountedFromOutside(t *testing.T) {
	e := newEnv(t, newFixture(t, "fixture", 5, false, multiSpecs), Options{})
	if out, err := exec.Command("fusermount3", "-u", e.dir).CombinedOutput(); err != nil {
		t.Fatalf("fusermount3 -u: %v: %s", err, out)
	}
	e.m.Wait()
	if err := e.m.Unmount(); err != nil {
		t.Errorf("Unmount after an outside unmount: %v", err)
	}
}
