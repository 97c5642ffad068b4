package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	iofs "io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"btfs/dht"
	"btfs/engine/wire"
	"btfs/internal/poll"
	"btfs/internal/swarmtest"
	"btfs/metainfo"
)

// magnetOf is the magnet link of mi with the given trackers and x.pe peers.
func magnetOf(mi *metainfo.MetaInfo, trackers []string, peers ...netip.AddrPort) string {
	m := &metainfo.Magnet{InfoHash: mi.InfoHash, DisplayName: mi.Info.Name, Trackers: trackers}
	for _, p := range peers {
		m.Peers = append(m.Peers, p.String())
	}
	return m.String()
}

// checkAllFiles reads every file of s through the mount at mp and compares
// it with the seeder's copy, then runs fstest over the tree.
func checkAllFiles(t *testing.T, s testSwarm, mp string) {
	t.Helper()
	var names []string
	for _, f := range s.mi.Info.Files {
		got, err := os.ReadFile(s.mounted(mp, f))
		if err != nil {
			t.Fatal(err)
		}

		if !bytes.Equal(got, s.source(t, f)) {
			t.Fatalf("%s differs from the source", filepath.Join(f.Path...))
		}
		names = append(names, filepath.Join(f.Path...))
	}
	if !s.mi.Info.MultiFile {
		names = []string{s.mi.Info.Name}
	}
	// The tree holds exactly the torrent's files (fstest.TestFS would
	// also do, but it reads MiB files byte by byte: half a minute here).
	var listed []string
	err := iofs.WalkDir(os.DirFS(mp), ".", func(p string, d iofs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			listed = append(listed, filepath.FromSlash(p))
		}
		return err
	})
	slices.Sort(names)
	if err != nil || !slices.Equal(listed, names) {
		t.Fatalf("the mount lists %q (%v), want %q", listed, err, names)
	}
}

// TestMountMagnetTracker: aria2c seeds; btfs mounts a magnet link whose only
// source is its tr= (opentracker) and reads every file correctly. A second
// mount of the same link, with the seeder gone and no tracker, shows the
// files from the metadata the first one cached (and reads them from the
// cached pieces).
func TestMountMagnetTracker(t *testing.T) {
	swarmtest.Require(t, "opentracker", "aria2c", "fusermount3")
	opts := swarmtest.TorrentOptions{Files: swarmtest.MultiFile, PieceLength: 64 << 10, Seed: 61}
	_, probe := swarmtest.MakeTorrent(t, t.TempDir(), opts)
	tr := swarmtest.StartTracker(t, probe.InfoHash)
	dir := t.TempDir()
	opts.AnnounceList = [][]string{{tr.HTTPURL()}} // for aria2c; btfs sees only the link
	torrentPath, mi := swarmtest.MakeTorrent(t, dir, opts)
	seeder := swarmtest.StartAria2Seeder(t, torrentPath, dir, "127.0.0.2")
	tr.WaitForPeer(t, mi.InfoHash, seeder.Addr())
	s := testSwarm{dir: dir, torrentPath: torrentPath, mi: mi}
	link := magnetOf(mi, []string{tr.HTTPURL()})

	cacheDir := t.TempDir()
	mp := mountpoint(t)
	p := startBtfs(t, "mount", "-listen", "127.0.0.1:0", "-cache-dir", cacheDir, "-log-level", "debug", link, mp)
	waitMounted(t, p, mp)
	checkAllFiles(t, s, mp)
	p.stop(t)
	seeder.Stop()

	mp2 := mountpoint(t)
	p2 := startBtfs(t, "mount", "-listen", "127.0.0.1:0", "-cache-dir", cacheDir, "-no-trackers", "-log-level", "debug", link, mp2)
	waitMounted(t, p2, mp2)
	checkAllFiles(t, s, mp2)
	if out := p2.out.String(); !strings.Contains(out, "metadata from the cache") || strings.Contains(out, "fetching metadata") {
		t.Errorf("the second mount did not take the metadata from the cache:\n%s", out)
	}
}

