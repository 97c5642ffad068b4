// Package dht is btfs's node of the BitTorrent DHT (BEP 5): it finds peers
// for an info-hash (magnets without trackers, more peers for all) and
// announces the torrents btfs seeds.
//
// It wraps github.com/anacrolix/dht/v2, a maintained implementation, and
// fences off the parts of it that do not fit a client that must never
// reach an address it was not given, never print on its own, and stop
// every goroutine on Close:
//   - the bootstrap list is exactly Config.Bootstrap (the library falls
//     back to the public routers when none is set);
//   - each Node has its own send limiter (the library shares one 25/s
//     limiter among all servers of a process);
//   - a bounded peer store keyed by address and port (the library's keys
//     by IP only and grows forever), and no BEP 44 storage at all;
//   - its logging goes to Config.Logger (nil drops it), and packets that
//     would make it log to stderr are dropped before it sees them;
//   - the routing table and node ID persist in Config.StateFile.
package dht

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	adht "github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/bep44"
	"github.com/anacrolix/dht/v2/krpc"
	"golang.org/x/time/rate"
)

// DefaultBootstrap is the public routers that a user's node starts from
// when it has no state file yet. Only cmd/btfs uses it; tests never do.
var DefaultBootstrap = []string{
	"router.bittorrent.com:6881",
	"dht.transmissionbt.com:6881",
	"router.utorrent.com:6881",
	"dht.libtorrent.org:25401",
}

// DefaultQueriesPerSecond is the send limit when Config leaves it 0:
// enough for a few lookups at once, far below what gets a node banned.
const DefaultQueriesPerSecond = 100

// ErrClosed is returned by FindPeers on a closed Node.
var ErrClosed = errors.New("dht: node closed")

// Config says how Start runs a Node.
type Config struct {
	// Addr is the UDP address to listen on: "127.0.0.1:0" in tests,
	// ":6881"-style for users. Ignored when Conn is set.
	Addr string
	// Conn, when set, is used instead of listening on Addr; the Node owns
	// it from then on and closes it on Close.
	Conn net.PacketConn
	// Bootstrap holds host:port of the nodes to start from when the
	// routing table is empty. nil or empty means none: there is never a
	// hidden default (cmd/btfs passes DefaultBootstrap).
	Bootstrap []string
	// StateFile keeps the routing table and node ID: loaded at Start,
	// written atomically at Close. "" keeps nothing.
	StateFile string
	// Logger receives the node's and the library's messages; nil drops them.
	Logger *slog.Logger
	// QueriesPerSecond limits the packets the node sends (queries and
	// replies); 0 means DefaultQueriesPerSecond.
	QueriesPerSecond float64
	// NodeID is the node's DHT ID. Zero means the one saved in StateFile,
	// or else a random one.
	NodeID [20]byte
}

