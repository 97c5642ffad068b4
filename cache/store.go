package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"btfs/bitfield"
	"btfs/internal/ratelog"
	"btfs/metainfo"
	"btfs/picker"
	"btfs/storagewrapper"
)

// Defaults for the zero fields of Options.
const (
	// DefaultClaimTimeout is how long a claim may go without progress
	// before another process takes it over, its owner alive or not.
	DefaultClaimTimeout = 20 * time.Second
	// DefaultPollInterval is how often Run rescans the directory when
	// inotify works (the scan only catches what inotify missed).
	DefaultPollInterval = 2 * time.Second
	// fallbackPollInterval is Run's rescan interval without inotify.
	fallbackPollInterval = 500 * time.Millisecond
	// staleCheckInterval is how often Run checks the claims of pieces this
	// process waits for: a dead owner is noticed this fast.
	staleCheckInterval = 250 * time.Millisecond
	// urgentAckTimeout is how long the owner of a claim has to
	// acknowledge a reader's urgency marker (ackUrgent) before the reader's
	// process takes the claim over: an owner that does not is frozen
	// (SIGSTOP, a debugger) or hung, and the reader would otherwise wait
	// the whole claim time-out.
	urgentAckTimeout = time.Second
)

// Layout of the torrent's directory, beside the DirStore's pieces/ and
// partial/.
const (
	claimsDir = "claims" // claims/000123: the claim on piece 123
	urgentDir = "urgent" // urgent/000123.OWNER: OWNER's reader waits for piece 123
	lockName  = "lock"   // flock(2): eviction, capped publish, stale claims, cleaning
	pinsName  = "pins"   // byte i read-locked (OFD): piece i in use
)

// Options tunes a Store. The zero value is usable.
type Options struct {
	// Logger receives claim take-overs, evictions and damaged pieces; nil
	// discards them.
	Logger *slog.Logger
	// MaxBytes caps the published pieces of this torrent's directory;
	// least recently read pieces are evicted to stay under it. 0 means no
	// cap. Every process enforces its own cap: the smallest one applies.
	MaxBytes int64
	// ClaimTimeout is DefaultClaimTimeout when 0.
	ClaimTimeout time.Duration
	// PollInterval is how often Run rescans the directory; 0 means
	// DefaultPollInterval (fallbackPollInterval without inotify).
	PollInterval time.Duration
	// NoInotify makes Run rely on polling alone (tests of the fallback, and
	// file systems whose changes inotify does not see).
	NoInotify bool
	// AdoptWorkers is how many pieces Run verifies at once; 0 means 2.
	AdoptWorkers int
}

// Host is what Run needs from the process's storagewrapper:
// *storagewrapper.Wrapper implements it. Its methods are called without any
// lock of the Store held.
type Host interface {
	// Adopt verifies a piece published in the directory and marks it had.
	Adopt(ctx context.Context, piece int) (bool, error)
	// Unverify drops a had piece whose file left the directory.
	Unverify(piece int) bool
	// ClaimEnded says that a piece another process had claimed may be
	// requested again.
	ClaimEnded(piece int)
	// DoIHave reports whether a piece is had (verified).
	DoIHave(piece int) bool
	// Bitfield returns a copy of the had pieces.
	Bitfield() *bitfield.Bitfield
	// Want registers demand for a byte range (urgency from another
	// process) until release.
	Want(w picker.Want) (release func())
}

