package fs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// kgetxattr reads one attribute through the kernel.
func kgetxattr(t *testing.T, p, name string) (string, error) {
	t.Helper()
	buf := make([]byte, 64<<10)
	n, err := unix.Getxattr(p, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// klistxattr lists the attribute names through the kernel.
func klistxattr(t *testing.T, p string) []string {
	t.Helper()
	buf := make([]byte, 64<<10)
	n, err := unix.Listxattr(p, buf)
	if err != nil {
		t.Fatalf("listxattr %s: %v", p, err)
	}
	var names []string
	for _, s := range bytes.Split(buf[:n], []byte{0}) {
		if len(s) > 0 {
			names = append(names, string(s))
		}
	}
	slices.Sort(names)
	return names
}

func TestXattrs(t *testing.T) {
	fx := newFixture(t, "fixture", 5, false, multiSpecs)
	e := newEnv(t, fx, Options{})
	hash := fx.mi.InfoHash.String()
	total := fx.mi.Info.TotalLength
	npieces := fx.mi.Info.NumPieces()
	all := []string{xattrInfohash, xattrPieces, xattrProgress}

	// Layout (5-byte pieces): .pad [0,3) a.txt [3,10) dir/b.bin [10,23)
	// dir/sub/c.dat [23,24) x.mp4 [24,47) z.bin [47,52).
	if got := fx.fileOffset(t, "a.txt"); got != 3 {
		t.Fatalf("a.txt at %d: the layout changed, fix the test", got)
	}

	check := func(p, name, want string) {
		t.Helper()
		got, err := kgetxattr(t, e.path(p), name)
		if err != nil || got != want {
			t.Errorf("getxattr(%q, %s) = %q, %v; want %q", p, name, got, err, want)
		}
	}
	t.Run("before any read", func(t *testing.T) {
		for _, p := range []string{"a.txt", "empty", "dir/b.bin", ""} {
			if got := klistxattr(t, e.path(p)); !slices.Equal(got, all) {
				t.Errorf("listxattr(%q) = %q, want %q", p, got, all)
			}
		}
		if got, want := klistxattr(t, e.path("dir")), []string{xattrInfohash, xattrProgress}; !slices.Equal(got, want) {
			t.Errorf("listxattr(dir) = %q, want %q", got, want)
		}
		check("a.txt", xattrInfohash, hash)
		check("", xattrInfohash, hash)
		check("a.txt", xattrProgress, "0/7")
		check("a.txt", xattrPieces, "..")
		check("empty", xattrProgress, "0/0")
		check("empty", xattrPieces, "")
		check("", xattrProgress, fmt.Sprintf("0/%d", total))
		check("", xattrPieces, strings.Repeat(".", npieces))
		check("dir", xattrProgress, "0/14")
	})
	t.Run("after reading a.txt", func(t *testing.T) {
		if _, err := os.ReadFile(e.path("a.txt")); err != nil {
			t.Fatal(err)
		}
		// Pieces 0 and 1 came: all of a.txt, plus the padding's 3 bytes.
		check("a.txt", xattrProgress, "7/7")
		check("a.txt", xattrPieces, "##")
		check("dir/b.bin", xattrProgress, "0/13")
		check("dir/b.bin", xattrPieces, "...")
		check("", xattrProgress, fmt.Sprintf("10/%d", total))
		check("", xattrPieces, "##"+strings.Repeat(".", npieces-2))
	})
	t.Run("a piece shared with the next file", func(t *testing.T) {
		f := openDirect(t, e.path("dir/b.bin"))
		defer f.Close()
		if _, err := f.ReadAt(make([]byte, 1), 12); err != nil { // piece 4: [20,25)
			t.Fatal(err)
		}
		check("dir/b.bin", xattrProgress, "3/13")
		check("dir/b.bin", xattrPieces, "..#")
		check("dir/sub/c.dat", xattrProgress, "1/1")
		check("x.mp4", xattrProgress, "1/23")
		check("dir", xattrProgress, "4/14")
	})
	t.Run("errors", func(t *testing.T) {
		if _, err := kgetxattr(t, e.path("a.txt"), "user.btfs.nope"); !errors.Is(err, unix.ENODATA) {
			t.Errorf("unknown attribute: %v, want ENODATA", err)
		}
		if _, err := kgetxattr(t, e.path("dir"), xattrPieces); !errors.Is(err, unix.ENODATA) {
			t.Errorf("pieces of a subdirectory: %v, want ENODATA", err)
		}
		if _, err := unix.Getxattr(e.path("a.txt"), xattrInfohash, make([]byte, 3)); !errors.Is(err, unix.ERANGE) {
			t.Errorf("small buffer: %v, want ERANGE", err)
		}
		if n, err := unix.Getxattr(e.path("a.txt"), xattrInfohash, nil); err != nil || n != 40 {
			t.Errorf("size query: %d, %v; want 40", n, err)
		}
		if _, err := unix.Listxattr(e.path("a.txt"), make([]byte, 3)); !errors.Is(err, unix.ERANGE) {
			t.Errorf("listxattr small buffer: %v, want ERANGE", err)
		}
	})
	t.Run("getfattr", func(t *testing.T) {
		bin, err := exec.LookPath("getfattr")
		if err != nil {
			t.Skip("getfattr not installed (apt package attr)")
		}
		out, err := exec.Command(bin, "-d", "--absolute-names", e.path("a.txt")).CombinedOutput()
		if err != nil {
			t.Fatalf("getfattr: %v: %s", err, out)
		}
		for _, want := range []string{
			fmt.Sprintf("%s=%q", xattrInfohash, hash),
			fmt.Sprintf("%s=%q", xattrProgress, "7/7"),
			fmt.Sprintf("%s=%q", xattrPieces, "##"),
		} {
			if !strings.Contains(string(out), want) {
				t.Errorf("getfattr -d output lacks %s:\n%s", want, out)
			}
		}
	})
	t.Run("read-only", func(t *testing.T) {
		for _, p := range []string{"a.txt", ""} {
			if err := unix.Setxattr(e.path(p), "user.x", []byte("1"), 0); !errors.Is(err, syscall.EROFS) {
				t.Errorf("setxattr %q: %v, want EROFS", p, err)
			}
			if err := unix.Removexattr(e.path(p), xattrProgress); !errors.Is(err, syscall.EROFS) {
				t.Errorf("removexattr %q: %v, want EROFS", p, err)
			}
		}
	})
}
