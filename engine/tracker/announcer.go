package tracker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"btfs/metainfo"
)

// AnnounceClient is what an Announcer needs from a tracker client; *Client
// is the real one.
type AnnounceClient interface {
	Announce(ctx context.Context, url string, req AnnounceRequest) (*AnnounceResponse, error)
}

// Stats are the counters an announce reports, read from the engine at the
// moment of each announce.
type Stats struct {
	// Uploaded and Downloaded count payload bytes since the torrent started.
	Uploaded, Downloaded int64
	// Left is the number of bytes still missing; 0 once complete.
	Left int64
}

// Clock is the time an Announcer waits on; tests substitute a manual one.
type Clock interface {
	// Now is the current time.
	Now() time.Time
	// After delivers once d has passed.
	After(d time.Duration) <-chan time.Time
}

// realClock is the wall clock.
type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// AnnouncerConfig is what an Announcer needs. Client, Tiers and Stats are
// required; zero durations take the defaults named on each field.
type AnnouncerConfig struct {
	// Client speaks to the trackers.
	Client AnnounceClient
	// Tiers are the torrent's trackers (NewTiers); the Announcer owns them.
	Tiers *Tiers
	// InfoHash names the torrent.
	InfoHash metainfo.Hash
	// PeerID is this client's id.
	PeerID [20]byte
	// Port is where this client accepts peer connections.
	Port int
	// ExternalPort, when set and returning 1..65535, is announced instead
	// of Port: the port a NAT gateway forwards to Port (package portmap),
	// which peers outside must dial. It is asked before each announce, so
	// a mapping made after the first one is announced with the next.
	ExternalPort func() int
	// Key is the session's announce key.
	Key uint32
	// NumWant is how many peers to ask for; 0 leaves it to the tracker.
	NumWant int
	// Stats reads the engine's counters; called from the Announcer's
	// goroutine before each announce.
	Stats func() Stats
	// OnPeers receives the peers of each successful announce, from the
	// Announcer's goroutine: it must hand them on quickly. nil drops them.
	OnPeers func([]netip.AddrPort)
	// Logger receives a record per announce; nil discards.
	Logger *slog.Logger
	// Clock is the time source; nil is the wall clock.
	Clock Clock

	// DefaultInterval is used when a tracker gives no interval. 30 min.
	DefaultInterval time.Duration
	// MinIntervalFloor is the shortest wait between announces whatever
	// the tracker says, and the min interval when it says none. 1 min.
	MinIntervalFloor time.Duration
	// MaxInterval caps the wait between regular announces. 1 h.
	MaxInterval time.Duration
	// TrackerTimeout bounds one announce to one tracker, so that a dead
	// tracker gives way to the next in its tier. 30 s.
	TrackerTimeout time.Duration
	// StopTimeout bounds the "stopped" announce made on the way out. 5 s.
	StopTimeout time.Duration
	// RetryBase is the wait after a first failed round; it doubles with
	// each further failure. 15 s.
	RetryBase time.Duration
	// RetryMax caps the wait after failures. 30 min.
	RetryMax time.Duration
}

// Announcer is the seed's Rerequester for one torrent: Run announces
// "started", re-announces on the tracker's interval or early when the
// engine calls Need (never before the tracker's min interval), "completed"
// once when Completed is called or Stats shows nothing left, and "stopped"
// when its context ends. Failed rounds back off exponentially.
//
// Run is one goroutine that owns the tiers and all announce state; Need and
// Completed may be called from any goroutine at any time.
type Announcer struct {
	// cfg is the configuration with defaults applied.
	cfg AnnouncerConfig
	// log is cfg.Logger or a discarding logger.
	log *slog.Logger
	// need is a capacity-1 kick: the engine wants more peers.
	need chan struct{}
	// completed is a capacity-1 kick: the download just completed.
	completed chan struct{}
}

