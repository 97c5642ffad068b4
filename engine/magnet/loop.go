package magnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"btfs/engine/metadata"
	"btfs/engine/wire"
	"btfs/metainfo"
)

// Tuning of the loop.
const (
	// eventQueue is the capacity of the loop's event channel: room for a
	// burst from every peer without making their goroutines wait.
	eventQueue = 64
	// maxRedialShift caps the doubling: at most 10 s << 4, ~2.7 min.
	maxRedialShift = 4
	// noMetadataBackoff is the wait before dialling again a peer that
	// did not have the metadata (another magnet leecher may get it).
	noMetadataBackoff = 30 * time.Second
	// maxKnown bounds the addresses remembered: trackers and the DHT
	// cannot make us hold more.
	maxKnown = 2000
)

// Timing of the loop: variables only so that tests can shorten them.
var (
	// tickEvery is how often the loop re-runs NextRequest (requests time
	// out after metadata.RequestTimeout), dials and asks for peers.
	tickEvery = time.Second
	// redialBackoff is the wait before dialling an address again after a
	// failure or a disconnect; it doubles with each failure in a row.
	redialBackoff = 10 * time.Second
)

// known is what the loop remembers of one address.
type known struct {
	// addr is the address, unmapped.
	addr netip.AddrPort
	// dialing is true while a connect and handshake run.
	dialing bool
	// conn is the open connection; nil when none.
	conn *peerConn
	// handshook is the position (1-based) of its first completed
	// handshake among all addresses; 0 if it never completed one.
	handshook int
	// useless is set for a peer that can never give us the metadata (no
	// BEP 10, no ut_metadata, a size over the cap): it is not dialled
	// again.
	useless bool
	// self marks a connection to ourselves.
	self bool
	// failures counts failed dials or short connections in a row.
	failures int
	// nextTry is the earliest time to dial it again.
	nextTry time.Time
}

// fetch is the state of one Fetch, owned by the loop goroutine (run);
// connection and source goroutines only read cfg, log, ctx, hs and post
// events.
type fetch struct {
	cfg Config          // defaults applied
	log *slog.Logger    // with the info-hash
	ctx context.Context // ends when Fetch returns; every goroutine watches it
	wg  *sync.WaitGroup // counts every goroutine started
	hs  wire.Handshake  // ours

	events  chan event        // from connections and sources to the loop
	fetcher *metadata.Fetcher // BEP 9 bookkeeping

	order   []*known                  // every address, in the order learned
	known   map[netip.AddrPort]*known // the same, by address
	banned  map[netip.Addr]bool       // hosts banned in this Fetch
	byID    map[string]*peerConn      // open connections by Fetcher id
	conns   int                       // open connections
	dials   int                       // dials and handshakes under way
	hands   int                       // addresses that completed a handshake
	offers  int                       // peers that announced a usable metadata_size
	sources map[string]int            // addresses learned, by source

	announcer  interface{ Need() } // the trackers' Announcer; nil without trackers
	trackerErr error               // the last failed announce
	trackerOK  int                 // successful announces
	finderErr  error               // the last failed DHT lookup
	finderRuns int                 // DHT lookups finished
	started    time.Time           // when Fetch began
}

// event is something that happened outside the loop.
type event interface{}

// Events posted to the loop.
type (
	// peersEvent: addresses from a source.
	peersEvent struct {
		addrs  []netip.AddrPort
		source string
	}
	// dialFailedEvent: a dial or handshake failed.
	dialFailedEvent struct {
		addr netip.AddrPort
		err  error
	}
	// connEvent: a handshake completed; the connection's goroutines run.
	connEvent struct {
		c  *peerConn
		hs wire.Handshake
	}
	// extEvent: the peer's extension handshake.
	extEvent struct {
		c *peerConn
		// metaID is the peer's ut_metadata ID, 0 if it has none.
		metaID int
		// size is its metadata_size, 0 when absent or over the cap.
		size int64
		// err is ParseExtHandshake's error: only ErrMetadataTooLarge
		// reaches the loop (other errors end the connection).
		err error
	}
	// dataEvent: a ut_metadata data message (data is a copy).
	dataEvent struct {
		c     *peerConn
		piece int
		data  []byte
	}
	// rejectEvent: a ut_metadata reject.
	rejectEvent struct {
		c     *peerConn
		piece int
	}
	// goneEvent: a connection ended (its goroutines are finishing).
	goneEvent struct {
		c   *peerConn
		err error
	}
	// trackerEvent: one announce finished (err nil: it worked).
	trackerEvent struct {
		url string
		err error
	}
	// finderEvent: one DHT lookup finished.
	finderEvent struct{ err error }
)

