package engine

import (
	"bytes"
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"btfs/engine/wire"
	"btfs/internal/poll"
	"btfs/internal/swarmtest"
	"btfs/metainfo"
	"btfs/storagewrapper"
)

// rawExtHS is the handshake of a raw peer that speaks BEP 10 (and BEP 6).
func rawExtHS(mi *metainfo.MetaInfo) wire.Handshake {
	hs := rawHandshake(mi, true)
	hs.Reserved.SetExtensions()
	return hs
}

// sendExtHandshake sends a raw peer's BEP 10 handshake.
func (c *rawConn) sendExtHandshake(eh wire.ExtHandshake) error {
	payload, err := eh.Encode()
	if err != nil {
		return err
	}
	return c.send(wire.Message{ID: wire.Extended, ExtendedID: 0, Payload: payload})
}

// readExtHandshake reads until btfs's extension handshake arrives.
func (c *rawConn) readExtHandshake() (wire.ExtHandshake, error) {
	var eh wire.ExtHandshake
	err := c.readUntil(func(m wire.Message) error {
		if m.ID != wire.Extended || m.ExtendedID != 0 {
			return nil
		}
		var err error
		if eh, err = wire.ParseExtHandshake(m.Payload, 0); err != nil {
			return err
		}
		return errDone
	})
	if errors.Is(err, errDone) {
		err = nil
	}
	return eh, err
}

// metadataRequest is a raw peer's ut_metadata request for piece i, sent
// under the ID btfs chose.
func metadataRequest(id, i int) wire.Message {
	payload, err := wire.EncodeMetadataMsg(wire.MetadataMsg{Type: wire.MetadataRequest, Piece: i})
	if err != nil {
		panic(err)
	}
	return wire.Message{ID: wire.Extended, ExtendedID: uint8(id), Payload: payload}
}