// NewAnnouncer checks cfg and applies its defaults.
func NewAnnouncer(cfg AnnouncerConfig) (*Announcer, error) {
	switch {
	case cfg.Client == nil:
		return nil, errors.New("tracker: AnnouncerConfig.Client is nil")
	case cfg.Tiers == nil:
		return nil, errors.New("tracker: AnnouncerConfig.Tiers is nil")
	case cfg.Stats == nil:
		return nil, errors.New("tracker: AnnouncerConfig.Stats is nil")
	case cfg.Port < 0 || cfg.Port > 65535:
		return nil, fmt.Errorf("tracker: AnnouncerConfig.Port %d out of range 0..65535", cfg.Port)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.DefaultInterval, 30*time.Minute)
	def(&cfg.MinIntervalFloor, time.Minute)
	def(&cfg.MaxInterval, time.Hour)
	def(&cfg.TrackerTimeout, 30*time.Second)
	def(&cfg.StopTimeout, 5*time.Second)
	def(&cfg.RetryBase, 15*time.Second)
	def(&cfg.RetryMax, 30*time.Minute)
	cfg.MaxInterval = max(cfg.MaxInterval, cfg.MinIntervalFloor)
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("infohash", cfg.InfoHash.String())
	return &Announcer{cfg: cfg, log: log, need: make(chan struct{}, 1), completed: make(chan struct{}, 1)}, nil
}

// Need asks for an announce soon because the engine runs short of peers.
// It never blocks; the announce waits for the tracker's min interval.
func (a *Announcer) Need() {
	select {
	case a.need <- struct{}{}:
	default:
	}
}

// Completed tells the Announcer that the download has just completed, so
// that it sends "completed" now rather than at the next interval.
func (a *Announcer) Completed() {
	select {
	case a.completed <- struct{}{}:
	default:
	}
}

// announceState is what Run remembers between announces.
type announceState struct {
	// started holds the URLs that accepted a "started" (or any event
	// after it): each tracker gets "started" before anything else, and
	// only these get "stopped".
	started map[string]bool
	// trackerIDs holds each URL's "tracker id", sent back to it.
	trackerIDs map[string]string
	// first is true until the first announce has read Stats.
	first bool
	// seed is true when the first announce found nothing left: such a
	// client never sends "completed".
	seed bool
	// completedSent is true once "completed" (or a "started" with nothing
	// left) reached a tracker.
	completedSent bool
	// failures counts failed rounds in a row.
	failures int
	// nextAllowed is the earliest time Need may trigger an announce.
	nextAllowed time.Time
}

// Run announces until ctx ends, then sends "stopped" (bounded by
// StopTimeout) to the trackers that know this client, and returns. A
// torrent without usable trackers returns at once.
func (a *Announcer) Run(ctx context.Context) {
	if a.cfg.Tiers.Len() == 0 {
		a.log.Info("no usable tracker: not announcing")
		return
	}
	st := &announceState{started: map[string]bool{}, trackerIDs: map[string]string{}, first: true}
	defer a.stop(ctx, st)

	wait := a.round(ctx, st, false)
	intervalC := a.cfg.Clock.After(wait)
	var needC <-chan time.Time // armed while a Need waits for the min interval
	for {
		var forceCompleted bool
		select {
		case <-ctx.Done():
			return
		case <-intervalC:
		case <-a.need:
			if needC != nil {
				continue // already waiting for the min interval
			}
			if d := st.nextAllowed.Sub(a.cfg.Clock.Now()); d > 0 {
				a.log.Debug("peers wanted: waiting for the min interval", "wait", d)
				needC = a.cfg.Clock.After(d)
				continue
			}
		case <-needC:
		case <-a.completed:
			if st.completedSent || st.seed {
				continue
			}
			forceCompleted = true
		}
		needC = nil
		if ctx.Err() != nil {
			return
		}
		intervalC = a.cfg.Clock.After(a.round(ctx, st, forceCompleted))
	}
}

