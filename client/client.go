// Package client is one BitTorrent client per process: it owns what the
// torrents of a process share — the TCP listener and the uTP socket (one
// port for every torrent: incoming connections are handed to the torrent
// their handshake names), the DHT node, local service discovery, the port
// mapping, the peer id, the global rate limits, the transport (encryption
// policy and what it learned about peers) and the cache directory — and
// the set of torrents, added and removed while it runs. Closing it closes
// every torrent and everything shared, and waits for every goroutine it
// started.
//
// A torrent's life (torrent.go): its metadata (from the source, the cache,
// or a magnet link's swarm), its storage (the shared cache or a directory
// of files), the resume of what is stored, then an engine.Torrent. Package
// engine does the swarming; this package only wires and routes.
package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"golang.org/x/time/rate"

	"btfs/dht"
	"btfs/engine"
	"btfs/engine/transport"
	"btfs/engine/utp"
	"btfs/engine/wire"
	"btfs/lsd"
	"btfs/metainfo"
	"btfs/picker"
	"btfs/portmap"
)

// DHTStateName is the DHT's routing table in the cache directory, shared
// by every torrent.
const DHTStateName = "dht.state"

// Config is what the torrents of a process share. The zero value is a
// client that listens nowhere, uses no DHT and keeps its cache in "".
type Config struct {
	// Logger receives everything; nil discards.
	Logger *slog.Logger
	// CacheDir holds one directory per info-hash (the shared piece cache)
	// and the DHT's routing table.
	CacheDir string
	// Listen is the TCP address every torrent accepts peers on (":6881";
	// "" listens nowhere). With UTP, uTP and the DHT share its port in UDP.
	Listen string
	// UTP speaks uTP beside TCP: accepted on the listen port in UDP and
	// dialled first.
	UTP bool
	// DHT joins the DHT through DHTBootstrap (never for private torrents).
	DHT          bool
	DHTBootstrap []string
	// LSD announces the torrents on the LAN (BEP 14; never private ones).
	LSD bool
	// PortMap asks the router to forward the listen port.
	PortMap bool
	// Policy is the encryption policy.
	Policy transport.Policy
	// MaxDownloadRate and MaxUploadRate cap the whole process in bytes/s;
	// 0 is unlimited.
	MaxDownloadRate, MaxUploadRate int64
	// MaxPeers caps each torrent's connections (0: the engine's default).
	MaxPeers int
	// MaxConnections caps the connections of the whole process, every
	// torrent's together (0: no cap beyond MaxPeers each). A torrent keeps
	// the slots it holds: the cap bounds, it does not rebalance.
	MaxConnections int
	// Peers are dialled by every torrent (-peer); Trackers replaces every
	// torrent's announce list when non-nil (an empty non-nil slice: none).
	Peers    []netip.AddrPort
	Trackers [][]string
	// Mode is the picker's: everything, or only what readers want.
	Mode picker.Mode
	// MaxCacheBytes caps each torrent's cached pieces (0: no cap); a
	// torrent bigger than it fetches only what readers want.
	MaxCacheBytes int64
	// NoWebSeeds leaves the torrents' web seeds unused.
	NoWebSeeds bool
	// Engine, when set, adjusts each torrent's engine config last (tests
	// shorten intervals).
	Engine func(*engine.Config)
}

// Client is the process's BitTorrent client. Its methods are safe for
// concurrent use.
type Client struct {
	cfg    Config
	log    *slog.Logger
	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	peerID [20]byte
	tr     *transport.Transport
	ln     net.Listener       // nil when not listening
	utp    *utp.Socket        // nil without uTP
	finder engine.PeerFinder  // the DHT; nil without
	local  engine.LocalFinder // LSD; nil without
	extern func() int         // the port mapper's external port; nil without
	budget *engine.Budget     // nil: unlimited
	down   *rate.Limiter      // nil: unlimited
	up     *rate.Limiter      // nil: unlimited
	// closers stop the shared parts, in reverse order.
	closers []func()
	// wg counts the accept loops and the handshakes under way.
	wg sync.WaitGroup

	mu       sync.Mutex
	torrents map[metainfo.Hash]*Torrent        // every torrent added and not removed
	running  map[metainfo.Hash]*engine.Torrent // those whose engine runs: incoming connections go there
	closed   bool
}

// ErrClosed is returned by Add once Close was called.
var ErrClosed = errors.New("client: closed")

// ErrExists is returned by Add for an info-hash the client already has.
var ErrExists = errors.New("client: torrent already added")