// TestServeMetadata: a raw peer fetches our info dictionary over
// ut_metadata (its bytes must hash to the info-hash), is rejected for a
// piece past the end, and is cut off when it keeps asking.
func TestServeMetadata(t *testing.T) {
	dir := t.TempDir()
	// 1024 pieces: 20 KiB of hashes, so the dictionary spans two
	// metadata pieces, the second short.
	_, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Size: 4 << 20, PieceLength: 4 << 10, Seed: 3})
	n := wire.MetadataPieces(int64(len(mi.InfoBytes)))
	if n < 2 {
		t.Fatalf("info dictionary of %d bytes: want at least two metadata pieces", len(mi.InfoBytes))
	}
	seeder := seedEngine(t, mi, dir, Config{Logger: testLogger(t)})

	const ourID = 7 // the raw peer's ut_metadata ID: btfs must answer under it
	type result struct {
		hs              wire.ExtHandshake
		pieces          map[int][]byte
		rejected        []int
		overData        int
		overRejects     int
		floodData       int
		floodRejects    int
		disconnected    bool
		wrongID, totals int
	}
	var res result
	res.pieces = map[int][]byte{}
	done := make(chan struct{})
	dialRawPeerHS(t, seeder.ListenAddr(), rawExtHS(mi), func(c *rawConn) error {
		defer close(done)
		if err := c.sendExtHandshake(wire.ExtHandshake{M: map[string]int{wire.ExtMetadata: ourID}}); err != nil {
			return err
		}
		var err error
		if res.hs, err = c.readExtHandshake(); err != nil {
			return err
		}
		id := res.hs.M[wire.ExtMetadata]
		if id == 0 {
			return errDone
		}
		// One full fetch plus a piece past the end.
		for i := 0; i <= n; i++ {
			if err := c.send(metadataRequest(id, i)); err != nil {
				return err
			}
		}
		read := func(m wire.Message) (wire.MetadataMsg, bool, error) {
			if m.ID != wire.Extended || m.ExtendedID == 0 {
				return wire.MetadataMsg{}, false, nil
			}
			if m.ExtendedID != ourID {
				res.wrongID++
				return wire.MetadataMsg{}, false, nil
			}
			mm, err := wire.ParseMetadataMsg(m.Payload, 0)
			return mm, err == nil, err
		}
		// readMeta hands each the ut_metadata messages sent under our ID
		// until it returns true (errDone) or the connection fails.
		readMeta := func(each func(wire.MetadataMsg) bool) error {
			return c.readUntil(func(m wire.Message) error {
				mm, ok, err := read(m)
				if !ok {
					return err
				}
				if each(mm) {
					return errDone
				}
				return nil
			})
		}
		// tally counts data and rejects.
		tally := func(mm wire.MetadataMsg, data, rejects *int) {
			switch mm.Type {
			case wire.MetadataData:
				*data++
			case wire.MetadataReject:
				*rejects++
			}
		}
		err = readMeta(func(mm wire.MetadataMsg) bool {
			switch mm.Type {
			case wire.MetadataData:
				res.pieces[mm.Piece] = append([]byte(nil), mm.Data...)
				if mm.TotalSize != int64(len(mi.InfoBytes)) {
					res.totals++
				}
			case wire.MetadataReject:
				res.rejected = append(res.rejected, mm.Piece)
			}
			return len(res.pieces)+len(res.rejected) == n+1
		})
		if !errors.Is(err, errDone) {
			return err
		}
		// Past the budget: what is left of it is served, the rest
		// rejected.
		over := metaSlack + 10
		for range over {
			if err := c.send(metadataRequest(id, 0)); err != nil {
				return err
			}
		}
		seen := 0
		err = readMeta(func(mm wire.MetadataMsg) bool {
			tally(mm, &res.overData, &res.overRejects)
			seen++
			return seen == over
		})
		if !errors.Is(err, errDone) {
			return err
		}
		// The flood: far more requests than any fetch needs, written
		// beside the reader so that neither side's buffers decide.
		const flood = 1000
		c.goRead(func() {
			for range flood {
				if c.send(metadataRequest(id, 0)) != nil {
					return
				}
			}
		})
		err = readMeta(func(mm wire.MetadataMsg) bool {
			tally(mm, &res.floodData, &res.floodRejects)
			return false
		})
		res.disconnected = err != nil
		return errDone
	})
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("raw peer did not finish")
	}

	if got := res.hs.MetadataSize; got != int64(len(mi.InfoBytes)) {
		t.Errorf("metadata_size = %d, want %d", got, len(mi.InfoBytes))
	}
	if res.hs.M[wire.ExtMetadata] == 0 || res.hs.M[wire.ExtPex] == 0 {
		t.Fatalf("btfs's m = %v, want ut_metadata and ut_pex", res.hs.M)
	}
	if res.wrongID != 0 || res.totals != 0 {
		t.Errorf("%d replies under another ID than ours, %d with a wrong total_size", res.wrongID, res.totals)
	}
	var got bytes.Buffer
	for i := range n {
		got.Write(res.pieces[i])
	}
	if sha1.Sum(got.Bytes()) != mi.InfoHash {
		t.Errorf("the %d metadata pieces (%d bytes) do not hash to the info-hash", len(res.pieces), got.Len())
	}
	if len(res.rejected) != 1 || res.rejected[0] != n {
		t.Errorf("rejected %v, want just [%d] (the piece past the end)", res.rejected, n)
	}
	// The budget is one fetch plus metaSlack (refilling by less than one
	// request over the test), and the request past the end took one: the
	// rest of it is served, then rejects, and a flood is shown the door.
	left := metaSlack - 1
	if res.overData < left || res.overData > left+1 || res.overData+res.overRejects != metaSlack+10 {
		t.Errorf("%d requests past the fetch: %d served, %d rejected; want %d served", metaSlack+10, res.overData, res.overRejects, left)
	}
	if !res.disconnected || res.floodData > 1 || res.floodRejects > metaMaxRefused {
		t.Errorf("flood: %d pieces, %d rejects, disconnected %v; want at most %d rejects and a disconnect", res.floodData, res.floodRejects, res.disconnected, metaMaxRefused)
	}
	t.Logf("metadata %d bytes in %d pieces; %d more requests: %d served, %d rejected; a flood of 1000: %d pieces, %d rejects seen, then disconnected",
		len(mi.InfoBytes), n, metaSlack+10, res.overData, res.overRejects, res.floodData, res.floodRejects)
}