// round makes one announce (trying the tiers in order) and returns how long
// to wait before the next regular one.
func (a *Announcer) round(ctx context.Context, st *announceState, completed bool) time.Duration {
	stats := a.cfg.Stats()
	if st.first {
		st.first, st.seed = false, stats.Left == 0
	}
	if !st.seed && !st.completedSent && stats.Left == 0 {
		completed = true
	}
	var resp *AnnounceResponse
	var sentCompleted bool
	url, err := a.cfg.Tiers.Try(ctx, func(ctx context.Context, url string) error {
		ev := EventNone
		switch {
		case !st.started[url]:
			ev = EventStarted
		case completed:
			ev = EventCompleted
		}
		r, err := a.announce(ctx, url, ev, stats, st)
		if err != nil {
			return err
		}
		st.started[url] = true
		resp = r
		sentCompleted = ev == EventCompleted || (ev == EventStarted && stats.Left == 0)
		return nil
	})
	now := a.cfg.Clock.Now()
	if err != nil {
		if ctx.Err() != nil {
			return a.cfg.RetryBase
		}
		st.failures++
		wait := a.cfg.RetryBase << min(st.failures-1, 20)
		if wait <= 0 || wait > a.cfg.RetryMax {
			wait = a.cfg.RetryMax
		}
		st.nextAllowed = now.Add(wait)
		a.log.Warn("announce failed", "failures", st.failures, "retry_in", wait, "err", err)
		return wait
	}
	st.failures = 0
	if sentCompleted && !st.seed {
		st.completedSent = true
	}
	wait := resp.Interval
	if wait == 0 {
		wait = a.cfg.DefaultInterval
	}
	wait = min(max(wait, a.cfg.MinIntervalFloor), a.cfg.MaxInterval)
	minWait := min(max(resp.MinInterval, a.cfg.MinIntervalFloor), wait)
	st.nextAllowed = now.Add(minWait)
	a.log.Debug("announced", "tracker", url, "peers", len(resp.Peers), "seeders", resp.Seeders,
		"leechers", resp.Leechers, "next", wait)
	if resp.Warning != "" {
		a.log.Warn("tracker warning", "tracker", url, "warning", resp.Warning)
	}
	if a.cfg.OnPeers != nil && len(resp.Peers) > 0 {
		a.cfg.OnPeers(resp.Peers)
	}
	return wait
}

// port is the port to announce: the external one when mapped.
func (a *Announcer) port() int {
	if a.cfg.ExternalPort != nil {
		if p := a.cfg.ExternalPort(); p > 0 && p <= 65535 {
			return p
		}
	}
	return a.cfg.Port
}

// announce sends one announce to url, bounded by TrackerTimeout, and
// remembers the tracker id it returns.
func (a *Announcer) announce(ctx context.Context, url string, ev Event, stats Stats, st *announceState) (*AnnounceResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.TrackerTimeout)
	defer cancel()
	resp, err := a.cfg.Client.Announce(ctx, url, AnnounceRequest{
		InfoHash:   a.cfg.InfoHash,
		PeerID:     a.cfg.PeerID,
		Port:       a.port(),
		Uploaded:   stats.Uploaded,
		Downloaded: stats.Downloaded,
		Left:       stats.Left,
		Event:      ev,
		NumWant:    a.cfg.NumWant,
		Key:        a.cfg.Key,
		TrackerID:  st.trackerIDs[url],
	})
	if err != nil {
		a.log.Debug("announce to tracker failed", "tracker", url, "event", ev.String(), "err", err)
		return nil, err
	}
	if resp.TrackerID != "" {
		st.trackerIDs[url] = resp.TrackerID
	}
	return resp, nil
}

// errNotStarted skips, for "stopped", trackers that never heard of us.
var errNotStarted = errors.New("tracker was never sent started")

// stop sends "stopped" to the first tracker, in tier order, that knows this
// client, within StopTimeout of a context that outlives the cancelled one.
func (a *Announcer) stop(ctx context.Context, st *announceState) {
	if len(st.started) == 0 {
		return
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.StopTimeout)
	defer cancel()
	stats := a.cfg.Stats()
	url, err := a.cfg.Tiers.Try(sctx, func(ctx context.Context, url string) error {
		if !st.started[url] {
			return errNotStarted
		}
		_, err := a.announce(ctx, url, EventStopped, stats, st)
		return err
	})
	if err != nil {
		a.log.Warn("stopped announce failed", "err", err)
		return
	}
	a.log.Debug("announced stopped", "tracker", url)
}
