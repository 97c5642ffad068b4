// Package engine is the peer side of btfs: one Torrent per info-hash joins
// a swarm, downloads the pieces the picker chooses into the storagewrapper,
// and uploads verified pieces to other peers. The seed's Connecter,
// SingleDownload, Upload, Choker and Rerequester live here, with goroutines
// instead of RawServer's select loop.
//
// Concurrency, in one paragraph: the Torrent's loop goroutine (loop.go) owns
// all swarm state — peers, picker, choker, the known addresses — and nothing
// else touches it. Each connection has a reader goroutine and a writer
// goroutine (peer.go). The reader files block bytes straight into the
// storagewrapper (no hop) and sends small events to the loop; the writer
// drains an outbox the loop fills under a small per-peer mutex, and reads
// the blocks it uploads from the storagewrapper itself. Dials, handshakes
// and tracker announces run in their own goroutines and report back to the
// loop by channel. Public methods are commands to the loop that give up when
// it has stopped.
package engine

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"btfs/engine/choker"
	"btfs/engine/metadata"
	"btfs/engine/transport"
	"btfs/engine/utp"
	"btfs/engine/wire"
	"btfs/internal/ratelog"
	"btfs/metainfo"
	"btfs/picker"
	"btfs/storagewrapper"
)

// Defaults for the zero fields of Config.
const (
	DefaultMaxPeers = 50
	// DefaultIdleTimeout closes a connection that sent nothing (not even a
	// keep-alive, which well-behaved peers send every two minutes).
	DefaultIdleTimeout = 3 * time.Minute
	// keepAliveInterval is how often the writer sends a keep-alive on an
	// otherwise silent connection.
	keepAliveInterval = 90 * time.Second
	// uploadReadTimeout bounds the read of a block we upload.
	uploadReadTimeout = 2 * time.Second
)

// ErrClosed is returned by commands to a Torrent whose loop has stopped.
var ErrClosed = errors.New("engine: torrent closed")

