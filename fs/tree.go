package fs

import (
	"context"
	"strings"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"btfs/stream"
)

// The tree is static, built once in the root's OnAdd from the torrent's file
// list (go-fuse zipfs's way): every node is a persistent inode, so go-fuse
// answers LOOKUP and READDIR from the tree and nothing is computed per
// lookup.
//
// Layout: the mount point IS the torrent's top directory. A multi-file
// torrent's files appear at their Path below the mount point, without
// another directory named Info.Name (the user chose the mount point's name;
// "~/mnt/Movie/Movie/file.mkv" helps nobody). A single-file torrent shows
// its one file, named Info.Name, at the mount root. BEP 47 padding files
// are hidden; a directory holding only padding files does not appear.
//
// Inode numbers are stable for a torrent, across mounts: 1 for the root,
// 2+i for Info.Files[i], and the numbers after the files for directories in
// the order they first appear. In a library the same numbers are offset
// by the torrent's own range (libraryIno).

// Compile-time checks of the operations each node implements.
var (
	_ fusefs.InodeEmbedder     = (*rootNode)(nil)
	_ fusefs.NodeOnAdder       = (*rootNode)(nil)
	_ fusefs.NodeLookuper      = (*rootNode)(nil)
	_ fusefs.NodeReaddirer     = (*rootNode)(nil)
	_ fusefs.NodeGetattrer     = (*rootNode)(nil)
	_ fusefs.NodeGetattrer     = (*dirNode)(nil)
	_ fusefs.NodeStatfser      = (*dirNode)(nil)
	_ fusefs.NodeGetxattrer    = (*dirNode)(nil)
	_ fusefs.NodeListxattrer   = (*dirNode)(nil)
	_ fusefs.NodeGetattrer     = (*fileNode)(nil)
	_ fusefs.NodeStatfser      = (*fileNode)(nil)
	_ fusefs.NodeOpener        = (*fileNode)(nil)
	_ fusefs.NodeGetxattrer    = (*fileNode)(nil)
	_ fusefs.NodeListxattrer   = (*fileNode)(nil)
	_ fusefs.FileReader        = (*handle)(nil)
	_ fusefs.FileReleaser      = (*handle)(nil)
	_ fusefs.NodeSetattrer     = (*node)(nil)
	_ fusefs.NodeSetxattrer    = (*node)(nil)
	_ fusefs.NodeRemovexattrer = (*node)(nil)
	_ fusefs.NodeCreater       = (*dirNode)(nil)
	_ fusefs.NodeTmpfiler      = (*dirNode)(nil)
	_ fusefs.NodeMkdirer       = (*dirNode)(nil)
	_ fusefs.NodeMknoder       = (*dirNode)(nil)
	_ fusefs.NodeLinker        = (*dirNode)(nil)
	_ fusefs.NodeSymlinker     = (*dirNode)(nil)
	_ fusefs.NodeUnlinker      = (*dirNode)(nil)
	_ fusefs.NodeRmdirer       = (*dirNode)(nil)
	_ fusefs.NodeRenamer       = (*dirNode)(nil)
	_ fusefs.NodeWriter        = (*fileNode)(nil)
	_ fusefs.NodeAllocater     = (*fileNode)(nil)
	_ fusefs.NodeFsyncer       = (*fileNode)(nil)
)

// node is what every node of the tree shares: the embedded go-fuse Inode and
// the mount. Its methods refuse every change (readonly.go) and answer statfs.
type node struct {
	fusefs.Inode
	// m is the mount the node belongs to.
	m *mountState
}

// dirNode is a directory of the torrent, or the mount root.
type dirNode struct {
	node
	// files are the indices in Info.Files of the files below this
	// directory, at any depth, for its progress attribute.
	files []int
	// subdirs counts the directories directly inside it: st_nlink is
	// 2+subdirs, which find(1) relies on.
	subdirs uint32
	// root is set on the mount root, whose attributes are torrent-wide.
	root bool
}

// rootNode is the mount root; it builds the tree when go-fuse adds it.
type rootNode struct {
	dirNode
}

// fileNode is one (non-padding) file of the torrent.
type fileNode struct {
	node
	// index is the file's index in Info.Files.
	index int
	// offset is the torrent offset of the file's first byte; length is its
	// size in bytes.
	offset, length int64
	// media is set for audio and video files (by extension): their head
	// and tail are wanted while they are open.
	media bool
}

// newRoot returns the root node of a mount.
func newRoot(m *mountState) *rootNode {
	return &rootNode{dirNode: dirNode{node: node{m: m}, root: true}}
}

