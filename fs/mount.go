package fs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"btfs/metainfo"
	"btfs/stream"
)

// mountState is what every node and handle of one mount shares. Its fields
// are fixed at mount time except those under mu.
type mountState struct {
	// mi is the torrent; info is mi.Info; t reads and wants the torrent's
	// bytes. All three are set before ready is closed and never change
	// after: at mount time, or later by Mounted.Ready for a mount whose
	// metadata was not known yet (a magnet link). Only the root exists
	// before then, and it reads them only after waiting for ready.
	mi   *metainfo.MetaInfo
	info *metainfo.Info
	t    Torrent
	// ih is the info-hash, known from the start.
	ih metainfo.Hash
	// ready is closed once mi, info and t are set and the tree is built.
	ready chan struct{}
	// readyOnce guards the closing of ready.
	readyOnce sync.Once
	// log is never nil.
	log *slog.Logger
	// policy is the readahead policy of every handle.
	policy stream.Policy
	// mediaHeadTail is Options.MediaHeadTail with its default applied.
	mediaHeadTail int64
	// readers is Options.Readers (may be nil).
	readers *stream.Registry
	// readTimeout is Options.ReadTimeout.
	readTimeout time.Duration
	// requestLimit is how long a request may wait before it must be
	// answered, whatever readTimeout says, or the kernel aborts the mount
	// (reqtimeout.go); 0 when the kernel has no request timeout.
	requestLimit time.Duration
	// mtime is every node's mtime, ctime and atime: the torrent's creation
	// date, or the mount time when it has none.
	mtime time.Time
	// uid and gid own every node: the user who mounted.
	uid, gid uint32
	// nodes counts the files and directories, for statfs.
	nodes int
	// inoBase is added to every inode number of the torrent's tree: 0 in
	// a mount of one torrent, in a library the torrent's own range
	// (libraryIno), so that each keeps its numbers across restarts.
	inoBase uint64
	// gen is the generation of every node of the tree: 1, or in a library
	// a number new for each Add, so that a torrent removed and added again
	// gets fresh nodes while the kernel may still hold the old ones.
	gen uint64
	// ctx is cancelled, with errUnmounting as its cause, when Unmount
	// starts: every read waiting for pieces gives up.
	ctx context.Context
	// cancel cancels ctx.
	cancel context.CancelCauseFunc

	// noPassthrough is Options.NoPassthrough.
	noPassthrough bool
	// passthroughOff is set once the kernel sent a read for a file opened
	// in passthrough: passthrough is unavailable (said once in the log).
	passthroughOff atomic.Bool

	// mu guards handles and cachedOpens.
	mu sync.Mutex
	// handles are the open handles, whose wants Unmount and Wait release
	// if the kernel never sends RELEASE (a lazy unmount, a killed reader).
	handles map[*handle]struct{}
	// cachedOpens counts, per file, its open handles not in passthrough:
	// the kernel refuses a passthrough open of a file open in its page
	// cache mode, so such a file gets no passthrough until they close.
	cachedOpens map[*fileNode]int
}

// releaseAll releases the wants of every open handle.
func (m *mountState) releaseAll() {
	m.mu.Lock()
	hs := make([]*handle, 0, len(m.handles))
	for h := range m.handles {
		hs = append(hs, h)
	}
	clear(m.handles)
	m.mu.Unlock()
	for _, h := range hs {
		h.close()
	}
}

// Mounted is a live mount of a torrent, returned by Mount.
type Mounted struct {
	// dir is the mount point, absolute and with symlinks resolved.
	dir string
	// server is go-fuse's server of the mount.
	server *fuse.Server
	// state is shared with the nodes.
	state *mountState
	// root is the mount's root node; nil for a library.
	root *rootNode
	// lib is the root of a library mount (MountLibrary); nil otherwise.
	lib *libRoot
	// log is never nil.
	log *slog.Logger

	// mu serializes Unmount.
	mu sync.Mutex
	// unmounted is set once Unmount succeeded.
	unmounted bool
}