// TestPrivateTorrentNoPex: a private torrent offers ut_metadata but not
// ut_pex (BEP 27), and never asks its Finder.
func TestPrivateTorrentNoPex(t *testing.T) {
	dir := t.TempDir()
	_, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Size: 100 << 10, PieceLength: 16 << 10, Seed: 4})
	mi.Info.Private = true // only the engine's reading of the flag matters here
	f := &fakeFinder{}
	seeder := seedEngine(t, mi, dir, Config{Logger: testLogger(t), Finder: f})
	hsc := make(chan wire.ExtHandshake, 1)
	dialRawPeerHS(t, seeder.ListenAddr(), rawExtHS(mi), func(c *rawConn) error {
		if err := c.sendExtHandshake(wire.ExtHandshake{M: map[string]int{wire.ExtPex: 1}}); err != nil {
			return err
		}
		eh, err := c.readExtHandshake()
		if err != nil {
			return err
		}
		hsc <- eh
		return errDone
	})
	var eh wire.ExtHandshake
	select {
	case eh = <-hsc:
	case <-time.After(20 * time.Second):
		t.Fatal("no extension handshake")
	}
	if eh.M[wire.ExtPex] != 0 || eh.M[wire.ExtMetadata] == 0 {
		t.Errorf("private torrent's m = %v: want ut_metadata, no ut_pex", eh.M)
	}
	st, err := seeder.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if calls := f.callCount(); calls != 0 || st.LookupsStarted != 0 {
		t.Errorf("private torrent asked its Finder %d times (%d lookups)", calls, st.LookupsStarted)
	}
}

// noListenLeecher is an empty in-memory client that does not listen, so
// that it can only meet peers by dialling them.
func noListenLeecher(t *testing.T, mi *metainfo.MetaInfo, cfg Config) *Torrent {
	t.Helper()
	sw, err := storagewrapper.New(mi.Info, storagewrapper.NewMemStore(mi.Info), storagewrapper.Config{Logger: cfg.Logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sw.Close() })
	return noListenEngine(t, mi, sw, cfg)
}

// noListenEngine is startEngine without a listener (and without trackers).
func noListenEngine(t *testing.T, mi *metainfo.MetaInfo, sw *storagewrapper.Wrapper, cfg Config) *Torrent {
	t.Helper()
	cfg.Listen, cfg.Trackers = "", [][]string{}
	return runEngine(t, mi, sw, cfg)
}

