package tracker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"sync"
	"time"

	"btfs/metainfo"
)

// UDPOptions tune a UDPClient; the zero value gives BEP 15's numbers.
type UDPOptions struct {
	// RetransmitBase is the first wait for a reply; attempt n waits
	// RetransmitBase·2^n. Default 15 s (BEP 15); tests use milliseconds.
	RetransmitBase time.Duration
	// MaxRetransmits is the largest n before giving up. Default 8 (BEP 15);
	// a negative value means no retransmission at all.
	MaxRetransmits int
	// ConnIDTTL is how long a connection id is reused. Default 1 minute,
	// the client's limit in BEP 15.
	ConnIDTTL time.Duration
	// Now reads the clock that ages connection ids; nil means time.Now.
	// Reply time-outs always use the real clock.
	Now func() time.Time
	// Logger receives debug records about ignored datagrams; nil discards.
	Logger *slog.Logger
}

// UDPClient announces to and scrapes UDP trackers (BEP 15). It keeps one
// connected socket per tracker address and that tracker's connection id;
// exchanges with one tracker take turns on its socket, so a late reply to
// an earlier attempt is recognised by its transaction id and ignored.
// Safe for concurrent use.
type UDPClient struct {
	// base, maxN and ttl are the options with defaults applied.
	base time.Duration
	maxN int
	ttl  time.Duration
	// now is the clock for connection-id age.
	now func() time.Time
	// log receives debug records.
	log *slog.Logger

	// mu guards trackers and closed, and the conn field of every tracker
	// (which is written only while holding both mu and the tracker's sem).
	mu sync.Mutex
	// trackers maps "host:port" to that tracker's socket and state.
	trackers map[string]*udpTracker
	// closed is set by Close.
	closed bool
}

// udpTracker is the state kept for one tracker address.
type udpTracker struct {
	// sem is a capacity-1 semaphore: whoever holds it owns every field
	// below (conn is also guarded by UDPClient.mu against Close).
	sem chan struct{}
	// conn is the socket connected to the tracker; nil until first used.
	conn *net.UDPConn
	// addrLen is the peer address size in announce replies: 4 or 16.
	addrLen int
	// connID is the current connection id, valid when hasConnID.
	connID uint64
	// hasConnID is false before the first connect and after an error.
	hasConnID bool
	// connIDAt is when connID was received, on the client's clock.
	connIDAt time.Time
	// buf is the datagram read buffer.
	buf []byte
}

// errNoReply is an attempt that saw no matching reply in its wait.
var errNoReply = errors.New("no reply")

// NewUDPClient returns a client; Close releases its sockets.
func NewUDPClient(opts UDPOptions) *UDPClient {
	if opts.RetransmitBase <= 0 {
		opts.RetransmitBase = 15 * time.Second
	}
	switch {
	case opts.MaxRetransmits == 0:
		opts.MaxRetransmits = 8
	case opts.MaxRetransmits < 0:
		opts.MaxRetransmits = 0
	}
	opts.MaxRetransmits = min(opts.MaxRetransmits, 16) // keeps base<<n from overflowing
	if opts.ConnIDTTL <= 0 {
		opts.ConnIDTTL = time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &UDPClient{
		base: opts.RetransmitBase, maxN: opts.MaxRetransmits, ttl: opts.ConnIDTTL,
		now: opts.Now, log: opts.Logger, trackers: map[string]*udpTracker{},
	}
}

// Close closes every socket; exchanges in progress fail and later calls
// return ErrClosed.
func (c *UDPClient) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for _, t := range c.trackers {
		if t.conn != nil {
			t.conn.Close()
		}
	}
	return nil
}

