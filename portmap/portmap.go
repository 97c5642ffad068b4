// Package portmap asks the home router to forward btfs's listen port to it,
// with UPnP IGD (github.com/huin/goupnp) or NAT-PMP (RFC 6886,
// github.com/jackpal/go-nat-pmp): behind a NAT without a forwarded port
// nobody can connect to us, and we only ever reach the half of the swarm
// that accepts connections.
//
// A Mapper runs in the background: discovery is bounded (a few seconds)
// and never delays the caller; mappings are asked for with a lease and
// renewed at half of it; Close removes them. The external port, which a
// NAT-PMP gateway may choose differently from the one asked for, is what
// trackers must be told.
package portmap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// Protocol is a transport protocol to map.
type Protocol string

// The protocols: TCP for peer connections, UDP for the DHT (and uTP).
const (
	TCP Protocol = "TCP"
	UDP Protocol = "UDP"
)

// Method is a port-mapping protocol spoken with the gateway.
type Method string

// The methods, in the order Start prefers them when the gateway speaks
// both: NAT-PMP answers in one UDP round trip and says which external port
// it gave; UPnP needs HTTP and XML.
const (
	NATPMP Method = "NAT-PMP"
	UPnP   Method = "UPnP IGD"
)

// Defaults of Config.
const (
	// DefaultLifetime is the lease asked for. Leases keep a crashed
	// client's mapping from lingering; one hour is libtorrent's choice for
	// NAT-PMP, and routers that refuse leases get a permanent mapping
	// removed on Close.
	DefaultLifetime = time.Hour
	// DefaultDiscoveryTimeout bounds the search for a gateway: SSDP waits
	// two seconds for answers, the device description takes one more.
	DefaultDiscoveryTimeout = 4 * time.Second
	// closeTimeout bounds removing the mappings on Close.
	closeTimeout = 2 * time.Second
)

// Config says what a Mapper maps.
type Config struct {
	// Port is the local port to forward (the listener's), 1..65535.
	Port int
	// Protocols to map; default TCP and UDP.
	Protocols []Protocol
	// Methods to try, in order of preference; default NAT-PMP, then UPnP.
	Methods []Method
	// Lifetime is the lease asked for; default DefaultLifetime.
	Lifetime time.Duration
	// DiscoveryTimeout bounds finding a gateway; default
	// DefaultDiscoveryTimeout.
	DiscoveryTimeout time.Duration
	// Description names the mapping in the router's UPnP table; default
	// "btfs".
	Description string
	// Logger gets what happens; default: discard.
	Logger *slog.Logger
}

// Mapping is one port forwarded by the gateway.
type Mapping struct {
	Protocol Protocol
	Method   Method
	// InternalPort is Config.Port.
	InternalPort int
	// External is the gateway's external address (invalid when it would
	// not say) and the external port that reaches InternalPort.
	External netip.AddrPort
	// Expires is when the lease ends unless renewed; zero for a permanent
	// mapping (a router that allows no leases).
	Expires time.Time
}

// gateway is one method's client of one gateway.
type gateway interface {
	method() Method
	// externalAddr asks for the gateway's external address.
	externalAddr(ctx context.Context) (netip.Addr, error)
	// add maps (or renews) proto from port to the external port ext
	// (a wish), for lifetime, and returns the external port given and
	// the lease granted (0: permanent).
	add(ctx context.Context, proto Protocol, port, ext int, lifetime time.Duration) (gotExt int, lease time.Duration, err error)
	// remove deletes the mapping of proto from port to the external
	// port ext.
	remove(ctx context.Context, proto Protocol, port, ext int) error
}

// ErrNoGateway is the Mapper's Err when no gateway answered in time.
var ErrNoGateway = errors.New("portmap: no UPnP IGD or NAT-PMP gateway answered")

// Mapper keeps the ports mapped until Close.
type Mapper struct {
	cfg    Config
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns (mappings removed)
	ready  chan struct{} // closed after the first attempt

	mu       sync.Mutex
	mappings map[Protocol]Mapping
	err      error
}

// Start begins mapping cfg.Port in the background and returns at once. It
// fails only on a bad Config.
func Start(ctx context.Context, cfg Config) (*Mapper, error) {
	if cfg.Port < 1 || cfg.Port > 65535 {
		return nil, fmt.Errorf("portmap: port %d out of range 1..65535", cfg.Port)
	}
	if len(cfg.Protocols) == 0 {
		cfg.Protocols = []Protocol{TCP, UDP}
	}
	if len(cfg.Methods) == 0 {
		cfg.Methods = []Method{NATPMP, UPnP}
	}
	if cfg.Lifetime <= 0 {
		cfg.Lifetime = DefaultLifetime
	}
	if cfg.DiscoveryTimeout <= 0 {
		cfg.DiscoveryTimeout = DefaultDiscoveryTimeout
	}
	if cfg.Description == "" {
		cfg.Description = "btfs"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(ctx)
	m := &Mapper{
		cfg:      cfg,
		log:      log.With("part", "portmap"),
		cancel:   cancel,
		done:     make(chan struct{}),
		ready:    make(chan struct{}),
		mappings: map[Protocol]Mapping{},
	}
	go m.run(ctx)
	return m, nil
}

// Ready is closed once the first attempt ended: the ports are mapped, or
// Err says why not.
func (m *Mapper) Ready() <-chan struct{} { return m.ready }

// Err is why the ports are not (all) mapped, nil when they are or while
// the first attempt runs.
func (m *Mapper) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// Mappings returns the current mappings, in Config.Protocols order.
func (m *Mapper) Mappings() []Mapping {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Mapping
	for _, p := range m.cfg.Protocols {
		if mp, ok := m.mappings[p]; ok {
			out = append(out, mp)
		}
	}
	return out
}

// ExternalPort is the external port that reaches Config.Port over TCP, or
// 0 while there is no TCP mapping: the port to announce to trackers.
func (m *Mapper) ExternalPort() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return int(m.mappings[TCP].External.Port())
}

