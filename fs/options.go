package fs

import (
	"log/slog"
	"time"

	"btfs/stream"
)

// Options tunes a mount. The zero value is usable: a mount only the user
// who made it can read, reads that wait as long as it takes, readahead
// windows from 4 to 64 MiB.
type Options struct {
	// AllowOther lets other users read the mount (FUSE's allow_other). A
	// user other than root needs user_allow_other in /etc/fuse.conf.
	AllowOther bool
	// ReadTimeout, when positive, fails a read that waited that long for
	// its pieces with EIO; zero waits until the pieces come, the reader is
	// interrupted, the torrent closes or the mount goes away. Either way a
	// read never waits past the kernel's FUSE request timeout, when the
	// administrator set one (reqtimeout.go): it fails with EIO just before.
	ReadTimeout time.Duration
	// ReadaheadMin is the readahead window of a handle after a seek, and
	// ReadaheadMax bounds its growth while the handle keeps streaming
	// (within it the window is stream.Lead at the reader's own rate);
	// 0 means DefaultReadaheadMin and DefaultReadaheadMax.
	ReadaheadMin, ReadaheadMax int64
	// MediaHeadTail is how much of each end of a media file (by extension)
	// is wanted while it is open, at least one piece; 0 means
	// DefaultMediaHeadTail.
	MediaHeadTail int64
	// Readers, when set, lists each open handle's stream.Reader (kind
	// "fuse") and counts its reads: the status page and /metrics of
	// package httpserve show them beside the HTTP streams.
	Readers *stream.Registry
	// Logger receives mount events and read failures; nil discards them.
	Logger *slog.Logger
	// Control is a library's control socket, shown on its root as the
	// attribute user.btfs.control (XattrControl) so that `btfs add MNT`
	// finds it from the mount point alone.
	Control string
	// Debug logs every FUSE request and reply (go-fuse's debug output) to
	// Logger at debug level.
	Debug bool
	// NoPassthrough turns FUSE passthrough off: complete files are read
	// through btfs like the others (for comparisons, and kernels whose
	// passthrough misbehaves).
	NoPassthrough bool
}

// Options' defaults, the stream package's.
const (
	// DefaultReadaheadMin is ReadaheadMin's default.
	DefaultReadaheadMin = stream.DefaultReadaheadMin
	// DefaultReadaheadMax is ReadaheadMax's default.
	DefaultReadaheadMax = stream.DefaultReadaheadMax
	// DefaultMediaHeadTail is MediaHeadTail's default.
	DefaultMediaHeadTail = stream.DefaultMediaHeadTail
)

// Mount constants.
const (
	// maxRead is the largest FUSE read request: go-fuse's MaxWrite, which
	// also sets the max_read mount option; 1 MiB is the kernel's limit.
	maxRead = 1 << 20
	// cacheTimeout is the kernel's entry, attribute and negative-lookup
	// timeout: the tree and every attribute are fixed for the life of the
	// mount, so the kernel need not ask again.
	cacheTimeout = 24 * time.Hour
	// blockSize is st_blksize, the preferred I/O size tools size their
	// buffers by (cat, cp): one FUSE read.
	blockSize = maxRead
	// kernelReadahead is the kernel's readahead window for the mount
	// (raiseKernelReadahead): four maximal FUSE reads in flight. A read
	// the kernel makes ahead of the reader waits, like any other, for its
	// pieces with Now priority, so this is also the least of a
	// streaming reader's urgent window.
	kernelReadahead = 4 * maxRead
)
