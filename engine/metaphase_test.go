package engine

import (
	"context"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"btfs/engine/metadata"
	"btfs/engine/wire"
	"btfs/internal/poll"
	"btfs/internal/swarmtest"
	"btfs/metainfo"
	"btfs/picker"
	"btfs/storagewrapper"
)

// The metadata phase: a Torrent started from a magnet link (no info
// dictionary) fetches it from its peers and swarms on with the same
// connections.

// multiPieceMeta has 2048 pieces of 2 KiB: its info dictionary (~41 KB)
// spans three ut_metadata pieces.
var multiPieceMeta = swarmtest.TorrentOptions{Seed: 12, Size: 4 << 20, PieceLength: 2 << 10}

// magnetOf is what a magnet link gives: the info-hash, no info.
func magnetOf(mi *metainfo.MetaInfo) *metainfo.MetaInfo {
	return &metainfo.MetaInfo{InfoHash: mi.InfoHash}
}

// memStorage is an OpenStorage over an in-memory store; the wrapper it
// made is sent on got.
func memStorage(t *testing.T, got chan<- *storagewrapper.Wrapper) func(context.Context, *metainfo.MetaInfo) (*storagewrapper.Wrapper, picker.Mode, error) {
	return func(_ context.Context, mi *metainfo.MetaInfo) (*storagewrapper.Wrapper, picker.Mode, error) {
		sw, err := storagewrapper.New(mi.Info, storagewrapper.NewMemStore(mi.Info), storagewrapper.Config{})
		if err != nil {
			return nil, 0, err
		}
		t.Cleanup(func() { sw.Close() })
		if got != nil {
			got <- sw
		}
		return sw, picker.FetchAll, nil
	}
}

// startMagnet starts a Torrent for mi's magnet link with cfg (trackers
// off unless set; no listener unless set).
func startMagnet(t *testing.T, mi *metainfo.MetaInfo, cfg Config) (*Torrent, <-chan *storagewrapper.Wrapper) {
	t.Helper()
	got := make(chan *storagewrapper.Wrapper, 1)
	cfg.OpenStorage = memStorage(t, got)
	if cfg.Trackers == nil {
		cfg.Trackers = [][]string{}
	}
	return runEngine(t, magnetOf(mi), nil, cfg), got
}

// waitInfo waits for the Torrent's info and checks it is mi's.
func waitInfo(t *testing.T, tor *Torrent, mi *metainfo.MetaInfo, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	got, err := tor.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.InfoHash != mi.InfoHash || string(got.InfoBytes) != string(mi.InfoBytes) || got.Info.TotalLength != mi.Info.TotalLength {
		t.Fatalf("Info returned another torrent: %s, %d bytes", got.InfoHash, len(got.InfoBytes))
	}
}

// gatedFinder is a PeerFinder that "finds" addrs once gate is closed (nil:
// at once): a stand-in for the DHT, whose own tests use real nodes.
type gatedFinder struct {
	addrs []netip.AddrPort
	gate  <-chan struct{}
	port  atomic.Int64
	calls atomic.Int32
}

func (f *gatedFinder) FindPeers(ctx context.Context, ih [20]byte, port int, found func([]netip.AddrPort)) error {
	f.calls.Add(1)
	f.port.Store(int64(port))
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	found(f.addrs)
	return nil
}