// TestMountMagnetDHT: a magnet link without trackers resolves through a
// private DHT of three nodes on 127.0.0.1, into which the aria2c seeder
// announced itself, and every file reads correctly.
func TestMountMagnetDHT(t *testing.T) {
	swarmtest.Require(t, "aria2c", "fusermount3")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var nodes []*dht.Node
	for i := range 3 {
		cfg := dht.Config{Addr: "127.0.0.1:0"}
		for _, n := range nodes {
			cfg.Bootstrap = append(cfg.Bootstrap, n.Addr().String())
		}
		n, err := dht.Start(ctx, cfg)
		if err != nil {
			t.Fatalf("dht node %d: %v", i, err)
		}
		t.Cleanup(func() { n.Close() })
		nodes = append(nodes, n)
	}
	dir := t.TempDir()
	torrentPath, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Files: swarmtest.MultiFile, PieceLength: 64 << 10, Seed: 62})
	seeder := swarmtest.StartAria2SeederDHT(t, torrentPath, dir, "127.0.0.2", nodes[0].Addr())
	start := time.Now()
	waitDHTPeer(t, nodes[2], mi.InfoHash, seeder.Addr())
	t.Logf("%v: the seeder is in the DHT", time.Since(start))

	// btfs joins through every node of the private DHT. Through one alone
	// its lookup often went no further: the library answers find_node and
	// get_peers only with nodes from the target's bucket and farther ones
	// (its table.closestNodes walks down from the target's bucket), so in
	// a network of three a node may name none of the others, and btfs
	// looked again only after 30 s (then engine/magnet's lookupEvery; the
	// engine's lookupMinGap, a minute, now): passing runs
	// took 40 or 70 s, and some never got the metadata.
	args := []string{"mount", "-listen", "127.0.0.1:0", "-cache-dir", t.TempDir(), "-no-trackers", "-read-timeout", "60s", "-log-level", "debug"}
	for _, n := range nodes {
		args = append(args, "-dht-bootstrap", n.Addr().String())
	}
	mp := mountpoint(t)
	p := startBtfs(t, append(args, magnetOf(mi, nil), mp)...)
	waitMounted(t, p, mp)
	t.Logf("%v: mounted with the metadata", time.Since(start))
	checkAllFiles(t, testSwarm{dir: dir, torrentPath: torrentPath, mi: mi}, mp)
	t.Logf("%v: every file read", time.Since(start))
}

// waitDHTPeer waits until a lookup from n finds want for ih: the seeder's
// announce has reached the DHT.
func waitDHTPeer(t *testing.T, n *dht.Node, ih metainfo.Hash, want netip.AddrPort) {
	t.Helper()
	poll.Until(t, 90*time.Second, fmt.Sprintf("the seeder %s to appear in the DHT for %s", want, ih), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var found atomic.Bool
		n.FindPeers(ctx, ih, 0, func(addrs []netip.AddrPort) {
			for _, a := range addrs {
				if a.Addr() == want.Addr() {
					found.Store(true)
				}
			}
		})
		return found.Load()
	})
}

// hostilePeer is a peer that speaks the handshake and the extension
// handshake, and lies about the metadata: an absurd metadata_size, or the
// right size with bytes that are not the info dictionary.
type hostilePeer struct {
	ln   net.Listener
	size int64 // the metadata_size it announces
	// asked counts the ut_metadata requests it received; conns the
	// connections it accepted.
	asked, conns atomic.Int64
	// stop ends every connection at the end of the test.
	stop chan struct{}
	wg   sync.WaitGroup
}

func startHostilePeer(t *testing.T, ip string, ih metainfo.Hash, size int64) *hostilePeer {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	h := &hostilePeer{ln: ln, size: size, stop: make(chan struct{})}
	ours := wire.Handshake{InfoHash: ih, PeerID: wire.NewPeerID()}
	ours.Reserved.SetExtensions()
	h.wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			h.conns.Add(1)
			h.wg.Go(func() { h.serve(conn, ours) })
		}
	})
	t.Cleanup(func() { ln.Close(); close(h.stop); h.wg.Wait() })
	return h
}

func (h *hostilePeer) addr() netip.AddrPort { return netip.MustParseAddrPort(h.ln.Addr().String()) }

