package fs

import (
	"context"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"btfs/metainfo"
)

// A library mount (MountLibrary) holds many torrents: its root has one
// directory per torrent, named after it, added and removed while mounted.
// Each torrent directory is what a mount of one torrent is at its root
// (a pending one until its metadata comes), with its own state: removing
// a torrent fails its reads and releases its handles without touching the
// others.
//
// Inode numbers: the root is 1; a torrent's tree keeps the numbers a mount
// of it alone would have (1 for its directory, 2+i for Info.Files[i], the
// directories after), offset by libraryIno(info-hash), a range of
// libraryInoSpan numbers that depends only on the info-hash: the same
// torrent has the same numbers in every library and after a restart.

// libraryInoSpan is how many inode numbers each torrent of a library has:
// its files and directories must fit (a torrent with more leaves the rest
// out, with a warning). The other 40 bits come from the info-hash.
const libraryInoSpan = 1 << 24

// errRemoved is the cause of the reads of a torrent removed from a library.
var errRemoved = errors.New("fs: the torrent was removed from the library")

// XattrControl names, on a library's root, the control socket that `btfs
// add`, `rm` and `ls` talk to (Options.Control).
const XattrControl = "user.btfs.control"

// libraryIno is the first inode number of the torrent ih's range in a
// library; try picks another candidate when an earlier one is taken by
// another torrent of the same library (40 bits make that rare: about one
// library in 10^7 with 200 torrents).
func libraryIno(ih metainfo.Hash, try int) uint64 {
	var b [8]byte
	if try == 0 {
		copy(b[:], ih[:8])
	} else {
		h := sha1.Sum(append(ih[:], byte(try)))
		copy(b[:], h[:8])
	}
	base := binary.BigEndian.Uint64(b[:]) >> 24
	if base == 0 {
		base = 1 // 1..2^24-1 are the library root's
	}
	return base << 24
}

// libRoot is a library's root directory.
type libRoot struct {
	fusefs.Inode
	// m is the mount-wide state: its context ends every torrent's.
	m *mountState
	// opts are the mount's, for each torrent's state.
	opts Options
	// control is the control socket's path (XattrControl).
	control string

	// mu guards the fields below.
	mu sync.Mutex
	// byHash and byName index the torrents.
	byHash map[metainfo.Hash]*libEntry
	byName map[string]*libEntry
	// gen numbers the Adds (each torrent's node generation).
	gen uint64
}

// libEntry is one torrent of a library.
type libEntry struct {
	name  string
	state *mountState
	root  *rootNode
}

var (
	_ fusefs.NodeGetattrer   = (*libRoot)(nil)
	_ fusefs.NodeStatfser    = (*libRoot)(nil)
	_ fusefs.NodeGetxattrer  = (*libRoot)(nil)
	_ fusefs.NodeListxattrer = (*libRoot)(nil)
)

// MountLibrary mounts an empty library at mountpoint; Add, Ready and
// Remove change it while mounted. opts.Control is shown on its root.
func MountLibrary(mountpoint string, opts Options) (*Mounted, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts.Logger = log
	dir, err := prepareMountpoint(mountpoint, log)
	if err != nil {
		return nil, err
	}
	m := newMountState(context.Background(), metainfo.Hash{}, nil, nil, opts, log)
	lib := &libRoot{m: m, opts: opts, control: opts.Control, byHash: map[metainfo.Hash]*libEntry{}, byName: map[string]*libEntry{}}
	server, err := serve(dir, m, lib, opts, true, log)
	if err != nil {
		return nil, err
	}
	log.Info("fs: library mounted", "mountpoint", dir)
	return &Mounted{dir: dir, server: server, state: m, lib: lib, log: log}, nil
}

// Add makes a directory for the torrent ih, named after name (a clash
// gets " (2)", " (3)", …; an unusable name becomes the info-hash), and
// returns the name given. With mi nil the directory waits for Fill as a
// pending mount's root does; otherwise t reads its bytes.
func (m *Mounted) Add(ih metainfo.Hash, name string, mi *metainfo.MetaInfo, t Torrent) (string, error) {
	l := m.lib
	if l == nil {
		return "", errors.New("fs: add: not a library")
	}
	if mi != nil && (mi.Info == nil || mi.InfoHash != ih || t == nil) {
		return "", errors.New("fs: add: the torrent does not match its info-hash")
	}
	l.mu.Lock()
	if l.byHash[ih] != nil {
		l.mu.Unlock()
		return "", fmt.Errorf("fs: add: %s is in the library already", ih)
	}
	name = l.freeName(cleanName(name, ih))
	base := uint64(0)
	for try := 0; base == 0; try++ {
		base = libraryIno(ih, try)
		for _, e := range l.byHash {
			if e.state.inoBase == base {
				base = 0
				break
			}
		}
	}
	l.gen++
	st := newMountState(l.m.ctx, ih, mi, t, l.opts, l.m.log)
	st.requestLimit, st.inoBase, st.gen = l.m.requestLimit, base, l.gen
	root := newRoot(st)
	e := &libEntry{name: name, state: st, root: root}
	l.byHash[ih], l.byName[name] = e, e
	l.mu.Unlock()

	ch := l.NewPersistentInode(context.Background(), root, fusefs.StableAttr{Mode: syscall.S_IFDIR, Ino: base + 1, Gen: st.gen})
	l.AddChild(name, ch, false)
	// The kernel may hold a negative entry for the name (someone looked
	// for it before): drop it; and the root's attributes (its link count
	// counts the torrents).
	l.NotifyEntry(name)
	l.NotifyContent(0, 0)
	m.log.Info("fs: torrent added to the library", "name", name, "infohash", ih, "metadata", mi != nil)
	return name, nil
}