// post hands ev to the loop; false when Fetch is returning.
func (f *fetch) post(ev event) bool {
	select {
	case f.events <- ev:
		return true
	case <-f.ctx.Done():
		return false
	}
}

// run is the loop: it owns everything in fetch until it returns.
func (f *fetch) run(ctx context.Context) (Result, error) {
	f.sources = map[string]int{}
	f.addPeers(f.cfg.Peers, "given")
	f.startTrackers()
	f.startFinder()
	f.maybeDial(time.Now())
	tick := time.NewTicker(tickEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			err := f.failure(ctx.Err())
			f.log.Info("magnet: gave up", "err", err)
			return Result{}, err
		case ev := <-f.events:
			if f.handle(ev) {
				return f.finish()
			}
		case now := <-tick.C:
			f.onTick(now)
		}
	}
}

// handle applies one event; true when the dictionary is complete.
func (f *fetch) handle(ev event) bool {
	now := time.Now()
	switch ev := ev.(type) {
	case peersEvent:
		f.addPeers(ev.addrs, ev.source)
	case dialFailedEvent:
		f.dials--
		if k := f.known[ev.addr]; k != nil {
			k.dialing = false
			f.backoff(k, now)
		}
		f.log.Debug("dial failed", "addr", ev.addr, "err", ev.err)
		f.maybeDial(now)
	case connEvent:
		f.onConn(ev, now)
	case extEvent:
		f.onExt(ev, now)
	case dataEvent:
		if ev.c.closed {
			return false
		}
		done, err := f.fetcher.Received(ev.c.id, ev.piece, ev.data)
		f.takeBanned()
		switch {
		case done:
			return true
		case err == nil:
			have, total := f.fetcher.Progress()
			f.log.Debug("metadata piece", "peer", ev.c.id, "piece", ev.piece, "have", have, "of", total)
		case errors.Is(err, metadata.ErrHashMismatch):
			f.log.Warn("metadata did not hash to the info-hash: fetching it again", "err", err)
		default:
			f.log.Debug("metadata piece dropped", "peer", ev.c.id, "piece", ev.piece, "err", err)
		}
		f.pumpAll(now)
	case rejectEvent:
		if ev.c.closed {
			return false
		}
		if err := f.fetcher.Rejected(ev.c.id, ev.piece, now); err != nil {
			f.log.Debug("metadata reject ignored", "peer", ev.c.id, "piece", ev.piece, "err", err)
		} else {
			f.log.Debug("metadata piece rejected", "peer", ev.c.id, "piece", ev.piece)
		}
		f.takeBanned()
		f.pumpAll(now)
	case goneEvent:
		f.drop(ev.c, ev.err, now)
	case trackerEvent:
		if ev.err != nil {
			f.trackerErr = ev.err
		} else {
			f.trackerOK++
		}
	case finderEvent:
		f.finderRuns++
		if ev.err != nil && !errors.Is(ev.err, context.Canceled) {
			f.finderErr = ev.err
		}
	}
	return false
}

// onTick re-asks for timed-out pieces, dials what became due, drops
// peers that never sent their extension handshake, and asks the trackers
// for more peers when none are left to dial.
func (f *fetch) onTick(now time.Time) {
	for _, c := range f.byID {
		if !c.extDone && now.Sub(c.since) > f.cfg.HandshakeTimeout {
			f.log.Debug("no extension handshake in time", "peer", c.id)
			f.drop(c, errors.New("no extension handshake"), now)
		}
	}
	f.pumpAll(now)
	f.maybeDial(now)
	if f.announcer != nil && f.conns+f.dials < (f.cfg.MaxPeers+1)/2 && !f.anyDialable(now) {
		f.announcer.Need() // the Announcer waits for the tracker's min interval
	}
}

// addPeers remembers new addresses and dials what the slots allow.
func (f *fetch) addPeers(addrs []netip.AddrPort, source string) {
	added := 0
	for _, a := range addrs {
		a = netip.AddrPortFrom(a.Addr().Unmap().WithZone(""), a.Port())
		if !a.Addr().IsValid() || a.Addr().IsUnspecified() || a.Port() == 0 || f.banned[a.Addr()] {
			continue
		}
		if _, ok := f.known[a]; ok || len(f.order) >= maxKnown {
			continue
		}
		k := &known{addr: a}
		f.known[a] = k
		f.order = append(f.order, k)
		added++
	}
	if added > 0 {
		f.sources[source] += added
		f.log.Debug("new peer addresses", "source", source, "added", added, "known", len(f.order))
		f.maybeDial(time.Now())
	}
}

// dialable reports whether k may be dialled now.
func (f *fetch) dialable(k *known, now time.Time) bool {
	return k.conn == nil && !k.dialing && !k.useless && !k.self && !now.Before(k.nextTry) && !f.banned[k.addr.Addr()]
}

