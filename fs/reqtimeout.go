package fs

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The kernel (Linux 6.14 and later) can abort a whole FUSE connection when
// one request stays unanswered too long: every later access to the mount
// then fails with ENOTCONN. A read waiting for a piece nobody has is such
// a request. The limit is the administrator's (sysctls under
// fuseSysctlDir); a server can ask for one of its own in INIT
// (FUSE_REQUEST_TIMEOUT), which go-fuse never does, so the kernel picks
// (fs/fuse, init_server_timeout):
//
//   - default_request_timeout when the server asked for none (0: none);
//   - capped by max_request_timeout when that is set, which also applies
//     alone when the default is 0;
//   - never below FUSE_TIMEOUT_TIMER_FREQ (15 s), the period of the check,
//     so a request is aborted between the timeout and the timeout plus one
//     period after the kernel created it.
//
// btfs answers every request that waits before the timeout: reads fail
// with EIO, lookups waiting for a magnet's metadata with EAGAIN, whatever
// ReadTimeout says.

// fuseSysctlDir holds default_request_timeout and max_request_timeout.
const fuseSysctlDir = "/proc/sys/fs/fuse"

// kernelCheckPeriod is FUSE_TIMEOUT_TIMER_FREQ: the kernel's least
// request timeout.
const kernelCheckPeriod = 15 * time.Second

// requestTimeout is what the kernel enforces on a new connection.
type requestTimeout struct {
	// dflt and max are the sysctls as read, in seconds.
	dflt, max uint64
	// kernel is the timeout the kernel applies; 0 when none.
	kernel time.Duration
}

// readRequestTimeout reads the sysctls under dir. A kernel without them
// (older than 6.14) has no request timeout: the zero value, no error.
func readRequestTimeout(dir string) (requestTimeout, error) {
	var rt requestTimeout
	for _, s := range []struct {
		name string
		v    *uint64
	}{{"default_request_timeout", &rt.dflt}, {"max_request_timeout", &rt.max}} {
		b, err := os.ReadFile(filepath.Join(dir, s.name))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return requestTimeout{}, err
		}
		if *s.v, err = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32); err != nil {
			return requestTimeout{}, fmt.Errorf("%s: %w", s.name, err)
		}
	}
	secs := rt.dflt // go-fuse asks for no timeout of its own
	if rt.max > 0 && (secs == 0 || secs > rt.max) {
		secs = rt.max
	}
	if secs > 0 {
		rt.kernel = max(time.Duration(secs)*time.Second, kernelCheckPeriod)
	}
	return rt, nil
}

// answerBy is how long a request may wait before btfs answers it anyway:
// a margin before the kernel's timeout (the kernel counts from when it
// created the request, a moment before we read it); 0 when there is no
// timeout.
func (rt requestTimeout) answerBy() time.Duration {
	if rt.kernel <= 0 {
		return 0
	}
	return rt.kernel - max(rt.kernel/10, 2*time.Second)
}