// Store is the shared piece cache of one torrent: a storagewrapper.Store
// (built on a storagewrapper.DirStore) that several btfs processes open at
// once, with the claims that split the downloads between them, the pins
// that keep pieces in use from eviction, and the size cap. See the package
// documentation for the protocol.
type Store struct {
	// dir is the torrent's directory, <cache>/<infohash-hex>.
	dir string
	// info gives piece lengths.
	info *metainfo.Info
	// ds holds the pieces' bytes.
	ds *storagewrapper.DirStore
	// log is never nil.
	log *slog.Logger
	// lim rate-limits the lines that repeat: evictions, pieces leaving,
	// a directory that cannot be scanned.
	lim *ratelog.Limiter
	// me is this Store's identity.
	me owner
	// maxBytes, claimTimeout, pollInterval, noInotify, adoptWorkers are
	// Options with defaults applied.
	maxBytes     int64
	claimTimeout time.Duration
	pollInterval time.Duration
	noInotify    bool
	adoptWorkers int
	// touchEvery is how often a claim's mtime is bumped while its piece
	// receives blocks: its progress, as the others see it.
	touchEvery time.Duration
	// claims and urgent are the claim and marker directories.
	claims, urgent string
	// ownerFile is claims/.owner.OWNER, holding our owner name: claims
	// and markers are hard links to it (link(2) is exclusive like
	// O_EXCL, atomic with the content, and far cheaper than creating a
	// file), and its mtime is our progress. "" when links do not work
	// (each claim is then a file of its own).
	ownerFile string
	// lock is the flock(2) file: taken exclusively to evict, to publish
	// under a cap, to break a stale claim and to clean.
	lock *os.File
	// evictProbe holds the write locks (OFD) by which eviction makes sure
	// no process pins a piece; an open file description of its own, so
	// that it conflicts with this process's pins too.
	evictProbe *os.File
	// closed is set by Close.
	closed atomic.Bool
	// evictions counts the pieces this Store evicted (cap or full disk).
	evictions atomic.Int64
	// runDone is closed when Run returns (by Close when Run never ran).
	runDone chan struct{}
	// runOnce guards the start of Run.
	runOnce sync.Once

	// claimMu serializes Claim and Release (file I/O included), so that a
	// claim file and own agree. Lock order: claimMu, then dirMu (with the
	// flock), then pinMu, then mu; see the package documentation.
	claimMu sync.Mutex
	// dirMu is the in-process half of the directory lock (lockDir).
	dirMu sync.Mutex

	// pinMu guards pins and pinFile; held across the byte lock of a pin
	// (it waits only for an eviction's unlink).
	pinMu sync.Mutex
	// pins counts, per piece, the Pins of this Store not yet unpinned.
	pins map[int]int
	// pinnedThere holds the pinned pieces whose file existed while pinned:
	// the eviction protocol never removes one, so its disappearance is
	// reported as an error (see vanished).
	pinnedThere map[int]struct{}
	// pinFile holds this Store's read locks (OFD), byte i for piece i;
	// nil once closed.
	pinFile *os.File

	// mu guards the fields below. Never held across file I/O or calls to
	// the Host.
	mu sync.Mutex
	// own holds the claims this Store holds.
	own map[int]*ownClaim
	// refused holds the pieces whose Claim found another process's live
	// claim (or a published file): they are watched until published or
	// their claim ends.
	refused map[int]struct{}
	// markers holds the pieces whose urgency marker this Store wrote,
	// with when: an owner that does not acknowledge it within
	// urgentAckTimeout loses its claim (staleAt).
	markers map[int]time.Time
	// urgentBy holds the urgency markers of other processes, per piece.
	urgentBy map[int]map[string]struct{}
	// read holds the pieces pinned since the last flush of read times.
	read map[int]struct{}
	// discarded holds the pieces whose file this Store removed as damaged
	// (until published again): their disappearance is no surprise.
	discarded map[int]struct{}
	// present is the set of published pieces as last seen, and
	// presentBytes their total length: the cap's estimate.
	present      *bitfield.Bitfield
	presentBytes int64
	// ownerTouched is when ownerFile's mtime was last bumped.
	ownerTouched time.Time
	// host is Run's Host; nil before Run.
	host Host
	// stop cancels Run's context; nil before Run.
	stop context.CancelFunc
	// adoptQ holds the pieces to adopt. Workers exist only while it has
	// some (an idle torrent costs no goroutine for them): queueAdopt
	// starts one through spawnAdopt while fewer than adoptWorkers run
	// (adopting counts them), and a worker that finds adoptQ empty ends.
	// spawnAdopt is set by Run, nil before and once Run is ending.
	adoptQ     map[int]struct{}
	adopting   int
	spawnAdopt func()
	// wake signals Run: evict, or check the refused claims now.
	wake chan struct{}
}