// TestMagnetFromEngineSeeders: a magnet link resolved from in-process
// seeders, given or found by the Finder, downloads everything over the
// connections of its metadata phase: one connection per seeder.
func TestMagnetFromEngineSeeders(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   swarmtest.TorrentOptions
		peers  int
		finder bool
	}{
		{"one metadata piece, one seeder", swarmtest.TorrentOptions{Seed: 11, Size: 1 << 20, PieceLength: 64 << 10}, 1, false},
		{"three metadata pieces, two seeders", multiPieceMeta, 2, false},
		{"three metadata pieces, from the finder", multiPieceMeta, 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			_, mi := swarmtest.MakeTorrent(t, dir, tc.opts)
			log := testLogger(t)
			var addrs []netip.AddrPort
			for i := range tc.peers {
				s := seedEngine(t, mi, dir, Config{Logger: log, Listen: netip.AddrFrom4([4]byte{127, 0, 0, byte(30 + i)}).String() + ":0"})
				addrs = append(addrs, s.ListenAddr())
			}
			cfg := Config{Logger: log, Listen: "127.0.0.1:0"}
			finder := &gatedFinder{addrs: addrs}
			if tc.finder {
				cfg.Finder = finder
			} else {
				cfg.Peers = addrs
			}
			tor, got := startMagnet(t, mi, cfg)
			waitInfo(t, tor, mi, time.Minute)
			sw := <-got
			waitComplete(t, tor, time.Minute)
			checkData(t, mi, sw, dir)
			st, err := tor.Stats(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if st.Connections != tc.peers || st.Metadata {
				t.Errorf("%d connections over the run (metadata phase %v), want %d: one per seeder", st.Connections, st.Metadata, tc.peers)
			}
			if tc.finder && finder.port.Load() != int64(tor.ListenAddr().Port()) {
				t.Errorf("FindPeers got port %d, want our listen port %d", finder.port.Load(), tor.ListenAddr().Port())
			}
		})
	}
}

// metaPeer is a raw peer's ut_metadata side: it announces size (0: none)
// under fakeMetaID, counts the requests it gets, and answers each with
// answer (nil: a reject).
type metaPeer struct {
	requests atomic.Int32
	rejects  atomic.Int32 // our rejects of its own requests
}

const fakeMetaID = 7

func (mp *metaPeer) behave(size int64, ask bool, answer func(piece int) []byte) func(*rawConn) error {
	return func(c *rawConn) error {
		eh := wire.ExtHandshake{M: map[string]int{wire.ExtMetadata: fakeMetaID}, V: "raw"}
		payload, err := eh.Encode()
		if err != nil {
			return err
		}
		if size > 0 { // Encode refuses sizes over the default cap: written by hand
			payload = []byte("d1:md11:ut_metadatai7ee13:metadata_sizei" + itoa(size) + "ee")
		}
		if err := c.send(wire.Message{ID: wire.Extended, Payload: payload}); err != nil {
			return err
		}
		theirs := 0
		return c.readUntil(func(m wire.Message) error {
			if m.ID != wire.Extended {
				return nil
			}
			if m.ExtendedID == 0 {
				eh, err := wire.ParseExtHandshake(m.Payload, 0)
				if err != nil {
					return err
				}
				first := theirs == 0
				theirs = eh.M[wire.ExtMetadata]
				if ask && first && theirs != 0 { // ask for its metadata: it has none yet
					req, _ := wire.EncodeMetadataMsg(wire.MetadataMsg{Type: wire.MetadataRequest, Piece: 0})
					return c.send(wire.Message{ID: wire.Extended, ExtendedID: uint8(theirs), Payload: req})
				}
				return nil
			}
			msg, err := wire.ParseMetadataMsg(m.Payload, 0)
			if err != nil {
				return err
			}
			switch msg.Type {
			case wire.MetadataReject:
				mp.rejects.Add(1)
				return nil
			case wire.MetadataData:
				return nil
			}
			mp.requests.Add(1)
			reply := wire.MetadataMsg{Type: wire.MetadataReject, Piece: msg.Piece}
			if answer != nil {
				reply = wire.MetadataMsg{Type: wire.MetadataData, Piece: msg.Piece, TotalSize: size, Data: answer(msg.Piece)}
			}
			out, err := wire.EncodeMetadataMsg(reply)
			if err != nil {
				return err
			}
			return c.send(wire.Message{ID: wire.Extended, ExtendedID: uint8(theirs), Payload: out})
		})
	}
}

// listenMetaPeer starts a raw peer on ip that speaks BEP 6 and BEP 10
// and runs behave.
func listenMetaPeer(t *testing.T, mi *metainfo.MetaInfo, ip string, behave func(*rawConn) error) *rawPeer {
	t.Helper()
	hs := rawHandshake(mi, true)
	hs.Reserved.SetExtensions()
	return listenRawPeerHS(t, mi, ip, hs, behave)
}