// ErrUnknown is returned by Remove for an info-hash the client does not have.
var ErrUnknown = errors.New("client: no such torrent")

// New opens what the torrents share: the listener, the uTP socket, LSD,
// the port mapping and the DHT node. ctx bounds the start of the DHT and
// LSD only; the Client runs until Close.
func New(ctx context.Context, cfg Config) (*Client, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Client{
		cfg:      cfg,
		log:      log,
		peerID:   wire.NewPeerID(),
		torrents: map[metainfo.Hash]*Torrent{},
		running:  map[metainfo.Hash]*engine.Torrent{},
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if err := c.open(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// open is New's work; on error the caller closes what was opened.
func (c *Client) open(ctx context.Context) error {
	cfg := c.cfg
	c.budget = engine.NewBudget(cfg.MaxConnections)
	if cfg.MaxDownloadRate > 0 {
		c.down = rate.NewLimiter(rate.Limit(cfg.MaxDownloadRate), engine.Burst(cfg.MaxDownloadRate))
	}
	if cfg.MaxUploadRate > 0 {
		c.up = rate.NewLimiter(rate.Limit(cfg.MaxUploadRate), engine.Burst(cfg.MaxUploadRate))
	}
	if cfg.Listen != "" {
		ln, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
		}
		c.ln = ln
		c.closers = append(c.closers, func() { ln.Close() })
		c.log.Info("listening", "addr", ln.Addr())
	}
	dialers := []transport.Dialer{transport.TCPDialer{}}
	if cfg.UTP {
		// uTP on the TCP port's number, in UDP (without a listener, a
		// port of its own for dialling); the DHT shares the socket.
		addr := ":0"
		if c.ln != nil {
			addr = c.ln.Addr().String()
		}
		sock, err := utp.Listen(addr, utp.Config{Logger: c.log.With("part", "utp")})
		if err != nil {
			c.log.Warn("uTP off: its UDP port is not free; peers that speak only uTP are out of reach", "err", err)
		} else {
			c.log.Info("uTP listening", "addr", sock.Addr())
			c.utp = sock
			c.closers = append(c.closers, func() { sock.Close() })
			dialers = []transport.Dialer{transport.UTPDialer{Socket: sock}, transport.TCPDialer{}}
		}
	}
	c.tr = transport.New(transport.Config{Policy: cfg.Policy, Dialers: dialers, Logger: c.log})
	if cfg.LSD {
		// No multicast route (a host without a LAN, a test's namespace
		// with only loopback) is not an error: there is nobody to find.
		if svc, err := lsd.Start(ctx, lsd.Config{Logger: c.log.With("part", "lsd")}); err != nil {
			c.log.Info("local service discovery off", "err", err)
		} else {
			c.log.Info("local service discovery started")
			c.local = svc
			c.closers = append(c.closers, func() { svc.Close() })
		}
	}
	if c.ln != nil && cfg.PortMap {
		if m := startPortMap(ctx, c.ln, c.log); m != nil {
			c.extern = m.ExternalPort
			c.closers = append(c.closers, func() { m.Close() })
		}
	}
	if cfg.DHT {
		if err := c.startDHT(ctx); err != nil {
			return err
		}
	}
	if c.ln != nil {
		c.wg.Add(1)
		go c.acceptLoop(c.ln)
	}
	if c.utp != nil {
		uln := c.utp.Listener()
		c.closers = append(c.closers, func() { uln.Close() })
		c.wg.Add(1)
		go c.acceptLoop(uln)
	}
	return nil
}

// startDHT starts the DHT node on the uTP socket (one UDP port for both),
// else on the TCP port's number when free, else on any port.
func (c *Client) startDHT(ctx context.Context) error {
	bootstrap := c.cfg.DHTBootstrap
	if len(bootstrap) == 0 {
		bootstrap = dht.DefaultBootstrap
	}
	stateFile := ""
	if c.cfg.CacheDir != "" {
		if err := os.MkdirAll(c.cfg.CacheDir, 0o755); err != nil {
			c.log.Warn("dht: the routing table will not be kept", "err", err)
		} else {
			stateFile = filepath.Join(c.cfg.CacheDir, DHTStateName)
		}
	}
	dcfg := dht.Config{Addr: ":0", Bootstrap: bootstrap, StateFile: stateFile, Logger: c.log.With("part", "dht")}
	if c.utp != nil {
		dcfg.Conn = c.utp.PacketConn() // datagrams that are not uTP go to the DHT
	} else if c.ln != nil {
		if host, port, err := net.SplitHostPort(c.ln.Addr().String()); err == nil {
			dcfg.Addr = net.JoinHostPort(host, port)
		}
	}
	node, err := dht.Start(ctx, dcfg)
	if err != nil && dcfg.Conn == nil && dcfg.Addr != ":0" {
		if host, _, serr := net.SplitHostPort(dcfg.Addr); serr == nil {
			dcfg.Addr = net.JoinHostPort(host, "0")
			node, err = dht.Start(ctx, dcfg)
		}
	}
	if err != nil {
		return fmt.Errorf("dht: %w", err)
	}
	c.log.Info("dht started", "addr", node.Addr(), "bootstrap", len(bootstrap))
	c.finder = node
	c.closers = append(c.closers, func() {
		if err := node.Close(); err != nil {
			c.log.Warn("dht: close", "err", err)
		}
	})
	return nil
}

// startPortMap asks the router, in the background, to forward the
// listener's port in TCP and UDP until Close; nil for a listener on
// loopback, which no router forwards to.
func startPortMap(ctx context.Context, ln net.Listener, log *slog.Logger) *portmap.Mapper {
	ap, err := netip.ParseAddrPort(ln.Addr().String())
	if err != nil || ap.Addr().IsLoopback() {
		return nil
	}
	m, err := portmap.Start(ctx, portmap.Config{Port: int(ap.Port()), Logger: log})
	if err != nil {
		log.Warn("no port mapping", "err", err)
		return nil
	}
	return m
}

// ListenAddr is the TCP address peers reach every torrent at; invalid when
// not listening.
func (c *Client) ListenAddr() netip.AddrPort {
	if c.ln == nil {
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(c.ln.Addr().String())
	return ap
}

// PeerID is the peer id every torrent of the client uses.
func (c *Client) PeerID() [20]byte { return c.peerID }

// Transport is the client's transport (its counters are the process's).
func (c *Client) Transport() *transport.Transport { return c.tr }

// Get returns the torrent with info-hash ih, or nil.
func (c *Client) Get(ih metainfo.Hash) *Torrent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.torrents[ih]
}

// List returns the torrents, in the order they were added.
func (c *Client) List() []*Torrent {
	c.mu.Lock()
	out := make([]*Torrent, 0, len(c.torrents))
	for _, t := range c.torrents {
		out = append(out, t)
	}
	c.mu.Unlock()
	slices.SortFunc(out, func(a, b *Torrent) int { return int(a.seq - b.seq) })
	return out
}

// Add starts a torrent and returns it at once: its metadata, storage and
// engine come in the background (Torrent.Attached, Running, Done say
// when). ErrExists when the info-hash is there already.
func (c *Client) Add(ctx context.Context, src Source, opts AddOptions) (*Torrent, error) {
	if src.MetaInfo == nil && src.Magnet == nil {
		return nil, errors.New("client: empty source")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return nil, ErrClosed
	case c.torrents[src.InfoHash()] != nil:
		return nil, fmt.Errorf("%w: %s", ErrExists, src.InfoHash())
	}
	t := newTorrent(c, src, opts)
	c.torrents[t.ih] = t
	c.wg.Add(1)
	go t.run(c.wg.Done)
	return t, nil
}

// Remove stops the torrent ih and waits until it has: its connections
// closed, its trackers told, its storage closed. Its cache stays.
func (c *Client) Remove(ctx context.Context, ih metainfo.Hash) error {
	c.mu.Lock()
	t := c.torrents[ih]
	delete(c.torrents, ih)
	c.mu.Unlock()
	if t == nil {
		return fmt.Errorf("%w: %s", ErrUnknown, ih)
	}
	t.stop()
	select {
	case <-t.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops every torrent, then the shared parts, and waits for every
// goroutine the Client started.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	ts := make([]*Torrent, 0, len(c.torrents))
	for _, t := range c.torrents {
		ts = append(ts, t)
	}
	clear(c.torrents)
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, t := range ts {
		wg.Go(func() { t.stop(); <-t.done })
	}
	wg.Wait()
	c.cancel()
	for i := len(c.closers) - 1; i >= 0; i-- {
		c.closers[i]()
	}
	c.closers = nil
	c.wg.Wait()
	return nil
}

// setRunning makes e the receiver of incoming connections for ih (nil:
// none any more).
func (c *Client) setRunning(ih metainfo.Hash, e *engine.Torrent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e == nil {
		delete(c.running, ih)
	} else {
		c.running[ih] = e
	}
}