// Config tunes a Torrent. The zero value is usable except that nothing
// listens and no tracker is contacted unless asked.
type Config struct {
	// Logger receives connection, hash-failure and tracker events; nil
	// discards them.
	Logger *slog.Logger
	// PeerID is ours; zero means a fresh wire.NewPeerID().
	PeerID [20]byte
	// Listen is the TCP address to accept peers on ("127.0.0.1:0" in
	// tests, ":6881" for people); empty means no listener.
	Listen string
	// Listener, when set, is used instead of Listen (the caller owns the
	// port choice; the Torrent closes it).
	Listener net.Listener
	// MaxPeers caps connections, both directions; 0 means DefaultMaxPeers.
	MaxPeers int
	// Budget, when set, caps the connections (and dials) of every
	// Torrent sharing it: a client's limit for the whole process. nil
	// means no limit beyond MaxPeers.
	Budget *Budget
	// MaxDownloadRate and MaxUploadRate cap bytes/s; 0 means unlimited.
	MaxDownloadRate, MaxUploadRate int64
	// DownloadLimiter and UploadLimiter, when set, are shared with other
	// Torrents (a client's global caps) and used instead of
	// MaxDownloadRate and MaxUploadRate. Their burst must be at least
	// one block plus message overhead (Burst gives a fitting one).
	DownloadLimiter, UploadLimiter *rate.Limiter
	// ListenAddr is the address our peers can reach us at when the
	// Torrent has no listener of its own (Listen and Listener unset): a
	// client accepts for every torrent on one port and hands each
	// Torrent its connections (AddConn). It is what trackers, the DHT,
	// LSD and PEX are told.
	ListenAddr netip.AddrPort
	// Mode is the picker's: fetch everything (wanted first) or only what
	// readers want.
	Mode picker.Mode
	// Peers are dialled at start (tests, the demo, x.pe of a magnet).
	Peers []netip.AddrPort
	// Trackers overrides the torrent's announce list when non-nil; an
	// empty non-nil slice means no trackers at all.
	Trackers [][]string
	// DialTimeout and HandshakeTimeout bound a dial and the handshakes
	// after it when Transport is nil; 0 means transport's defaults.
	// IdleTimeout: 0 means DefaultIdleTimeout.
	DialTimeout, HandshakeTimeout, IdleTimeout time.Duration
	// Rand seeds the choker and the picker; nil means a random seed.
	Rand *rand.Rand
	// RechokeInterval is how often the choker runs; 0 means
	// choker.DefaultInterval (10 s). OptimisticInterval is how long an
	// optimistic unchoke lasts; 0 means choker.DefaultOptimisticInterval
	// (30 s). Tests shorten both.
	RechokeInterval, OptimisticInterval time.Duration
	// MinAnnounceInterval is the shortest wait between two announces to
	// the trackers, whatever they say (their own min interval still
	// applies); 0 means the tracker package's default (1 min). An engine
	// that runs short of peers asks for an announce (tracker.Announcer's
	// Need), which waits for it.
	MinAnnounceInterval time.Duration
	// Finder finds peers for the info-hash outside trackers (the DHT);
	// nil means none. Never used for private torrents.
	Finder PeerFinder
	// NoWebSeeds leaves the torrent's webseeds (BEP 19 url-list) unused.
	NoWebSeeds bool
	// Local finds peers on the local network (BEP 14); nil means none.
	// Never used for private torrents.
	Local LocalFinder
	// DHTPort is the UDP port of our DHT node, sent in BEP 5 port
	// messages to peers that speak DHT; 0 sends none. It is used only
	// when Finder also implements NodeAdder (so peers' port messages have
	// somewhere to go) and the torrent is not private.
	DHTPort int
	// UTP, when set, is a uTP socket (normally on the TCP port's number):
	// its incoming connections join the TCP ones. The caller owns it (the
	// DHT may share it) and closes it after the Torrent. Dials use it when
	// the Transport has a transport.UTPDialer for it (the default
	// Transport does: uTP preferred, TCP dialled at the same time).
	UTP *utp.Socket
	// Transport dials and accepts connections (encryption policy, uTP);
	// nil means a TCP transport with the default policy (encryption
	// preferred) and this Config's timeouts and logger.
	Transport *transport.Transport
	// OpenStorage opens the storage of a torrent started without its info
	// dictionary (a magnet link: New with mi.Info nil), once the
	// dictionary has arrived from peers and hashed to the info-hash. It
	// runs in its own goroutine (it may check what is on disk: the
	// Wrapper it returns should have been Resumed); meanwhile the
	// connections stay open, and when it returns they go on into the
	// swarm, in the picker mode it returns (Mode's, unless a cache
	// smaller than the torrent says otherwise). An error stops the
	// Torrent (Err says it). The caller closes the Wrapper after the
	// Torrent, as it does New's. Required with a nil mi.Info, unused
	// otherwise.
	OpenStorage func(ctx context.Context, mi *metainfo.MetaInfo) (*storagewrapper.Wrapper, picker.Mode, error)
	// MaxMetadataSize caps the info dictionary fetched from peers; 0
	// means wire.DefaultMaxMetadataSize (16 MiB).
	MaxMetadataSize int64
	// ExternalPort, when set, is the port a NAT gateway forwards to our
	// listener (package portmap), 0 while there is none: trackers are told
	// it instead of the listen port.
	ExternalPort func() int
}

// Torrent is one swarm: the peers of one info-hash.
type Torrent struct {
	mi   *metainfo.MetaInfo      // the torrent as given, read-only (Info nil for a magnet link)
	info *metainfo.Info          // the info dictionary; set by the loop before infoKnown closes (metaphase.go)
	full *metainfo.MetaInfo      // mi with its info; set with info
	sw   *storagewrapper.Wrapper // verified pieces, safe for concurrent use; set by the loop before ready closes
	cfg  Config                  // defaults applied
	log  *slog.Logger            // never nil
	lim  *ratelog.Limiter        // the lines that repeat (a failing disk): once per kind and interval
	ours wire.Handshake          // what we send: info-hash, peer id, reserved bits

	listener  net.Listener    // nil when not listening
	utpLn     net.Listener    // the uTP socket's accept view; nil without uTP
	downLimit *rate.Limiter   // nil when unlimited
	upLimit   *rate.Limiter   // nil when unlimited
	down, up  meter           // torrent totals (payload bytes)
	events    chan event      // peers, dialers, listener, trackers → loop
	cmds      chan func()     // public methods → loop
	ctx       context.Context // cancelled when the Torrent stops
	cancel    context.CancelFunc
	done      chan struct{}  // closed when the loop has returned
	wg        sync.WaitGroup // every goroutine the Torrent started
	complete  chan struct{}  // closed once every piece is verified
	infoKnown chan struct{}  // closed once info and full are set (at New unless a magnet link)
	ready     chan struct{}  // closed once sw and gens are set and the swarm runs (at New unless a magnet link)
	err       error          // why the loop stopped on its own; set before done closes
	closeOnce sync.Once
	gens      *pieceGens           // per piece, failed hash checks seen by the loop (smartban.go); set with sw
	sumSeed   maphash.Seed         // seed of the block digests (smartban.go)
	private   bool                 // BEP 27: no PEX, no DHT; loop-owned (false until a magnet's info says)
	meta      *metadata.Server     // answers ut_metadata requests (extensions.go); loop-owned
	nodes     NodeAdder            // the Finder's DHT routing table, nil unless we speak BEP 5
	tr        *transport.Transport // dials and accepts: TCP, MSE, the handshake

	s *state // loop-owned; see loop.go
}