func itoa(n int64) string {
	var b []byte
	for n >= 10 {
		b = append(b, byte('0'+n%10))
		n /= 10
	}
	b = append(b, byte('0'+n))
	slices.Reverse(b)
	return string(b)
}

// TestMagnetHostileMetadata: a peer that lies about the metadata is dealt
// with before the honest seeder is even known (the Finder offers it, with
// the liar's address again, only once the liar's connection has ended),
// and the torrent completes from the honest one.
func TestMagnetHostileMetadata(t *testing.T) {
	dir := t.TempDir()
	_, mi := swarmtest.MakeTorrent(t, dir, multiPieceMeta)
	size := int64(len(mi.InfoBytes))
	for _, tc := range []struct {
		name   string
		behave func(*metaPeer) func(*rawConn) error
		// banned: the liar's host must be banned; asked: it must have
		// been asked (else: never).
		banned, asked bool
	}{
		{"right size, wrong bytes", func(mp *metaPeer) func(*rawConn) error {
			return mp.behave(size, false, func(piece int) []byte {
				return make([]byte, wire.MetadataPieceLen(size, piece))
			})
		}, true, true},
		{"metadata_size 10^9", func(mp *metaPeer) func(*rawConn) error {
			return mp.behave(1_000_000_000, false, func(int) []byte { return nil })
		}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := testLogger(t)
			var mp metaPeer
			liar := listenMetaPeer(t, mi, "127.0.0.21", tc.behave(&mp))
			good := seedEngine(t, mi, dir, Config{Logger: log, Listen: "127.0.0.20:0"})
			gate := make(chan struct{})
			go func() {
				select {
				case <-liar.dropped:
					close(gate)
				case <-t.Context().Done():
				}
			}()
			finder := &gatedFinder{addrs: []netip.AddrPort{liar.addr, good.ListenAddr()}, gate: gate}
			tor, got := startMagnet(t, mi, Config{Logger: log, Peers: []netip.AddrPort{liar.addr}, Finder: finder})
			waitInfo(t, tor, mi, 30*time.Second)
			sw := <-got
			waitComplete(t, tor, time.Minute)
			checkData(t, mi, sw, dir)
			st, err := tor.Stats(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if n := liar.connectionsFrom(tor.PeerID()); n != 1 {
				t.Errorf("the liar was connected %d times, want 1 (never again)", n)
			}
			if (st.Banned == 1) != tc.banned {
				t.Errorf("%d hosts banned, want the liar's banned: %v", st.Banned, tc.banned)
			}
			if n := mp.requests.Load(); (n > 0) != tc.asked {
				t.Errorf("the liar was asked %d times, want asked: %v", n, tc.asked)
			}
		})
	}
}

// TestMagnetRejectsRequests: a peer that asks us for the metadata before
// we have it gets BEP 9's reject, and still serves us.
func TestMagnetRejectsRequests(t *testing.T) {
	_, mi := swarmtest.MakeTorrent(t, t.TempDir(), swarmtest.TorrentOptions{Seed: 13, Size: 1 << 20, PieceLength: 64 << 10})
	srv := metadata.NewServer(mi.InfoBytes)
	var mp metaPeer
	p := listenMetaPeer(t, mi, "127.0.0.25", mp.behave(int64(len(mi.InfoBytes)), true, func(piece int) []byte {
		return srv.Answer(piece).Data
	}))
	tor, _ := startMagnet(t, mi, Config{Logger: testLogger(t), Peers: []netip.AddrPort{p.addr}})
	waitInfo(t, tor, mi, 30*time.Second)
	poll.Until(t, 10*time.Second, "our reject of the peer's request", func() bool { return mp.rejects.Load() > 0 })
}