// ownClaim is a claim this Store holds.
type ownClaim struct {
	// refs counts the Claims not yet Released.
	refs int
	// touched is when the claim's progress was last recorded.
	touched time.Time
	// linked is set when the claim is a link to ownerFile (its progress
	// is the owner file's mtime), clear when it is a file of its own.
	linked bool
	// want releases the urgent want registered for another process's
	// reader, nil when none.
	want func()
}

// Open opens (creating as needed) the cache directory dir of the torrent
// info for this process, and cleans what dead processes left in it (their
// claims, partial files and urgency markers). dir is
// <cache-dir>/<infohash-hex>; call Run to see the other processes' pieces.
func Open(dir string, info *metainfo.Info, opts Options) (*Store, error) {
	me, err := self()
	if err != nil {
		return nil, err
	}
	c := &Store{
		dir:          dir,
		info:         info,
		log:          opts.Logger,
		me:           me,
		maxBytes:     max(opts.MaxBytes, 0),
		claimTimeout: opts.ClaimTimeout,
		pollInterval: opts.PollInterval,
		noInotify:    opts.NoInotify,
		adoptWorkers: opts.AdoptWorkers,
		claims:       filepath.Join(dir, claimsDir),
		urgent:       filepath.Join(dir, urgentDir),
		pins:         map[int]int{},
		pinnedThere:  map[int]struct{}{},
		discarded:    map[int]struct{}{},
		own:          map[int]*ownClaim{},
		refused:      map[int]struct{}{},
		markers:      map[int]time.Time{},
		urgentBy:     map[int]map[string]struct{}{},
		read:         map[int]struct{}{},
		present:      bitfield.New(info.NumPieces()),
		adoptQ:       map[int]struct{}{},
		wake:         make(chan struct{}, 1),
		runDone:      make(chan struct{}),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.lim = ratelog.New(c.log, 10*time.Second)
	if c.claimTimeout <= 0 {
		c.claimTimeout = DefaultClaimTimeout
	}
	c.touchEvery = min(time.Second, c.claimTimeout/4)
	if c.adoptWorkers <= 0 {
		c.adoptWorkers = 2
	}
	dsOpts := storagewrapper.DirStoreOptions{PartialTag: me.String()}
	if c.maxBytes > 0 {
		dsOpts.AroundRename = c.aroundRename
	}
	if c.ds, err = storagewrapper.NewDirStoreWith(dir, info, dsOpts); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	if err := c.openFiles(); err != nil {
		c.ds.Close()
		c.closeFiles()
		return nil, err
	}
	if err := c.clean(); err != nil {
		c.ds.Close()
		c.closeFiles()
		return nil, err
	}
	c.createOwnerFile()
	return c, nil
}

// openFiles creates the claim and marker directories and opens the lock
// files.
func (c *Store) openFiles() error {
	for _, d := range []string{c.claims, c.urgent} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("cache: %w", err)
		}
	}
	var err error
	if c.lock, err = os.OpenFile(filepath.Join(c.dir, lockName), os.O_RDWR|os.O_CREATE, 0o644); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	pins := filepath.Join(c.dir, pinsName)
	if c.pinFile, err = os.OpenFile(pins, os.O_RDWR|os.O_CREATE, 0o644); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	if c.evictProbe, err = os.OpenFile(pins, os.O_RDWR, 0o644); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	return nil
}

// closeFiles closes the lock files that are open.
func (c *Store) closeFiles() {
	c.pinMu.Lock()
	defer c.pinMu.Unlock()
	for _, f := range []*os.File{c.lock, c.pinFile, c.evictProbe} {
		if f != nil {
			f.Close()
		}
	}
	c.pinFile = nil
}

// Dir is the torrent's cache directory.
func (c *Store) Dir() string { return c.dir }

// DirStore is the store of the piece files, for reading them directly
// (btfs mount -keep).
func (c *Store) DirStore() *storagewrapper.DirStore { return c.ds }

// Piece returns piece i.
func (c *Store) Piece(i int) storagewrapper.Piece {
	return piece{c: c, i: i, p: c.ds.Piece(i)}
}

