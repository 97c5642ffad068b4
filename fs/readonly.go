package fs

import (
	"context"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Every operation that would change the tree or a file answers EROFS. The
// mount is also mounted "ro", so the kernel refuses most of them before they
// reach us; these methods matter when it does not (a bind mount made
// read-write, an operation the VFS forwards anyway), and they replace
// go-fuse's defaults, some of which would be wrong here: a directory without
// Unlink or Rmdir lets the removal succeed and drops the child from the tree.
//
// Extended attributes follow the same rule: Setxattr and Removexattr are
// EROFS (what the kernel answers on a read-only mount), not ENOTSUP, so a
// script sees the same error whichever layer refused.

// Setattr refuses chmod, chown, utimes and truncate.
func (n *node) Setattr(ctx context.Context, fh fusefs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

// Setxattr refuses to set an attribute.
func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return syscall.EROFS
}

// Removexattr refuses to remove an attribute.
func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	return syscall.EROFS
}

// Create refuses to create a file.
func (d *dirNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fusefs.Inode, fusefs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EROFS
}

// Tmpfile refuses O_TMPFILE.
func (d *dirNode) Tmpfile(ctx context.Context, flags uint32, mode uint32, out *fuse.EntryOut) (*fusefs.Inode, fusefs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EROFS
}

// Mkdir refuses to make a directory.
func (d *dirNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

// Mknod refuses to make a device, a fifo or a socket.
func (d *dirNode) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

// Link refuses to make a hard link.
func (d *dirNode) Link(ctx context.Context, target fusefs.InodeEmbedder, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

// Symlink refuses to make a symbolic link.
func (d *dirNode) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

// Unlink refuses to remove a file.
func (d *dirNode) Unlink(ctx context.Context, name string) syscall.Errno {
	return syscall.EROFS
}

// Rmdir refuses to remove a directory.
func (d *dirNode) Rmdir(ctx context.Context, name string) syscall.Errno {
	return syscall.EROFS
}

// Rename refuses to move anything.
func (d *dirNode) Rename(ctx context.Context, name string, newParent fusefs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	return syscall.EROFS
}

// Write refuses to write (Open already refuses to open for writing).
func (f *fileNode) Write(ctx context.Context, fh fusefs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	return 0, syscall.EROFS
}

// Allocate refuses fallocate.
func (f *fileNode) Allocate(ctx context.Context, fh fusefs.FileHandle, off uint64, size uint64, mode uint32) syscall.Errno {
	return syscall.EROFS
}

// Fsync succeeds: a file open for reading has nothing to flush, and
// programs fsync read-only descriptors more often than one would think.
func (f *fileNode) Fsync(ctx context.Context, fh fusefs.FileHandle, flags uint32) syscall.Errno {
	return 0
}