// Fill fills the directory of a torrent added to a library without its
// metadata (Mounted.Ready for a library).
func (m *Mounted) Fill(ih metainfo.Hash, mi *metainfo.MetaInfo, t Torrent) error {
	if m.lib == nil {
		return errors.New("fs: fill: not a library")
	}
	switch {
	case mi == nil || mi.Info == nil:
		return errors.New("fs: ready: no torrent info")
	case t == nil:
		return errors.New("fs: ready: nil Torrent")
	case mi.InfoHash != ih:
		return fmt.Errorf("fs: ready: torrent %s is not %s", mi.InfoHash, ih)
	}
	m.lib.mu.Lock()
	e := m.lib.byHash[ih]
	m.lib.mu.Unlock()
	if e == nil {
		return fmt.Errorf("fs: ready: %s is not in the library", ih)
	}
	if err := e.root.fill(mi, t); err != nil {
		return err
	}
	m.log.Info("fs: files visible", "name", e.name, "torrent", mi.Info.Name)
	return nil
}

// Remove takes the torrent ih out of the library: its reads in progress
// and every later read of a file still open fail with EIO (never wait),
// its handles' wants are released, and its directory disappears. It
// returns the directory's name.
func (m *Mounted) Remove(ih metainfo.Hash) (string, error) {
	l := m.lib
	if l == nil {
		return "", errors.New("fs: remove: not a library")
	}
	l.mu.Lock()
	e := l.byHash[ih]
	if e != nil {
		delete(l.byHash, ih)
		delete(l.byName, e.name)
	}
	l.mu.Unlock()
	if e == nil {
		return "", fmt.Errorf("fs: remove: %s is not in the library", ih)
	}
	e.state.cancel(errRemoved)
	// Open files: the kernel's page cache would answer their reads
	// without asking us; drop it, so that they fail too.
	e.state.mu.Lock()
	var open []*fileNode
	for h := range e.state.handles {
		open = append(open, h.f)
	}
	e.state.mu.Unlock()
	for _, f := range open {
		f.NotifyContent(0, 0)
	}
	e.state.releaseAll()
	ch := l.GetChild(e.name)
	l.RmChild(e.name)
	if ch != nil {
		l.NotifyDelete(e.name, ch)
		forget(ch)
	}
	l.NotifyContent(0, 0)
	m.log.Info("fs: torrent removed from the library", "name", e.name, "infohash", ih)
	return e.name, nil
}

// Names returns the directory names of the library's torrents by info-hash.
func (m *Mounted) Names() map[metainfo.Hash]string {
	out := map[metainfo.Hash]string{}
	if m.lib == nil {
		return out
	}
	m.lib.mu.Lock()
	defer m.lib.mu.Unlock()
	for ih, e := range m.lib.byHash {
		out[ih] = e.name
	}
	return out
}

// forget lets go-fuse drop a removed subtree once the kernel forgets it.
func forget(n *fusefs.Inode) {
	for _, ch := range n.Children() {
		forget(ch)
	}
	n.ForgetPersistent()
}

// releaseAll releases the wants of every torrent's handles.
func (l *libRoot) releaseAll() {
	l.mu.Lock()
	es := make([]*libEntry, 0, len(l.byHash))
	for _, e := range l.byHash {
		es = append(es, e)
	}
	l.mu.Unlock()
	for _, e := range es {
		e.state.releaseAll()
	}
}

// cleanName makes name usable as a directory name: no slash or NUL, not
// empty, "." or "..", at most 255 bytes; the info-hash otherwise.
func cleanName(name string, ih metainfo.Hash) string {
	name = strings.Map(func(r rune) rune {
		if r == '/' || r == 0 {
			return '_'
		}
		return r
	}, name)
	if name == "" || name == "." || name == ".." || len(name) > 240 {
		return ih.String()
	}
	return name
}

// freeName is name, or name with the first free " (N)"; l.mu held.
func (l *libRoot) freeName(name string) string {
	if l.byName[name] == nil {
		return name
	}
	for i := 2; ; i++ {
		n := name + " (" + strconv.Itoa(i) + ")"
		if l.byName[n] == nil {
			return n
		}
	}
}

// Getattr reports a read-only directory with a subdirectory per torrent.
func (l *libRoot) Getattr(ctx context.Context, fh fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	l.mu.Lock()
	n := len(l.byHash)
	l.mu.Unlock()
	l.m.fillAttr(&out.Attr, 0o555, 0, 2+uint32(n))
	return 0
}

// Statfs describes an empty read-only file system: the torrents' sizes
// are their directories' business.
func (l *libRoot) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	out.Bsize, out.Frsize, out.NameLen = 4096, 4096, 255
	return 0
}

// xattrs are the root's attributes: where the control socket is.
func (l *libRoot) xattrs() []xattr {
	if l.control == "" {
		return nil
	}
	return []xattr{{name: XattrControl, value: func() string { return l.control }}}
}

// Getxattr returns one attribute of the root.
func (l *libRoot) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return getxattr(l.xattrs(), attr, dest)
}

// Listxattr lists the root's attributes.
func (l *libRoot) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	return listxattr(l.xattrs(), dest)
}