// TestMagnetNobodyHasIt: with no peer able to help, Info ends with the
// caller's context, saying what was tried.
func TestMagnetNobodyHasIt(t *testing.T) {
	_, mi := swarmtest.MakeTorrent(t, t.TempDir(), swarmtest.TorrentOptions{Seed: 14, Size: 1 << 20, PieceLength: 64 << 10})
	var mp metaPeer
	empty := listenMetaPeer(t, mi, "127.0.0.22", mp.behave(0, false, nil)) // a magnet leecher: no metadata_size
	closed := netip.MustParseAddrPort("127.0.0.23:1")                      // nothing listens on port 1
	finder := &gatedFinder{}
	tor, _ := startMagnet(t, mi, Config{
		Logger:   testLogger(t),
		Peers:    []netip.AddrPort{empty.addr, closed},
		Trackers: [][]string{{"http://127.0.0.1:1/announce"}},
		Finder:   finder,
	})
	// The tracker's refusal and the lookup are in before the deadline.
	poll.Until(t, 10*time.Second, "a failed announce, a lookup and a handshake", func() bool {
		var ok bool
		tor.do(context.Background(), func() { ok = tor.s.trackerErr != nil && tor.s.lookup.runs > 0 && tor.s.fetch.hands > 0 })
		return ok
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := tor.Info(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Info: %v, want an error wrapping context.DeadlineExceeded", err)
	}
	msg := err.Error()
	for _, want := range []string{"no metadata after", "2 peer addresses known", "config 2", "1 handshaken", "0 offered metadata", "0 banned", "last tracker error", "127.0.0.1:1", "DHT lookups"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
	t.Log(msg)
	if mp.requests.Load() != 0 {
		t.Error("a peer without metadata was asked for it")
	}
	if finder.calls.Load() == 0 {
		t.Error("no DHT lookup in the metadata phase")
	}
}

// TestMagnetBadInfo: a dictionary that hashes to the info-hash but is no
// valid info dictionary stops the Torrent with ErrBadInfo.
func TestMagnetBadInfo(t *testing.T) {
	bogus := []byte("d4:name3:abce") // no pieces, no length
	mi := &metainfo.MetaInfo{InfoHash: metainfo.Hash(sha1.Sum(bogus))}
	var mp metaPeer
	p := listenMetaPeer(t, mi, "127.0.0.24", mp.behave(int64(len(bogus)), false, func(int) []byte { return bogus }))
	tor := runEngine(t, mi, nil, Config{Logger: testLogger(t), Peers: []netip.AddrPort{p.addr}, Trackers: [][]string{}, OpenStorage: memStorage(t, nil)})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := tor.Info(ctx); !errors.Is(err, ErrBadInfo) {
		t.Fatalf("Info: %v, want ErrBadInfo", err)
	}
	if !errors.Is(tor.Err(), ErrBadInfo) {
		t.Fatalf("Err: %v, want ErrBadInfo", tor.Err())
	}
}

// announceLog is an HTTP proxy in front of a real tracker (opentracker)
// that records the event of each announce per peer id.
type announceLog struct {
	url    string // the proxy's announce URL
	mu     sync.Mutex
	events map[string][]string // by peer id: the events in order ("" for a regular announce)
}

func proxyTracker(t *testing.T, trackerURL string) *announceLog {
	t.Helper()
	target, err := url.Parse(trackerURL)
	if err != nil {
		t.Fatal(err)
	}
	al := &announceLog{events: map[string][]string{}}
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(&url.URL{Scheme: target.Scheme, Host: target.Host})
		r.Out.URL.Path = target.Path
	}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		al.mu.Lock()
		al.events[q.Get("peer_id")] = append(al.events[q.Get("peer_id")], q.Get("event"))
		al.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	al.url = srv.URL + target.Path
	return al
}

// of returns the events announced by peer id.
func (al *announceLog) of(id [20]byte) []string {
	al.mu.Lock()
	defer al.mu.Unlock()
	return slices.Clone(al.events[string(id[:])])
}

// TestMagnetHandoverRealPeers: an aria2c and a libtorrent seeder, found
// through opentracker. The magnet Torrent fetches the metadata and the
// data over the same two connections (none made again at the handover),
// and the tracker hears "started" from it exactly once.
func TestMagnetHandoverRealPeers(t *testing.T) {
	swarmtest.Require(t, "aria2c", "opentracker")
	swarmtest.RequireLibtorrent(t)
	tr := swarmtest.StartTracker(t)
	dir := t.TempDir()
	opts := swarmtest.TorrentOptions{Size: 6 << 20, PieceLength: 32 << 10, Seed: 15, AnnounceList: [][]string{{tr.HTTPURL()}}}
	torrentPath, mi := swarmtest.MakeTorrent(t, dir, opts)
	tr.AddInfoHash(t, mi.InfoHash)
	seeders := []netip.AddrPort{
		swarmtest.StartAria2Seeder(t, torrentPath, dir, "127.0.0.2").Addr(),
		swarmtest.StartLibtorrentSeeder(t, torrentPath, dir, "127.0.0.3").Addr(),
	}
	for _, s := range seeders {
		tr.WaitForPeer(t, mi.InfoHash, s)
	}
	al := proxyTracker(t, tr.HTTPURL())
	// No listener: the seeders cannot dial us, so every connection is one
	// we made, and a redial would show.
	// The rate cap keeps the download going until both seeders are in
	// (aria2c answers a handshake only at its 1 s tick).
	tor, got := startMagnet(t, mi, Config{Logger: testLogger(t), Trackers: [][]string{{al.url}}, MaxDownloadRate: 2 << 20})
	waitInfo(t, tor, mi, time.Minute)
	sw := <-got
	poll.UntilNil(t, 30*time.Second, "both seeders connected", func() error {
		st, err := tor.Stats(context.Background())
		if err == nil && len(st.PerPeer) < len(seeders) {
			err = fmt.Errorf("connected to %d of %d seeders", len(st.PerPeer), len(seeders))
		}
		return err
	})
	waitComplete(t, tor, 90*time.Second)
	checkData(t, mi, sw, dir)
	st, err := tor.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Connections != len(seeders) {
		t.Errorf("%d connections over the run, want %d: one per seeder, none made again at the handover", st.Connections, len(seeders))
	}
	for _, p := range st.PerPeer {
		if p.Downloaded == 0 {
			t.Logf("%s delivered nothing", p.Addr)
		}
	}
	events := al.of(tor.PeerID())
	started := 0
	for _, e := range events {
		if e == "started" {
			started++
		}
	}
	if started != 1 || len(events) == 0 || events[0] != "started" {
		t.Errorf("the tracker heard %q from us, want exactly one \"started\", first", events)
	}
}

// TestMagnetHostileWire: messages over wire's caps, before the piece count
// is known, end the connection (and nothing else): the honest seeder, which
// the Finder offers only once the hostile connection has ended, then
// delivers.
func TestMagnetHostileWire(t *testing.T) {
	dir := t.TempDir()
	_, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Seed: 16, Size: 1 << 20, PieceLength: 64 << 10})
	header := func(n uint32, id wire.ID) []byte { return append(binary.BigEndian.AppendUint32(nil, n+1), byte(id)) }
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"extended message of 2 MiB", header(2<<20, wire.Extended)},
		{"bitfield of 1 MiB", header(1<<20, wire.Bitfield)},
		{"piece block of 1 MiB", header(1<<20+8, wire.Piece)},
		{"length prefix of 4 GiB", []byte{0xff, 0xff, 0xff, 0xff, 20}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := testLogger(t)
			bad := listenMetaPeer(t, mi, "127.0.0.26", func(c *rawConn) error {
				if _, err := c.conn.Write(tc.b); err != nil {
					return err
				}
				return c.readUntil(func(wire.Message) error { return nil })
			})
			good := seedEngine(t, mi, dir, Config{Logger: log, Listen: "127.0.0.27:0"})
			gate := make(chan struct{})
			go func() {
				select {
				case <-bad.dropped:
					close(gate)
				case <-t.Context().Done():
				}
			}()
			finder := &gatedFinder{addrs: []netip.AddrPort{good.ListenAddr()}, gate: gate}
			tor, _ := startMagnet(t, mi, Config{Logger: log, Peers: []netip.AddrPort{bad.addr}, Finder: finder})
			waitInfo(t, tor, mi, 30*time.Second)
			waitComplete(t, tor, time.Minute)
		})
	}
}
