package engine

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"

	"btfs/bitfield"
	"btfs/engine/choker"
	"btfs/engine/mse"
	"btfs/engine/pex"
	"btfs/engine/tracker"
	"btfs/engine/wire"
	"btfs/picker"
	"btfs/storagewrapper"
)

// Events that goroutines send to the loop. They are small: block bytes never
// travel through the loop.
type event interface{}

type (
	// msgEvent: a peer sent a message other than a block.
	msgEvent struct {
		p *peer
		m wire.Message
	}
	// blockEvent: a peer's block went through PieceCameIn (or was
	// refused before it, err wrapping errNotAsked).
	blockEvent struct {
		p   *peer
		b   storagewrapper.Block
		res storagewrapper.Result
		err error
		gen uint32 // the piece's generation when the block was filed
		sum uint64 // the block's digest, for smart ban
	}
	// closedEvent: a peer's connection failed or ended.
	closedEvent struct {
		p   *peer
		err error
	}
	// connEvent: a handshake completed, in either direction.
	connEvent struct {
		conn     net.Conn
		addr     netip.AddrPort
		hs       wire.Handshake
		outgoing bool
		enc      mse.Method // 0: plain
		network  string     // the transport's ("tcp")
	}
	// dialFailedEvent: an outgoing connection or its handshake failed.
	dialFailedEvent struct {
		addr netip.AddrPort
		err  error
	}
	// trackerEvent: one announce ended (err nil: it worked).
	trackerEvent struct{ err error }
	// peersEvent: a tracker (or another source) gave us addresses.
	peersEvent struct {
		addrs  []netip.AddrPort
		source string
	}
)

// post sends an event to the loop unless ctx ends or the loop has stopped.
func (t *Torrent) post(ctx context.Context, ev event) bool {
	select {
	case t.events <- ev:
		return true
	case <-ctx.Done():
		return false
	case <-t.done:
		return false
	}
}

// Tunables of the loop.
const (
	tickInterval   = time.Second
	urgentInterval = 200 * time.Millisecond // how often late urgent blocks are re-requested
	snubTimeout    = 30 * time.Second       // requests with no block for this long: snubbed
	maxUploadQueue = 256                    // requests we queue per peer
	redialBackoff  = 15 * time.Second       // wait before redialling a peer whose connection ended
	minDialBackoff = time.Second            // first wait after a failed dial (dialBackoff)
	maxDialBackoff = 10 * time.Minute       // longest wait between dials of a failing address
	urgentRedial   = time.Second            // dial interval per address while a reader waits with no peer
	interestLinger = 2 * time.Minute        // interest kept after the last want (updateInterest)
	maxKnownPeers  = 2000                   // addresses remembered
)

// known is what the loop remembers about an address.
type known struct {
	connected bool      // a live connection exists
	dialing   bool      // a dial is under way
	failures  int       // consecutive failures
	nextTry   time.Time // not before
	lastTry   time.Time // when the last dial started
	self      bool      // it is us
	noMeta    bool      // it cannot give us the metadata: not dialled again before the info is in (metaphase.go)
}

// state is the swarm state, owned by the loop goroutine.
type state struct {
	t           *Torrent
	pk          *picker.Picker // nil until the storage is attached (a magnet link's metadata phase)
	choker      *choker.Choker[*peer]
	peers       map[*peer]struct{}
	byID        map[[20]byte]*peer
	known       map[netip.AddrPort]*known
	dialing     int
	banned      map[netip.Addr]bool
	bans        smartBan                     // who sent which block of pieces in flight and of failed pieces
	reqCount    map[storagewrapper.Block]int // peers each outstanding block is requested from
	wants       []picker.Want                // last wants read from the storagewrapper
	wantedAt    time.Time                    // when wants was last seen non-empty (interest lingers after it)
	stats       Stats                        // refreshed every tick
	hashFail    int                          // pieces that failed their hash
	wasted      int64                        // bytes received and thrown away
	announcer   *tracker.Announcer           // nil without trackers
	pexIn       *pex.Intake                  // filters what peers tell us by PEX; nil for a private torrent
	kick        <-chan struct{}              // the storagewrapper's demand signal; nil before the storage is attached
	learned     map[string]int               // new addresses by source ("tracker", "pex", "dht", ...)
	lookup      lookupState                  // the Finder's lookups (finder.go)
	localNeed   func()                       // asks the local finder for an early announce; nil without one (local.go)
	store       storeView                    // the store's health as last seen (health.go)
	fetch       *metaPhase                   // the metadata phase of a magnet link; nil once the swarm runs (metaphase.go)
	connections int                          // connections admitted since the start (Stats.Connections)
	trackerOK   int                          // announces that worked
	trackerErr  error                        // the last announce that failed
}

