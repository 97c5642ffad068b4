package fs

import (
	"context"
	"slices"
	"strings"
	"syscall"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// A pending mount (MountPending) has a root and nothing else until Ready.
// The root answers LOOKUP and READDIR itself so that it can wait for the
// tree; once the tree is there, it answers them from its children exactly
// as go-fuse would for a static tree.

// isReady reports whether the torrent is known and the tree built.
func (m *mountState) isReady() bool {
	select {
	case <-m.ready:
		return true
	default:
		return false
	}
}

// waitReady waits for the tree as a read waits for its pieces: until it is
// there (0), the caller is interrupted (EINTR), the read timeout or the
// kernel's request timeout is near (EAGAIN: try again, the metadata is
// still being fetched) or the mount goes away (EIO).
func (m *mountState) waitReady(ctx context.Context) syscall.Errno {
	if m.isReady() {
		return 0
	}
	var timeout <-chan time.Time
	if d, _ := m.waitLimit(); d > 0 {
		timer := time.NewTimer(d)
		defer timer.Stop()
		timeout = timer.C
	}
	select {
	case <-m.ready:
		return 0
	case <-ctx.Done():
		return syscall.EINTR
	case <-m.ctx.Done():
		return syscall.EIO
	case <-timeout:
		return syscall.EAGAIN
	}
}

// Lookup finds a name in the root once the tree is there.
func (r *rootNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	if errno := r.m.waitReady(ctx); errno != 0 {
		return nil, errno
	}
	ch := r.GetChild(name)
	if ch == nil {
		return nil, syscall.ENOENT
	}
	if ga, ok := ch.Operations().(fusefs.NodeGetattrer); ok {
		var a fuse.AttrOut
		if errno := ga.Getattr(ctx, nil, &a); errno == 0 {
			out.Attr = a.Attr
		}
	}
	return ch, 0
}

// Readdir lists the root once the tree is there.
func (r *rootNode) Readdir(ctx context.Context) (fusefs.DirStream, syscall.Errno) {
	if errno := r.m.waitReady(ctx); errno != 0 {
		return nil, errno
	}
	children := r.Children()
	list := make([]fuse.DirEntry, 0, len(children))
	for name, ch := range children {
		list = append(list, fuse.DirEntry{Name: name, Mode: ch.Mode(), Ino: ch.StableAttr().Ino})
	}
	slices.SortFunc(list, func(a, b fuse.DirEntry) int { return strings.Compare(a.Name, b.Name) })
	return fusefs.NewListDirStream(list), 0
}

// Getattr reports the root directory; before the tree is there it has no
// subdirectories yet.
func (r *rootNode) Getattr(ctx context.Context, fh fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if !r.m.isReady() {
		r.m.fillAttr(&out.Attr, 0o555, 0, 2)
		return 0
	}
	return r.dirNode.Getattr(ctx, fh, out)
}
