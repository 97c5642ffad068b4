package fs

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestReadRequestTimeout(t *testing.T) {
	for _, tc := range []struct {
		name     string
		files    map[string]string
		kernel   time.Duration
		answerBy time.Duration
		wantErr  bool
	}{
		{"no sysctls (kernel before 6.14)", nil, 0, 0, false},
		{"none set", map[string]string{"default_request_timeout": "0\n", "max_request_timeout": "0\n"}, 0, 0, false},
		{"default below the check period", map[string]string{"default_request_timeout": "3\n", "max_request_timeout": "0\n"}, 15 * time.Second, 13 * time.Second, false},
		{"default", map[string]string{"default_request_timeout": "60\n", "max_request_timeout": "0\n"}, time.Minute, 54 * time.Second, false},
		{"max alone", map[string]string{"default_request_timeout": "0\n", "max_request_timeout": "30\n"}, 30 * time.Second, 27 * time.Second, false},
		{"max caps the default", map[string]string{"default_request_timeout": "600\n", "max_request_timeout": "100\n"}, 100 * time.Second, 90 * time.Second, false},
		{"default under max", map[string]string{"default_request_timeout": "20\n", "max_request_timeout": "100\n"}, 20 * time.Second, 18 * time.Second, false},
		{"garbage", map[string]string{"default_request_timeout": "x\n"}, 0, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, v := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			rt, err := readRequestTimeout(dir)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tc.wantErr)
			}
			if rt.kernel != tc.kernel || rt.answerBy() != tc.answerBy {
				t.Errorf("kernel timeout %v, answer within %v; want %v, %v", rt.kernel, rt.answerBy(), tc.kernel, tc.answerBy)
			}
		})
	}
}

// TestKernelRequestTimeout sets the kernel's default FUSE request timeout
// (3 s, which the kernel raises to its 15 s check period) for one mount
// with no ReadTimeout, and reads pieces that never come, twice in a row:
// each read must fail with EIO before the kernel's timeout, and the mount
// must still work afterwards. Unanswered, the first read would make the
// kernel abort the connection at its check 15 s after the mount (every
// later access: ENOTCONN); the second read spans that check. The sysctl
// is global: it is set back at once after the mount (the kernel reads it
// at INIT), and again in cleanup whatever happens.
func TestKernelRequestTimeout(t *testing.T) {
	p := filepath.Join(fuseSysctlDir, "default_request_timeout")
	old, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		t.Skipf("this kernel has no FUSE request timeout: no %s", p)
	}
	if err != nil {
		t.Fatal(err)
	}
	restore := func() {
		if err := os.WriteFile(p, old, 0); err != nil {
			t.Errorf("restoring %s to %q: %v", p, old, err)
		}
	}
	t.Cleanup(restore)
	fx := newFixture(t, "stuck", 5, false, stuckSpecs)
	// Every FUSE mount made on the machine while the sysctl is set gets
	// the timeout: it is set for the mount call only.
	if err := os.WriteFile(p, []byte("3"), 0); err != nil {
		t.Fatalf("setting %s (root needed): %v", p, err)
	}
	e := newEnv(t, fx, Options{})
	restore()
	e.dl.withhold(fx.fileOffset(t, "never.bin"), fx.mi.Info.TotalLength)
	if got := e.m.state.requestLimit; got != 13*time.Second {
		t.Fatalf("the mount answers waiting requests within %v, want 13s (15 s kernel timeout less 2 s)", got)
	}
	for _, f := range []string{"never.bin", "never2.bin"} {
		start := time.Now()
		if _, err := os.ReadFile(e.path(f)); !errors.Is(err, syscall.EIO) {
			t.Fatalf("read of %s, a piece nobody has: %v, want EIO", f, err)
		}
		t.Logf("%s: EIO after %v", f, time.Since(start))
	}
	var st unix.Statfs_t
	if err := unix.Statfs(e.dir, &st); err != nil {
		t.Fatalf("statfs after the reads: %v (the kernel aborted the mount?)", err)
	}
	if _, err := os.ReadDir(e.dir); err != nil {
		t.Fatalf("listing after the reads: %v", err)
	}
	e.checkUsable(t)
}

// TestWaitLimit: a waiting request gives up after the shorter of
// ReadTimeout and the kernel's limit, with the cause that says which.
func TestWaitLimit(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		readTimeout, reqLimit time.Duration
		want                  time.Duration
		cause                 error
	}{
		{"neither", 0, 0, 0, nil},
		{"read timeout only", 5 * time.Second, 0, 5 * time.Second, errReadTimeout},
		{"kernel limit only", 0, 13 * time.Second, 13 * time.Second, errRequestTimeout},
		{"read timeout shorter", 5 * time.Second, 13 * time.Second, 5 * time.Second, errReadTimeout},
		{"kernel limit shorter", time.Minute, 13 * time.Second, 13 * time.Second, errRequestTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &mountState{readTimeout: tc.readTimeout, requestLimit: tc.reqLimit}
			d, cause := m.waitLimit()
			if d != tc.want || cause != tc.cause {
				t.Errorf("waitLimit() = %v, %v; want %v, %v", d, cause, tc.want, tc.cause)
			}
			if tc.cause != nil && toErrno(tc.cause) != syscall.EIO {
				t.Errorf("a read that gives up for %v gets %v, want EIO", tc.cause, toErrno(tc.cause))
			}
		})
	}
}
