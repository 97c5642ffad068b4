package storagewrapper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"btfs/bitfield"
	"btfs/internal/ratelog"
	"btfs/metainfo"
	"btfs/picker"
)

// DefaultMaxInFlight is Config.MaxInFlight's default: 64 pieces with
// partial data at once. Their RAM cost is a few bytes per block; the
// partial data itself lives in the Store.
const DefaultMaxInFlight = 64

// Config tunes a Wrapper. The zero value is usable.
type Config struct {
	// Logger receives hash failures, store failures and resume summaries;
	// nil discards them.
	Logger *slog.Logger
	// MaxInFlight caps the pieces with partial data at once (downloading or
	// being hashed): NewRequest answers RequestAtCap rather than start one
	// more. 0 means DefaultMaxInFlight.
	MaxInFlight int
	// HashWorkers is how many pieces Resume hashes in parallel; 0 means
	// runtime.GOMAXPROCS(0).
	HashWorkers int
	// ResumeProgress, when set, is called by Resume after each piece it
	// examined with the number examined so far and the number of pieces.
	// Calls are serialized and done only grows; it is called without any
	// lock of the Wrapper held, from Resume's worker goroutines.
	ResumeProgress func(done, total int)
	// Now is the clock for the deadlines of the wants ReadAt registers;
	// nil means time.Now. Tests pass a fixed clock.
	Now func() time.Time
}

// Wrapper is the StorageWrapper of one torrent: block bookkeeping,
// verification and waiting reads on top of a Store. It is safe for
// concurrent use; see the package documentation for its one mutex.
type Wrapper struct {
	// info is the torrent's info dictionary, read-only.
	info *metainfo.Info
	// store holds the bytes; the Wrapper owns it and closes it.
	store Store
	// claimer is store as a Claimer (a store shared between processes),
	// or nil.
	claimer Claimer
	// pinner is store as a Pinner (a store whose pieces can be evicted),
	// or nil.
	pinner Pinner
	// log is never nil.
	log *slog.Logger
	// lim rate-limits the lines a failing Store repeats (health.go).
	lim *ratelog.Limiter
	// maxInFlight is Config.MaxInFlight with its default applied.
	maxInFlight int
	// hashWorkers is Config.HashWorkers with its default applied.
	hashWorkers int
	// progress is Config.ResumeProgress, possibly nil.
	progress func(done, total int)
	// now is the clock for want deadlines.
	now func() time.Time
	// kick is signalled (non-blocking, capacity 1) whenever wants change
	// and whenever changed gains a piece.
	kick chan struct{}
	// closedCh is closed by Close, waking waiting readers.
	closedCh chan struct{}
	// ctx is cancelled by Close so that hashing in progress stops early.
	ctx context.Context
	// cancel cancels ctx.
	cancel context.CancelFunc
	// hashed counts the pieces hashed (Stats.Hashed): how a test sees that
	// a piece recorded by another process is not hashed again.
	hashed atomic.Int64
	// ops counts Store operations in progress; Close waits for them.
	// Add is only called under mu while closed is false.
	ops sync.WaitGroup

	// mu guards every field below. Never held across Store I/O, hashing
	// or callbacks; no other lock is taken while it is held.
	mu sync.Mutex
	// verified is the set of verified pieces. A piece leaves it only by
	// Unverify: its published data left the Store (a shared cache evicted
	// it).
	verified *bitfield.Bitfield
	// verifiedBytes is the total length of the verified pieces.
	verifiedBytes int64
	// downloads holds the pieces in flight: handed out, partly received or
	// being hashed. len(downloads) <= maxInFlight.
	downloads map[int]*download
	// adopting holds the pieces Adopt is hashing; they are busy. The
	// channel is closed when that adoption ends (Resume waits for it).
	adopting map[int]chan struct{}
	// waiters holds, per unverified piece someone waits for, a channel
	// closed when the piece is verified.
	waiters map[int]chan struct{}
	// wants holds the registered wants by id.
	wants map[uint64]picker.Want
	// nextWant is the id of the next want.
	nextWant uint64
	// claims holds the pieces this process has claimed through claimer:
	// each is in downloads (or about to be dropped from claims and
	// released).
	claims map[int]struct{}
	// refused holds the pieces NewRequest did not start because another
	// process claimed them; ClaimEnded, a claim of ours, or verification
	// takes a piece out.
	refused map[int]struct{}
	// claimEnds counts ClaimEnded calls: a refusal that raced with one is
	// not recorded in refused.
	claimEnds uint64
	// changed holds the pieces whose state changed other than through the
	// engine's own downloads (adopted, unverified, refused, claim ended),
	// for TakeChanges.
	changed map[int]struct{}
	// hs is the Store's health (health.go): one owner, this Wrapper.
	hs healthState
	// room serializes the evictions that make room on a full disk
	// (health.go).
	room roomState
	// closed is set by Close.
	closed bool
}