// Node is a running DHT node. Its methods are safe for concurrent use.
type Node struct {
	// srv is the library's server; conn its socket.
	srv  *adht.Server
	conn *conn
	// log is never nil.
	log *slog.Logger
	// stateFile is Config.StateFile.
	stateFile string
	// peers is what other nodes announced to this one.
	peers *peerStore
	// queriesReceived counts the queries the library handled.
	queriesReceived atomic.Int64

	// ctx ends at Close; every goroutine of ours watches it.
	ctx    context.Context
	cancel context.CancelFunc
	// maintainer is closed when the table maintainer goroutine returns.
	maintainer chan struct{}

	// mu guards closed and the Add calls of work.
	mu     sync.Mutex
	closed bool
	// work counts running FindPeers calls and AddNode pings; Close waits
	// for them.
	work      sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Stats is a snapshot of a Node's activity, for status lines and tests.
type Stats struct {
	// GoodNodes are routing-table nodes that answered recently (or have
	// not been asked yet); Nodes is the whole table.
	GoodNodes, Nodes int
	// QueriesSent counts the queries this node attempted; QueriesReceived
	// the ones it got (from nodes that passed the library's checks).
	QueriesSent, QueriesReceived int64
	// AnnouncesSent counts announce_peer queries that other nodes accepted.
	AnnouncesSent int64
	// Swarms and Peers are what the peer store holds for others.
	Swarms, Peers int
	// GarbagePackets counts received packets that were not KRPC.
	GarbagePackets int64
}

// Start listens, loads the state file, resolves the bootstrap nodes (with
// ctx; a name that does not resolve is logged and skipped) and starts
// maintaining the routing table in the background. It does not wait for
// the bootstrap: FindPeers falls back on the bootstrap nodes while the
// table is empty.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pc := cfg.Conn
	if pc == nil {
		if cfg.Addr == "" {
			return nil, errors.New("dht: Config.Addr or Config.Conn is required")
		}
		var err error
		pc, err = (&net.ListenConfig{}).ListenPacket(ctx, "udp", cfg.Addr)
		if err != nil {
			return nil, fmt.Errorf("dht: %w", err)
		}
	}
	local, _ := netip.ParseAddrPort(pc.LocalAddr().String())
	bootstrap := resolveBootstrap(ctx, log, cfg.Bootstrap, local.Addr())
	if err := ctx.Err(); err != nil {
		pc.Close()
		return nil, fmt.Errorf("dht: %w", err)
	}

	var st *state
	if cfg.StateFile != "" {
		var err error
		st, err = readState(cfg.StateFile)
		if err != nil {
			log.Warn("dht: ignoring damaged state file", "file", cfg.StateFile, "err", err,
				"nodes_kept", func() int {
					if st == nil {
						return 0
					}
					return len(st.nodes)
				}())
		}
	}
	id := cfg.NodeID
	if id == ([20]byte{}) && st != nil {
		id = st.id
	}
	if id == ([20]byte{}) {
		id = krpc.RandomNodeID()
	}

	qps := cfg.QueriesPerSecond
	if qps <= 0 {
		qps = DefaultQueriesPerSecond
	}
	n := &Node{
		conn:       newConn(pc, log),
		log:        log,
		stateFile:  cfg.StateFile,
		peers:      newPeerStore(),
		maintainer: make(chan struct{}),
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	srv, err := adht.NewServer(&adht.ServerConfig{
		NodeId: id,
		Conn:   n.conn,
		// Always set: nil makes the library use the public routers.
		StartingNodes: func() ([]adht.Addr, error) { return bootstrap, nil },
		// BEP 42 is not enforced: most of the real DHT does not comply.
		NoSecurity:  true,
		DefaultWant: wants(local.Addr()),
		PeerStore:   n.peers,
		Store:       noBEP44{},
		Logger:      libLogger(cfg.Logger),
		SendLimiter: rate.NewLimiter(rate.Limit(qps), max(1, int(qps))),
		OnQuery: func(*krpc.Msg, net.Addr) bool {
			n.queriesReceived.Add(1)
			return true
		},
	})
	if err != nil {
		n.cancel()
		pc.Close()
		return nil, fmt.Errorf("dht: %w", err)
	}
	n.srv = srv
	if st != nil {
		for _, sn := range st.nodes {
			var ni krpc.NodeInfo
			ni.ID = sn.id
			ni.Addr = nodeAddr(sn.addr)
			// An error means the bucket is full or the entry is ourselves.
			_ = srv.AddNode(ni)
		}
	}
	go func() {
		defer close(n.maintainer)
		// The library's Bootstrap leaks its traversal goroutine when it
		// has no node to start from (an empty table and no bootstrap
		// list): wait for a first node (AddNode, a saved one, or one that
		// queried us). A table never empties once it has a node.
		if len(bootstrap) == 0 && !n.waitFirstNode() {
			return
		}
		// Bootstraps now and every 30 minutes, pings questionable nodes,
		// refreshes buckets; returns when the server closes.
		srv.TableMaintainer()
	}()
	log.Debug("dht: started", "addr", n.Addr(), "id", fmt.Sprintf("%x", id),
		"bootstrap", len(bootstrap), "saved_nodes", srv.NumNodes())
	return n, nil
}

// waitFirstNode waits until the routing table holds a node; false if the
// node closed first.
func (n *Node) waitFirstNode() bool {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for n.srv.NumNodes() == 0 {
		select {
		case <-n.ctx.Done():
			return false
		case <-tick.C:
		}
	}
	return true
}

// wants is what the node asks for in find_node and get_peers (BEP 32):
// the address families its socket can reach.
func wants(local netip.Addr) []krpc.Want {
	switch {
	case local.Is4() && !local.IsUnspecified():
		return []krpc.Want{krpc.WantNodes}
	case local.Is6() && !local.IsUnspecified() && !local.Is4In6():
		return []krpc.Want{krpc.WantNodes6}
	}
	return []krpc.Want{krpc.WantNodes, krpc.WantNodes6}
}

// resolveBootstrap turns host:port strings into addresses, skipping (and
// logging) the ones that do not resolve and, for a node listening on a
// specific IPv4 address, the IPv6 ones it cannot reach.
func resolveBootstrap(ctx context.Context, log *slog.Logger, hostPorts []string, local netip.Addr) []adht.Addr {
	v4only := local.Is4() && !local.IsUnspecified()
	var out []adht.Addr
	for _, hp := range hostPorts {
		host, portStr, err := net.SplitHostPort(hp)
		if err != nil {
			log.Warn("dht: bad bootstrap address", "addr", hp, "err", err)
			continue
		}
		port, err := strconv.ParseUint(portStr, 10, 16)
		if err != nil || port == 0 {
			log.Warn("dht: bad bootstrap port", "addr", hp)
			continue
		}
		var ips []netip.Addr
		if ip, err := netip.ParseAddr(host); err == nil {
			ips = []netip.Addr{ip}
		} else if ips, err = net.DefaultResolver.LookupNetIP(ctx, "ip", host); err != nil {
			log.Warn("dht: bootstrap node does not resolve", "addr", hp, "err", err)
			continue
		}
		for _, ip := range ips {
			ip = ip.Unmap()
			if v4only && !ip.Is4() {
				continue
			}
			out = append(out, adht.NewAddr(net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port)))))
		}
	}
	return out
}

