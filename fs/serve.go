package fs

import (
	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// startServer mounts root at dir and serves it in a goroutine, without
// this process ever making a request on the new mount.
//
// Why not fusefs.Mount: after mounting it calls Server.WaitMount, whose
// "poll hack" opens and polls a file on the fresh mount (so that the kernel
// learns early that we answer POLL with ENOSYS). That is a request which
// only this process can answer; a btfs killed with -9 while one of its own
// threads waits in the kernel for it can never finish dying (the thread
// waits uninterruptibly for the answer, and the FUSE connection is only
// aborted once every thread is gone), and the mount point stays wedged. On
// Linux nothing else in WaitMount matters: NewServer returns once the
// mount exists and the kernel's INIT is answered, so the mount is usable
// as soon as Serve runs.
//
// Without the hack, the kernel sends POLL the first time some process
// registers one of our files with epoll. Other processes' reads are fine:
// we answer ENOSYS. A reader inside this process (only tests do that) goes
// through the Go runtime's epoll registration, which blocks its thread
// while holding a P: tests open one file first (testHookMounted) so that
// concurrent opens cannot take every P while waiting for the answer.
func startServer(dir string, root fusefs.InodeEmbedder, opts *fusefs.Options) (*fuse.Server, error) {
	server, err := fuse.NewServer(fusefs.NewNodeFS(root, opts), dir, &opts.MountOptions)
	if err != nil {
		return nil, err
	}
	go server.Serve()
	if testHookMounted != nil {
		testHookMounted(dir)
	}
	return server, nil
}

// testHookMounted, set only by tests, runs once a mount is served.
var testHookMounted func(dir string)
