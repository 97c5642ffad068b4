package fs

import (
	"errors"
	"io"
	"os"
	"sync/atomic"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/hanwen/go-fuse/v2/splice"
)

// fileReader is implemented by a Torrent whose verified bytes live in
// files (storagewrapper.Wrapper over a FileStore or the shared cache): see
// storagewrapper.Wrapper.ReadFiles.
type fileReader interface {
	ReadFiles(off int64, n int, fn func(f *os.File, at int64, m int) error) (bool, error)
}

// Pipe arithmetic. The kernel counts a pipe's capacity in slots of one page
// each; a slot holds at most one page of one file, so bytes spliced from a
// file at an offset that is not page-aligned take one slot more than their
// pages. go-fuse writes the reply header into a pipe of its own, then
// moves our slots behind it, and refuses to grow a pipe past
// /proc/sys/fs/pipe-max-size (1 MiB here): a read is spliced only when
// header and data surely fit, else it is copied as before.
var pageSize = os.Getpagesize()

// replyHeader is the size of a FUSE reply header (fuse_out_header).
const replyHeader = 16

// spliceReads turns spliceRead on; benchmarks turn it off to compare.
var spliceReads = func() *atomic.Bool { var b atomic.Bool; b.Store(true); return &b }()

// maxSplice is the largest read that go-fuse can splice here.
var maxSplice = maxSpliceRead(splice.MaxPipeSize())

// spliced counts the reads answered by spliceRead (tests look at it).
var spliced atomic.Int64

// errNoRoom stops a splice whose slots would not fit go-fuse's pipe.
var errNoRoom = errors.New("fs: read does not fit a pipe")

// spliceSlots is the number of pipe slots that n bytes at file offset at
// take.
func spliceSlots(at int64, n int) int {
	page := int64(pageSize)
	first := at / page
	last := (at + int64(n) - 1) / page
	return int(last - first + 1)
}

// spliceCap is the fewest slots go-fuse's pipe has for a read of n bytes:
// it grows the pipe to header + n + one page, and the kernel rounds a
// pipe's size up to a power of two pages.
func spliceCap(n int) int {
	pages := (replyHeader + n + pageSize + pageSize - 1) / pageSize
	c := 1
	for c < pages {
		c <<= 1
	}
	return c
}

// maxSpliceRead is the largest read, in whole pages, that go-fuse can
// splice through a pipe no larger than max bytes: its header, the data and
// the page it adds must fit.
func maxSpliceRead(max int) int {
	return (max - replyHeader - pageSize) / pageSize * pageSize
}

// spliceRead answers a read of n bytes at torrent offset off with the
// verified bytes of the piece files, moved into a pipe by splice(2):
// page references, not copies. The kernel then copies each page once,
// from the pipe into the mounted file's page cache, where a read through
// our memory costs two copies (pread into a buffer, write to /dev/fuse)
// and a system call per piece on our side. It returns nil when the read
// cannot go this way (splice is off, a piece is not verified yet, the
// Torrent keeps no piece files, the read does not fit a pipe, a piece file
// is gone): the caller reads through memory, which also waits and fetches.
func (m *mountState) spliceRead(off int64, n int) fuse.ReadResult {
	fr, ok := m.t.(fileReader)
	if !ok || !spliceOn() || n > maxSplice {
		return nil
	}
	// The pipe is taken only once ReadFiles found every piece verified:
	// a read that must wait (most reads of a fresh download) costs no pipe.
	room := &pipeRoom{left: spliceCap(n) - 1} // one slot for go-fuse's header
	ok, err := fr.ReadFiles(off, n, func(f *os.File, at int64, cnt int) error {
		if room.pair == nil {
			pair, err := splice.Get()
			if err != nil {
				return err
			}
			room.pair = pair
		}
		return room.load(f, at, cnt)
	})
	if !ok || err != nil {
		if err != nil && !errors.Is(err, errNoRoom) {
			m.log.Debug("fs: splice failed, copying", "off", off, "len", n, "err", err)
		}
		if room.pair != nil {
			splice.Done(room.pair) // drains what was loaded
		}
		return nil
	}
	spliced.Add(1)
	return fuse.ReadResultPipe(room.pair, n)
}

// pipeRoom fills a pipe while keeping count of its slots: each splice
// from a file takes one slot per page it touches, so a splice that stops
// in the middle of a page and the next one that goes on from there take
// two slots for that page.
type pipeRoom struct {
	// pair is the pipe.
	pair *splice.Pair
	// left is the number of slots still free in go-fuse's pipe.
	left int
	// used is the number of slots our pipe holds.
	used int
}

// load splices n bytes at offset at of f into the pipe, all of them or an
// error (errNoRoom when they might not fit go-fuse's pipe).
func (r *pipeRoom) load(f *os.File, at int64, n int) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	for n > 0 {
		need := spliceSlots(at, n)
		if need > r.left {
			return errNoRoom
		}
		if err := r.pair.Grow((r.used + need) * pageSize); err != nil {
			return err
		}
		var got int
		var serr error
		if err := rc.Control(func(fd uintptr) {
			got, serr = r.pair.LoadFromAt(fd, n, at)
		}); err != nil {
			return err
		}
		switch {
		case serr == syscall.EINTR:
			continue
		case serr != nil:
			return serr
		case got <= 0:
			return io.ErrUnexpectedEOF // a verified piece shorter than it is
		}
		took := spliceSlots(at, got)
		r.left -= took
		r.used += took
		at += int64(got)
		n -= got
	}
	return nil
}

// fuseMaxRead is the max_read of a mount: maxRead, the kernel's limit, cut
// to the largest read go-fuse can splice when that is less (1016 KiB with
// 1 MiB pipes), so that every full-size read can take the splice path.
func fuseMaxRead() int {
	if spliceOn() {
		return min(maxRead, maxSplice)
	}
	return maxRead
}

// spliceOn reports whether a new mount splices reads: unless turned off,
// or the pipes are too small to be worth it (then go-fuse's splice is
// disabled, so that no read can fail to fit and warn).
func spliceOn() bool { return spliceReads.Load() && maxSplice >= 128<<10 }

// prefetchAhead is how far past a streaming reader's last read the piece
// files are read into the page cache: twice the kernel's readahead, so
// that the FUSE reads the kernel sends ahead find their pieces in memory
// instead of each waiting for its own disk read. A re-read of complete
// data after the cache was dropped: ~1.6 → ~1.85 GB/s here (paired runs).
const prefetchAhead = 2 * kernelReadahead