// newChoker returns the tit-for-tat choker with cfg's optimistic interval.
func newChoker(cfg Config) *choker.Choker[*peer] {
	c := choker.New[*peer](cfg.Rand)
	c.OptimisticInterval = cfg.OptimisticInterval
	return c
}

// newState is the loop's state before the storage is attached (pk is nil
// until setStorage).
func newState(t *Torrent) *state {
	s := &state{
		t:        t,
		choker:   newChoker(t.cfg),
		peers:    make(map[*peer]struct{}),
		byID:     make(map[[20]byte]*peer),
		known:    make(map[netip.AddrPort]*known),
		banned:   make(map[netip.Addr]bool),
		bans:     newSmartBan(),
		reqCount: make(map[storagewrapper.Block]int),
		learned:  make(map[string]int),
	}
	if t.mi.Info == nil || !t.mi.Info.Private {
		s.pexIn = pex.NewIntake(pex.IntakeConfig{})
	}
	return s
}

// run is the loop: the only goroutine that touches state.
func (t *Torrent) run() {
	s := t.s
	defer close(t.done)
	defer t.lim.Stop() // no summary after the torrent is gone
	defer s.shutdown()

	if s.fetch == nil {
		s.startSwarm()
	}
	s.addPeers(t.cfg.Peers, "config")
	stopTrackers := t.startTrackers()
	defer stopTrackers()
	if ap := t.ListenAddr(); ap.IsValid() && s.pexIn != nil {
		s.pexIn.AddSelf(ap)
	}
	s.maybeLookup(time.Now())
	s.joinLocal()
	if s.fetch == nil {
		s.startWebSeeds()
	}

	tick := time.NewTicker(tickInterval)
	defer tick.Stop()
	urgent := time.NewTicker(urgentInterval)
	defer urgent.Stop()
	rechoke := time.NewTicker(t.cfg.RechokeInterval)
	defer rechoke.Stop()
	var ticks int
	for {
		select {
		case <-t.ctx.Done():
			return
		case fn := <-t.cmds:
			fn()
		case ev := <-t.events:
			s.handle(ev)
		case <-s.kick:
			s.checkStore() // health.go: a full or failing disk, or its recovery
			s.syncStore()  // cache.go: pieces adopted, evicted or claimed elsewhere
			s.readWants()
			s.fillAll()
			if len(s.peers) == 0 {
				s.maybeDial(time.Now()) // a read waits with nobody connected: see maybeDial
			}
		case now := <-urgent.C:
			if s.pk != nil {
				s.rerequestLate(now)
			}
		case now := <-tick.C:
			ticks++
			s.tick(now)
			if ticks == 2 && s.pk != nil {
				s.rechoke(now) // an early first rechoke so new swarms start trading
			}
		case now := <-rechoke.C:
			if s.pk != nil {
				s.rechoke(now)
			}
		}
	}
}

// startSwarm begins what needs the storage: our pieces so far (resumed
// from disk) into the picker, the readers' wants, the store's kicks. At
// the start of run, or when a magnet link's storage has opened.
func (s *state) startSwarm() {
	bf := s.t.sw.Bitfield()
	for i, ok := bf.NextSet(0); ok; i, ok = bf.NextSet(i + 1) {
		s.pk.Sync(i, picker.PieceVerified)
	}
	s.kick = s.t.sw.Kick()
	s.checkComplete()
	s.readWants()
}