// anyDialable reports whether some address waits to be dialled now.
func (f *fetch) anyDialable(now time.Time) bool {
	return slices.ContainsFunc(f.order, func(k *known) bool { return f.dialable(k, now) })
}

// maybeDial dials addresses, in the order learned, while slots are free.
func (f *fetch) maybeDial(now time.Time) {
	for _, k := range f.order {
		if f.conns+f.dials >= f.cfg.MaxPeers {
			return
		}
		if !f.dialable(k, now) {
			continue
		}
		k.dialing = true
		f.dials++
		f.wg.Add(1)
		go f.connect(k.addr)
	}
}

// backoff schedules the next dial of k after a failure.
func (f *fetch) backoff(k *known, now time.Time) {
	k.failures++
	k.nextTry = now.Add(redialBackoff << min(k.failures-1, maxRedialShift))
}

// onConn admits a handshaken connection, or closes it.
func (f *fetch) onConn(ev connEvent, now time.Time) {
	c := ev.c
	f.dials--
	k := f.known[c.addr]
	if k == nil { // cannot happen: we only dial known addresses
		c.close()
		return
	}
	k.dialing = false
	refuse := func(why string, useless bool) {
		f.log.Debug("connection refused", "peer", c.id, "why", why)
		k.useless = k.useless || useless
		f.backoff(k, now)
		c.closed = true
		c.close()
	}
	switch {
	case ev.hs.PeerID == f.cfg.PeerID:
		k.self = true
		refuse("connection to ourselves", true)
		return
	case f.banned[c.addr.Addr()]:
		refuse("banned", true)
		return
	case !ev.hs.Reserved.SupportsExtensions():
		refuse("no extension protocol (BEP 10): it cannot send metadata", true)
		return
	}
	if k.handshook == 0 {
		f.hands++
		k.handshook = f.hands
	}
	k.conn = c
	c.since = now
	f.byID[c.id] = c
	f.conns++
	f.log.Debug("peer connected", "peer", c.id, "fast", ev.hs.Reserved.SupportsFast())
}

// onExt handles a peer's extension handshake: its ut_metadata ID and
// metadata_size. A peer may send one again; its new values replace the
// old.
func (f *fetch) onExt(ev extEvent, now time.Time) {
	c := ev.c
	if c.closed {
		return
	}
	c.extDone = true
	k := f.known[c.addr]
	switch {
	case errors.Is(ev.err, wire.ErrMetadataTooLarge):
		f.log.Debug("peer announced a metadata_size over the cap: not asking it", "peer", c.id, "err", ev.err)
		k.useless = true
		f.drop(c, ev.err, now)
		return
	case ev.metaID == 0:
		f.log.Debug("peer does not speak ut_metadata", "peer", c.id)
		k.useless = true
		f.drop(c, errors.New("no ut_metadata"), now)
		return
	case ev.size == 0:
		f.log.Debug("peer has no metadata yet", "peer", c.id)
		f.drop(c, errors.New("no metadata_size"), now)
		k.nextTry = now.Add(noMetadataBackoff)
		return
	}
	c.metaID = ev.metaID
	if err := f.fetcher.SetSize(c.id, ev.size); err != nil {
		f.takeBanned()
		if errors.Is(err, metadata.ErrSizeMismatch) && !f.fetcher.Banned(c.id) {
			f.log.Debug("peer announced another metadata_size: kept in case it is right", "peer", c.id, "err", err)
		} else {
			f.log.Debug("peer's metadata_size refused: not asking it", "peer", c.id, "err", err)
			k.useless = true
			f.drop(c, err, now)
			return
		}
	} else {
		f.log.Debug("peer has metadata", "peer", c.id, "size", ev.size)
	}
	if !c.offered {
		c.offered = true
		f.offers++
	}
	f.pump(c, now)
}

// pump sends c every request the Fetcher has for it.
func (f *fetch) pump(c *peerConn, now time.Time) {
	if c.closed || c.metaID == 0 {
		return
	}
	for {
		piece, ok := f.fetcher.NextRequest(c.id, now)
		if !ok {
			return
		}
		payload, err := wire.EncodeMetadataMsg(wire.MetadataMsg{Type: wire.MetadataRequest, Piece: piece})
		if err != nil { // cannot happen: a request for a valid piece
			f.log.Error("encoding a ut_metadata request", "err", err)
			return
		}
		if !c.send(wire.Message{ID: wire.Extended, ExtendedID: uint8(c.metaID), Payload: payload}) {
			f.drop(c, errors.New("send queue full"), now)
			return
		}
	}
}

