package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"btfs/bitfield"
	"btfs/picker"
)

// Torrent is what a Reader needs from a torrent: verified bytes at torrent
// offsets, a way to say which bytes will be wanted soon, and the verified
// set. *storagewrapper.Wrapper satisfies it.
type Torrent interface {
	// ReadAt reads len(p) bytes at torrent offset off once every piece
	// under them is verified, waiting (with a picker.Now want on the
	// missing part, registered by ReadAt itself) until then or until ctx
	// is done, in which case the error wraps ctx.Err(). It is never short
	// except at the end of the torrent (io.EOF, as io.ReaderAt).
	ReadAt(ctx context.Context, p []byte, off int64) (int, error)
	// Want registers demand for a byte range until release is called;
	// release may be called more than once.
	Want(w picker.Want) (release func())
	// Bitfield returns a copy of the verified set: the caller's to keep.
	Bitfield() *bitfield.Bitfield
}

// prefetcher is implemented by a Torrent that can have its piece files
// read into the page cache ahead of a reader
// (storagewrapper.Wrapper.Prefetch).
type prefetcher interface {
	Prefetch(off, n int64)
}

// Config sets up a Reader.
type Config struct {
	// Policy bounds the readahead window; the zero value means
	// NewPolicy(0, 0), the defaults.
	Policy Policy
	// PieceLength is the torrent's piece length; required (> 0).
	PieceLength int64
	// HeadTail, when positive, wants max(HeadTail, PieceLength) bytes at
	// each end of the range for as long as the Reader is open: players
	// read a media file's container index at its end before they play
	// (IsMedia, DefaultMediaHeadTail). 0 wants nothing at open.
	HeadTail int64
	// PrefetchAhead is how far past a streaming reader's read Prefetch
	// asks the Torrent (when it can: storagewrapper's piece files) to read
	// ahead into the page cache; 0 turns Prefetch off.
	PrefetchAhead int64
	// Logger receives seeks at debug level; nil discards them.
	Logger *slog.Logger
	// Registry, when set, lists the Reader while it is open and counts its
	// reads under Kind ("fuse", "http"); Name is the file's path, for
	// people.
	Registry   *Registry
	Kind, Name string
}

// Reader follows one consumer of one byte range of a torrent (a file): an
// open FUSE file handle, an HTTP response. It is anacrolix/torrent's Reader:
// it keeps the consumer's position and streak across reads and one
// picker.Readahead want ahead of it, sized by Policy (or SetReadahead),
// moved as the consumer reads and released at once when it seeks away;
// optionally the range's head and tail are wanted while it is open.
// Close releases every want. A Reader is made per consumer, never per read:
// a new one per read would lose the window.
//
// Reads may run concurrently (a kernel's asynchronous reads): mu guards
// only the bookkeeping, never the wait for the data.
//
// Lock order: Reader.mu → the Torrent's own lock (Want, release and
// Bitfield are called under mu; the Torrent never calls back).
type Reader struct {
	// t is the torrent; off is the torrent offset of the range's first
	// byte and size its length; pieceLen is t's piece length.
	t             Torrent
	off, size     int64
	pieceLen      int64
	policy        Policy
	prefetchAhead int64
	log           *slog.Logger

	// mu guards the fields below.
	mu sync.Mutex
	// st is the reader's position and streak.
	st state
	// fixed is the window set by SetReadahead; negative: the policy's.
	fixed int64
	// cur is the readahead window registered now (range offsets); empty
	// when none is.
	cur span
	// release releases cur's want; nil when none is registered.
	release func()
	// headTail releases the head and tail wants.
	headTail []func()
	// closed is set by Close: the wants are gone and stay gone.
	closed bool
	// prefetched is the range offset up to which Prefetch asked for the
	// piece files to be read into the page cache; 0 after a seek.
	prefetched int64
	// headTailSpans are the head and tail wanted (range offsets).
	headTailSpans []span

	// reg, kind, name and opened are Config.Registry, Kind, Name and
	// when NewReader ran; reg may be nil.
	reg        *Registry
	kind, name string
	opened     time.Time
}

// NewReader returns a Reader of the size bytes at torrent offset off of t.
// With cfg.HeadTail set, it wants the range's head and tail at once.
func NewReader(t Torrent, off, size int64, cfg Config) *Reader {
	if cfg.Policy.min <= 0 {
		cfg.Policy = NewPolicy(0, 0)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reader{
		t: t, off: off, size: max(size, 0), pieceLen: max(cfg.PieceLength, 1),
		policy: cfg.Policy, prefetchAhead: cfg.PrefetchAhead, log: log, fixed: -1,
		reg: cfg.Registry, kind: cfg.Kind, name: cfg.Name, opened: time.Now(),
	}
	if cfg.HeadTail > 0 {
		now := time.Now()
		for _, s := range headTail(r.size, r.pieceLen, cfg.HeadTail) {
			r.headTailSpans = append(r.headTailSpans, s)
			r.headTail = append(r.headTail, t.Want(picker.Want{
				Start:    off + s.start,
				End:      off + s.end,
				Priority: picker.Readahead,
				Deadline: now,
			}))
		}
	}
	if r.reg != nil {
		r.reg.add(r)
	}
	return r
}

// Size is the length of the range.
func (r *Reader) Size() int64 { return r.size }

// ReadAt reads len(p) bytes at offset off of the range, as io.ReaderAt
// does (short only at the end of the range, with io.EOF), waiting for
// the pieces until ctx is done. It first records the read (Observe): the
// readahead window moves before the wait.
func (r *Reader) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("stream: read at %d: negative offset", off)
	}
	if off >= r.size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	n := min(int64(len(p)), r.size-off)
	ready := r.reg != nil && r.FirstMissing(off, off+n) == off+n
	inWindow := r.observe(off, n)
	start := time.Now()
	got, err := r.t.ReadAt(ctx, p[:n], r.off+off)
	if r.reg != nil {
		r.reg.record(r.kind, time.Since(start), ready && inWindow)
	}
	if int64(got) == n {
		if n < int64(len(p)) {
			return got, io.EOF
		}
		return got, nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF // the Torrent broke its contract
	}
	return got, err
}

