package cache

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
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

// Layout of the torrent's directory, beside the record (recordName) and
// the read times (readsName).
const (
	dataDir   = "data"   // the torrent's own files: data/NAME[/path...]
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
	// MaxBytes caps the verified pieces of this torrent's directory;
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

// Store is the shared cache of one torrent: a storagewrapper.Store (the
// torrent's own files, a storagewrapper.FileStore, plus the shared record
// of verified pieces) that several btfs processes open at once, with the claims that split the downloads between them, the pins
// that keep pieces in use from eviction, and the size cap. See the package
// documentation for the protocol.
type Store struct {
	// dir is the torrent's directory, <cache>/<infohash-hex>.
	dir string
	// info gives piece lengths.
	info *metainfo.Info
	// fst holds the bytes, in the torrent's own files under data/.
	fst *storagewrapper.FileStore
	// rec is the shared record of verified pieces; replaced when the
	// directory is recreated (restoreLayout).
	rec atomic.Pointer[record]
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
	// seen is the record's piece slots as Run last saw them.
	seen []pieceSlot
	// present is the set of marked pieces as last seen, and
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
	// writers counts the writes in progress under the claim: Release
	// waits for them before it tidies the piece.
	writers sync.WaitGroup
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
	if c.fst, err = storagewrapper.NewFileStore(filepath.Join(dir, dataDir), info, false); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	if err := c.openFiles(); err != nil {
		c.fst.Close()
		c.closeFiles()
		return nil, err
	}
	if err := c.clean(); err != nil {
		c.fst.Close()
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
	if err := c.lockDir(); err != nil {
		return err
	}
	defer c.unlockDir()
	c.discardOldLayout()
	rec, _, err := openRecord(filepath.Join(c.dir, recordName), c.info)
	if err != nil {
		return err
	}
	c.rec.Store(rec)
	return nil
}

// discardOldLayout removes a cache of this torrent in the layout of older
// btfs (one file per piece in pieces/, partial files in partial/), saying
// so in one line: its pieces were never recorded, and nothing of it is
// read. The caller holds the directory lock.
func (c *Store) discardOldLayout() {
	old := filepath.Join(c.dir, "pieces")
	ents, err := os.ReadDir(old)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	rmErr := errors.Join(os.RemoveAll(old), os.RemoveAll(filepath.Join(c.dir, "partial")))
	c.log.Warn("cache: discarded a cache in the old one-file-per-piece layout; its pieces will be fetched again",
		"dir", c.dir, "pieces", len(ents), "err", rmErr)
}

// closeFiles closes the lock files that are open.
func (c *Store) closeFiles() {
	c.pinMu.Lock()
	defer c.pinMu.Unlock()
	for _, f := range []*os.File{c.lock, c.pinFile} {
		if f != nil {
			f.Close()
		}
	}
	c.pinFile = nil
	if rec := c.rec.Swap(nil); rec != nil {
		rec.close()
	}
}

// Dir is the torrent's cache directory.
func (c *Store) Dir() string { return c.dir }

// DataDir is where the torrent's files are, laid out as the torrent says,
// in the cache directory dir of a torrent: complete files can be linked
// from there (btfs mount -keep) and read by the kernel (FUSE passthrough).
func DataDir(dir string) string { return filepath.Join(dir, dataDir) }

// FileStore is the store of the torrent's files.
func (c *Store) FileStore() *storagewrapper.FileStore { return c.fst }

// Piece returns piece i.
func (c *Store) Piece(i int) storagewrapper.Piece {
	return piece{c: c, i: i, p: c.fst.Piece(i)}
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
	var ocs []*ownClaim
	for i, oc := range c.own {
		claims = append(claims, i)
		ocs = append(ocs, oc)
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
	for _, oc := range ocs {
		oc.writers.Wait()
	}
	if err := c.lockDir(); err == nil {
		for _, i := range claims {
			c.leaveLocked(i)
			c.removeOwnClaim(i)
		}
		c.unlockDir()
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
	err := c.fst.Close()
	c.closeFiles()
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	return nil
}

// piece is one piece of the Store: the FileStore's bytes, with the
// record deciding what they are worth.
type piece struct {
	// c is the store.
	c *Store
	// i is the piece index (the FileStore checks it).
	i int
	// p is the FileStore's piece.
	p storagewrapper.Piece
}

// ReadAt reads the piece's bytes. Bytes under no mark are read only by
// the download that wrote them (our claim: its hash) or, for a suspect
// piece, by its hash; anyone else gets fs.ErrNotExist, and so does a
// reader of a marked piece whose slot changed while it read (evicted, its
// hole punched, perhaps downloaded again): the storagewrapper then fetches
// the piece again rather than serve what was read.
func (p piece) ReadAt(b []byte, off int64) (int, error) {
	before, err := p.c.slot(p.i)
	if err != nil {
		return 0, err
	}
	if before.state == stateNone && !p.c.owns(p.i) {
		return 0, fmt.Errorf("cache: piece %d is not in the cache: %w", p.i, fs.ErrNotExist)
	}
	n, err := p.p.ReadAt(b, off)
	if before.state != stateMarked {
		return n, err // for the hash
	}
	after, aerr := p.c.slot(p.i)
	if aerr != nil {
		return 0, aerr
	}
	if after != before {
		return 0, fmt.Errorf("cache: piece %d left the cache during a read: %w", p.i, fs.ErrNotExist)
	}
	return n, err
}

// owns reports whether this Store holds the claim on piece i.
func (c *Store) owns(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.own[i] != nil
}

// WriteAt writes a block in place, under our claim on the piece: a block
// of a piece whose claim we no longer hold (a late block of a piece
// dropped, abandoned or finished elsewhere) is dropped, so that no byte
// lands after the claim's end punched the piece out (the bytes would take
// disk space under no mark), nor under another process's mark.
func (p piece) WriteAt(b []byte, off int64) (int, error) {
	p.c.mu.Lock()
	oc := p.c.own[p.i]
	if oc != nil {
		oc.writers.Add(1)
	}
	p.c.mu.Unlock()
	if oc == nil {
		p.c.log.Debug("cache: a block of a piece we do not hold dropped", "piece", p.i)
		return len(b), nil
	}
	defer oc.writers.Done()
	n, err := p.p.WriteAt(b, off)
	if err == nil {
		p.c.progress(p.i)
	}
	return n, err
}

// Completion is the record's word: Verified for a marked piece (trusted
// without a hash), Unknown for a suspect one (its file changed behind
// btfs's back: hash it), Missing otherwise (bytes under no mark, a
// download that a crash or a failed hash ended, are never read).
func (p piece) Completion() (storagewrapper.Completion, error) {
	s, err := p.c.slot(p.i)
	if err != nil {
		return storagewrapper.Unknown, err
	}
	switch s.state {
	case stateMarked:
		return storagewrapper.Verified, nil
	case stateSuspect:
		return storagewrapper.Unknown, nil
	}
	return storagewrapper.Missing, nil
}

// Publish records the piece, which the storagewrapper verified.
func (p piece) Publish() error { return p.c.Record(p.i) }

// Discard drops what this process wrote for the piece, or a suspect
// piece that failed its hash: the mark of a suspect piece is cleared, and
// the bytes are punched out. A marked piece is left alone (marked by
// another process after our claim ended: the storagewrapper drops a piece
// in flight after releasing its claim), and so are the bytes of a piece
// another process has claimed meanwhile (its download is under way).
func (p piece) Discard() error {
	p.c.mu.Lock()
	p.c.discarded[p.i] = struct{}{}
	p.c.mu.Unlock()
	if err := p.c.lockDir(); err != nil {
		return err
	}
	defer p.c.unlockDir()
	s, err := p.c.slot(p.i)
	if err != nil {
		return err
	}
	switch s.state {
	case stateMarked:
		return nil
	case stateSuspect:
		if err := p.c.setState(p.i, stateNone); err != nil {
			return err
		}
	}
	if h, err := p.c.readClaim(p.i); err == nil && h.raw != p.c.me.String() {
		return nil
	}
	if err := p.c.fst.PunchPiece(p.i); err != nil {
		p.c.lim.Warn("cache: cannot free a discarded piece's disk space", "piece", p.i, "err", err)
	}
	p.c.restamp(p.i)
	p.c.sawRemoved(p.i)
	return nil
}

// Record implements storagewrapper.Recorder: it makes piece i's bytes
// durable (fdatasync of its files), then marks it in the record — under a
// cap, after making room under the same lock, so that processes marking at
// once cannot overshoot the cap together.
func (c *Store) Record(i int) error {
	if c.closed.Load() {
		return fmt.Errorf("cache: record piece %d: %w", i, storagewrapper.ErrClosed)
	}
	if err := c.fst.SyncPiece(i); err != nil {
		return fmt.Errorf("cache: record piece %d: %w", i, err)
	}
	if err := c.checkLayout(); err != nil {
		return fmt.Errorf("cache: record piece %d: %w", i, err)
	}
	if err := c.lockDir(); err != nil {
		return err
	}
	var evicted []int
	if c.maxBytes > 0 {
		evicted = c.makeRoomLocked(i)
	}
	// A piece just fetched is as good as just read: its read time is
	// set before its mark, so that no eviction takes it for the least
	// recently read the moment it is marked (while the engine has yet to
	// hear that it was verified).
	if err := c.writeReads([]int{i}, time.Now()); err != nil {
		c.log.Debug("cache: cannot record a read", "piece", i, "err", err)
	}
	err := c.setState(i, stateMarked)
	c.restamp(i)
	c.unlockDir()
	c.evicted(evicted)
	if err != nil {
		return err
	}
	c.sawPublished(i)
	return nil
}

// checkLayout fails when the record can no longer be written where it
// is: the torrent's directory removed or replaced (an error wrapping
// fs.ErrNotExist), or turned read-only (EROFS). Blocks go through files
// opened earlier, which outlive both; the mark of each piece goes through
// a fresh open of the record's path, so that such a change shows at the
// next piece, and the storagewrapper's health (and Probe) take over.
func (c *Store) checkLayout() error {
	rec := c.rec.Load()
	if rec == nil {
		return storagewrapper.ErrClosed
	}
	f, err := os.OpenFile(filepath.Join(c.dir, recordName), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	a, err := f.Stat()
	if err != nil {
		return err
	}
	b, err := rec.f.Stat()
	if err != nil {
		return err
	}
	if !os.SameFile(a, b) {
		return fmt.Errorf("the torrent's cache directory was replaced: %w", fs.ErrNotExist)
	}
	return nil
}

// slot reads piece i's slot in the record.
func (c *Store) slot(i int) (pieceSlot, error) {
	rec := c.rec.Load()
	if rec == nil || c.closed.Load() {
		return pieceSlot{}, fmt.Errorf("cache: piece %d: %w", i, storagewrapper.ErrClosed)
	}
	return rec.piece(i)
}

// marked reports whether piece i is marked (false when the record cannot
// be read).
func (c *Store) marked(i int) bool {
	s, err := c.slot(i)
	return err == nil && s.state == stateMarked
}

// setState sets piece i's state in the record; the caller holds the
// directory lock (and so dirMu).
func (c *Store) setState(i int, state uint8) error {
	rec := c.rec.Load()
	if rec == nil {
		return fmt.Errorf("cache: piece %d: %w", i, storagewrapper.ErrClosed)
	}
	return rec.setPiece(i, state)
}

// restamp records the files of piece i as btfs leaves them now (their
// size and mtime), so that a change that is not btfs's shows; the caller
// holds the directory lock.
func (c *Store) restamp(i int) {
	rec := c.rec.Load()
	if rec == nil || i < 0 || i >= c.info.NumPieces() {
		return
	}
	for _, k := range c.fst.FilesOf(i) {
		st, err := statStamp(c.fst.Path(k))
		if err == nil {
			err = rec.setStamp(k, st)
		}
		if err != nil {
			c.lim.Warn("cache: cannot stamp a file", "file", c.fst.Path(k), "err", err)
		}
	}
}

// sawPublished records that piece i is marked and wakes Run when the
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

// sawRemoved records that piece i is no longer marked.
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

// PieceFiles implements storagewrapper.PieceFiler: the torrent's files
// under data/, for a marked piece only (others fail with fs.ErrNotExist:
// the caller reads through ReadAt, which notices). The caller pins the
// piece (storagewrapper.Wrapper.ReadFiles does), so that it is not evicted
// after this check.
func (c *Store) PieceFiles(i int, off int64, n int, fn func(f *os.File, at int64, m int) error) error {
	if !c.marked(i) {
		return fmt.Errorf("cache: piece %d is not in the cache: %w", i, fs.ErrNotExist)
	}
	return c.fst.PieceFiles(i, off, n, fn)
}

// BackingFile implements storagewrapper.FileBacker: file k of the torrent
// under data/, if every piece holding its bytes is marked (the caller
// pinned them: none is evicted while the kernel reads the file).
func (c *Store) BackingFile(k int) (*os.File, error) {
	if k < 0 || k >= len(c.info.Files) {
		return nil, fmt.Errorf("cache: backing file %d: %w", k, storagewrapper.ErrOutOfRange)
	}
	first, end := c.info.FileRange(k)
	for i := first; i < end; i++ {
		if !c.marked(i) {
			return nil, fmt.Errorf("cache: backing file %d: piece %d is not in the cache: %w", k, i, fs.ErrNotExist)
		}
	}
	return c.fst.BackingFile(k)
}

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