// pumpAll pumps every connection (sorted, so that runs are repeatable).
func (f *fetch) pumpAll(now time.Time) {
	ids := make([]string, 0, len(f.byID))
	for id := range f.byID {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if c := f.byID[id]; c != nil {
			f.pump(c, now)
		}
	}
}

// takeBanned bans the hosts of the peers the Fetcher proved lying:
// their connections close and they are never dialled again in this Fetch.
func (f *fetch) takeBanned() {
	for _, id := range f.fetcher.TakeBanned() {
		ap, err := netip.ParseAddrPort(id)
		if err != nil { // ids are our AddrPort strings
			continue
		}
		host := ap.Addr()
		if f.banned[host] {
			continue
		}
		f.banned[host] = true
		f.log.Warn("peer banned: it sent metadata that is not the torrent's", "peer", id)
		for _, c := range f.byID {
			if c.addr.Addr() == host {
				f.drop(c, errors.New("banned"), time.Now())
			}
		}
	}
}

// drop forgets a connection and closes it; the Fetcher's requests to it
// go to others.
func (f *fetch) drop(c *peerConn, err error, now time.Time) {
	if c.closed {
		return
	}
	c.closed = true
	c.close()
	if f.byID[c.id] == c {
		delete(f.byID, c.id)
		f.conns--
	}
	if k := f.known[c.addr]; k != nil && k.conn == c {
		k.conn = nil
		if now.Sub(c.since) < time.Minute {
			f.backoff(k, now)
		} else {
			k.failures, k.nextTry = 0, now.Add(redialBackoff)
		}
	}
	f.fetcher.PeerGone(c.id)
	f.log.Debug("peer gone", "peer", c.id, "err", err)
	f.pumpAll(now)
	f.maybeDial(now)
}

// finish verifies the fetched dictionary and builds the Result.
func (f *fetch) finish() (Result, error) {
	info := f.fetcher.Result()
	if _, err := metainfo.ParseInfo(info); err != nil {
		return Result{}, fmt.Errorf("%w: %s (%d bytes): %w", ErrBadInfo, f.cfg.InfoHash, len(info), err)
	}
	f.log.Info("magnet: metadata fetched", "bytes", len(info), "peers", len(f.order), "took", time.Since(f.started).Round(time.Millisecond))
	return Result{Info: info, Peers: f.peerList()}, nil
}

// peerList is Result.Peers: handshaken peers first, in handshake order,
// then the rest in the order learned; no banned host, not ourselves.
func (f *fetch) peerList() []netip.AddrPort {
	var shook, rest []*known
	for _, k := range f.order {
		switch {
		case f.banned[k.addr.Addr()] || k.self:
		case k.handshook > 0:
			shook = append(shook, k)
		default:
			rest = append(rest, k)
		}
	}
	slices.SortFunc(shook, func(a, b *known) int { return a.handshook - b.handshook })
	out := make([]netip.AddrPort, 0, len(shook)+len(rest))
	for _, k := range append(shook, rest...) {
		out = append(out, k.addr)
	}
	return out
}

// failure describes what was tried, around ctx's error.
func (f *fetch) failure(cause error) error {
	have, total := f.fetcher.Progress()
	var b strings.Builder
	fmt.Fprintf(&b, "magnet %s: no metadata after %v: %d peer addresses known", f.cfg.InfoHash, time.Since(f.started).Round(time.Second), len(f.order))
	if len(f.sources) > 0 {
		srcs := make([]string, 0, len(f.sources))
		for s, n := range f.sources {
			srcs = append(srcs, fmt.Sprintf("%s %d", s, n))
		}
		slices.Sort(srcs)
		fmt.Fprintf(&b, " (%s)", strings.Join(srcs, ", "))
	}
	fmt.Fprintf(&b, ", %d handshaken, %d connected now, %d offered metadata, %d banned", f.hands, f.conns, f.offers, len(f.banned))
	if total > 0 {
		fmt.Fprintf(&b, ", %d of %d metadata pieces in", have, total)
	}
	switch {
	case len(f.cfg.Trackers) == 0:
		b.WriteString("; no trackers")
	case f.trackerErr != nil:
		fmt.Fprintf(&b, "; %d tracker announces worked, last tracker error: %v", f.trackerOK, f.trackerErr)
	default:
		fmt.Fprintf(&b, "; %d tracker announces worked", f.trackerOK)
	}
	switch {
	case f.cfg.Finder == nil:
		b.WriteString("; no DHT")
	case f.finderErr != nil:
		fmt.Fprintf(&b, "; %d DHT lookups, last error: %v", f.finderRuns, f.finderErr)
	default:
		fmt.Fprintf(&b, "; %d DHT lookups", f.finderRuns)
	}
	return fmt.Errorf("%s: %w", b.String(), cause)
}