// waitStats polls tor's stats until ok or d passes.
func waitStats(t *testing.T, tor *Torrent, d time.Duration, what string, ok func(Stats) bool) Stats {
	t.Helper()
	var st Stats
	poll.UntilNil(t, d, what, func() error {
		var err error
		if st, err = tor.Stats(context.Background()); err != nil {
			t.Fatal(err)
		}
		if !ok(st) {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	return st
}

// statsUntilComplete reads tor's stats every 100 ms until tor completes,
// handing each reading to each (seeders close their connection to a peer
// that completes, so per-peer counts must be read while the download
// runs), and fails the test if it has not completed after d. It returns
// the last reading.
func statsUntilComplete(t *testing.T, tor *Torrent, d time.Duration, each func(Stats)) Stats {
	t.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	guard := time.After(d)
	var st Stats
	for done := false; !done; {
		select {
		case <-tor.Complete():
			done = true
		case <-tick.C:
		case <-guard:
			t.Fatalf("not complete after %v: %+v", d, st)
		}
		var err error
		if st, err = tor.Stats(context.Background()); err != nil {
			t.Fatal(err)
		}
		each(st)
	}
	return st
}

// TestPexIntroducesPeers: A seeds, B (another seed) is connected to A,
// C knows only A. A tells C about B by PEX and C connects to B. C does
// not listen, so B cannot have found C on its own: the only way C meets B
// is by dialling the address A told it.
func TestPexIntroducesPeers(t *testing.T) {
	dir := t.TempDir()
	_, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Size: 1 << 20, PieceLength: 32 << 10, Seed: 5})
	log := testLogger(t)
	a := seedEngine(t, mi, dir, Config{Logger: log})
	// B listens on A's IP: A can only tell others B's connection IP with
	// the port of B's extension handshake (BEP 11 has no other way).
	b := seedEngine(t, mi, dir, Config{Logger: log, Peers: []netip.AddrPort{a.ListenAddr()}})
	waitStats(t, a, 20*time.Second, "A connected to B", func(st Stats) bool { return st.Peers == 1 })

	c := noListenLeecher(t, mi, Config{Logger: log, Peers: []netip.AddrPort{a.ListenAddr()}})
	st := waitStats(t, c, 30*time.Second, "C connected to A and B", func(st Stats) bool { return st.Peers == 2 })
	found := false
	for _, ps := range st.PerPeer {
		found = found || ps.Addr == b.ListenAddr()
	}
	if !found || st.Learned["pex"] < 1 {
		t.Fatalf("C's peers %v, learned %v: want B at %v, learned by PEX", st.PerPeer, st.Learned, b.ListenAddr())
	}
	waitComplete(t, c, 60*time.Second)
}

// fakeFinder stands in for the DHT (another package, tested there): it
// answers every lookup with fixed addresses and records its calls.
type fakeFinder struct {
	addrs []netip.AddrPort
	mu    sync.Mutex
	calls []fakeLookup
	nodes []netip.AddrPort
}

type fakeLookup struct {
	ih   [20]byte
	port int
}

func (f *fakeFinder) FindPeers(ctx context.Context, ih [20]byte, port int, found func([]netip.AddrPort)) error {
	f.mu.Lock()
	f.calls = append(f.calls, fakeLookup{ih, port})
	f.mu.Unlock()
	if len(f.addrs) > 0 {
		found(f.addrs)
	}
	return nil
}

func (f *fakeFinder) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

// nodeFinder is a fakeFinder with a routing table: BEP 5 port messages
// feed it.
type nodeFinder struct{ fakeFinder }

func (f *nodeFinder) AddNode(a netip.AddrPort) {
	f.mu.Lock()
	f.nodes = append(f.nodes, a)
	f.mu.Unlock()
}

// TestFinderFindsPeers: a leecher with no peers and no trackers finds the
// seeder through its Finder, which it asks with its info-hash and listen
// port.
func TestFinderFindsPeers(t *testing.T) {
	dir := t.TempDir()
	_, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Size: 512 << 10, PieceLength: 32 << 10, Seed: 6})
	log := testLogger(t)
	seeder := seedEngine(t, mi, dir, Config{Logger: log})
	f := &fakeFinder{addrs: []netip.AddrPort{seeder.ListenAddr()}}
	leecher, _ := leechEngine(t, mi, Config{Logger: log, Finder: f})
	waitComplete(t, leecher, 60*time.Second)
	st, err := leecher.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Learned["dht"] != 1 || st.LookupsStarted < 1 {
		t.Errorf("learned %v in %d lookups, want one address from the DHT", st.Learned, st.LookupsStarted)
	}
	f.mu.Lock()
	first := f.calls[0]
	f.mu.Unlock()
	if first.ih != [20]byte(mi.InfoHash) || first.port != int(leecher.ListenAddr().Port()) {
		t.Errorf("lookup for %x port %d, want %x port %d", first.ih, first.port, mi.InfoHash, leecher.ListenAddr().Port())
	}
}