// Close stops renewing and removes the mappings (bounded by a couple of
// seconds, however the gateway behaves).
func (m *Mapper) Close() error {
	m.cancel()
	<-m.done
	return nil
}

// run finds a gateway, maps, renews at half the lease (sooner after a
// failure), and removes the mappings when ctx ends.
func (m *Mapper) run(ctx context.Context) {
	defer close(m.done)
	readyOnce := sync.OnceFunc(func() { close(m.ready) })
	defer readyOnce()
	var gw gateway
	retry := 30 * time.Second
	for gw == nil {
		var err error
		gw, err = m.discover(ctx)
		if err != nil {
			m.setErr(err)
			readyOnce()
			m.log.Info("no port mapping", "err", err, "retry in", retry)
			select {
			case <-ctx.Done():
				return
			case <-time.After(retry):
			}
			retry = min(2*retry, 30*time.Minute)
		}
	}
	defer m.removeAll(gw)
	for {
		next := m.mapAll(ctx, gw)
		readyOnce()
		select {
		case <-ctx.Done():
			return
		case <-time.After(next):
		}
	}
}

// discover tries the methods concurrently, each bounded by
// DiscoveryTimeout, and returns the preferred one that answered.
func (m *Mapper) discover(ctx context.Context) (gateway, error) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.DiscoveryTimeout)
	defer cancel()
	type result struct {
		gw  gateway
		err error
	}
	results := make([]chan result, len(m.cfg.Methods))
	for i, method := range m.cfg.Methods {
		results[i] = make(chan result, 1)
		go func() {
			var r result
			switch method {
			case NATPMP:
				r.gw, r.err = discoverNATPMP(ctx, m.cfg.DiscoveryTimeout)
			case UPnP:
				r.gw, r.err = discoverUPnP(ctx, m.cfg.Description)
			default:
				r.err = fmt.Errorf("unknown method %q", method)
			}
			results[i] <- r
		}()
	}
	var errs []error
	var found gateway
	for i, ch := range results {
		r := <-ch // each is bounded by ctx
		switch {
		case r.err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", m.cfg.Methods[i], r.err))
		case found == nil:
			found = r.gw
			cancel() // the others need not finish their search
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%w (%w)", ErrNoGateway, errors.Join(errs...))
	}
	return found, nil
}

// mapAll maps (or renews) every protocol and returns when to renew.
func (m *Mapper) mapAll(ctx context.Context, gw gateway) time.Duration {
	next := m.cfg.Lifetime / 2
	ext, err := gw.externalAddr(ctx)
	if err != nil {
		m.log.Debug("external address unknown", "method", gw.method(), "err", err)
	}
	var errs []error
	for _, proto := range m.cfg.Protocols {
		m.mu.Lock()
		old, had := m.mappings[proto]
		m.mu.Unlock()
		want := m.cfg.Port
		if had {
			want = int(old.External.Port()) // keep the port trackers know
		}
		got, lease, err := gw.add(ctx, proto, m.cfg.Port, want, m.cfg.Lifetime)
		if err != nil {
			errs = append(errs, fmt.Errorf("portmap: %s %s port %d: %w", gw.method(), proto, m.cfg.Port, err))
			continue
		}
		mp := Mapping{Protocol: proto, Method: gw.method(), InternalPort: m.cfg.Port, External: netip.AddrPortFrom(ext, uint16(got))}
		if lease > 0 {
			mp.Expires = time.Now().Add(lease)
			next = min(next, lease/2)
		}
		m.mu.Lock()
		m.mappings[proto] = mp
		m.mu.Unlock()
		if !had || old.External != mp.External {
			m.log.Info("port mapped", "method", mp.Method, "proto", proto, "port", m.cfg.Port, "external", mp.External, "lease", lease)
		} else {
			m.log.Debug("port mapping renewed", "method", mp.Method, "proto", proto, "external", mp.External, "lease", lease)
		}
	}
	err = errors.Join(errs...)
	m.setErr(err)
	if err != nil {
		m.log.Warn("port mapping failed", "err", err)
		next = min(next, time.Minute)
	}
	return max(next, time.Second)
}

// removeAll deletes the mappings, bounded by closeTimeout.
func (m *Mapper) removeAll(gw gateway) {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	m.mu.Lock()
	mappings := m.mappings
	m.mappings = map[Protocol]Mapping{}
	m.mu.Unlock()
	for _, proto := range m.cfg.Protocols {
		mp, ok := mappings[proto]
		if !ok {
			continue
		}
		if err := gw.remove(ctx, proto, mp.InternalPort, int(mp.External.Port())); err != nil {
			m.log.Warn("port mapping not removed", "method", mp.Method, "proto", proto, "external", mp.External, "err", err)
		} else {
			m.log.Info("port mapping removed", "method", mp.Method, "proto", proto, "external", mp.External)
		}
	}
}

func (m *Mapper) setErr(err error) {
	m.mu.Lock()
	m.err = err
	m.mu.Unlock()
}