// serve lies to one connection until it is closed (by btfs, or at the
// end of the test).
func (h *hostilePeer) serve(conn net.Conn, ours wire.Handshake) {
	defer conn.Close()
	served := make(chan struct{})
	defer close(served)
	go func() {
		select {
		case <-h.stop:
			conn.Close()
		case <-served:
		}
	}()
	ctx := context.Background()
	if _, _, err := wire.Accept(ctx, conn, func(metainfo.Hash) (wire.Handshake, bool) { return ours, true }); err != nil {
		return
	}
	w := wire.NewWriter(conn)
	const ourMetadataID = 3
	hs, _ := wire.ExtHandshake{M: map[string]int{wire.ExtMetadata: ourMetadataID}, MetadataSize: h.size}.Encode()
	if h.size > wire.DefaultMaxMetadataSize {
		// Encode is honest; the lie is written by hand.
		hs = []byte("d1:md11:ut_metadatai3ee13:metadata_sizei" + strconv.FormatInt(h.size, 10) + "ee")
	}
	if w.WriteMessage(wire.Message{ID: wire.Extended, ExtendedID: 0, Payload: hs}) != nil || w.Flush() != nil {
		return
	}
	r := wire.NewReader(conn, wire.Limits{})
	theirID := 0
	for {
		m, err := r.ReadMessage()
		if err != nil {
			return
		}
		if m.ID != wire.Extended {
			continue
		}
		if m.ExtendedID == 0 {
			if eh, err := wire.ParseExtHandshake(m.Payload, 0); err == nil {
				theirID = eh.M[wire.ExtMetadata]
			}
			continue
		}
		req, err := wire.ParseMetadataMsg(m.Payload, 0)
		if err != nil || req.Type != wire.MetadataRequest || theirID == 0 {
			continue
		}
		h.asked.Add(1)
		junk := make([]byte, wire.MetadataPieceLen(h.size, req.Piece))
		rand.Read(junk)
		payload, err := wire.EncodeMetadataMsg(wire.MetadataMsg{Type: wire.MetadataData, Piece: req.Piece, TotalSize: h.size, Data: junk})
		if err != nil {
			return
		}
		if w.WriteMessage(wire.Message{ID: wire.Extended, ExtendedID: uint8(theirID), Payload: payload}) != nil || w.Flush() != nil {
			return
		}
	}
}

// TestMountMagnetHostileMetadata: two liars — one announcing a
// metadata_size of 10^9, one sending bytes that do not hash to the
// info-hash — and an honest aria2c seeder, all in the link's x.pe. The
// mount succeeds from the honest one and reads correctly; the liar of
// size is never asked, the liar of bytes is cut off.
func TestMountMagnetHostileMetadata(t *testing.T) {
	swarmtest.Require(t, "aria2c", "fusermount3")
	dir := t.TempDir()
	torrentPath, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Files: swarmtest.MultiFile, PieceLength: 64 << 10, Seed: 63})
	seeder := swarmtest.StartAria2Seeder(t, torrentPath, dir, "127.0.0.2")
	huge := startHostilePeer(t, "127.0.0.3", mi.InfoHash, 1_000_000_000)
	liar := startHostilePeer(t, "127.0.0.4", mi.InfoHash, int64(len(mi.InfoBytes)))

	mp := mountpoint(t)
	p := startBtfs(t, "mount", "-listen", "127.0.0.1:0", "-cache-dir", t.TempDir(), "-no-trackers", "-log-level", "debug",
		magnetOf(mi, nil, huge.addr(), liar.addr(), seeder.Addr()), mp)
	waitMounted(t, p, mp)
	checkAllFiles(t, testSwarm{dir: dir, torrentPath: torrentPath, mi: mi}, mp)
	if n := huge.asked.Load(); n != 0 {
		t.Errorf("the peer that announced metadata_size 10^9 was asked %d times", n)
	}
	t.Logf("liar: %d connections, asked %d times", liar.conns.Load(), liar.asked.Load())
}

