package magnet

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"time"

	"btfs/engine/tracker"
	"btfs/engine/wire"
)

// Tuning of the peer sources.
const (
	// unknownLeft is the "left" we announce while the size is unknown.
	// Any positive number says "leecher" (0 would make us a seed, which
	// some trackers answer with leechers only, and which our Announcer
	// takes as "never send completed"); one metadata piece is a small,
	// honest-looking lower bound.
	unknownLeft = wire.MetadataPieceSize
	// numWant is how many peers we ask trackers for.
	numWant = 50
	// announceFloor is the shortest wait between announces to one
	// tracker when we run short of peers (the tracker's own min interval
	// still applies when longer).
	announceFloor = 30 * time.Second
	// stopTimeout bounds the "stopped" announce sent when Fetch returns,
	// which Fetch waits for.
	stopTimeout = 2 * time.Second
	// lookupEvery is the wait between the end of one DHT lookup and the
	// start of the next.
	lookupEvery = 30 * time.Second
	// lookupTimeout bounds one DHT lookup.
	lookupTimeout = time.Minute
)

// reportingClient is the tracker client with each announce's outcome
// reported to the loop, for the error Fetch returns on time-out.
type reportingClient struct {
	c *tracker.Client
	f *fetch
}

// Announce implements tracker.AnnounceClient.
func (rc reportingClient) Announce(ctx context.Context, url string, req tracker.AnnounceRequest) (*tracker.AnnounceResponse, error) {
	resp, err := rc.c.Announce(ctx, url, req)
	if req.Event != tracker.EventStopped {
		rc.f.post(trackerEvent{url: url, err: err})
	}
	return resp, err
}

// startTrackers runs an Announcer for cfg.Trackers until Fetch returns
// (it then sends "stopped", within stopTimeout: the engine that starts
// next announces "started" with its own counters).
func (f *fetch) startTrackers() {
	tiers := tracker.NewTiers("", f.cfg.Trackers, nil)
	if len(f.cfg.Trackers) == 0 || tiers.Len() == 0 {
		if len(f.cfg.Trackers) > 0 {
			f.log.Warn("no usable tracker URL", "trackers", f.cfg.Trackers)
		}
		return
	}
	client := tracker.NewClient(tracker.Options{})
	a, err := tracker.NewAnnouncer(tracker.AnnouncerConfig{
		Client:   reportingClient{c: client, f: f},
		Tiers:    tiers,
		InfoHash: f.cfg.InfoHash,
		PeerID:   f.cfg.PeerID,
		Port:     f.cfg.Port,
		Key:      rand.Uint32(),
		NumWant:  numWant,
		Stats:    func() tracker.Stats { return tracker.Stats{Left: unknownLeft} },
		OnPeers: func(addrs []netip.AddrPort) {
			f.post(peersEvent{addrs: addrs, source: "tracker"})
		},
		Logger:           f.log,
		MinIntervalFloor: announceFloor,
		StopTimeout:      stopTimeout,
	})
	if err != nil { // cannot happen: the config is complete and Port checked
		f.log.Error("trackers disabled", "err", err)
		client.Close()
		return
	}
	f.announcer = a
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		defer client.Close()
		a.Run(f.ctx)
	}()
}

// startFinder runs DHT lookups, one at a time, every lookupEvery until
// Fetch returns.
func (f *fetch) startFinder() {
	if f.cfg.Finder == nil {
		return
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			ctx, cancel := context.WithTimeout(f.ctx, lookupTimeout)
			err := f.cfg.Finder.FindPeers(ctx, f.cfg.InfoHash, f.cfg.Port, func(addrs []netip.AddrPort) {
				f.post(peersEvent{addrs: addrs, source: "dht"})
			})
			cancel()
			if !f.post(finderEvent{err: err}) {
				return
			}
			t := time.NewTimer(lookupEvery)
			select {
			case <-f.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}()
}