// Addr is the UDP address the node listens on.
func (n *Node) Addr() netip.AddrPort {
	a, _ := netip.ParseAddrPort(n.conn.LocalAddr().String())
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// ID is the node's DHT ID.
func (n *Node) ID() [20]byte { return n.srv.ID() }

// begin registers one unit of work that Close waits for; false once closed.
func (n *Node) begin() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return false
	}
	n.work.Add(1)
	return true
}

// FindPeers runs one get_peers traversal for ih, calling found (from any
// goroutine, possibly several times) with batches of peer addresses, each
// address once per call and never one with port 0 or an unspecified IP.
// When port > 0 it ends by sending announce_peer for ih with that TCP
// port to the closest nodes that gave tokens. It returns when the
// traversal (and the announce) ends, or ctx is done, or the node closes
// (ErrClosed). found runs on the lookup's path, so it should be quick,
// and it must not call Close.
func (n *Node) FindPeers(ctx context.Context, ih [20]byte, port int, found func([]netip.AddrPort)) error {
	if port < 0 || port > 65535 {
		return fmt.Errorf("dht: announce port %d out of range", port)
	}
	if !n.begin() {
		return ErrClosed
	}
	defer n.work.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(n.ctx, cancel)
	defer stop()

	var opts []adht.AnnounceOpt
	if port > 0 {
		opts = append(opts, adht.AnnouncePeer(adht.AnnouncePeerOpts{Port: port}))
	}
	a, err := n.srv.AnnounceTraversal(ih, opts...)
	if err != nil {
		return fmt.Errorf("dht: get_peers %x: %w", ih, err)
	}
	defer a.Close()
	seen := map[netip.AddrPort]bool{}
	for {
		select {
		case pv, ok := <-a.Peers:
			if !ok {
				return nil
			}
			var batch []netip.AddrPort
			for _, p := range pv.Peers {
				if addr, ok := peerAddr(p); ok && !seen[addr] {
					seen[addr] = true
					batch = append(batch, addr)
				}
			}
			if len(batch) > 0 {
				found(batch)
			}
		case <-ctx.Done():
			// Stop the traversal and the announces, and wait for the
			// library's goroutines: Peers closes when they are done.
			a.Close()
			for range a.Peers {
			}
			if n.ctx.Err() != nil {
				return ErrClosed
			}
			return fmt.Errorf("dht: get_peers %x: %w", ih, ctx.Err())
		}
	}
}

// AddNode pings addr, a node learned elsewhere (a peer's BEP 5 PORT
// message, a test); if it answers it enters the routing table.
func (n *Node) AddNode(addr netip.AddrPort) {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	if !addr.IsValid() || addr.Port() == 0 || addr.Addr().IsUnspecified() {
		return
	}
	if !n.begin() {
		return
	}
	go func() {
		defer n.work.Done()
		// Any reply adds its sender to the table (the library does that
		// for every response), so the result needs no handling here.
		res := n.srv.Query(n.ctx, adht.NewAddr(net.UDPAddrFromAddrPort(addr)), "ping", adht.QueryInput{})
		if res.Err != nil {
			n.log.Debug("dht: ping of added node failed", "addr", addr, "err", res.Err)
		}
	}()
}

// Stats returns a snapshot of the node's counters.
func (n *Node) Stats() Stats {
	ss := n.srv.Stats()
	swarms, peers := n.peers.counts()
	return Stats{
		GoodNodes:       ss.GoodNodes,
		Nodes:           ss.Nodes,
		QueriesSent:     ss.OutboundQueriesAttempted,
		QueriesReceived: n.queriesReceived.Load(),
		AnnouncesSent:   ss.SuccessfulOutboundAnnouncePeerQueries,
		Swarms:          swarms,
		Peers:           peers,
		GarbagePackets:  n.conn.garbage.Load(),
	}
}

// Close stops the lookups and pings in progress, saves the state file,
// closes the socket and returns once the node's goroutines have ended.
// The error is the state file's; the node stops either way. It can take
// up to the library's 2 s query timeout: the routing-table maintenance
// (library code) waits for its in-flight queries without a context.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.mu.Lock()
		n.closed = true
		n.mu.Unlock()
		n.cancel()
		n.work.Wait()
		if n.stateFile != "" {
			st := &state{id: n.srv.ID()}
			for _, ni := range n.srv.Nodes() {
				sn := savedNode{id: ni.ID}
				if addr, ok := peerAddr(ni.Addr); ok {
					sn.addr = addr
					st.nodes = append(st.nodes, sn)
				}
			}
			n.closeErr = writeState(n.stateFile, st)
		}
		n.srv.Close()
		n.conn.Close() // returns when the library's read loop has let go
		<-n.maintainer
	})
	return n.closeErr
}

// noBEP44 is a bep44.Store that stores nothing: btfs has no use for BEP 44
// items, and the library's in-memory store keeps any item anyone puts,
// without bound.
type noBEP44 struct{}

func (noBEP44) Put(*bep44.Item) error                 { return krpc.ErrorMethodUnknown }
func (noBEP44) Get(bep44.Target) (*bep44.Item, error) { return nil, bep44.ErrItemNotFound }
func (noBEP44) Del(bep44.Target) error                { return nil }
