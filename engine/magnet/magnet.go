// Package magnet resolves a magnet link: it finds peers (the link's own,
// trackers, the DHT), asks them for the info dictionary with BEP 9's
// ut_metadata over BEP 10's extension protocol, and returns the verified
// bytes with every peer address it learned.
//
// It runs before the engine, which needs a complete info dictionary to
// start, and is deliberately small: no pieces, no choking, no uploads.
// Its shape is the engine's in miniature: one goroutine (the loop) owns
// the metadata.Fetcher and the peer set; each connection has a reader and
// a writer goroutine that talk to the loop by channel; trackers and the
// DHT run in goroutines of their own and hand addresses to the loop.
// Every goroutine ends before Fetch returns.
//
// What peers send is untrusted: sizes over the cap are refused before
// anything is allocated from them, messages are read with wire's limits,
// and the Fetcher's verdicts (a dictionary that does not hash) ban the
// peer's IP for the rest of the Fetch.
package magnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"btfs/engine/metadata"
	"btfs/engine/transport"
	"btfs/engine/wire"
	"btfs/metainfo"
)

// PeerFinder finds peers outside trackers: the DHT (package dht's *Node).
// Declared here, at its consumer, so that this package does not depend on
// the DHT.
type PeerFinder interface {
	// FindPeers runs one lookup for ih, calling found with batches of
	// addresses (from any goroutine); when port > 0 it also announces
	// that we serve ih on that TCP port.
	FindPeers(ctx context.Context, ih [20]byte, port int, found func([]netip.AddrPort)) error
}

// Config is what Fetch needs. InfoHash is required; every zero field
// takes the default named on it.
type Config struct {
	// InfoHash names the torrent (the magnet link's xt).
	InfoHash metainfo.Hash
	// Peers are addresses to dial first (x.pe, --peer).
	Peers []netip.AddrPort
	// Trackers are the tracker tiers (the link's tr= as one tier each, or
	// BEP 12 tiers); nil or empty means no tracker.
	Trackers [][]string
	// Finder looks peers up in the DHT; nil means no DHT.
	Finder PeerFinder
	// PeerID is our peer ID; zero means wire.NewPeerID().
	PeerID [20]byte
	// Port is our listen port, announced to trackers and the DHT; 0 when
	// unknown.
	Port int
	// MaxSize caps the info dictionary; 0 means
	// wire.DefaultMaxMetadataSize (16 MiB).
	MaxSize int64
	// MaxPeers caps connections, open and being dialled; 0 means
	// DefaultMaxPeers.
	MaxPeers int
	// DialTimeout bounds a TCP connect (0: DefaultDialTimeout), and
	// HandshakeTimeout the BitTorrent handshake after it and the wait for
	// the peer's extension handshake (0: DefaultHandshakeTimeout).
	DialTimeout, HandshakeTimeout time.Duration
	// Logger receives debug records about peers and a summary; nil
	// discards.
	Logger *slog.Logger
	// Transport dials (encryption policy, transports); nil means TCP with
	// the default policy and the timeouts above. Pass the engine's so what
	// it learns about peers carries over.
	Transport *transport.Transport
}

// Defaults of Config's zero fields; the timeouts are the engine's.
const (
	DefaultMaxPeers         = 30
	DefaultDialTimeout      = 5 * time.Second
	DefaultHandshakeTimeout = 10 * time.Second
)

// Result is a resolved magnet link.
type Result struct {
	// Info is the info dictionary: its SHA-1 is the info-hash and
	// metainfo.ParseInfo accepts it.
	Info []byte
	// Peers are the addresses learned (given, trackers, DHT), those that
	// completed a BitTorrent handshake first, in the order they did;
	// banned hosts and our own address are left out. The engine dials
	// them next.
	Peers []netip.AddrPort
}

// ErrBadInfo is returned when peers delivered a dictionary that hashes to
// the info-hash but is not a valid info dictionary: the magnet link names
// a broken torrent, and no other peer can do better.
var ErrBadInfo = errors.New("magnet: the info dictionary matches the info-hash but is invalid")

// Fetch resolves cfg.InfoHash. It returns when the info dictionary has
// arrived and verified, with ErrBadInfo (wrapped) when it verified but does
// not parse, or, when ctx ends first, with ctx's error wrapped in a summary
// of what was tried (peers known, connected, banned, the last tracker and
// DHT errors). Every goroutine it started has ended when it returns.
func Fetch(ctx context.Context, cfg Config) (Result, error) {
	if cfg.InfoHash == (metainfo.Hash{}) {
		return Result{}, errors.New("magnet: no info-hash")
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return Result{}, fmt.Errorf("magnet: port %d out of range 0..65535", cfg.Port)
	}
	if cfg.PeerID == ([20]byte{}) {
		cfg.PeerID = wire.NewPeerID()
	}
	if cfg.MaxSize <= 0 {
		cfg.MaxSize = wire.DefaultMaxMetadataSize
	}
	if cfg.MaxPeers <= 0 {
		cfg.MaxPeers = DefaultMaxPeers
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Transport == nil {
		cfg.Transport = transport.New(transport.Config{DialTimeout: cfg.DialTimeout, HandshakeTimeout: cfg.HandshakeTimeout, Logger: log})
	}
	log = log.With("infohash", cfg.InfoHash.String())

	runCtx, cancel := context.WithCancel(ctx)
	f := &fetch{
		cfg:     cfg,
		log:     log,
		ctx:     runCtx,
		events:  make(chan event, eventQueue),
		fetcher: metadata.NewFetcher(cfg.InfoHash, cfg.MaxSize),
		known:   map[netip.AddrPort]*known{},
		banned:  map[netip.Addr]bool{},
		byID:    map[string]*peerConn{},
		started: time.Now(),
	}
	f.hs.InfoHash = cfg.InfoHash
	f.hs.PeerID = cfg.PeerID
	f.hs.Reserved.SetExtensions()
	f.hs.Reserved.SetFast() // BEP 6: lets the peer send have-all instead of a bitfield; we ignore both
	var wg sync.WaitGroup
	f.wg = &wg
	res, err := f.run(ctx)
	cancel() // closes every connection (connect's AfterFunc) and stops the sources
	wg.Wait()
	return res, err
}
