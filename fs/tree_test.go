package fs

import (
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"golang.org/x/sys/unix"
)

// dirNames lists a directory of the mount.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("ReadDir(%s): %v", dir, err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestTreeListing(t *testing.T) {
	t.Run("multi-file: the files at the mount root, padding hidden", func(t *testing.T) {
		e := newEnv(t, newFixture(t, "fixture", 5, false, multiSpecs), Options{})
		tests := []struct {
			dir  string
			want []string
		}{
			{"", []string{"a.txt", "dir", "empty", "x.mp4", "z.bin"}},
			{"dir", []string{"b.bin", "empty2", "sub"}},
			{"dir/sub", []string{"c.dat"}},
		}
		for _, tt := range tests {
			if got := dirNames(t, e.path(tt.dir)); !slices.Equal(got, tt.want) {
				t.Errorf("ls %q = %q, want %q", tt.dir, got, tt.want)
			}
		}
		if _, err := os.Stat(e.path(".pad")); !os.IsNotExist(err) {
			t.Errorf("stat .pad: %v, want not found", err)
		}
	})
	t.Run("single file: the file at the mount root", func(t *testing.T) {
		e := newEnv(t, newFixture(t, "movie.mkv", 5, true, []fileSpec{{path: "movie.mkv", size: 12}}), Options{})
		if got := dirNames(t, e.dir); !slices.Equal(got, []string{"movie.mkv"}) {
			t.Errorf("ls = %q, want [movie.mkv]", got)
		}
	})
}

func TestTreeStat(t *testing.T) {
	fx := newFixture(t, "fixture", 5, false, multiSpecs)
	e := newEnv(t, fx, Options{})
	// Inode numbers: 1 for the root, 2+i for Info.Files[i].
	fileIno := map[string]uint64{}
	for i, f := range fx.mi.Info.Files {
		fileIno[strings.Join(f.Path, "/")] = uint64(i) + 2
	}
	tests := []struct {
		path  string
		mode  uint32
		size  int64
		nlink uint64
		ino   uint64 // 0: not checked (directories other than the root)
	}{
		{"", syscall.S_IFDIR | 0o555, 0, 3, 1},
		{"dir", syscall.S_IFDIR | 0o555, 0, 3, 0},
		{"dir/sub", syscall.S_IFDIR | 0o555, 0, 2, 0},
		{"a.txt", syscall.S_IFREG | 0o444, 7, 1, fileIno["a.txt"]},
		{"dir/b.bin", syscall.S_IFREG | 0o444, 13, 1, fileIno["dir/b.bin"]},
		{"dir/empty2", syscall.S_IFREG | 0o444, 0, 1, fileIno["dir/empty2"]},
		{"empty", syscall.S_IFREG | 0o444, 0, 1, fileIno["empty"]},
		{"x.mp4", syscall.S_IFREG | 0o444, 23, 1, fileIno["x.mp4"]},
	}
	for _, tt := range tests {
		t.Run("/"+tt.path, func(t *testing.T) {
			var st unix.Stat_t
			if err := unix.Stat(e.path(tt.path), &st); err != nil {
				t.Fatalf("stat: %v", err)
			}
			if st.Mode != tt.mode {
				t.Errorf("mode %o, want %o", st.Mode, tt.mode)
			}
			if st.Size != tt.size {
				t.Errorf("size %d, want %d", st.Size, tt.size)
			}
			if want := (tt.size + 511) / 512; st.Blocks != want {
				t.Errorf("st_blocks %d, want %d (512-byte units)", st.Blocks, want)
			}
			if uint64(st.Nlink) != tt.nlink {
				t.Errorf("nlink %d, want %d", st.Nlink, tt.nlink)
			}
			if tt.ino != 0 && st.Ino != tt.ino {
				t.Errorf("ino %d, want %d", st.Ino, tt.ino)
			}
			for name, ts := range map[string]unix.Timespec{"mtime": st.Mtim, "ctime": st.Ctim, "atime": st.Atim} {
				if ts.Sec != creationDate.Unix() || ts.Nsec != 0 {
					t.Errorf("%s %v, want the creation date %v", name, ts, creationDate)
				}
			}
			if st.Uid != uint32(os.Getuid()) || st.Gid != uint32(os.Getgid()) {
				t.Errorf("owner %d:%d, want the mounting user %d:%d", st.Uid, st.Gid, os.Getuid(), os.Getgid())
			}
		})
	}
	t.Run("big file blocks", func(t *testing.T) {
		e := newEnv(t, newFixture(t, "big", 1<<10, true, []fileSpec{{path: "big", size: 1025}}), Options{})
		var st unix.Stat_t
		if err := unix.Stat(e.path("big"), &st); err != nil {
			t.Fatal(err)
		}
		if st.Blocks != 3 {
			t.Errorf("st_blocks of 1025 bytes = %d, want 3", st.Blocks)
		}
	})
	t.Run("statfs", func(t *testing.T) {
		var sf unix.Statfs_t
		if err := unix.Statfs(e.dir, &sf); err != nil {
			t.Fatal(err)
		}
		if want := (fx.mi.Info.TotalLength + 4095) / 4096; int64(sf.Blocks) != want || sf.Bfree != 0 || sf.Bavail != 0 {
			t.Errorf("statfs blocks %d free %d avail %d, want %d, 0, 0", sf.Blocks, sf.Bfree, sf.Bavail, want)
		}
		if sf.Flags&unix.ST_RDONLY == 0 {
			t.Errorf("statfs flags %#x: not read-only", sf.Flags)
		}
	})
}

