package fs

import (
	"bytes"
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestReadOnly tries every change through the kernel, on the mount as
// Mount makes it ("ro": the kernel refuses) and without "ro" (the nodes
// themselves refuse): each must fail with EROFS and change nothing.
func TestReadOnly(t *testing.T) {
	fx := newFixture(t, "fixture", 5, false, multiSpecs)
	for _, ro := range []bool{true, false} {
		name := "ro mount"
		if !ro {
			name = "rw mount, nodes refuse"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnvAt(t, t.TempDir(), fx, Options{}, ro)
			p := e.path
			ops := []struct {
				name string
				op   func() error
			}{
				{"open for writing", func() error { return openClose(p("a.txt"), os.O_WRONLY) }},
				{"open read-write", func() error { return openClose(p("a.txt"), os.O_RDWR) }},
				{"open with O_TRUNC", func() error { return openClose(p("a.txt"), os.O_RDONLY|os.O_TRUNC) }},
				{"open for append", func() error { return openClose(p("a.txt"), os.O_WRONLY|os.O_APPEND) }},
				{"create", func() error { return openClose(p("new"), os.O_RDWR|os.O_CREATE) }},
				{"create exclusive in a subdirectory", func() error { return openClose(p("dir/new"), os.O_WRONLY|os.O_CREATE|os.O_EXCL) }},
				{"O_TMPFILE", func() error { return openClose(p("dir"), unix.O_TMPFILE|os.O_RDWR) }},
				{"mkdir", func() error { return os.Mkdir(p("newdir"), 0o755) }},
				{"mknod fifo", func() error { return unix.Mknod(p("fifo"), unix.S_IFIFO|0o644, 0) }},
				{"unlink", func() error { return unix.Unlink(p("a.txt")) }},
				{"unlink in a subdirectory", func() error { return unix.Unlink(p("dir/sub/c.dat")) }},
				{"rmdir", func() error { return unix.Rmdir(p("dir/sub")) }},
				{"rename", func() error { return os.Rename(p("a.txt"), p("b.txt")) }},
				{"rename over", func() error { return os.Rename(p("a.txt"), p("z.bin")) }},
				{"symlink", func() error { return os.Symlink("a.txt", p("link")) }},
				{"hard link", func() error { return os.Link(p("a.txt"), p("link")) }},
				{"truncate", func() error { return os.Truncate(p("a.txt"), 0) }},
				{"chmod", func() error { return os.Chmod(p("a.txt"), 0o777) }},
				{"chmod directory", func() error { return os.Chmod(p("dir"), 0o777) }},
				{"chown", func() error { return os.Chown(p("a.txt"), 1, 1) }},
				{"utimes", func() error { return os.Chtimes(p("a.txt"), time.Now(), time.Now()) }},
				{"setxattr", func() error { return unix.Setxattr(p("a.txt"), "user.x", []byte("1"), 0) }},
				{"removexattr", func() error { return unix.Removexattr(p("a.txt"), xattrInfohash) }},
			}
			for _, tt := range ops {
				t.Run(tt.name, func(t *testing.T) {
					if err := tt.op(); !errors.Is(err, syscall.EROFS) {
						t.Errorf("%s: %v, want EROFS", tt.name, err)
					}
				})
			}
			// Nothing changed.
			if got := dirNames(t, e.dir); len(got) != 5 {
				t.Errorf("after the attempts, the root holds %q", got)
			}
			for path, want := range fx.content {
				got, err := os.ReadFile(p(path))
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("%s after the attempts: %d bytes, %v", path, len(got), err)
				}
			}
			var st unix.Stat_t
			if err := unix.Stat(p("a.txt"), &st); err != nil || st.Mode != syscall.S_IFREG|0o444 || st.Size != 7 {
				t.Errorf("a.txt after the attempts: mode %o size %d, %v", st.Mode, st.Size, err)
			}
			// fsync of a file open for reading succeeds: nothing to flush.
			f, err := os.Open(p("a.txt"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := f.Sync(); err != nil {
				t.Errorf("fsync of a read-only descriptor: %v", err)
			}
			if err := unix.Fallocate(int(f.Fd()), 0, 0, 100); !errors.Is(err, syscall.EBADF) && !errors.Is(err, syscall.EROFS) {
				t.Errorf("fallocate: %v, want EBADF (not open for writing) or EROFS", err)
			}
		})
	}
}

// openClose opens and closes a file with flag.
func openClose(p string, flag int) error {
	f, err := os.OpenFile(p, flag, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}
