package magnet

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"btfs/engine/metadata"
	"btfs/engine/wire"
	"btfs/internal/swarmtest"
	"btfs/metainfo"
)

// tWriter sends log records to t.Log (shown with -v or on failure).
type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Torrents of the tests: the multi-piece one has 2048 pieces of 2 KiB, so
// its info dictionary (~41 KB) spans three ut_metadata pieces.
var (
	singlePiece = swarmtest.TorrentOptions{Seed: 11, Size: 1 << 20, PieceLength: 64 << 10}
	multiPiece  = swarmtest.TorrentOptions{Seed: 12, Size: 4 << 20, PieceLength: 2 << 10}
)

// makeTorrent makes a torrent (and its data, for seeders) in a fresh
// directory.
func makeTorrent(t *testing.T, opts swarmtest.TorrentOptions) (path, dir string, mi *metainfo.MetaInfo) {
	t.Helper()
	dir = t.TempDir()
	path, mi = swarmtest.MakeTorrent(t, dir, opts)
	return path, dir, mi
}

// checkResult fails t unless res holds mi's info dictionary.
func checkResult(t *testing.T, res Result, mi *metainfo.MetaInfo) {
	t.Helper()
	if sha1.Sum(res.Info) != [20]byte(mi.InfoHash) {
		t.Fatalf("Result.Info (%d bytes) does not hash to the info-hash", len(res.Info))
	}
	if !bytes.Equal(res.Info, mi.InfoBytes) {
		t.Fatal("Result.Info differs from the torrent's info bytes")
	}
}

func TestMultiPieceTorrentIsMultiPiece(t *testing.T) {
	_, _, mi := makeTorrent(t, multiPiece)
	if n := wire.MetadataPieces(int64(len(mi.InfoBytes))); n < 3 {
		t.Fatalf("multi-piece info dictionary is %d bytes, %d ut_metadata pieces; want at least 3", len(mi.InfoBytes), n)
	}
}

// TestHonestGoPeers fetches from in-test peers that serve the real bytes:
// one peer, two peers sharing the work, the address coming from the DHT.
func TestHonestGoPeers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   swarmtest.TorrentOptions
		peers  int
		finder bool
	}{
		{"one piece, one peer", singlePiece, 1, false},
		{"three pieces, one peer", multiPiece, 1, false},
		{"three pieces, two peers", multiPiece, 2, false},
		{"three pieces, from the finder", multiPiece, 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, mi := makeTorrent(t, tc.opts)
			var fakes []*fakePeer
			var addrs []netip.AddrPort
			for i := range tc.peers {
				p := listenFake(t, netip.AddrFrom4([4]byte{127, 0, 0, byte(30 + i)}).String(), mi.InfoHash, honest(mi.InfoBytes, nil))
				fakes = append(fakes, p)
				addrs = append(addrs, p.addr)
			}
			cfg := Config{InfoHash: mi.InfoHash, Logger: testLogger(t), Port: 6881}
			var finder *fakeFinder
			if tc.finder {
				finder = &fakeFinder{addrs: addrs}
				cfg.Finder = finder
			} else {
				cfg.Peers = addrs
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			res, err := Fetch(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			checkResult(t, res, mi)
			var asked int32
			for _, p := range fakes {
				asked += p.requests.Load()
				if !slices.Contains(res.Peers, p.addr) {
					t.Errorf("Result.Peers %v lacks %v", res.Peers, p.addr)
				}
			}
			if want := wire.MetadataPieces(int64(len(mi.InfoBytes))); asked < int32(want) {
				t.Errorf("peers got %d requests for %d pieces", asked, want)
			}
			if finder != nil && finder.port.Load() != 6881 {
				t.Errorf("FindPeers got port %d, want 6881", finder.port.Load())
			}
		})
	}
}

// fakeFinder is a PeerFinder that "finds" addrs once gate is closed (nil:
// at once).
type fakeFinder struct {
	addrs []netip.AddrPort
	gate  <-chan struct{}
	port  atomic.Int64
	calls atomic.Int32
}

