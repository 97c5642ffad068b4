package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"btfs/stream"
)

// Open opens the file for reading: a handle that keeps its reader's
// position and readahead window across reads (never a new reader per FUSE
// read: the window would be lost). Opening for writing, or with O_TRUNC, is
// EROFS. FOPEN_KEEP_CACHE keeps the kernel's page cache across opens: the
// content never changes, so a re-read never reaches us.
func (f *fileNode) Open(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0 {
		return nil, 0, syscall.EROFS
	}
	if h := f.m.openPassthrough(f); h != nil {
		return h, 0, 0
	}
	h := f.m.open(f)
	h.cached = true
	f.m.mu.Lock()
	f.m.cachedOpens[f]++
	f.m.mu.Unlock()
	return h, fuse.FOPEN_KEEP_CACHE, 0
}

// handle is one open file: a stream.Reader (position, readahead window,
// head and tail wants) adapted to FUSE. Reads of one handle may run
// concurrently (the kernel's asynchronous reads); mu guards only timedOut,
// never the wait for the data.
//
// Lock order: handle.mu is never held across a call into r or the mount;
// stream.Reader's own order (its mutex → the Torrent's lock) applies.
// mountState.mu is never taken while either is held.
type handle struct {
	// f is the file.
	f *fileNode
	// m is the mount.
	m *mountState
	// r follows the handle's reader over the file's bytes.
	r *stream.Reader

	// cached is set for a handle in the kernel's page cache mode (not
	// passthrough): counted in mountState.cachedOpens until released.
	cached bool

	// mu guards timedOut.
	mu sync.Mutex
	// timedOut are the ranges (file offsets) whose reads on this handle
	// gave up waiting in the last retryWindow: see gaveUpOn.
	timedOut []timedOutRange
}

// timedOutRange is a read that gave up waiting for its pieces.
type timedOutRange struct {
	off, end int64
	at       time.Time
}

// retryWindow is how long after a read of a handle timed out another read
// of the same range fails at once. The kernel reads ahead of a buffered
// reader, and when that request fails it asks once more for the page the
// reader waits on, at once: without this the reader would see its EIO
// after twice the timeout it asked for.
const retryWindow = 2 * time.Second

// open makes a handle for f, registers it with the mount (so Unmount can
// release its wants if the kernel never does) and, for a media file, wants
// its head and tail at once (stream.Config.HeadTail): players read the
// container's index at the end before they play.
func (m *mountState) open(f *fileNode) *handle {
	cfg := stream.Config{
		Policy:        m.policy,
		PieceLength:   m.info.PieceLength,
		PrefetchAhead: prefetchAhead,
		Logger:        m.log.With("file", f.index),
		Registry:      m.readers,
		Kind:          "fuse",
		Name:          strings.Join(m.info.Files[f.index].Path, "/"),
	}
	if f.media {
		cfg.HeadTail = m.mediaHeadTail
	}
	h := &handle{f: f, m: m, r: stream.NewReader(m.t, f.offset, f.length, cfg)}
	m.mu.Lock()
	m.handles[h] = struct{}{}
	m.mu.Unlock()
	return h
}