// Observe records a read of n bytes at offset off of the range that the
// caller served without ReadAt (a splice from piece files, a page cache
// hit it learned of) and moves the readahead want if the window moved
// enough (Policy.observe, moved). A seek releases the old window's want at
// once: the swarm stops being asked for bytes nobody is about to read.
// Nothing after Close. With a Registry, it counts as a read that did not
// wait.
func (r *Reader) Observe(off, n int64) {
	ready := r.reg != nil && off < r.size && r.FirstMissing(off, min(off+n, r.size)) == min(off+n, r.size)
	inWindow := r.observe(off, n)
	if r.reg != nil {
		r.reg.record(r.kind, 0, ready && inWindow)
	}
}

// observe is Observe without the count; it reports whether the read lay
// inside the readahead window or the head/tail wants as they were before
// it.
func (r *Reader) observe(off, n int64) (inWindow bool) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	read := span{start: off, end: off + n}
	inWindow = read.within(r.cur)
	for _, s := range r.headTailSpans {
		inWindow = inWindow || read.within(s)
	}
	if r.policy.observe(&r.st, off, n, now) {
		r.prefetched = 0
		r.log.Debug("stream: seek", "off", off, "len", n, "random", r.st.random())
	}
	r.update(now)
	return inWindow
}

// SetReadahead fixes the readahead window at n bytes (0: none), whatever
// the reader's pattern; a negative n returns to the Policy's adaptive
// window. The want moves at once.
func (r *Reader) SetReadahead(n int64) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.fixed = n
	r.update(now)
}

// update moves the readahead want to the window at now, when it moved
// enough; mu held, not closed.
func (r *Reader) update(now time.Time) {
	var next span
	if r.fixed >= 0 {
		next = r.st.ahead(r.fixed, r.size)
	} else {
		next = r.policy.want(&r.st, r.size, now)
	}
	if !moved(r.cur, next) {
		return
	}
	if r.release != nil {
		r.release()
		r.release = nil
	}
	r.cur = next
	if next.empty() {
		return
	}
	distance := r.FirstMissing(next.start, next.end) - r.st.pos
	r.release = r.t.Want(picker.Want{
		Start:    r.off + next.start,
		End:      r.off + next.end,
		Priority: picker.Readahead,
		Deadline: r.policy.deadline(&r.st, now, distance),
	})
}

// Prefetch extends, for a streaming reader whose read ended at range
// offset end, the stretch of piece files read ahead into the page cache to
// end+PrefetchAhead, a piece at a time at least, when the Torrent can
// (storagewrapper.Wrapper.Prefetch). A random reader gets none: it would
// only evict what others use. For a caller that serves reads from piece
// files itself (fs's splice), so that the next reads find them in memory.
func (r *Reader) Prefetch(end int64) {
	p, ok := r.t.(prefetcher)
	if !ok || r.prefetchAhead <= 0 {
		return
	}
	r.mu.Lock()
	from := max(r.prefetched, end)
	to := min(end+r.prefetchAhead, r.size)
	if r.closed || r.st.random() || to <= from || to-from < min(r.pieceLen, r.size-from) {
		r.mu.Unlock()
		return
	}
	r.prefetched = to
	r.mu.Unlock()
	p.Prefetch(r.off+from, to-from)
}

// FirstMissing returns the range offset of the first byte in [start, end)
// (range offsets) whose piece is not verified, or end when all are: where
// a reader of it will block.
func (r *Reader) FirstMissing(start, end int64) int64 {
	if start >= end {
		return end
	}
	tstart, tend := r.off+start, r.off+end
	first := int(tstart / r.pieceLen)
	last := int((tend-1)/r.pieceLen) + 1
	p, ok := r.t.Bitfield().NextClear(first)
	if !ok || p >= last {
		return end
	}
	return max(int64(p)*r.pieceLen, tstart) - r.off
}

// Close releases every want of the Reader; later calls do nothing. ReadAt
// still reads after Close (a read racing the close of its handle gets its
// bytes), but no want is registered for it beyond the Torrent's own.
func (r *Reader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	if r.reg != nil {
		r.reg.remove(r)
	}
	if r.release != nil {
		r.release()
		r.release = nil
	}
	for _, release := range r.headTail {
		release()
	}
	r.headTail = nil
	r.cur = span{}
	return nil
}

// info returns a snapshot of the Reader for Registry.Readers; false once
// closed.
func (r *Reader) info() (ReaderInfo, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ReaderInfo{}, false
	}
	return ReaderInfo{
		Torrent: r.t, Kind: r.kind, Name: r.name, Off: r.off, Size: r.size,
		Pos: r.st.pos, WindowStart: r.cur.start, WindowEnd: r.cur.end,
		Random: r.st.random(), Opened: r.opened,
	}, true
}
