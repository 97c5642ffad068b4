package storagewrapper

import (
	"container/list"
	"fmt"
	"os"
	"sync"
)

// DefaultMaxOpenFiles is how many files a FileStore keeps open at most
// (the seed's FilePool cap): a torrent's file count is not the bound.
const DefaultMaxOpenFiles = 64

// filePool is the seed's FilePool: a bounded set of open *os.File, reused
// across reads and writes and closed least-recently-used first. A torrent
// with 100 000 pieces must not mean 100 000 open descriptors.
//
// Handles are reference counted: a handle in use is never closed under its
// user. max bounds the handles kept open; when every open handle is in use
// the pool goes over max for a moment and comes back as they are released.
type filePool struct {
	// max is the number of open handles the pool keeps.
	max int
	// mu guards the fields below; it is never held while a file is opened,
	// read or written (only while an idle one is closed).
	mu sync.Mutex
	// byPath finds the entry of an open path.
	byPath map[string]*poolEntry
	// lru holds every entry of byPath, most recently used at the front.
	lru list.List
	// closed is set by closeAll; acquire fails afterwards.
	closed bool
	// epoch counts forgets; an acquire that opened a file across one does
	// not pool its handle.
	epoch uint64
}

// poolEntry is one open file of the pool.
type poolEntry struct {
	// f is the open file.
	f *os.File
	// path is the key in byPath.
	path string
	// refs counts acquires not yet released.
	refs int
	// elem is the entry's place in lru; nil once the entry left the pool
	// (forgotten or closed), and then the last release closes f.
	elem *list.Element
}

func newFilePool(max int) *filePool {
	return &filePool{max: max, byPath: map[string]*poolEntry{}}
}

// acquire returns the open file for path, opening it with flag if needed.
// The caller must release it. flag is only used when the file is opened: a
// path must always be acquired with the same flag.
//
// The file is opened without the pool's lock held (creating a file can take
// a millisecond on a journaling file system, and other pieces' reads must
// not wait for it). A handle opened while some path was forgotten is used
// once and not kept: it may belong to a name that was renamed or removed
// meanwhile.
func (p *filePool) acquire(path string, flag int) (*poolEntry, error) {
	p.mu.Lock()
	if e, ok := p.acquireLocked(path); ok || p.closed {
		p.mu.Unlock()
		if !ok {
			return nil, fmt.Errorf("file pool: open %s: %w", path, ErrClosed)
		}
		return e, nil
	}
	epoch := p.epoch
	p.mu.Unlock()

	f, err := os.OpenFile(path, flag, 0o644)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = f.Close()
		return nil, fmt.Errorf("file pool: open %s: %w", path, ErrClosed)
	}
	if e, ok := p.acquireLocked(path); ok { // another acquire was faster
		_ = f.Close()
		return e, nil
	}
	e := &poolEntry{f: f, path: path, refs: 1}
	if p.epoch != epoch {
		return e, nil // not pooled: closed on release
	}
	e.elem = p.lru.PushFront(e)
	p.byPath[path] = e
	p.evictLocked()
	return e, nil
}

// acquireLocked takes a reference on path's open handle, if the pool has one.
func (p *filePool) acquireLocked(path string) (*poolEntry, bool) {
	e, ok := p.byPath[path]
	if !ok {
		return nil, false
	}
	e.refs++
	p.lru.MoveToFront(e.elem)
	return e, true
}

// acquireOpen is acquire for a path only if the pool has it open already;
// it never opens a file.
func (p *filePool) acquireOpen(path string) (*poolEntry, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.acquireLocked(path)
}

// release gives back a handle from acquire.
func (p *filePool) release(e *poolEntry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e.refs--
	if e.refs == 0 && e.elem == nil {
		_ = e.f.Close() // read-only use or already synced; nothing to report
		return
	}
	p.evictLocked()
}

// forget drops path from the pool (it was renamed or removed): the next
// acquire opens the path anew. A handle in use is closed on its last release.
func (p *filePool) forget(path string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.epoch++
	if e, ok := p.byPath[path]; ok {
		p.dropLocked(e)
	}
}

// dropLocked removes e from the pool and closes it unless it is in use.
func (p *filePool) dropLocked(e *poolEntry) {
	delete(p.byPath, e.path)
	p.lru.Remove(e.elem)
	e.elem = nil
	if e.refs == 0 {
		_ = e.f.Close()
	}
}

// forgetAll drops every pooled handle, as forget does one: the files they
// name were removed with their directory (a cache directory removed while
// in use, then recreated), and a handle kept would write into a file that
// is gone.
func (p *filePool) forgetAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.epoch++
	for _, e := range p.byPath {
		p.dropLocked(e)
	}
}

// evictLocked closes idle handles, least recently used first, until at
// most max are open or only handles in use are left.
func (p *filePool) evictLocked() {
	for el := p.lru.Back(); el != nil && len(p.byPath) > p.max; {
		prev := el.Prev()
		if e := el.Value.(*poolEntry); e.refs == 0 {
			p.dropLocked(e)
		}
		el = prev
	}
}

// open reports how many handles the pool holds open (for tests and status).
func (p *filePool) open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.byPath)
}

// closeAll closes every idle handle and makes acquire fail; handles still
// in use are closed on their last release.
func (p *filePool) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, e := range p.byPath {
		p.dropLocked(e)
	}
}
