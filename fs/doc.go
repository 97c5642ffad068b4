// Package fs is the read-only FUSE file system of one torrent, on go-fuse's
// fs package. It knows nothing of BitTorrent beyond reading bytes at torrent
// offsets: a Torrent (the storagewrapper) reads verified bytes, waiting for
// them, and takes wants on byte ranges; this package turns what readers do
// into those calls.
//
// # The tree
//
// Built once when the root is added (tree.go; go-fuse's zipfs does the
// same), or, for a mount made before the torrent's metadata is known (a
// magnet link: MountPending), when Mounted.Ready brings it; until then the
// root's lookups and listings wait (pending.go). The mount point is the
// torrent's top directory, so a multi-file
// torrent's paths start right below it and a single-file torrent shows its
// one file there. BEP 47 padding files are hidden. Files are 0444,
// directories 0555, times are the torrent's creation date (or the mount
// time), inode numbers are stable per torrent. Everything that would change
// the tree or a file is EROFS (readonly.go), and the mount is "ro".
//
// # A read
//
//	read(fd, off, n) → kernel (page cache miss) → go-fuse → handle.Read
//	  clamp to the file, torrent offset = file offset + off
//	  the handle's stream.Reader: the reader's position and readahead
//	                window, one picker.Readahead want ahead of it, moved as
//	                it reads (package stream)
//	  verified already, and kept as piece files (the shared cache)?
//	    splice from the piece files into go-fuse's pipe (splice.go): the
//	    bytes never pass through user space; a streaming handle also asks
//	    the kernel to read the next piece files ahead (fadvise)
//	  else Torrent.ReadAt(ctx, …): waits for the pieces, with its own
//	    picker.Now want on the missing part while it waits
//
// A read is never short except at the end of the file: the kernel would
// zero-fill a short read. The content never changes, so the kernel keeps the
// page cache across opens (FOPEN_KEEP_CACHE) and caches entries and
// attributes for a day; a re-read never reaches us. Reads are up to 1016
// KiB (max_read: a reply and its header fit go-fuse's 1 MiB splice pipe),
// and the kernel's readahead is raised to four reads when we may (less
// under a small cache cap: kernelReadaheadFor). The server never makes a
// request on its own mount (serve.go): a btfs killed at any moment can die.
//
// Each open handle keeps its own stream.Reader across reads (never a new
// reader per FUSE read, which would lose the window): a sequential reader's
// window grows from Options.ReadaheadMin towards ReadaheadMax, no further
// than stream.Lead at its own consumption rate; a seek releases it and
// starts again at the minimum; a reader that keeps seeking gets none. Opening a media file (by extension)
// wants its head and tail at once: players read the container index at the
// end before they play. Closing a handle releases its wants.
//
// # Giving up
//
// The ctx go-fuse passes to Read is cancelled when the kernel interrupts the
// request (the reader got a signal): the read returns EINTR at once. An
// optional per-mount timeout (Options.ReadTimeout) fails a read with EIO, as
// does a closed torrent; so does the kernel's FUSE request timeout, when the
// administrator set one, just before the kernel would abort the whole mount
// (reqtimeout.go). A reader sees its timeout once: when the kernel asks
// again for a page whose read just timed out on the same handle, that
// request fails at once (handle.gaveUpOn). toErrno (errno.go) is the one
// mapping. Unmount
// fails the reads in progress with EIO before it unmounts, so that it never
// hangs on a read waiting for a piece nobody has. One kernel behaviour to
// know: the page cache's readahead requests are not tied to a process, so
// the kernel never interrupts them; when a reader dies while such a request
// waits, the request keeps waiting (with its Now want) until its pieces
// come, the timeout, or Unmount.
//
// # Attributes
//
// user.btfs.infohash, user.btfs.progress and user.btfs.pieces on files and
// directories (xattr.go): `getfattr -d FILE` shows how much of it is here.
//
// # Locks
//
// mountState.mu guards the set of open handles; handle.mu guards one
// handle's reader state and wants, and is held while calling the Torrent's
// Want, release and Bitfield (which take the Torrent's own lock and never
// call back). No lock is held while a read waits, and mountState.mu is never
// taken under handle.mu.
package fs