// Announce sends req to the UDP tracker at announceURL ("udp://host:port",
// any path is ignored) and returns its reply. An error action is returned
// as a *FailureError. BEP 15 has no tracker id, warning or min interval.
func (c *UDPClient) Announce(ctx context.Context, announceURL string, req AnnounceRequest) (*AnnounceResponse, error) {
	if err := req.validate(); err != nil {
		return nil, err
	}
	r, err := c.do(ctx, announceURL, actionAnnounce, func(connID uint64, tid uint32) []byte {
		return announcePacket(connID, tid, &req)
	})
	if err != nil {
		return nil, err
	}
	return r.announce, nil
}

// Scrape asks the UDP tracker for the counts of up to 74 torrents; the
// results are in the order of hashes.
func (c *UDPClient) Scrape(ctx context.Context, announceURL string, hashes []metainfo.Hash) ([]ScrapeResult, error) {
	if len(hashes) == 0 || len(hashes) > udpMaxScrape {
		return nil, fmt.Errorf("tracker %s: scrape of %d info-hashes, want 1..%d", announceURL, len(hashes), udpMaxScrape)
	}
	r, err := c.do(ctx, announceURL, actionScrape, func(connID uint64, tid uint32) []byte {
		return scrapePacket(connID, tid, hashes)
	})
	if err != nil {
		return nil, err
	}
	if len(r.scrape) < len(hashes) {
		return nil, fmt.Errorf("tracker %s: scrape reply has %d results for %d info-hashes", announceURL, len(r.scrape), len(hashes))
	}
	return r.scrape[:len(hashes)], nil
}

// do runs one request of action with the tracker at rawURL: it obtains a
// connection id when the cached one is missing or stale, sends the request
// and retransmits with BEP 15's doubling waits.
func (c *UDPClient) do(ctx context.Context, rawURL string, action uint32, build func(connID uint64, tid uint32) []byte) (udpReply, error) {
	hostport, err := udpHostPort(rawURL)
	if err != nil {
		return udpReply{}, err
	}
	t, err := c.tracker(hostport)
	if err != nil {
		return udpReply{}, err
	}
	select {
	case t.sem <- struct{}{}:
	case <-ctx.Done():
		return udpReply{}, fmt.Errorf("tracker %s: %w", rawURL, ctx.Err())
	}
	defer func() { <-t.sem }()
	if err := c.dial(ctx, t, hostport); err != nil {
		return udpReply{}, fmt.Errorf("tracker %s: %w", rawURL, err)
	}
	for n := 0; ; n++ {
		wait := c.base << n
		r, err := c.attempt(ctx, t, action, build, wait)
		if err == nil {
			return r, nil
		}
		var fe *FailureError
		if errors.As(err, &fe) {
			fe.URL = rawURL
			t.hasConnID = false // a refused connection id must not be reused
			return udpReply{}, fe
		}
		if !errors.Is(err, errNoReply) {
			return udpReply{}, fmt.Errorf("tracker %s: %w", rawURL, err)
		}
		if n >= c.maxN {
			return udpReply{}, fmt.Errorf("tracker %s: no reply after %d attempts: %w", rawURL, n+1, err)
		}
		c.log.Debug("udp tracker: retransmitting", "tracker", rawURL, "attempt", n+1, "waited", wait)
	}
}

// attempt is one try of the exchange, each step waiting up to wait: a
// connect when needed, then the request. A request that gets no reply also
// forgets the connection id, in case the tracker no longer knows it.
func (c *UDPClient) attempt(ctx context.Context, t *udpTracker, action uint32, build func(uint64, uint32) []byte, wait time.Duration) (udpReply, error) {
	if !t.hasConnID || c.now().Sub(t.connIDAt) >= c.ttl {
		t.hasConnID = false
		tid := rand.Uint32()
		r, err := c.roundTrip(ctx, t, connectPacket(tid), tid, actionConnect, wait)
		if err != nil {
			return r, fmt.Errorf("connect: %w", err)
		}
		t.connID, t.connIDAt, t.hasConnID = r.connID, c.now(), true
	}
	tid := rand.Uint32()
	r, err := c.roundTrip(ctx, t, build(t.connID, tid), tid, action, wait)
	if errors.Is(err, errNoReply) {
		t.hasConnID = false
	}
	return r, err
}

