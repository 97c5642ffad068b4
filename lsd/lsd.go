// Package lsd is BitTorrent Local Service Discovery (BEP 14): clients on
// one LAN announce the torrents they serve to a multicast group and learn
// each other's addresses without a tracker or the DHT.
//
// One Service per process holds the sockets: a receiver per group (bound
// to the group's address and port, shared with other processes through
// SO_REUSEADDR) and a sender whose announces loop back to the host, so
// that two btfs processes on one machine find each other too; a random
// cookie in every announce lets us ignore our own. Torrents Join the
// Service; it announces every joined torrent at start and every Interval,
// earlier (at most once per MinGap) when one Needs peers, batching every
// torrent due into as few messages as fit. Each message received teaches
// one address for at most MaxInfoHashes torrents, and only for torrents
// joined here; at most acceptRate messages a second (all senders together)
// are acted on. Private torrents (BEP 27) must never Join: that is the
// caller's check (the engine's).
package lsd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// The BEP 14 multicast groups.
var (
	GroupV4 = netip.MustParseAddrPort("239.192.152.143:6771")
	GroupV6 = netip.MustParseAddrPort("[ff15::efc0:988f]:6771")
)

// Defaults of Config.
const (
	// DefaultInterval is the time between two announces of a torrent.
	DefaultInterval = 5 * time.Minute
	// DefaultMinGap is the shortest time between two announces of a
	// torrent, when it Needs peers (BEP 14 asks for at most one a minute).
	DefaultMinGap = time.Minute
	// coalesce is how long the sender waits after being woken, so that
	// torrents joining together share one message.
	coalesce = 100 * time.Millisecond
	// acceptRate and acceptBurst bound the announces we act on, from all
	// senders together: a LAN of btfs machines sends a few a minute, and
	// a flood must not turn into a flood of dials.
	acceptRate  = 10 // per second
	acceptBurst = 50
)

// Config tunes a Service. The zero value is usable.
type Config struct {
	// Logger receives what goes wrong; nil discards it.
	Logger *slog.Logger
	// Groups to announce to and listen on; nil means GroupV4 and GroupV6.
	// A group that cannot be joined (no route, no IPv6) is skipped; Start
	// fails only when none can.
	Groups []netip.AddrPort
	// Interval and MinGap: 0 means DefaultInterval and DefaultMinGap.
	Interval, MinGap time.Duration
}

// Service announces the torrents joined and hands the peers heard to them.
type Service struct {
	cfg    Config
	log    *slog.Logger
	cookie string
	groups []*group
	accept *rate.Limiter // announces acted on
	wake   chan struct{} // capacity 1: the sender should look at the joins
	done   chan struct{} // closed by Close
	wg     sync.WaitGroup

	mu    sync.Mutex
	joins map[*join]struct{} // guarded by mu
}

// group is one multicast group's pair of sockets.
type group struct {
	addr netip.AddrPort
	host string       // the Host header: the group as text
	recv *net.UDPConn // bound to the group, joined
	send *net.UDPConn // unbound, multicast loop on
}

// join is one torrent's membership.
type join struct {
	ih    [20]byte
	port  uint16                 // 0: listen only, never announce
	found func([]netip.AddrPort) // must not block
	sched schedule               // guarded by Service.mu
}

