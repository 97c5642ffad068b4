package fs

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// mountinfo returns the fields of the mountinfo line of dir: the mount
// options, the file system type, the source and the super block options.
func mountinfo(t *testing.T, dir string) (opts, fstype, source, superOpts string) {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || unescapeMountinfo(fields[4]) != dir {
			continue
		}
		sep := slices.Index(fields, "-")
		if sep < 0 || sep+3 >= len(fields) {
			t.Fatalf("odd mountinfo line %q", sc.Text())
		}
		return fields[5], fields[sep+1], fields[sep+2], fields[sep+3]
	}
	t.Fatalf("%s is not in mountinfo", dir)
	return
}

func TestMountOptions(t *testing.T) {
	fx := newFixture(t, "fixture", 5, false, multiSpecs)
	for _, allowOther := range []bool{false, true} {
		t.Run(fmt.Sprintf("allow_other=%v", allowOther), func(t *testing.T) {
			e := newEnv(t, fx, Options{AllowOther: allowOther})
			opts, fstype, source, superOpts := mountinfo(t, e.dir)
			if fstype != "fuse.btfs" || source != "btfs" {
				t.Errorf("type %q source %q, want fuse.btfs and btfs", fstype, source)
			}
			if !slices.Contains(strings.Split(opts, ","), "ro") {
				t.Errorf("mount options %q: not read-only", opts)
			}
			so := strings.Split(superOpts, ",")
			if want := fmt.Sprintf("max_read=%d", fuseMaxRead()); !slices.Contains(so, want) {
				t.Errorf("super options %q: want %s", superOpts, want)
			}
			if slices.Contains(so, "allow_other") != allowOther {
				t.Errorf("super options %q: allow_other should be %v", superOpts, allowOther)
			}
		})
	}
	t.Run("kernel readahead raised", func(t *testing.T) {
		if os.Getuid() != 0 {
			t.Skip("only root may raise it")
		}
		e := newEnv(t, fx, Options{})
		var st unix.Stat_t
		if err := unix.Stat(e.dir, &st); err != nil {
			t.Fatal(err)
		}
		p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
		got, err := os.ReadFile(p)
		want := strconv.Itoa(kernelReadahead >> 10)
		if err != nil || strings.TrimSpace(string(got)) != want {
			t.Errorf("%s = %q, %v; want %s", p, got, err, want)
		}
	})
}