// New prepares a Torrent for mi whose pieces live in sw. Call Start to
// start it. sw should have been Resumed, so that what is on disk counts.
//
// A magnet link starts without its info dictionary: mi has the info-hash
// (and the link's trackers and web seeds) but no Info, sw is nil and
// cfg.OpenStorage is set. The Torrent then fetches the dictionary from
// its peers (BEP 9) in its own loop, with the same address book,
// trackers, DHT and connections it goes on swarming with; Info waits for
// it.
func New(mi *metainfo.MetaInfo, sw *storagewrapper.Wrapper, cfg Config) (*Torrent, error) {
	magnet := mi != nil && mi.Info == nil
	switch {
	case mi == nil:
		return nil, errors.New("engine: New needs a torrent")
	case magnet && (sw != nil || cfg.OpenStorage == nil || mi.InfoHash == (metainfo.Hash{})):
		return nil, errors.New("engine: a torrent without its info needs an info-hash, Config.OpenStorage and no storagewrapper")
	case !magnet && sw == nil:
		return nil, errors.New("engine: New needs a storagewrapper")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.PeerID == ([20]byte{}) {
		cfg.PeerID = wire.NewPeerID()
	}
	if cfg.MaxPeers <= 0 {
		cfg.MaxPeers = DefaultMaxPeers
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.RechokeInterval <= 0 {
		cfg.RechokeInterval = choker.DefaultInterval
	}
	if cfg.OptimisticInterval <= 0 {
		cfg.OptimisticInterval = choker.DefaultOptimisticInterval
	}
	if cfg.MaxMetadataSize <= 0 {
		cfg.MaxMetadataSize = wire.DefaultMaxMetadataSize
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	t := &Torrent{
		mi:        mi,
		cfg:       cfg,
		log:       cfg.Logger.With("torrent", mi.InfoHash.String()[:8]),
		events:    make(chan event, 256),
		cmds:      make(chan func()),
		done:      make(chan struct{}),
		complete:  make(chan struct{}),
		infoKnown: make(chan struct{}),
		ready:     make(chan struct{}),
		sumSeed:   maphash.MakeSeed(),
	}
	t.lim = ratelog.New(t.log, 0)
	t.tr = cfg.Transport
	if t.tr == nil {
		tc := transport.Config{DialTimeout: cfg.DialTimeout, HandshakeTimeout: cfg.HandshakeTimeout, Logger: cfg.Logger}
		if cfg.UTP != nil {
			tc.Dialers = []transport.Dialer{transport.UTPDialer{Socket: cfg.UTP}, transport.TCPDialer{}}
		}
		t.tr = transport.New(tc)
	}
	t.ours = wire.Handshake{InfoHash: mi.InfoHash, PeerID: cfg.PeerID}
	t.ours.Reserved.SetExtensions()
	t.ours.Reserved.SetFast()
	if na, ok := cfg.Finder.(NodeAdder); ok && (magnet || !mi.Info.Private) {
		t.nodes = na
		t.ours.Reserved.SetDHT()
	}
	if cfg.MaxDownloadRate > 0 {
		t.downLimit = rate.NewLimiter(rate.Limit(cfg.MaxDownloadRate), burst(cfg.MaxDownloadRate))
	}
	if cfg.MaxUploadRate > 0 {
		t.upLimit = rate.NewLimiter(rate.Limit(cfg.MaxUploadRate), burst(cfg.MaxUploadRate))
	}
	if cfg.DownloadLimiter != nil {
		t.downLimit = cfg.DownloadLimiter
	}
	if cfg.UploadLimiter != nil {
		t.upLimit = cfg.UploadLimiter
	}
	t.s = newState(t)
	if magnet {
		t.meta = metadata.NewServer(nil)
		t.s.fetch = newMetaPhase(mi.InfoHash, cfg.MaxMetadataSize)
		return t, nil
	}
	t.setInfo(mi)
	if err := t.s.setStorage(sw, cfg.Mode); err != nil {
		return nil, err
	}
	return t, nil
}

// Burst is the token bucket burst that fits a cap of ratePerSec bytes/s
// (for Config.DownloadLimiter and UploadLimiter).
func Burst(ratePerSec int64) int { return burst(ratePerSec) }

// burst sizes a token bucket: at least one block plus message overhead (a
// WaitN larger than the burst fails), at most a quarter second of traffic.
func burst(ratePerSec int64) int {
	b := int(ratePerSec / 4)
	if b < 4*wire.BlockSize {
		b = 4 * wire.BlockSize
	}
	return b
}

// Start opens the listener and starts the loop; it returns at once. The
// Torrent runs until ctx is cancelled or Close is called.
func (t *Torrent) Start(ctx context.Context) error {
	ln := t.cfg.Listener
	if ln == nil && t.cfg.Listen != "" {
		var err error
		if ln, err = net.Listen("tcp", t.cfg.Listen); err != nil {
			return fmt.Errorf("engine: listen on %s: %w", t.cfg.Listen, err)
		}
	}
	t.listener = ln
	t.ctx, t.cancel = context.WithCancel(ctx)
	if ln != nil {
		t.wg.Add(1)
		go t.acceptLoop(ln)
	}
	if t.cfg.UTP != nil {
		t.utpLn = t.cfg.UTP.Listener()
		t.wg.Add(1)
		go t.acceptLoop(t.utpLn)
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		t.run()
	}()
	return nil
}

// Err is why the Torrent stopped on its own (the info dictionary of a
// magnet link hashed but did not parse, its storage did not open); nil
// while it runs and after Close.
func (t *Torrent) Err() error {
	select {
	case <-t.done:
		return t.err
	default:
		return nil
	}
}

// Close stops the Torrent: it announces "stopped" (briefly), closes every
// connection and waits for every goroutine it started.
func (t *Torrent) Close() error {
	t.closeOnce.Do(func() {
		if t.cancel == nil { // never started
			close(t.done)
			return
		}
		t.cancel()
		if t.listener != nil {
			t.listener.Close()
		}
		if t.utpLn != nil {
			t.utpLn.Close()
		}
	})
	t.wg.Wait()
	return nil
}

// Done is closed when the Torrent's loop has stopped.
func (t *Torrent) Done() <-chan struct{} { return t.done }

// Complete is closed once every piece is verified.
func (t *Torrent) Complete() <-chan struct{} { return t.complete }

// ListenAddr is the address peers can reach us at; invalid when not listening.
func (t *Torrent) ListenAddr() netip.AddrPort {
	if t.listener == nil {
		return t.cfg.ListenAddr
	}
	ap, _ := netip.ParseAddrPort(t.listener.Addr().String())
	return ap
}

// Handshake is what we send to a peer of this torrent: a client's
// listener answers incoming handshakes for it with this.
func (t *Torrent) Handshake() wire.Handshake { return t.ours }

// AddConn hands the Torrent an incoming connection that a client's
// listener accepted and handshook for it (transport.Accept with our
// Handshake). It reports false, and the caller closes c, when the Torrent
// is not running.
func (t *Torrent) AddConn(c *transport.Conn) bool {
	if t.ctx == nil {
		return false
	}
	return t.post(t.ctx, connEvent{conn: c.Conn, addr: addrOf(c.RemoteAddr()), hs: c.Peer, enc: c.Encryption, network: c.Network})
}

// PeerID is our peer id.
func (t *Torrent) PeerID() [20]byte { return t.cfg.PeerID }

// do runs fn on the loop and waits for it, or gives up with ctx or when the
// loop has stopped.
func (t *Torrent) do(ctx context.Context, fn func()) error {
	finished := make(chan struct{})
	wrapped := func() { fn(); close(finished) }
	select {
	case t.cmds <- wrapped:
	case <-t.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// The loop has fn now: wait for it to finish even if ctx ends, or the
	// caller would read what fn is still writing. fn is short, and the
	// loop closes done only after it returned.
	select {
	case <-finished:
		return nil
	case <-t.done:
		return ErrClosed
	}
}

// AddPeers makes addresses known to the Torrent; it dials them as
// connection slots allow.
func (t *Torrent) AddPeers(ctx context.Context, addrs ...netip.AddrPort) error {
	addrs = append([]netip.AddrPort(nil), addrs...)
	return t.do(ctx, func() { t.s.addPeers(addrs, "api") })
}