// TestDHTPortMessages: with a Finder that keeps a routing table, btfs sets
// the DHT bit, sends its DHT port to peers that set it, and hands a
// peer's port message to the Finder (once per connection).
func TestDHTPortMessages(t *testing.T) {
	dir := t.TempDir()
	_, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Size: 100 << 10, PieceLength: 16 << 10, Seed: 8})
	f := &nodeFinder{}
	const dhtPort = 6999
	seeder := seedEngine(t, mi, dir, Config{Logger: testLogger(t), Finder: f, DHTPort: dhtPort})
	hs := rawExtHS(mi)
	hs.Reserved.SetDHT()
	type result struct {
		dhtBit bool
		port   uint16
	}
	resc := make(chan result, 1)
	dialRawPeerHS(t, seeder.ListenAddr(), hs, func(c *rawConn) error {
		r := result{dhtBit: c.hs.Reserved.SupportsDHT()}
		// Two port messages, then interested: the seeder's unchoke (it
		// has a free slot) says that its loop, which handles a
		// connection's messages in order, is past both port messages.
		if err := c.send(wire.Message{ID: wire.Port, Port: 4321}, wire.Message{ID: wire.Port, Port: 4322},
			wire.Message{ID: wire.Interested}); err != nil {
			return err
		}
		err := c.readUntil(func(m wire.Message) error {
			switch m.ID {
			case wire.Port:
				r.port = m.Port
			case wire.Unchoke:
				return errDone
			}
			return nil
		})
		resc <- r
		return err
	})
	var r result
	select {
	case r = <-resc:
	case <-time.After(20 * time.Second):
		t.Fatal("no port message and unchoke")
	}
	if !r.dhtBit || r.port != dhtPort {
		t.Errorf("DHT bit %v, port %d; want the bit and port %d", r.dhtBit, r.port, dhtPort)
	}
	f.mu.Lock()
	got := fmt.Sprint(f.nodes)
	f.mu.Unlock()
	if got != "[127.0.0.1:4321]" {
		t.Fatalf("routing table got %s, want [127.0.0.1:4321]", got)
	}
}

// TestLookupSchedule drives the Finder's schedule on an idle torrent (the
// test plays the loop): a lookup at start, none while one runs, the next
// after lookupMinGap when short of peers, else after lookupInterval.
func TestLookupSchedule(t *testing.T) {
	_, mi := swarmtest.MakeTorrent(t, t.TempDir(), swarmtest.TorrentOptions{Size: 64 << 10, PieceLength: 16 << 10, Seed: 9})
	tor := idleTorrent(t, mi)
	t.Cleanup(tor.wg.Wait)
	f := &fakeFinder{}
	tor.cfg.Finder = f
	s := tor.s
	finish := func() {
		t.Helper()
		select {
		case ev := <-tor.events:
			s.handle(ev)
		case <-time.After(10 * time.Second):
			t.Fatal("lookup did not end")
		}
	}
	t0 := time.Now()
	dialable := netip.MustParseAddrPort("127.0.0.9:1")
	steps := []struct {
		name  string
		at    time.Duration
		short bool // no address left to dial
		runs  int  // lookups started after the step
	}{
		{"at start", 0, true, 1},
		{"too soon even when short", lookupMinGap - time.Second, true, 1},
		{"short of peers after the gap", lookupMinGap, true, 2},
		{"not short: waits for the interval", 2*lookupMinGap + time.Second, false, 2},
		{"the interval", lookupMinGap + lookupInterval, false, 3},
	}
	for _, st := range steps {
		if st.short {
			delete(s.known, dialable)
		} else {
			s.known[dialable] = &known{}
		}
		before := s.lookup.runs
		s.maybeLookup(t0.Add(st.at))
		if s.lookup.runs != st.runs {
			t.Fatalf("%s: %d lookups, want %d", st.name, s.lookup.runs, st.runs)
		}
		if s.lookup.runs > before {
			s.maybeLookup(t0.Add(st.at + lookupInterval)) // one at a time
			if s.lookup.runs != st.runs {
				t.Fatalf("%s: a second lookup started while one ran", st.name)
			}
			finish()
		}
	}
	if got := f.callCount(); got != 3 {
		t.Fatalf("finder called %d times, want 3", got)
	}
}