// roundTrip sends pkt and waits up to wait (or ctx) for the reply whose
// transaction id is tid. Datagrams too short to carry an id, or carrying
// another id (late replies, spoofs), are ignored.
func (c *UDPClient) roundTrip(ctx context.Context, t *udpTracker, pkt []byte, tid, want uint32, wait time.Duration) (udpReply, error) {
	if _, err := t.conn.Write(pkt); err != nil {
		return udpReply{}, fmt.Errorf("send: %w", err)
	}
	deadline := time.Now().Add(wait)
	ctxDeadline, hasCtxDeadline := ctx.Deadline()
	if hasCtxDeadline && ctxDeadline.Before(deadline) {
		deadline = ctxDeadline
	}
	// A cancelled ctx without a deadline must also end the read: it moves
	// the read deadline into the past. fired tells that the move is done,
	// so that it cannot land on a later exchange's read.
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		t.conn.SetReadDeadline(time.Unix(1, 0))
		close(fired)
	})
	defer func() {
		if !stop() {
			<-fired
		}
	}()
	for {
		if err := t.conn.SetReadDeadline(deadline); err != nil {
			return udpReply{}, err
		}
		if ctx.Err() != nil { // the AfterFunc may have run before the line above
			return udpReply{}, ctx.Err()
		}
		n, err := t.conn.Read(t.buf)
		if err != nil {
			if ctx.Err() != nil {
				return udpReply{}, ctx.Err()
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if hasCtxDeadline && !deadline.Before(ctxDeadline) {
					return udpReply{}, context.DeadlineExceeded
				}
				return udpReply{}, errNoReply
			}
			if errors.Is(err, net.ErrClosed) {
				return udpReply{}, ErrClosed
			}
			return udpReply{}, fmt.Errorf("receive: %w", err)
		}
		b := t.buf[:n]
		_, got, ok := udpHeader(b)
		if !ok || got != tid {
			c.log.Debug("udp tracker: ignoring datagram", "from", t.conn.RemoteAddr(), "bytes", n, "want_tid", tid, "tid", got)
			continue
		}
		r, err := parseUDPReply(b, t.addrLen)
		if err != nil {
			return r, err
		}
		if r.action == actionError {
			return r, &FailureError{Reason: r.message}
		}
		if r.action != want {
			return r, fmt.Errorf("reply action %d to a request of action %d", r.action, want)
		}
		return r, nil
	}
}

// tracker returns the state for hostport, creating it.
func (c *UDPClient) tracker(hostport string) (*udpTracker, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	t := c.trackers[hostport]
	if t == nil {
		t = &udpTracker{sem: make(chan struct{}, 1)}
		c.trackers[hostport] = t
	}
	return t, nil
}

// dial connects t's socket when it has none. The caller holds t.sem.
func (c *UDPClient) dial(ctx context.Context, t *udpTracker, hostport string) error {
	if t.conn != nil {
		return nil
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "udp", hostport)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	conn := nc.(*net.UDPConn)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		conn.Close()
		return ErrClosed
	}
	t.conn = conn
	t.addrLen = 16
	if ra, ok := conn.RemoteAddr().(*net.UDPAddr); ok && ra.IP.To4() != nil {
		t.addrLen = 4
	}
	t.buf = make([]byte, udpMaxDatagram)
	return nil
}

// udpHostPort extracts "host:port" from a udp:// tracker URL.
func udpHostPort(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("tracker %s: bad URL: %w", rawURL, err)
	}
	if u.Scheme != "udp" {
		return "", fmt.Errorf("tracker %s: scheme %q is not udp", rawURL, u.Scheme)
	}
	if u.Hostname() == "" || u.Port() == "" {
		return "", fmt.Errorf("tracker %s: URL needs a host and a port", rawURL)
	}
	return u.Host, nil
}