// TestMountBrowseOnly: -browse-only lists the files with their sizes and
// fails a read at once (EIO) instead of fetching: of a torrent file, and of
// a magnet link, whose engine fetches the metadata only and then stops
// (the seeder uploads no piece).
func TestMountBrowseOnly(t *testing.T) {
	for _, magnet := range []bool{false, true} {
		t.Run(map[bool]string{false: "torrent", true: "magnet"}[magnet], func(t *testing.T) {
			swarmtest.Require(t, "fusermount3")
			dir := t.TempDir()
			torrentPath, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Files: swarmtest.MultiFile, PieceLength: 64 << 10, Seed: 64})
			s := testSwarm{dir: dir, torrentPath: torrentPath, mi: mi}
			arg := torrentPath
			var seeder *swarmtest.Seeder
			if magnet {
				swarmtest.Require(t, "aria2c")
				seeder = swarmtest.StartAria2Seeder(t, torrentPath, dir, "127.0.0.2")
				arg = magnetOf(mi, nil, seeder.Addr())
			}
			mp := mountpoint(t)
			p := startBtfs(t, "mount", "-browse-only", "-listen", "127.0.0.1:0", "-cache-dir", t.TempDir(), "-no-trackers", arg, mp)
			waitMounted(t, p, mp)
			for _, f := range mi.Info.Files {
				var fi os.FileInfo
				poll.UntilNil(t, time.Minute, "the file listed", func() (err error) {
					fi, err = os.Stat(s.mounted(mp, f))
					return err
				})
				if fi.Size() != f.Length {
					t.Fatalf("%s: size %d, want %d", filepath.Join(f.Path...), fi.Size(), f.Length)
				}
				if f.Length == 0 {
					continue
				}
				if _, err := os.ReadFile(s.mounted(mp, f)); !errors.Is(err, syscall.EIO) {
					t.Errorf("reading %s with -browse-only: %v, want EIO", filepath.Join(f.Path...), err)
				}
			}
			if seeder != nil {
				if n, err := seeder.UploadLength(context.Background()); err != nil || n != 0 {
					t.Errorf("the seeder uploaded %d bytes (%v), want none", n, err)
				}
			}
		})
	}
}

// TestGetMagnet: btfs get downloads a magnet link's files, its only source
// the link's x.pe (an aria2c seeder).
func TestGetMagnet(t *testing.T) {
	swarmtest.Require(t, "aria2c")
	dir := t.TempDir()
	torrentPath, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Files: swarmtest.MultiFile, PieceLength: 64 << 10, Seed: 65})
	seeder := swarmtest.StartAria2Seeder(t, torrentPath, dir, "127.0.0.2")
	s := testSwarm{dir: dir, torrentPath: torrentPath, mi: mi}
	out := t.TempDir()
	p := startBtfs(t, "get", "-listen", "127.0.0.1:0", "-no-trackers", magnetOf(mi, nil, seeder.Addr()), out)
	if err := p.wait(t, 2*time.Minute); err != nil {
		t.Fatalf("btfs get: %v\n%s", err, p.out.String())
	}
	for _, f := range mi.Info.Files {
		got, err := os.ReadFile(filepath.Join(append([]string{out, mi.Info.Name}, f.Path...)...))
		if err != nil || !bytes.Equal(got, s.source(t, f)) {
			t.Fatalf("%s: %d bytes, %v: not the source", filepath.Join(f.Path...), len(got), err)
		}
	}
}

// TestGetLearnsPeersByPex: the btfs binary, told of one libtorrent seeder
// only (no tracker), learns the other from its PEX message and downloads
// from both. btfs does not listen, so the second seeder cannot find it on
// its own (engine/pex_interop_test.go explains the setup).
func TestGetLearnsPeersByPex(t *testing.T) {
	swarmtest.RequireLibtorrent(t)
	dir := t.TempDir()
	torrentPath, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Size: 4 << 20, PieceLength: 32 << 10, Seed: 66})
	l1, l2 := swarmtest.StartLibtorrentPair(t, torrentPath, dir)
	out := t.TempDir()
	p := startBtfs(t, "get", "-listen", "", "-no-trackers", "-peer", l1.Addr().String(), "-max-download-rate", "512KB",
		"-log-level", "debug", torrentPath, out)
	if err := p.wait(t, 2*time.Minute); err != nil {
		t.Fatalf("btfs get: %v\n%s", err, p.out.String())
	}
	got, err := os.ReadFile(filepath.Join(out, mi.Info.Name))
	if want := (testSwarm{dir: dir, mi: mi}).source(t, mi.Info.Files[0]); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("downloaded %d bytes, %v: not the source", len(got), err)
	}
	if !strings.Contains(p.out.String(), "source=pex") {
		t.Errorf("btfs learned no address by PEX:\n%s", p.out.String())
	}
	// libtorrent's counters lag its uploads a little.
	poll.UntilNil(t, 5*time.Second, "both seeders to count an upload to btfs", func() error {
		up1, _ := l1.Uploaded()
		up2, _ := l2.Uploaded()
		if up1 == 0 || up2 == 0 {
			return fmt.Errorf("uploaded to btfs: L1 %d bytes, L2 %d bytes; want both", up1, up2)
		}
		return nil
	})
}