// Mount mounts the torrent mi, whose bytes t reads, read-only at mountpoint
// and serves it until Unmount. The mount point must be an existing
// directory that is not a mount point already; a stale mount left there by a
// btfs that was killed ("transport endpoint is not connected") is detached
// first (see Recover). mi must have passed metainfo's validation (Parse or
// ParseInfo): the tree follows mi.Info.Files.
func Mount(mountpoint string, mi *metainfo.MetaInfo, t Torrent, opts Options) (*Mounted, error) {
	switch {
	case mi == nil || mi.Info == nil:
		return nil, errors.New("fs: mount: no torrent info")
	case t == nil:
		return nil, errors.New("fs: mount: nil Torrent")
	}
	return mount(mountpoint, mi.InfoHash, mi, t, opts, true)
}

// MountPending mounts the torrent whose info-hash is ih before its
// metadata is known (a magnet link whose info dictionary is still being
// fetched): the mount point is there at once, and its contents appear when
// Ready is called. Until then a lookup or a listing of the root waits, as
// a read waits for its pieces: until Ready, the caller is interrupted, the
// read timeout passes (EAGAIN) or Unmount (EIO). A user who starts a
// player on a path inside the mount right after `btfs mount magnet:...`
// gets the file as soon as it exists instead of "no such file".
func MountPending(mountpoint string, ih metainfo.Hash, opts Options) (*Mounted, error) {
	return mount(mountpoint, ih, nil, nil, opts, true)
}

// Ready fills a mount made by MountPending with the torrent mi, whose
// bytes t reads; the waiting lookups and listings then go on. mi must have
// ih's info-hash and must have passed metainfo's validation.
func (m *Mounted) Ready(mi *metainfo.MetaInfo, t Torrent) error {
	switch {
	case mi == nil || mi.Info == nil:
		return errors.New("fs: ready: no torrent info")
	case t == nil:
		return errors.New("fs: ready: nil Torrent")
	case mi.InfoHash != m.state.ih:
		return fmt.Errorf("fs: ready: torrent %s is not the mount's %s", mi.InfoHash, m.state.ih)
	}
	if m.root == nil {
		return errors.New("fs: ready: a library is filled by Library.Ready")
	}
	if err := m.root.fill(mi, t); err != nil {
		return err
	}
	m.log.Info("fs: files visible", "mountpoint", m.dir, "torrent", mi.Info.Name)
	return nil
}

// fill sets the torrent of a pending root and builds its tree; the
// waiting lookups and listings then go on.
func (r *rootNode) fill(mi *metainfo.MetaInfo, t Torrent) error {
	err := errors.New("fs: ready: the mount is ready already")
	r.m.readyOnce.Do(func() {
		r.m.mi, r.m.info, r.m.t = mi, mi.Info, t
		r.populate(context.Background())
		close(r.m.ready)
		err = nil
	})
	return err
}

// mount is Mount; readOnly false leaves out the "ro" mount option, so that
// tests can check that the nodes themselves refuse every change.
// mi and t are nil for a pending mount.
func mount(mountpoint string, ih metainfo.Hash, mi *metainfo.MetaInfo, t Torrent, opts Options, readOnly bool) (*Mounted, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir, err := prepareMountpoint(mountpoint, log)
	if err != nil {
		return nil, err
	}
	m := newMountState(context.Background(), ih, mi, t, opts, log)
	root := newRoot(m)
	server, err := serve(dir, m, root, opts, readOnly, log)
	if err != nil {
		return nil, err
	}
	log.Info("fs: mounted", "mountpoint", dir, "infohash", ih, "metadata", mi != nil)
	return &Mounted{dir: dir, server: server, state: m, root: root, log: log}, nil
}

