package fs

import (
	"context"
	"os"
	"sync/atomic"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// FUSE passthrough: a file whose pieces are all verified when it is
// opened, and that the store keeps whole (the shared cache's data files, a
// FileStore), is handed to the kernel as the open file's backing file, and
// the kernel reads it directly: no READ request, no copy through btfs, the
// page cache of the backing file serving re-reads. Files still
// downloading are opened as before; the next open after they complete
// gets passthrough. Where the kernel or our privileges do not allow it,
// go-fuse falls back to ordinary reads, which the handle serves (and the
// log says so once).

// backingFiler is implemented by a Torrent that can hand out a complete
// file (storagewrapper.Wrapper.BackingFile): open for reading, its pieces
// pinned until release.
type backingFiler interface {
	BackingFile(k int) (f *os.File, release func(), ok bool)
}

// passthroughOpens counts the opens given passthrough (tests look at it).
var passthroughOpens atomic.Int64

// passthroughReads counts the reads the kernel sent for handles opened in
// passthrough: none while passthrough works (tests look at it).
var passthroughReads atomic.Int64

// passthroughHandle is a handle whose file the kernel reads itself.
type passthroughHandle struct {
	*handle
	// file is the backing file; release closes it and unpins its pieces.
	file    *os.File
	release func()
}

var (
	_ = (fusefs.FilePassthroughFder)((*passthroughHandle)(nil))
	_ = (fusefs.FileReader)((*passthroughHandle)(nil))
	_ = (fusefs.FileReleaser)((*passthroughHandle)(nil))
)

// openPassthrough returns a passthrough handle of f, or nil when f cannot
// have one now: passthrough off or unavailable, f open in the page cache
// mode by another handle, or not complete.
func (m *mountState) openPassthrough(f *fileNode) *passthroughHandle {
	bf, ok := m.t.(backingFiler)
	if !ok || m.noPassthrough || m.passthroughOff.Load() || f.length == 0 {
		return nil
	}
	m.mu.Lock()
	busy := m.cachedOpens[f] > 0
	m.mu.Unlock()
	if busy {
		return nil
	}
	file, release, ok := bf.BackingFile(f.index)
	if !ok {
		return nil
	}
	passthroughOpens.Add(1)
	return &passthroughHandle{handle: m.open(f), file: file, release: release}
}

// PassthroughFd gives go-fuse the backing file, once, at open.
func (h *passthroughHandle) PassthroughFd() (int, bool) { return int(h.file.Fd()), true }

// Read serves a read the kernel sent anyway: passthrough is unavailable
// (go-fuse could not register the backing file). Later opens do without
// it.
func (h *passthroughHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	passthroughReads.Add(1)
	if !h.m.passthroughOff.Swap(true) {
		h.m.log.Warn("fs: FUSE passthrough is unavailable here (kernel or privileges): complete files are read through btfs")
	}
	return h.handle.Read(ctx, dest, off)
}

// Release closes the backing file and unpins its pieces.
func (h *passthroughHandle) Release(ctx context.Context) syscall.Errno {
	errno := h.handle.Release(ctx)
	h.release()
	return errno
}
