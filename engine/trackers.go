package engine

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"time"

	"btfs/engine/tracker"
)

// startTrackers runs the torrent's announcer (the seed's Rerequester) in its
// own goroutine; the returned func stops it, which sends "stopped" with a
// short deadline. It is called by the loop; peers come back as events.
func (t *Torrent) startTrackers() (stop func()) {
	announce, list := t.mi.Announce, t.mi.AnnounceList
	if t.cfg.Trackers != nil {
		announce, list = "", t.cfg.Trackers
	}
	tiers := tracker.NewTiers(announce, list, rand.New(rand.NewPCG(t.cfg.Rand.Uint64(), t.cfg.Rand.Uint64())))
	if tiers.Len() == 0 {
		return func() {}
	}
	client := tracker.NewClient(tracker.Options{})
	port := 0
	if ap := t.ListenAddr(); ap.IsValid() {
		port = int(ap.Port())
	}
	a, err := tracker.NewAnnouncer(tracker.AnnouncerConfig{
		Client:   reportingClient{client, t},
		Tiers:    tiers,
		InfoHash: t.mi.InfoHash,
		PeerID:   t.cfg.PeerID,
		Port:     port,
		Key:      t.cfg.Rand.Uint32(),
		NumWant:  t.cfg.MaxPeers,
		Stats: func() tracker.Stats {
			st := tracker.Stats{Uploaded: t.up.Total(), Downloaded: t.down.Total(), Left: unknownLeft}
			select {
			case <-t.ready:
				st.Left = t.info.TotalLength - t.sw.Stats().VerifiedBytes
			default: // a magnet link's metadata phase (metaphase.go)
			}
			return st
		},
		OnPeers: func(addrs []netip.AddrPort) {
			t.post(t.ctx, peersEvent{addrs: addrs, source: "tracker"})
		},
		Logger:           t.log,
		MinIntervalFloor: t.cfg.MinAnnounceInterval,
		ExternalPort:     t.cfg.ExternalPort,
	})
	if err != nil {
		t.log.Error("trackers disabled", "err", err)
		client.Close()
		return func() {}
	}
	// Run sends "stopped" (bounded by its StopTimeout) once t.ctx ends;
	// stop waits for that, so Close returns after the tracker was told.
	finished := make(chan struct{})
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer close(finished)
		a.Run(t.ctx)
	}()
	t.s.announcer = a
	return func() {
		<-finished
		client.Close()
	}
}

// reportingClient tells the loop how each announce went, for the summary
// of a metadata phase that found nothing (metaphase.go).
type reportingClient struct {
	*tracker.Client
	t *Torrent
}

// Announce implements tracker.AnnounceClient.
func (rc reportingClient) Announce(ctx context.Context, url string, req tracker.AnnounceRequest) (*tracker.AnnounceResponse, error) {
	resp, err := rc.Client.Announce(ctx, url, req)
	if req.Event != tracker.EventStopped {
		rc.t.post(rc.t.ctx, trackerEvent{err: err})
	}
	return resp, err
}

// maybeNeedPeers asks the trackers for an announce soon when the download
// runs short of peers: fewer than half of MaxPeers connected or being
// dialled, and no known address left to dial now. The Announcer waits for
// the trackers' min interval, so asking every tick costs nothing.
func (s *state) maybeNeedPeers(now time.Time) {
	if s.announcer != nil && s.shortOfPeers(now) {
		s.announcer.Need()
	}
}

// shortOfPeers reports whether the download needs more addresses than it
// knows: fewer than half of MaxPeers connected or being dialled, and no
// known address left to dial now. A seed never is.
func (s *state) shortOfPeers(now time.Time) bool {
	if s.isComplete() || len(s.peers)+s.dialing >= (s.t.cfg.MaxPeers+1)/2 {
		return false
	}
	for a, k := range s.known {
		if !k.connected && !k.dialing && !k.self && !now.Before(k.nextTry) && !s.banned[a.Addr()] {
			return false // maybeDial will get to it
		}
	}
	return true
}