func (f *fakeFinder) FindPeers(ctx context.Context, ih [20]byte, port int, found func([]netip.AddrPort)) error {
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

// message encodes one wire message.
func message(t *testing.T, m wire.Message) []byte {
	t.Helper()
	var b bytes.Buffer
	w := wire.NewWriter(&b)
	if err := w.WriteMessage(m); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// header is a message's length prefix and ID claiming a body of n bytes
// (after the ID), with no body sent.
func header(n uint32, id wire.ID) []byte {
	b := binary.BigEndian.AppendUint32(nil, n+1)
	return append(b, byte(id))
}

// TestHostilePeers runs Fetch against peers that lie or break the
// protocol. Each hostile peer is dialled first (from Config.Peers); the
// honest peer's address comes from the Finder only once every hostile
// peer's connection has ended, so the fetch cannot complete before Fetch
// has dealt with them, and the end of their connections is Fetch's doing.
func TestHostilePeers(t *testing.T) {
	_, _, mi := makeTorrent(t, multiPiece)
	size := int64(len(mi.InfoBytes))
	junk := func(piece, n int) []byte { return bytes.Repeat([]byte{byte(piece + 1)}, n) }
	// Short enough that a peer wrongly redialled would be redialled
	// within the test: the cases that must never be redialled wait
	// settle after the peer was dropped.
	defer func(tick, backoff time.Duration) { tickEvery, redialBackoff = tick, backoff }(tickEvery, redialBackoff)
	tickEvery, redialBackoff = 20*time.Millisecond, 20*time.Millisecond
	const settle = 500 * time.Millisecond
	for _, tc := range []struct {
		name    string
		hostile behaviour
		// banned: the peer must be banned (left out of Result.Peers,
		// never dialled again, its address ignored when found again).
		banned bool
		// useless: the peer can never help and must not be redialled.
		useless bool
		// asked: the peer may be sent requests.
		asked bool
	}{
		{name: "metadata_size 10^9", hostile: claims(1_000_000_000, junk), useless: true},
		{name: "metadata_size negative", hostile: raw(message(t, wire.Message{ID: wire.Extended, Payload: []byte("d1:md11:ut_metadatai1ee13:metadata_sizei-5ee")}))},
		{name: "right size, wrong bytes", hostile: claims(size, junk), banned: true, asked: true},
		{name: "extension handshake not bencode", hostile: raw(message(t, wire.Message{ID: wire.Extended, Payload: []byte("garbage")}))},
		{name: "no ut_metadata", hostile: raw(message(t, wire.Message{ID: wire.Extended, Payload: []byte("d1:md6:ut_pexi1eee")})), useless: true},
		{name: "no extension bit", hostile: raw(nil), useless: true},
		{name: "extended message of 2 MiB", hostile: raw(header(2<<20, wire.Extended))},
		{name: "bitfield of 1 MiB", hostile: raw(header(1<<20, wire.Bitfield))},
		{name: "piece block of 1 MiB", hostile: raw(header(1<<20+8, wire.Piece))},
		{name: "length prefix of 4 GiB", hostile: raw([]byte{0xff, 0xff, 0xff, 0xff, 20})},
		{name: "ut_metadata data contradicting itself", asked: true, hostile: afterExt(size, message(t, wire.Message{ID: wire.Extended, ExtendedID: ourMetadataID,
			Payload: []byte("d8:msg_typei1e5:piecei0e10:total_sizei5eetoo long for five bytes")}))},
		{name: "silent after the handshake", hostile: raw(nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := listenFake(t, "127.0.0.21", mi.InfoHash, tc.hostile)
			if tc.name == "no extension bit" {
				bad.noExtensions = true
			}
			good := listenFake(t, "127.0.0.20", mi.InfoHash, honest(mi.InfoBytes, nil))
			gate := make(chan struct{})
			never := tc.banned || tc.useless
			go func() {
				select {
				case <-bad.ended:
				case <-t.Context().Done():
					return
				}
				if never {
					select {
					case <-time.After(settle):
					case <-t.Context().Done():
						return
					}
				}
				close(gate)
			}()
			// The finder offers the hostile address again with the honest one.
			finder := &fakeFinder{addrs: []netip.AddrPort{bad.addr, good.addr}, gate: gate}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res, err := Fetch(ctx, Config{
				InfoHash:         mi.InfoHash,
				Peers:            []netip.AddrPort{bad.addr},
				Finder:           finder,
				HandshakeTimeout: 2 * time.Second,
				Logger:           testLogger(t),
			})
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			checkResult(t, res, mi)
			if n := bad.accepted.Load(); never && n != 1 {
				t.Errorf("hostile peer was dialled %d times, want 1", n)
			}
			if n := bad.requests.Load(); !tc.asked && n != 0 {
				t.Errorf("hostile peer was sent %d requests, want none", n)
			} else if tc.asked && n == 0 {
				t.Error("hostile peer was never asked: the case tests nothing")
			}
			if got := slices.Contains(res.Peers, bad.addr); got == tc.banned {
				t.Errorf("hostile peer in Result.Peers: %v, want %v (banned: %v)", got, !tc.banned, tc.banned)
			}
			if !slices.Contains(res.Peers, good.addr) {
				t.Errorf("honest peer not in Result.Peers %v", res.Peers)
			}
		})
	}
}

// TestNobodyHasIt: with no peer able to help, Fetch ends with the
// context's error, saying what it tried.
func TestNobodyHasIt(t *testing.T) {
	_, _, mi := makeTorrent(t, singlePiece)
	empty := listenFake(t, "127.0.0.22", mi.InfoHash, claims(0, nil)) // a magnet leecher: no metadata_size
	closed := netip.MustParseAddrPort("127.0.0.23:1")                 // nothing listens on port 1
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	finder := &fakeFinder{}
	res, err := Fetch(ctx, Config{
		InfoHash: mi.InfoHash,
		Peers:    []netip.AddrPort{empty.addr, closed},
		Trackers: [][]string{{"http://127.0.0.1:1/announce"}},
		Finder:   finder,
		Logger:   testLogger(t),
	})
	if err == nil {
		t.Fatalf("Fetch succeeded with %d bytes", len(res.Info))
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v does not wrap context.DeadlineExceeded", err)
	}
	msg := err.Error()
	for _, want := range []string{"2 peer addresses known", "given 2", "1 handshaken", "0 offered metadata", "0 banned", "last tracker error", "127.0.0.1:1", "DHT lookups"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
	t.Log(msg)
	if empty.requests.Load() != 0 {
		t.Error("a peer without metadata was asked for it")
	}
}

// TestBadInfo: a dictionary that hashes to the info-hash but is no valid
// info dictionary is the user's error, ErrBadInfo.
func TestBadInfo(t *testing.T) {
	bogus := []byte("d4:name3:abce") // no pieces, no length
	ih := metainfo.Hash(sha1.Sum(bogus))
	p := listenFake(t, "127.0.0.24", ih, honest(bogus, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := Fetch(ctx, Config{InfoHash: ih, Peers: []netip.AddrPort{p.addr}, Logger: testLogger(t)})
	if !errors.Is(err, ErrBadInfo) {
		t.Fatalf("Fetch: %v, want ErrBadInfo", err)
	}
}

// TestRejectsRequests: a peer that asks us for metadata gets BEP 9's
// reject (we have none), under the ID it chose, and still serves us.
func TestRejectsRequests(t *testing.T) {
	_, _, mi := makeTorrent(t, singlePiece)
	rejected := make(chan int, 1)
	srv := metadata.NewServer(mi.InfoBytes)
	p := listenFake(t, "127.0.0.25", mi.InfoHash, func(c *fakeConn) error {
		if err := c.sendExtHandshake(srv.Size()); err != nil {
			return err
		}
		payload, err := wire.EncodeMetadataMsg(wire.MetadataMsg{Type: wire.MetadataRequest, Piece: 0})
		if err != nil {
			return err
		}
		if err := c.send(wire.Message{ID: wire.Extended, ExtendedID: ourMetadataID, Payload: payload}); err != nil {
			return err
		}
		// Fetch's requests are answered only once its reject is in, so
		// that the fetch cannot end before.
		var pending []int
		gotReject := false
		answer := func(piece int) error {
			payload, err := wire.EncodeMetadataMsg(srv.Answer(piece))
			if err != nil {
				return err
			}
			return c.send(wire.Message{ID: wire.Extended, ExtendedID: ourMetadataID, Payload: payload})
		}
		for {
			m, err := c.r.ReadMessage()
			if err != nil {
				return err
			}
			if m.ID != wire.Extended || m.ExtendedID != fakeMetaID {
				continue
			}
			mm, err := wire.ParseMetadataMsg(m.Payload, 0)
			if err != nil {
				return err
			}
			switch {
			case mm.Type == wire.MetadataReject && !gotReject:
				gotReject = true
				rejected <- mm.Piece
				for _, i := range pending {
					if err := answer(i); err != nil {
						return err
					}
				}
			case mm.Type == wire.MetadataRequest && !gotReject:
				pending = append(pending, mm.Piece)
			case mm.Type == wire.MetadataRequest:
				if err := answer(mm.Piece); err != nil {
					return err
				}
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := Fetch(ctx, Config{InfoHash: mi.InfoHash, Peers: []netip.AddrPort{p.addr}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, res, mi)
	select {
	case piece := <-rejected:
		if piece != 0 {
			t.Errorf("reject of piece %d, want 0", piece)
		}
	default:
		t.Error("our request was never rejected")
	}
}