// handle dispatches one event.
func (s *state) handle(ev event) {
	switch ev := ev.(type) {
	case msgEvent:
		if !ev.p.closed {
			s.onMessage(ev.p, ev.m)
		}
	case blockEvent:
		if s.pk == nil { // a block before the swarm runs cannot have been asked for
			s.wasted += int64(ev.b.Length)
			ev.p.unrequested++
			return
		}
		if ev.err == nil {
			s.recordBlock(ev.p.addr.Addr(), ev.b, ev.gen, ev.sum)
		}
		if !ev.p.closed {
			s.onBlock(ev.p, ev.b, ev.res, ev.err)
		} else {
			s.onOrphanBlock(ev.b, ev.res, ev.err)
		}
	case closedEvent:
		s.dropPeer(ev.p, ev.err)
	case connEvent:
		s.onConn(ev)
	case dialFailedEvent:
		s.onDialFailed(ev.addr, ev.err)
	case peersEvent:
		s.addPeers(ev.addrs, ev.source)
	case lookupDoneEvent:
		s.lookupDone(ev.err)
	case trackerEvent:
		if ev.err != nil {
			s.trackerErr = ev.err
		} else {
			s.trackerOK++
		}
	case storageEvent:
		s.onStorage(ev) // metaphase.go
	}
}

// readWants refreshes the picker's wants from the storagewrapper (readers'
// reads and readahead windows).
func (s *state) readWants() {
	if len(s.wants) > 0 {
		s.wantedAt = time.Now() // the wants being replaced held until now
	}
	s.wants = s.t.sw.Wants()
	if err := s.pk.SetWants(s.wants); err != nil {
		s.t.log.Warn("bad wants", "err", err)
	}
	// In FetchReads mode interest follows the wants.
	for p := range s.peers {
		s.updateInterest(p)
	}
}

// tick runs once a second: rates, snubs, dials.
func (s *state) tick(now time.Time) {
	s.t.down.Tick(now)
	s.t.up.Tick(now)
	for p := range s.peers {
		p.down.Tick(now)
		p.up.Tick(now)
		s.checkSnub(p, now)
	}
	if s.pk == nil {
		s.pumpAllMeta(now) // requests that timed out go to others (metaphase.go)
	} else if len(s.wants) > 0 {
		s.wantedAt = now
	} else if s.pk.Mode() == picker.FetchReads && !s.lingering(now) {
		for p := range s.peers {
			if p.amInterested {
				s.updateInterest(p) // the linger is over: interest follows the wants again
			}
		}
	}
	s.maybeDial(now)
	s.maybeNeedPeers(now)
	s.maybeLookup(now)
	s.maybeNeedLocal(now)
	s.pexTick(now)
	s.refreshStats()
	if s.pk != nil {
		s.fillAll()
	}
}

// checkComplete closes t.complete once everything is verified, and tells
// peers we are no longer interested.
func (s *state) checkComplete() {
	if !s.isComplete() {
		return
	}
	select {
	case <-s.t.complete:
	default:
		close(s.t.complete)
		s.t.log.Info("download complete", "pieces", s.pk.NumPieces())
		if s.announcer != nil {
			s.announcer.Completed() // "completed" now, not at the next interval
		}
		for p := range s.peers {
			s.updateInterest(p)
		}
	}
}

// shutdown closes every connection when the loop ends.
func (s *state) shutdown() {
	for p := range s.peers {
		p.closed = true
		p.close()
		s.t.cfg.Budget.give()
	}
	// The dials still under way report to nobody now.
	for range s.dialing {
		s.t.cfg.Budget.give()
	}
}

// isComplete reports whether we are a seed (never before the storage is
// attached).
func (s *state) isComplete() bool { return s.pk != nil && s.pk.NumVerified() == s.pk.NumPieces() }

// peerHas is the picker's view of a peer's pieces: nil for have-all.
func (p *peer) pieces() *bitfield.Bitfield {
	if p.seed {
		return nil
	}
	return p.has
}

// hasPiece reports whether the peer has piece i.
func (p *peer) hasPiece(i int) bool {
	if p.seed {
		return true
	}
	return p.has != nil && p.has.Has(i)
}

var errProtocol = errors.New("protocol violation")
