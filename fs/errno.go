package fs

import (
	"context"
	"errors"
	"syscall"
)

// Causes of a read that gave up, attached to the read's context so that
// toErrno can tell them from an interrupt: all three end the read with
// context.Canceled or DeadlineExceeded.
var (
	// errUnmounting: Unmount failed the reads in progress, so that no read
	// waiting for a piece nobody has keeps the unmount waiting.
	errUnmounting = errors.New("fs: unmounting")
	// errReadTimeout: Options.ReadTimeout passed.
	errReadTimeout = errors.New("fs: read timeout")
	// errRequestTimeout: the kernel's FUSE request timeout was near; a
	// request unanswered past it would abort the whole mount.
	errRequestTimeout = errors.New("fs: the kernel's FUSE request timeout is near")
)

// toErrno is the one place where an error of the read path becomes the errno
// the reading process sees:
//
//   - the kernel interrupted the request (the reader got a signal):
//     context.Canceled → EINTR, so that a Ctrl-C ends the reader at once;
//   - the per-mount read timeout, or the kernel's request timeout near:
//     context.DeadlineExceeded → EIO;
//   - Unmount failing the reads in progress → EIO, and so does removing
//     the torrent from its library (errRemoved);
//   - the cache disk is full and nothing could be evicted (a store failure
//     wrapping ENOSPC or EDQUOT) → that errno: the reader (and the person
//     behind it) learns what to fix, as from a full disk of its own;
//   - anything else (the torrent closed, any other store failure: a
//     read-only or vanished cache directory, an I/O error) → EIO: the
//     reader can do nothing about it, and EIO is what a failing disk gives
//     too.
//
// The order matters: an unmount also cancels the context, and must not look
// like an interrupt (an interrupted reader may retry; an unmounted one may not).
func toErrno(err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUnmounting), errors.Is(err, errRemoved), errors.Is(err, errReadTimeout), errors.Is(err, errRequestTimeout):
		return syscall.EIO
	case errors.Is(err, context.DeadlineExceeded):
		return syscall.EIO
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	case errors.Is(err, syscall.ENOSPC):
		return syscall.ENOSPC
	case errors.Is(err, syscall.EDQUOT):
		return syscall.EDQUOT
	}
	return syscall.EIO
}