// OnAdd builds the whole tree when the torrent is known at mount time; a
// pending mount's tree is built by Mounted.Ready.
func (r *rootNode) OnAdd(ctx context.Context) {
	if r.m.isReady() {
		r.populate(ctx)
	}
}

// populate builds the whole tree. A file the torrent should never have had (an
// unsafe path component, a name taken by another file or needed as a
// directory: Parse guarantees none, a hand-made MetaInfo may not) is left
// out with a warning rather than a panic.
func (r *rootNode) populate(ctx context.Context) {
	info := r.m.info
	dirs := map[string]*dirNode{"": &r.dirNode}
	nextDirIno := uint64(len(info.Files)) + 2
	for i, f := range info.Files {
		if f.Padding {
			continue
		}
		if r.m.inoBase != 0 && uint64(len(info.Files))+uint64(len(dirs))+2 > libraryInoSpan {
			r.m.log.Warn("fs: file left out: the torrent has more files than a library gives inode numbers to", "file", i)
			break
		}
		if !safePath(f.Path) {
			r.m.log.Warn("fs: file left out: unsafe path", "file", i, "path", f.Path)
			continue
		}
		parents := []*dirNode{&r.dirNode}
		key, ok := "", true
		for _, c := range f.Path[:len(f.Path)-1] {
			parent := parents[len(parents)-1]
			key += "/" + c
			d := dirs[key]
			if d == nil {
				if parent.GetChild(c) != nil {
					ok = false
					break
				}
				d = &dirNode{node: node{m: r.m}}
				ch := parent.NewPersistentInode(ctx, d, fusefs.StableAttr{Mode: syscall.S_IFDIR, Ino: r.m.inoBase + nextDirIno, Gen: r.m.gen})
				nextDirIno++
				parent.AddChild(c, ch, false)
				parent.subdirs++
				dirs[key] = d
			}
			parents = append(parents, d)
		}
		name := f.Path[len(f.Path)-1]
		parent := parents[len(parents)-1]
		if !ok || parent.GetChild(name) != nil {
			r.m.log.Warn("fs: file left out: its path is taken", "file", i, "path", strings.Join(f.Path, "/"))
			continue
		}
		fn := &fileNode{
			node:   node{m: r.m},
			index:  i,
			offset: f.Offset,
			length: max(f.Length, 0),
			media:  stream.IsMedia(name),
		}
		ch := parent.NewPersistentInode(ctx, fn, fusefs.StableAttr{Mode: syscall.S_IFREG, Ino: r.m.inoBase + uint64(i) + 2, Gen: r.m.gen})
		parent.AddChild(name, ch, false)
		for _, d := range parents {
			d.files = append(d.files, i)
		}
		r.m.nodes++
	}
	r.m.nodes += len(dirs)
}

// safePath reports whether every component of p can be a name in a
// directory.
func safePath(p []string) bool {
	if len(p) == 0 {
		return false
	}
	for _, c := range p {
		if c == "" || c == "." || c == ".." || strings.ContainsAny(c, "/\x00") {
			return false
		}
	}
	return true
}

// Getattr reports a read-only directory.
func (d *dirNode) Getattr(ctx context.Context, fh fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.m.fillAttr(&out.Attr, 0o555, 0, 2+d.subdirs)
	return 0
}

// Getattr reports a read-only file of the torrent's size for it.
func (f *fileNode) Getattr(ctx context.Context, fh fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f.m.fillAttr(&out.Attr, 0o444, f.length, 1)
	return 0
}

// fillAttr fills the attributes every node shares. go-fuse adds the file
// type and the inode number from the node's StableAttr.
func (m *mountState) fillAttr(a *fuse.Attr, perm uint32, size int64, nlink uint32) {
	a.Mode = perm
	a.Size = uint64(size)
	a.Blocks = (a.Size + 511) / 512 // st_blocks counts 512-byte units
	a.Blksize = blockSize
	a.Nlink = nlink
	a.Owner = fuse.Owner{Uid: m.uid, Gid: m.gid}
	t := uint64(m.mtime.Unix())
	ns := uint32(m.mtime.Nanosecond())
	a.Atime, a.Mtime, a.Ctime = t, t, t
	a.Atimensec, a.Mtimensec, a.Ctimensec = ns, ns, ns
}

// Statfs describes the torrent as a full, read-only file system: df shows
// its size, nothing free.
func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	const bsize = 4096
	out.Bsize = bsize
	out.Frsize = bsize
	if !n.m.isReady() {
		return 0 // a pending mount: nothing in it yet
	}
	out.Blocks = uint64((n.m.info.TotalLength + bsize - 1) / bsize)
	out.Files = uint64(n.m.nodes)
	out.NameLen = 255
	return 0
}
