package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"syscall"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"btfs/picker"
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
	return f.m.open(f), fuse.FOPEN_KEEP_CACHE, 0
}

// handle is one open file: the reader state of anacrolix/torrent's Reader
// for one FUSE file handle. Reads of one handle may run concurrently (the
// kernel's asynchronous reads); mu serializes only the bookkeeping, never
// the wait for the data.
//
// Lock order: handle.mu → the Torrent's own lock (Want, release, Bitfield
// are called under mu; the Torrent never calls back). mountState.mu is
// never taken while mu is held.
type handle struct {
	// f is the file.
	f *fileNode
	// m is the mount.
	m *mountState

	// mu guards the fields below.
	mu sync.Mutex
	// ra is the reader's position and streak.
	ra raState
	// cur is the readahead window registered now (file offsets); empty
	// when none is.
	cur span
	// release releases cur's want; nil when none is registered.
	release func()
	// media releases the head and tail wants of a media file.
	media []func()
	// closed is set by close: the wants are gone and stay gone.
	closed bool
	// prefetched is the file offset up to which prefetch asked for the
	// piece files to be read into the page cache; 0 after a seek.
	prefetched int64
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
// its head and tail at once: players read the container's index at the end
// before they play.
func (m *mountState) open(f *fileNode) *handle {
	h := &handle{f: f, m: m}
	if f.media {
		now := time.Now()
		for _, s := range headTail(f.length, m.info.PieceLength, m.mediaHeadTail) {
			h.media = append(h.media, m.t.Want(picker.Want{
				Start:    f.offset + s.start,
				End:      f.offset + s.end,
				Priority: picker.Readahead,
				Deadline: now,
			}))
		}
	}
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
// without copying its bytes through dest (spliceRead).
func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	size := h.f.length
	if off < 0 {
		return nil, syscall.EINVAL
	}
	if off >= size || len(dest) == 0 {
		return fuse.ReadResultData(nil), 0
	}
	n := min(int64(len(dest)), size-off)
	h.track(off, n)
	if res := h.m.spliceRead(h.f.offset+off, int(n)); res != nil {
		h.prefetch(off + n)
		return res, 0
	}
	if h.gaveUpOn(off, n) {
		h.m.log.Debug("fs: read failed at once: the same range timed out a moment ago", "file", h.f.index, "off", off, "len", n)
		return nil, syscall.EIO
	}
	got, err := h.m.readAt(ctx, dest[:n], h.f.offset+off)
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
	start := h.f.offset + off
	return h.m.firstMissing(start, start+n) < start+n
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
	h.m.mu.Unlock()
	return 0
}

// track records a read of n bytes at off and moves the readahead want if
// the window moved enough (raPolicy.observe, moved). The reads' own
// picker.Now wants are the Torrent's business: its ReadAt registers one
// while it waits, so none is added here.
func (h *handle) track(off, n int64) {
	now := time.Now()
	p := h.m.policy
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	if p.observe(&h.ra, off, n, now) {
		h.prefetched = 0
		h.m.log.Debug("fs: seek", "file", h.f.index, "off", off, "len", n, "random", h.ra.random())
	}
	next := p.want(&h.ra, h.f.length)
	if !moved(h.cur, next) {
		return
	}
	if h.release != nil {
		h.release()
		h.release = nil
	}
	h.cur = next
	if next.empty() {
		return
	}
	start, end := h.f.offset+next.start, h.f.offset+next.end
	distance := h.m.firstMissing(start, end) - (h.f.offset + h.ra.pos)
	h.release = h.m.t.Want(picker.Want{
		Start:    start,
		End:      end,
		Priority: picker.Readahead,
		Deadline: p.deadline(&h.ra, now, distance),
	})
}

// close releases every want of the handle; later calls do nothing.
func (h *handle) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	if h.release != nil {
		h.release()
		h.release = nil
	}
	for _, release := range h.media {
		release()
	}
	h.media = nil
	h.cur = span{}
}

// firstMissing returns the torrent offset of the first byte in [start, end)
// that is not verified, or end when all are: where a reader will block.
func (m *mountState) firstMissing(start, end int64) int64 {
	first, last := m.info.PiecesFor(start, end-start)
	p, ok := m.t.Bitfield().NextClear(first)
	if !ok || p >= last {
		return end
	}
	return max(m.info.PieceOffset(p), start)
}

// readAt reads len(p) bytes at torrent offset off, the whole range or an
// error. ctx is go-fuse's, cancelled when the kernel interrupts the request;
// the read also gives up when Unmount starts (errUnmounting) and after
// Options.ReadTimeout (errReadTimeout) or before the kernel's request
// timeout (errRequestTimeout): see waitLimit. The cause is kept in the error for
// toErrno.
func (m *mountState) readAt(ctx context.Context, p []byte, off int64) (int, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(m.ctx, func() { cancel(context.Cause(m.ctx)) })
	defer stop()
	if d, cause := m.waitLimit(); d > 0 {
		var cancelTimeout context.CancelFunc
		ctx, cancelTimeout = context.WithTimeoutCause(ctx, d, cause)
		defer cancelTimeout()
	}
	n, err := m.t.ReadAt(ctx, p, off)
	if n == len(p) && (err == nil || errors.Is(err, io.EOF)) {
		return n, nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF // the Torrent broke its contract
	}
	if cause := context.Cause(ctx); cause != nil && !errors.Is(err, cause) {
		err = fmt.Errorf("%w (%w)", err, cause)
	}
	return n, fmt.Errorf("fs: read %d bytes at torrent offset %d: %w", len(p), off, err)
}