func TestInodesStableAcrossMounts(t *testing.T) {
	fx := newFixture(t, "fixture", 5, false, multiSpecs)
	inos := func() map[string]uint64 {
		e := newEnv(t, fx, Options{})
		out := map[string]uint64{}
		for _, p := range []string{"dir", "dir/sub", "a.txt", "dir/sub/c.dat", "z.bin"} {
			var st unix.Stat_t
			if err := unix.Stat(e.path(p), &st); err != nil {
				t.Fatal(err)
			}
			out[p] = st.Ino
		}
		return out
	}
	first, second := inos(), inos()
	for p, ino := range first {
		if second[p] != ino {
			t.Errorf("%s: ino %d, then %d on the next mount", p, ino, second[p])
		}
	}
}

func TestMtimeWithoutCreationDate(t *testing.T) {
	fx := newFixture(t, "fixture", 5, false, multiSpecs)
	noDate := *fx.mi
	noDate.CreationDate = time.Time{}
	fx2 := *fx
	fx2.mi = &noDate
	before := time.Now().Unix()
	e := newEnv(t, &fx2, Options{})
	after := time.Now().Unix()
	var a, d unix.Stat_t
	if err := unix.Stat(e.path("a.txt"), &a); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(e.path("dir"), &d); err != nil {
		t.Fatal(err)
	}
	if a.Mtim.Sec < before || a.Mtim.Sec > after || a.Mtim != d.Mtim || a.Ctim != a.Mtim {
		t.Errorf("mtimes %v (file) and %v (dir), ctime %v: want the mount time, in [%d, %d], for every node",
			a.Mtim, d.Mtim, a.Ctim, before, after)
	}
}

func TestFSTest(t *testing.T) {
	fx := newFixture(t, "fixture", 5, false, multiSpecs)
	e := newEnv(t, fx, Options{})
	var files []string
	for p := range fx.content {
		files = append(files, p)
	}
	slices.Sort(files)
	if err := fstest.TestFS(os.DirFS(e.dir), files...); err != nil {
		t.Fatal(err)
	}
	// Every file's content, read through the mount, is the source's.
	for _, p := range files {
		got, err := os.ReadFile(e.path(p))
		if err != nil {
			t.Fatalf("read %s: %v", p, err)
		}
		if string(got) != string(fx.content[p]) {
			t.Errorf("%s: content differs from the source", p)
		}
	}
}