// serve mounts root, whose mount-wide state is m, at dir (prepared).
func serve(dir string, m *mountState, root fusefs.InodeEmbedder, opts Options, readOnly bool, log *slog.Logger) (*fuse.Server, error) {
	rt, err := readRequestTimeout(fuseSysctlDir)
	if err != nil {
		log.Warn("fs: cannot read the kernel's FUSE request timeout", "err", err)
	}
	if m.requestLimit = rt.answerBy(); m.requestLimit > 0 {
		log.Info("fs: the kernel aborts the mount when a request waits longer than its FUSE request timeout: reads still waiting then fail with EIO, lookups with EAGAIN",
			"kernel_timeout", rt.kernel, "answer_within", m.requestLimit, "read_timeout", opts.ReadTimeout,
			"default_request_timeout", rt.dflt, "max_request_timeout", rt.max)
	}
	long := cacheTimeout
	fsOpts := &fusefs.Options{
		MountOptions: fuse.MountOptions{
			AllowOther: opts.AllowOther,
			FsName:     "btfs",
			Name:       "btfs",
			// MaxWrite also sets max_read: 1 MiB reads, the kernel's
			// limit, or a bit less so that they can be spliced
			// (fuseMaxRead).
			MaxWrite: fuseMaxRead(),
			// The kernel caps the readahead at what it offered in INIT
			// (the backing device's read_ahead_kb, 128 KiB by default);
			// asking for as much as a read gets all it allows, and
			// raiseKernelReadahead raises the device's limit after the
			// mount when it may.
			MaxReadAhead: maxRead,
			// Reads of verified pieces answer with a pipe holding the
			// piece files' pages (spliceRead), which go-fuse splices to
			// the kernel; reads from memory are written as before. Each
			// read fits go-fuse's pipe (fuseMaxRead): a read that did
			// not would fail the splice and log a warning.
			DisableSplice: !spliceOn(),
			Debug:         opts.Debug,
			Logger:        slog.NewLogLogger(log.Handler(), debugOrWarn(opts.Debug)),
		},
		EntryTimeout:    &long,
		AttrTimeout:     &long,
		NegativeTimeout: &long,
		RootStableAttr:  &fusefs.StableAttr{Ino: 1, Gen: 1},
		Logger:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if readOnly {
		fsOpts.MountOptions.Options = append(fsOpts.MountOptions.Options, "ro")
	}
	server, err := startServer(dir, root, fsOpts)
	if err != nil {
		m.cancel(errUnmounting)
		return nil, fmt.Errorf("fs: mount %s: %w", dir, err)
	}
	raiseKernelReadahead(dir, kernelReadaheadFor(m.policy), log)
	return server, nil
}

// newMountState applies the defaults of opts. mi and t are nil for a
// pending mount.
// parent ends the state's context with it (a library's torrents end with
// the mount).
func newMountState(parent context.Context, ih metainfo.Hash, mi *metainfo.MetaInfo, t Torrent, opts Options, log *slog.Logger) *mountState {
	m := &mountState{
		gen:           1,
		mi:            mi,
		t:             t,
		ih:            ih,
		ready:         make(chan struct{}),
		log:           log,
		policy:        stream.NewPolicy(opts.ReadaheadMin, opts.ReadaheadMax),
		mediaHeadTail: opts.MediaHeadTail,
		readers:       opts.Readers,
		readTimeout:   opts.ReadTimeout,
		uid:           uint32(os.Getuid()),
		gid:           uint32(os.Getgid()),
		handles:       map[*handle]struct{}{},
		cachedOpens:   map[*fileNode]int{},
		noPassthrough: opts.NoPassthrough,
	}
	if m.mediaHeadTail <= 0 {
		m.mediaHeadTail = DefaultMediaHeadTail
	}
	if mi != nil {
		m.info = mi.Info
		m.mtime = mi.CreationDate
		m.readyOnce.Do(func() { close(m.ready) }) // the root's OnAdd builds the tree
	}
	if m.mtime.IsZero() {
		// A pending mount keeps the mount time: the attributes the
		// kernel cached before the metadata came must stay true.
		m.mtime = time.Now()
	}
	m.ctx, m.cancel = context.WithCancelCause(parent)
	return m
}

// waitLimit is how long a request may wait for pieces or metadata, and
// the cause its context gets when that passes: the shorter of
// Options.ReadTimeout and the kernel's request timeout (less a margin);
// 0 when it may wait for ever.
func (m *mountState) waitLimit() (time.Duration, error) {
	switch {
	case m.requestLimit > 0 && (m.readTimeout <= 0 || m.requestLimit < m.readTimeout):
		return m.requestLimit, errRequestTimeout
	case m.readTimeout > 0:
		return m.readTimeout, errReadTimeout
	}
	return 0, nil
}

// kernelReadaheadFor is the kernel's readahead window for a mount whose
// handles read ahead by policy: kernelReadahead, or less when the handles'
// window is smaller (a cache capped below the torrent): every read the
// kernel makes ahead pins its pieces in the shared cache while it waits, so
// its window must not outgrow what the cap leaves for readahead.
func kernelReadaheadFor(policy stream.Policy) int64 {
	return min(kernelReadahead, max(maxRead, policy.Max()))
}

// raiseKernelReadahead raises the kernel's readahead for the mount to
// window (a few maximal FUSE reads: kernelReadaheadFor). The kernel starts a FUSE mount
// at its default of 128 KiB whatever the file system asks in INIT, and only
// root can raise it, through the mount's backing device in sysfs. Measured
// here: a buffered sequential read of RAM-held data goes from about 1.4 to
// 2-3 GB/s at 1 MiB; a window of several reads keeps that many in flight,
// so that verified pieces that left the page cache are read from the disk
// in parallel (a re-read after the cache was dropped: about 1.0 GB/s at 1
// MiB, 1.3 at 4 MiB, with the source file itself at 0.8-2 GB/s). It is best
// effort: without permission the default stays.
func raiseKernelReadahead(dir string, window int64, log *slog.Logger) {
	// Not stat(dir): see mountDevice.
	major, minor, err := mountDevice(dir)
	if err != nil {
		log.Debug("fs: kernel readahead left alone", "err", err)
		return
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", major, minor)
	cur, err := os.ReadFile(p)
	if err != nil {
		log.Debug("fs: kernel readahead left alone", "err", err)
		return
	}
	want := int(window >> 10)
	if kb, err := strconv.Atoi(strings.TrimSpace(string(cur))); err == nil && kb >= want {
		return
	}
	if err := os.WriteFile(p, []byte(strconv.Itoa(want)), 0); err != nil {
		log.Debug("fs: kernel readahead left alone", "err", err)
	}
}

// debugOrWarn is the level of go-fuse's request log.
func debugOrWarn(debug bool) slog.Level {
	if debug {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}

// Mountpoint returns the mount point: absolute, symlinks resolved.
func (m *Mounted) Mountpoint() string { return m.dir }

// Unmount unmounts, the way `fusermount3 -u` does, and never hangs on a
// read. It first fails every read that waits for pieces (EIO): a read
// waiting for a piece nobody has would otherwise keep the unmount waiting
// forever, and the kernel's own readahead requests are not interrupted when
// their reader dies. It then unmounts, retrying a few times while the
// kernel lets go of closed files; if the mount stays busy (a process keeps
// a file open), it detaches it lazily (umount -l): the mount point is free
// at once and the mount goes away when the last file is closed, which is
// when Wait returns. A mount already unmounted from outside (fusermount3
// -u) counts as unmounted. The wants of every open handle are released.
// Calling it again after it succeeded does nothing.
func (m *Mounted) Unmount() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.unmounted {
		return nil
	}
	m.state.cancel(errUnmounting)
	if mounted, err := isMountPoint(m.dir); err == nil && !mounted {
		m.unmounted = true // unmounted from outside
		m.releaseAll()
		return nil
	}
	err := m.server.Unmount()
	if err != nil {
		m.log.Warn("fs: unmount failed, detaching lazily", "mountpoint", m.dir, "err", err)
		// EINVAL: not a mount point any more, someone unmounted it.
		if lerr := detach(m.dir); lerr != nil && !errors.Is(lerr, unix.EINVAL) {
			return fmt.Errorf("fs: unmount %s: %w; lazy unmount: %w", m.dir, err, lerr)
		}
	}
	m.unmounted = true
	m.releaseAll()
	m.log.Info("fs: unmounted", "mountpoint", m.dir, "lazy", err != nil)
	return nil
}

// Wait blocks until the mount is gone: unmounted by Unmount or from
// outside (fusermount3 -u), and, after a lazy unmount, until the last
// open file is closed. It then releases the wants of handles the kernel
// never released.
func (m *Mounted) Wait() {
	m.server.Wait()
	m.state.cancel(errUnmounting)
	m.releaseAll()
}

// releaseAll releases the wants of every open handle of the mount.
func (m *Mounted) releaseAll() {
	m.state.releaseAll()
	if m.lib != nil {
		m.lib.releaseAll()
	}
}