// New returns a Wrapper for info over store, with nothing verified yet: call
// Resume to count what the store already holds. Resume is separate so that
// New never blocks and the caller (the engine) can report progress, cancel
// it, and bring up the mount meanwhile: readers that arrive during Resume
// simply wait for the pieces it verifies.
func New(info *metainfo.Info, store Store, cfg Config) (*Wrapper, error) {
	if err := checkInfo(info); err != nil {
		return nil, err
	}
	if store == nil {
		return nil, errors.New("storagewrapper: nil store")
	}
	w := &Wrapper{
		info:        info,
		store:       store,
		log:         cfg.Logger,
		maxInFlight: cfg.MaxInFlight,
		hashWorkers: cfg.HashWorkers,
		progress:    cfg.ResumeProgress,
		now:         cfg.Now,
		kick:        make(chan struct{}, 1),
		closedCh:    make(chan struct{}),
		verified:    bitfield.New(info.NumPieces()),
		downloads:   map[int]*download{},
		adopting:    map[int]chan struct{}{},
		waiters:     map[int]chan struct{}{},
		wants:       map[uint64]picker.Want{},
		claims:      map[int]struct{}{},
		refused:     map[int]struct{}{},
		changed:     map[int]struct{}{},
	}
	w.claimer, _ = store.(Claimer)
	w.pinner, _ = store.(Pinner)
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	w.lim = ratelog.New(w.log, time.Minute)
	w.hs.failed = make(chan struct{})
	if w.maxInFlight <= 0 {
		w.maxInFlight = DefaultMaxInFlight
	}
	if w.hashWorkers <= 0 {
		w.hashWorkers = runtime.GOMAXPROCS(0)
	}
	if w.now == nil {
		w.now = time.Now
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	return w, nil
}

// checkInfo rejects an Info whose lengths do not add up, so that no later
// arithmetic (and no metainfo.Info.PieceLen) can go out of range.
func checkInfo(info *metainfo.Info) error {
	if info == nil {
		return fmt.Errorf("storagewrapper: nil info: %w", ErrBadInfo)
	}
	n := int64(info.NumPieces())
	if n == 0 {
		if info.TotalLength != 0 {
			return fmt.Errorf("storagewrapper: no pieces for %d bytes: %w", info.TotalLength, ErrBadInfo)
		}
		return nil
	}
	if info.PieceLength <= 0 || info.PieceLength > MaxPieceLength {
		return fmt.Errorf("storagewrapper: piece length %d outside (0,%d]: %w", info.PieceLength, MaxPieceLength, ErrBadInfo)
	}
	if lo, hi := (n-1)*info.PieceLength, n*info.PieceLength; info.TotalLength <= lo || info.TotalLength > hi {
		return fmt.Errorf("storagewrapper: total length %d does not fit %d pieces of %d: %w",
			info.TotalLength, n, info.PieceLength, ErrBadInfo)
	}
	return nil
}

// Info returns the torrent's info dictionary.
func (w *Wrapper) Info() *metainfo.Info { return w.info }

// Close fails every waiting ReadAt with ErrClosed, drops all wants, waits
// for the Store operations in progress, releases the claims still held and
// closes the Store. Later calls fail with ErrClosed; Close itself may be
// called again (it returns nil).
func (w *Wrapper) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	close(w.closedCh)
	w.cancel()
	clear(w.wants)
	clear(w.waiters)
	claims := make([]int, 0, len(w.claims))
	for p := range w.claims {
		claims = append(claims, p)
	}
	clear(w.claims)
	w.mu.Unlock()
	w.signal()
	w.ops.Wait()
	w.mu.Lock()
	clear(w.downloads)
	w.mu.Unlock()
	for _, p := range claims {
		w.claimer.Release(p)
	}
	w.lim.Stop()
	if err := w.store.Close(); err != nil {
		return fmt.Errorf("storagewrapper: close store: %w", err)
	}
	return nil
}

// beginOpLocked registers a Store operation, unless the wrapper is closed.
func (w *Wrapper) beginOpLocked() error {
	if w.closed {
		return ErrClosed
	}
	w.ops.Add(1)
	return nil
}

// markVerifiedLocked adds piece p to the verified set and wakes its readers.
func (w *Wrapper) markVerifiedLocked(p int) {
	delete(w.refused, p)
	if !w.verified.Set(p) {
		return
	}
	w.verifiedBytes += w.info.PieceLen(p)
	if ch, ok := w.waiters[p]; ok {
		close(ch)
		delete(w.waiters, p)
	}
}