// Start opens the sockets and starts the sender and the receivers. ctx
// bounds nothing after Start returns: Close stops the Service.
func Start(ctx context.Context, cfg Config) (*Service, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Groups == nil {
		cfg.Groups = []netip.AddrPort{GroupV4, GroupV6}
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.MinGap <= 0 {
		cfg.MinGap = DefaultMinGap
	}
	var c [8]byte
	if _, err := rand.Read(c[:]); err != nil {
		return nil, err
	}
	s := &Service{
		cfg:    cfg,
		log:    cfg.Logger,
		cookie: hex.EncodeToString(c[:]),
		accept: rate.NewLimiter(acceptRate, acceptBurst),
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
		joins:  make(map[*join]struct{}),
	}
	var errs []error
	for _, ga := range cfg.Groups {
		g, err := openGroup(ga)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.groups = append(s.groups, g)
	}
	if len(s.groups) == 0 {
		return nil, fmt.Errorf("lsd: no multicast group could be joined: %w", errors.Join(errs...))
	}
	for _, err := range errs {
		s.log.Debug("lsd: group skipped", "err", err)
	}
	for _, g := range s.groups {
		s.wg.Add(1)
		go s.receive(g)
	}
	s.wg.Add(1)
	go s.sender()
	return s, nil
}

// openGroup joins ga on the system's default multicast interface (the
// route to the group) and opens the socket announces are sent from.
func openGroup(ga netip.AddrPort) (*group, error) {
	network := "udp4"
	if ga.Addr().Is6() {
		network = "udp6"
	}
	recv, err := net.ListenMulticastUDP(network, nil, net.UDPAddrFromAddrPort(ga))
	if err != nil {
		return nil, fmt.Errorf("join %s: %w", ga, err)
	}
	// A separate socket sends: the Go runtime turns multicast loop off on
	// recv, and we want our announces to reach other processes here.
	send, err := net.ListenUDP(network, nil)
	if err != nil {
		recv.Close()
		return nil, fmt.Errorf("send socket for %s: %w", ga, err)
	}
	return &group{addr: ga, host: ga.String(), recv: recv, send: send}, nil
}

// Close stops the Service and closes its sockets.
func (s *Service) Close() error {
	select {
	case <-s.done:
		return nil
	default:
	}
	close(s.done)
	var errs []error
	for _, g := range s.groups {
		errs = append(errs, g.recv.Close(), g.send.Close())
	}
	s.wg.Wait()
	return errors.Join(errs...)
}

// Cookie is the cookie in our announces.
func (s *Service) Cookie() string { return s.cookie }

// Join announces that we serve ih on TCP port (0: do not announce, only
// listen) and calls found with the peers heard announcing ih, one address
// per message, until ctx ends. found is called from the Service's
// goroutines and must not block. need asks for an early announce, when the
// torrent is short of peers; the Service keeps to MinGap whatever the
// caller does, so calling it every second is fine.
func (s *Service) Join(ctx context.Context, ih [20]byte, port int, found func([]netip.AddrPort)) (need func()) {
	j := s.add(ctx, ih, port, found)
	s.kick()
	return func() {
		s.mu.Lock()
		j.sched.needed = true
		s.mu.Unlock()
		s.kick()
	}
}

// add records a join until ctx ends.
func (s *Service) add(ctx context.Context, ih [20]byte, port int, found func([]netip.AddrPort)) *join {
	j := &join{ih: ih, found: found}
	if port > 0 && port <= 65535 {
		j.port = uint16(port)
	}
	s.mu.Lock()
	s.joins[j] = struct{}{}
	s.mu.Unlock()
	context.AfterFunc(ctx, func() {
		s.mu.Lock()
		delete(s.joins, j)
		s.mu.Unlock()
	})
	return j
}

// kick wakes the sender.
func (s *Service) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// sender sends the announces due, then sleeps until the next one is due
// or it is woken.
func (s *Service) sender() {
	defer s.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-s.wake:
			select { // let joins that come together share a message
			case <-s.done:
				return
			case <-time.After(coalesce):
			}
		case <-timer.C:
		}
		next := s.announceDue(time.Now())
		timer.Reset(next)
	}
}

// announceDue sends one batch of messages with every torrent due now and
// returns how long until the next is due.
func (s *Service) announceDue(now time.Time) time.Duration {
	byPort := make(map[uint16][][20]byte)
	next := s.cfg.Interval
	s.mu.Lock()
	for j := range s.joins {
		if j.port == 0 {
			continue
		}
		if j.sched.due(now, s.cfg.Interval, s.cfg.MinGap) {
			j.sched.sent(now)
			byPort[j.port] = append(byPort[j.port], j.ih)
		}
		next = min(next, j.sched.wait(now, s.cfg.Interval, s.cfg.MinGap))
	}
	s.mu.Unlock()
	for port, ihs := range byPort {
		for _, g := range s.groups {
			for _, m := range Format(g.host, port, s.cookie, ihs) {
				if _, err := g.send.WriteToUDPAddrPort(m, g.addr); err != nil {
					s.log.Debug("lsd: announce failed", "group", g.addr, "err", err)
				}
			}
		}
	}
	return max(next, coalesce)
}

// receive reads announces from g until Close.
func (s *Service) receive(g *group) {
	defer s.wg.Done()
	buf := make([]byte, MaxMessage+1) // one more: a datagram that fills it is too large
	for {
		n, from, err := g.recv.ReadFromUDPAddrPort(buf)
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Debug("lsd: read", "err", err)
			continue
		}
		if n > MaxMessage {
			continue
		}
		a, err := Parse(buf[:n])
		if err != nil || a.Cookie == s.cookie || !s.accept.Allow() {
			continue
		}
		s.deliver(netip.AddrPortFrom(from.Addr().Unmap(), a.Port), a.InfoHashes)
	}
}

// deliver hands peer to every join of the torrents in ihs.
func (s *Service) deliver(peer netip.AddrPort, ihs [][20]byte) {
	var calls []func([]netip.AddrPort)
	s.mu.Lock()
	for j := range s.joins {
		for _, ih := range ihs {
			if j.ih == ih {
				calls = append(calls, j.found)
				break
			}
		}
	}
	s.mu.Unlock()
	for _, f := range calls {
		f([]netip.AddrPort{peer})
	}
}

// schedule is one torrent's announce times.
type schedule struct {
	last   time.Time // last announce; zero before the first
	needed bool      // short of peers: announce again after MinGap
}

// due reports whether the torrent should be announced at now: never yet,
// Interval since the last, or MinGap since the last when it needs peers.
func (sc *schedule) due(now time.Time, interval, minGap time.Duration) bool {
	return sc.wait(now, interval, minGap) == 0
}

// wait is how long from now until the next announce is due (0: now).
func (sc *schedule) wait(now time.Time, interval, minGap time.Duration) time.Duration {
	if sc.last.IsZero() {
		return 0
	}
	gap := interval
	if sc.needed {
		gap = minGap
	}
	return max(sc.last.Add(gap).Sub(now), 0)
}

// sent records an announce at now.
func (sc *schedule) sent(now time.Time) { sc.last, sc.needed = now, false }
