package cache

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"btfs/storagewrapper"
)

// inotifyFDs counts this process's inotify descriptors.
func inotifyFDs(t *testing.T) int {
	t.Helper()
	des, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, de := range des {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", de.Name())); err == nil && strings.Contains(l, "inotify") {
			n++
		}
	}
	return n
}

// TestSharedInotify: the Stores of a process share one inotify instance,
// however many run (more than the kernel's default of 128 instances per
// user), and each still sees its own directory's pieces; the instance
// goes away with the last Store.
func TestSharedInotify(t *testing.T) {
	const stores = 140
	before := inotifyFDs(t)
	f := testFixture()
	var hosts []*hostOf
	t.Run("run", func(t *testing.T) {
		for i := range stores {
			c := openStore(t, filepath.Join(t.TempDir(), "c"), f, Options{PollInterval: 1 << 40})
			w := newHost(t, f, c)
			run(t, c, w)
			hosts = append(hosts, &hostOf{c: c, w: w, i: i})
		}
		if got := inotifyFDs(t) - before; got != 1 {
			t.Errorf("%d Stores hold %d inotify descriptors, want 1", stores, got)
		}
		// A piece published in one Store's directory by another process
		// is adopted by that Store only.
		first, last := hosts[0], hosts[stores-1]
		ch := startChild(t, "publish", first.c.dir, "3")
		ch.finish(t)
		waitChanges(t, first.w, "piece 3 adopted", func(c changes) bool { return c.verified[3] })
		ch = startChild(t, "publish", last.c.dir, "5")
		ch.finish(t)
		waitChanges(t, last.w, "piece 5 adopted", func(c changes) bool { return c.verified[5] })
		if last.w.Bitfield().Has(3) || first.w.Bitfield().Has(5) {
			t.Error("a piece published for one Store was adopted by another")
		}
	})
	if got := inotifyFDs(t) - before; got != 0 {
		t.Errorf("%d inotify descriptors left after every Store stopped", got)
	}
}

// hostOf is one Store of TestSharedInotify with its wrapper.
type hostOf struct {
	c *Store
	w *storagewrapper.Wrapper
	i int
}