// Close stops Run, removes this Store's claims and urgency markers, and
// closes the files. The storagewrapper closes its Store itself (after it
// released its claims); later calls fail.
func (c *Store) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.runOnce.Do(func() { close(c.runDone) }) // Run never started: nothing to wait for
	c.mu.Lock()
	stop := c.stop
	c.mu.Unlock()
	if stop != nil {
		stop()
	}
	<-c.runDone
	c.claimMu.Lock()
	c.mu.Lock()
	var wants []func()
	var claims, markers []int
	for i, oc := range c.own {
		claims = append(claims, i)
		if oc.want != nil {
			wants = append(wants, oc.want)
		}
	}
	for i := range c.markers {
		markers = append(markers, i)
	}
	clear(c.own)
	clear(c.markers)
	c.mu.Unlock()
	for _, i := range claims {
		c.removeOwnClaim(i)
	}
	c.claimMu.Unlock()
	for _, i := range markers {
		c.removeMarker(i)
	}
	if c.ownerFile != "" {
		os.Remove(c.ownerFile)
	}
	for _, release := range wants {
		release()
	}
	c.lim.Stop()
	err := c.ds.Close()
	c.closeFiles()
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	return nil
}

// piece is one piece of the Store: the DirStore's, plus the claim's
// progress on writes and the cap's bookkeeping on publish.
type piece struct {
	// c is the store.
	c *Store
	// i is the piece index (the DirStore checks it).
	i int
	// p is the DirStore's piece.
	p storagewrapper.Piece
}

func (p piece) ReadAt(b []byte, off int64) (int, error) { return p.p.ReadAt(b, off) }

func (p piece) WriteAt(b []byte, off int64) (int, error) {
	n, err := p.p.WriteAt(b, off)
	if err == nil {
		p.c.progress(p.i)
	}
	return n, err
}

func (p piece) Completion() (storagewrapper.Completion, error) { return p.p.Completion() }

func (p piece) Publish() error {
	if err := p.p.Publish(); err != nil {
		return err
	}
	p.c.sawPublished(p.i)
	return nil
}

func (p piece) Discard() error {
	p.c.mu.Lock()
	p.c.discarded[p.i] = struct{}{}
	p.c.mu.Unlock()
	err := p.p.Discard()
	if err == nil || errors.Is(err, os.ErrNotExist) {
		p.c.sawRemoved(p.i)
	}
	return err
}

// sawPublished records that piece i is published and wakes Run when the
// cap's estimate is exceeded.
func (c *Store) sawPublished(i int) {
	c.mu.Lock()
	if c.present.Set(i) {
		c.presentBytes += c.info.PieceLen(i)
	}
	over := c.maxBytes > 0 && c.presentBytes > c.maxBytes
	c.mu.Unlock()
	if over {
		c.signal()
	}
}

// sawRemoved records that piece i's file is gone.
func (c *Store) sawRemoved(i int) {
	c.mu.Lock()
	if c.present.Clear(i) {
		c.presentBytes -= c.info.PieceLen(i)
	}
	c.mu.Unlock()
}

// signal wakes Run without blocking.
func (c *Store) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// PieceFile implements storagewrapper.PieceFiler: the DirStore's piece
// file. The caller pins the piece (storagewrapper.Wrapper.ReadFiles does)
// so that it counts as read; a piece evicted while its file is open stays
// readable through it.
func (c *Store) PieceFile(i int) (*os.File, func(), error) { return c.ds.PieceFile(i) }

// Usage is what a Store holds, for the status page and /metrics.
type Usage struct {
	// Bytes is the published pieces' total length as last seen (every
	// process's: the cap's estimate); Cap is Options.MaxBytes (0: none).
	Bytes, Cap int64
	// Evictions counts the pieces this process evicted.
	Evictions int64
}

// Usage returns a snapshot of the cache's use.
func (c *Store) Usage() Usage {
	c.mu.Lock()
	b := c.presentBytes
	c.mu.Unlock()
	return Usage{Bytes: b, Cap: c.maxBytes, Evictions: c.evictions.Load()}
}