// TestPexIntake: what a peer tells us by PEX is capped per message, and a
// second message within pex.MinInterval is ignored. A ut_metadata request
// after the PEX messages fences them: its reply means the loop has handled
// both (one reader, one event queue, in order).
func TestPexIntake(t *testing.T) {
	dir := t.TempDir()
	_, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Size: 64 << 10, PieceLength: 16 << 10, Seed: 10})
	seeder := seedEngine(t, mi, dir, Config{Logger: testLogger(t), MaxPeers: 2})
	pexMsg := func(ip string, n int) []byte {
		var m wire.PexMsg
		for i := range n {
			m.Added = append(m.Added, wire.PexPeer{Addr: netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(1000+i))})
		}
		b, err := wire.EncodePex(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	done := make(chan error, 1)
	dialRawPeerHS(t, seeder.ListenAddr(), rawExtHS(mi), func(c *rawConn) error {
		err := func() error {
			if err := c.sendExtHandshake(wire.ExtHandshake{M: map[string]int{wire.ExtMetadata: 3, wire.ExtPex: 4}}); err != nil {
				return err
			}
			eh, err := c.readExtHandshake()
			if err != nil {
				return err
			}
			pexID, metaID := eh.M[wire.ExtPex], eh.M[wire.ExtMetadata]
			if pexID == 0 || metaID == 0 {
				return fmt.Errorf("btfs's m = %v", eh.M)
			}
			if err := c.send(
				wire.Message{ID: wire.Extended, ExtendedID: uint8(pexID), Payload: pexMsg("127.0.0.50", 60)},
				wire.Message{ID: wire.Extended, ExtendedID: uint8(pexID), Payload: pexMsg("127.0.0.51", 5)},
				metadataRequest(metaID, 0),
			); err != nil {
				return err
			}
			return c.readUntil(func(m wire.Message) error {
				if m.ID == wire.Extended && m.ExtendedID == 3 {
					return errDone
				}
				return nil
			})
		}()
		done <- err
		return err
	})
	select {
	case err := <-done:
		if !errors.Is(err, errDone) {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no ut_metadata reply")
	}
	st, err := seeder.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Learned["pex"] != 50 {
		t.Fatalf("learned %v, want 50 by PEX (the first message, capped; the second too soon)", st.Learned)
	}
}

// TestExtHandshakeUpdates plays the loop: a peer's "m" IDs are remembered
// and used when we send to it; a later handshake changes one (BEP 10's
// "m" is additive) and ID 0 switches an extension off.
func TestExtHandshakeUpdates(t *testing.T) {
	_, mi := swarmtest.MakeTorrent(t, t.TempDir(), swarmtest.TorrentOptions{Size: 64 << 10, PieceLength: 16 << 10, Seed: 11})
	tor := idleTorrent(t, mi)
	s := tor.s
	p := idlePeer(t, tor, 7000)
	hs := func(m map[string]int, port int) {
		t.Helper()
		b, err := wire.ExtHandshake{M: m, Port: port}.Encode()
		if err != nil {
			t.Fatal(err)
		}
		s.onExtHandshake(p, b)
	}
	// sentIDs drains the peer's outbox and returns the extended IDs in it.
	sentIDs := func() []uint8 {
		msgs, _, _ := p.out.take(nil)
		var ids []uint8
		for _, m := range msgs {
			if m.ID == wire.Extended {
				ids = append(ids, m.ExtendedID)
			}
		}
		return ids
	}
	req, err := wire.EncodeMetadataMsg(wire.MetadataMsg{Type: wire.MetadataRequest, Piece: 0})
	if err != nil {
		t.Fatal(err)
	}

	hs(map[string]int{wire.ExtMetadata: 9, wire.ExtPex: 5}, 7001)
	if p.exts.pexOut == nil || p.exts.listen != netip.MustParseAddrPort("127.0.0.1:7001") {
		t.Fatalf("after the first handshake: pex %v, listen %v", p.exts.pexOut != nil, p.exts.listen)
	}
	s.onMetadataMsg(p, req)
	if got := sentIDs(); fmt.Sprint(got) != "[9]" {
		t.Fatalf("reply under IDs %v, want [9]", got)
	}
	hs(map[string]int{wire.ExtMetadata: 12}, 0) // changes one, keeps ut_pex
	s.onMetadataMsg(p, req)
	if got := sentIDs(); fmt.Sprint(got) != "[12]" || p.exts.pexOut == nil {
		t.Fatalf("after the update: reply under %v (want [12]), pex %v", got, p.exts.pexOut != nil)
	}
	hs(map[string]int{wire.ExtMetadata: 0, wire.ExtPex: 0}, 0) // both off
	s.onMetadataMsg(p, req)
	if got := sentIDs(); len(got) != 0 || p.exts.pexOut != nil {
		t.Fatalf("after switching off: sent %v, pex %v", got, p.exts.pexOut != nil)
	}
}
