package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"

	"btfs/fs"
)

// stopSignals end a command the graceful way: unmount (failing the reads
// that wait with EIO), tell the swarm, exit 0. SIGHUP is among them because
// it is what a foreground `btfs mount` gets when its terminal or ssh
// session closes: dying of it would leave a dead mount ("transport
// endpoint is not connected") until someone runs fusermount3 -u.
var stopSignals = []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGHUP}

// Exit statuses of the paths that end the process from the signal handler.
const (
	// exitForced: a second stop signal cut the graceful stop short (the
	// mounts were unmounted, nothing else waited for).
	exitForced = 1
	// exitQuit: SIGQUIT, after the goroutine dump, as Go's own handler.
	exitQuit = 2
)

// signalContext is cancelled by the first stop signal. A second one skips
// the waiting but never the unmount: every live mount is unmounted, then
// the process exits (exitForced). SIGQUIT keeps Go's goroutine dump but
// unmounts first (exitQuit). stop ends the handling.
func signalContext(stderr io.Writer) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	finished := make(chan struct{})
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, append([]os.Signal{syscall.SIGQUIT}, stopSignals...)...)
	// A terminal that went away with a pipe on stderr (btfs … 2>&1 | tee)
	// must not kill btfs with SIGPIPE on its next status line: the write
	// fails instead, and the graceful stop goes on.
	signal.Ignore(syscall.SIGPIPE)
	go func() {
		stopping := false
		for {
			var sig os.Signal
			select {
			case sig = <-ch:
			case <-finished:
				return
			}
			switch {
			case sig == syscall.SIGQUIT:
				quit(stderr)
			case !stopping:
				stopping = true
				cancel()
			default:
				fmt.Fprintf(stderr, "btfs: second signal (%v): unmounting and exiting now\n", sig)
				liveMounts.unmountAll()
				os.Exit(exitForced)
			}
		}
	}()
	return ctx, func() { signal.Stop(ch); close(finished); cancel() }
}

// quit is SIGQUIT: the goroutines are dumped as they were when it came,
// but written only once every mount is gone, so that the dump (slow on a
// terminal) never leaves a dead mount behind.
func quit(stderr io.Writer) {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) || len(buf) >= 256<<20 {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	liveMounts.unmountAll()
	fmt.Fprintf(stderr, "SIGQUIT: unmounted; goroutines at the signal:\n\n%s\n", buf)
	os.Exit(exitQuit)
}

// mountRegistry knows this process's live mounts, for the paths that end
// the process without going back through the command (a second signal,
// SIGQUIT): exiting with a mount still there would leave it dead.
type mountRegistry struct {
	// mu is held while a mount is being made, so that an exit waits for
	// it and unmounts it, and by unmountAll until the process exits, so
	// that no new mount starts.
	mu       sync.Mutex
	next     int
	unmounts map[int]func()
}

// liveMounts is the process's registry: signals are process-wide.
var liveMounts = mountRegistry{unmounts: map[int]func(){}}

// mount runs mountFn (fs.Mount or fs.MountPending) and registers the mount
// it makes. unmount unmounts it (failing the waiting reads; an error is
// logged) and forgets it; it may be called again.
func (r *mountRegistry) mount(mountFn func() (*fs.Mounted, error), log *slog.Logger) (m *fs.Mounted, unmount func(), err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m, err = mountFn(); err != nil {
		return nil, nil, err
	}
	id := r.next
	r.next++
	do := func() {
		if err := m.Unmount(); err != nil {
			log.Error("unmount failed", "mountpoint", m.Mountpoint(), "err", err)
		}
	}
	r.unmounts[id] = do
	return m, func() {
		do()
		r.mu.Lock()
		delete(r.unmounts, id)
		r.mu.Unlock()
	}, nil
}

// unmountAll unmounts every live mount (one being made is waited for) and
// returns with the registry locked: the caller exits the process.
func (r *mountRegistry) unmountAll() {
	r.mu.Lock()
	for id, do := range r.unmounts {
		do()
		delete(r.unmounts, id)
	}
}
