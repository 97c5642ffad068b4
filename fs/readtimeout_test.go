package fs

import (
	"errors"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestReadTimeoutOnce: a buffered read of an uncached range with
// ReadTimeout D fails with EIO after D, not 2×D. The kernel reads the page
// ahead, and when that request fails it asks again for the page the reader
// wants (a synchronous read of it): that second request must fail at once,
// not wait a second D. The elapsed time is checked loosely, below 1.8×D,
// since waiting once is the behaviour asked for.
func TestReadTimeoutOnce(t *testing.T) {
	const d = 2 * time.Second
	e := newStuckEnv(t, Options{ReadTimeout: d})
	for _, p := range []string{"never.bin", "never2.bin"} {
		start := time.Now()
		_, err := os.ReadFile(e.path(p))
		took := time.Since(start)
		if !errors.Is(err, syscall.EIO) {
			t.Fatalf("read of %s past the timeout: %v, want EIO", p, err)
		}
		if took >= d*18/10 {
			t.Errorf("read of %s failed after %v with a read timeout of %v: the reader waited more than once", p, took, d)
		}
		t.Logf("%s: EIO after %v", p, took)
	}
	e.checkUsable(t)
}