// Read reads at file offset off: the torrent bytes [offset+off, ...),
// clamped at the end of the file, waiting for them. It is never short
// except at the end of the file (the kernel would zero-fill a short read).
//
// A read whose pieces are all verified and stored as files is answered
// without copying its bytes through dest (spliceRead); the Reader is told
// of it (Observe) as of any other read, so that its window follows.
func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	size := h.f.length
	if off < 0 {
		return nil, syscall.EINVAL
	}
	if off >= size || len(dest) == 0 {
		return fuse.ReadResultData(nil), 0
	}
	n := min(int64(len(dest)), size-off)
	if h.m.ctx.Err() != nil {
		// Unmounting, or the torrent was removed from its library: even
		// verified pieces are not read any more.
		return nil, toErrno(context.Cause(h.m.ctx))
	}
	if res := h.m.spliceRead(h.f.offset+off, int(n)); res != nil {
		h.r.Observe(off, n)
		h.r.Prefetch(off + n)
		return res, 0
	}
	if h.gaveUpOn(off, n) {
		h.r.Observe(off, n)
		h.m.log.Debug("fs: read failed at once: the same range timed out a moment ago", "file", h.f.index, "off", off, "len", n)
		return nil, syscall.EIO
	}
	got, err := h.m.readAt(ctx, h.r, dest[:n], off)
	if err != nil {
		if errors.Is(err, errReadTimeout) || errors.Is(err, errRequestTimeout) {
			h.noteTimeout(off, n)
		}
		errno := toErrno(err)
		h.m.log.Debug("fs: read failed", "file", h.f.index, "off", off, "len", n, "errno", errno, "err", err)
		return nil, errno
	}
	// A vector result is written with writev as it is; a plain data
	// result would first go through go-fuse's splice attempt (a pipe, a
	// header written into it, then thrown away) for nothing.
	return fuse.ReadResultVector([][]byte{dest[:got]}), 0
}

// noteTimeout records that the read of [off, off+n) gave up waiting.
func (h *handle) noteTimeout(off, n int64) {
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pruneTimeouts(now)
	h.timedOut = append(h.timedOut, timedOutRange{off: off, end: off + n, at: now})
}

// gaveUpOn reports whether a read of [off, off+n) overlaps one of this
// handle that timed out within retryWindow, with some of its pieces still
// missing: the kernel asking again for what its reader already waited on
// (retryWindow).
func (h *handle) gaveUpOn(off, n int64) bool {
	h.mu.Lock()
	h.pruneTimeouts(time.Now())
	hit := false
	for _, r := range h.timedOut {
		if off < r.end && r.off < off+n {
			hit = true
			break
		}
	}
	h.mu.Unlock()
	if !hit {
		return false
	}
	return h.r.FirstMissing(off, off+n) < off+n
}

// pruneTimeouts forgets the timeouts older than retryWindow; h.mu held.
func (h *handle) pruneTimeouts(now time.Time) {
	h.timedOut = slices.DeleteFunc(h.timedOut, func(r timedOutRange) bool { return now.Sub(r.at) >= retryWindow })
}

// Release drops the handle's wants: no stale priorities once a file is
// closed.
func (h *handle) Release(ctx context.Context) syscall.Errno {
	h.close()
	h.m.mu.Lock()
	delete(h.m.handles, h)
	if h.cached {
		if h.m.cachedOpens[h.f]--; h.m.cachedOpens[h.f] <= 0 {
			delete(h.m.cachedOpens, h.f)
		}
	}
	h.m.mu.Unlock()
	return 0
}

// close releases every want of the handle; later calls do nothing.
func (h *handle) close() { _ = h.r.Close() }

// readAt reads len(p) bytes at file offset off through r, the whole range
// or an error. ctx is go-fuse's, cancelled when the kernel interrupts the request;
// the read also gives up when Unmount starts (errUnmounting) and after
// Options.ReadTimeout (errReadTimeout) or before the kernel's request
// timeout (errRequestTimeout): see waitLimit. The cause is kept in the error for
// toErrno.
func (m *mountState) readAt(ctx context.Context, r *stream.Reader, p []byte, off int64) (int, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(m.ctx, func() { cancel(context.Cause(m.ctx)) })
	defer stop()
	if d, cause := m.waitLimit(); d > 0 {
		var cancelTimeout context.CancelFunc
		ctx, cancelTimeout = context.WithTimeoutCause(ctx, d, cause)
		defer cancelTimeout()
	}
	n, err := r.ReadAt(ctx, p, off)
	if n == len(p) && (err == nil || errors.Is(err, io.EOF)) {
		return n, nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF // the Torrent broke its contract
	}
	if cause := context.Cause(ctx); cause != nil && !errors.Is(err, cause) {
		err = fmt.Errorf("%w (%w)", err, cause)
	}
	return n, fmt.Errorf("fs: read %d bytes at file offset %d: %w", len(p), off, err)
}
