package swarmtest

import (
	"bytes"
	"context"
	"crypto/sha1"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"btfs/bitfield"
	"btfs/engine/tracker"
	"btfs/engine/wire"
	"btfs/internal/leakcheck"
	"btfs/metainfo"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// recorder is a testing.TB whose Skipf and Fatalf only record and end the
// calling goroutine, as the real ones do.
type recorder struct {
	// TB is the real test, for everything not overridden.
	testing.TB
	// skipped and failed hold the Skipf and Fatalf messages.
	skipped, failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Skipf(format string, args ...any) {
	r.skipped = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func runRequire(t *testing.T, binaries ...string) *recorder {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() { defer close(done); Require(r, binaries...) }()
	<-done
	return r
}

func TestRequire(t *testing.T) {
	const missing = "btfs-swarmtest-no-such-binary"
	for _, tc := range []struct {
		name, env string
		bins      []string
		skip, die bool
	}{
		{"present", "", []string{"sh"}, false, false},
		{"present, required", "1", []string{"sh"}, false, false},
		{"missing skips", "", []string{"sh", missing}, true, false},
		{"missing with another value skips", "0", []string{missing}, true, false},
		{"missing, required, fails", "1", []string{missing, "sh"}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(RequireEnv, tc.env)
			r := runRequire(t, tc.bins...)
			if (r.skipped != "") != tc.skip || (r.failed != "") != tc.die {
				t.Fatalf("skipped %q, failed %q; want skip %v, fail %v", r.skipped, r.failed, tc.skip, tc.die)
			}
			if msg := r.skipped + r.failed; (tc.skip || tc.die) && !strings.Contains(msg, missing) {
				t.Fatalf("message %q does not name the missing binary", msg)
			}
		})
	}
}

func TestMakeTorrent(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts TorrentOptions
	}{
		{"single file", TorrentOptions{Seed: 1}},
		{"multi-file", TorrentOptions{Seed: 1, Files: MultiFile, PieceLength: 64 << 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path, mi := MakeTorrent(t, dir, tc.opts)
			loaded, err := metainfo.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if loaded.InfoHash != mi.InfoHash {
				t.Fatalf("file's info-hash %s, returned %s", loaded.InfoHash, mi.InfoHash)
			}
			if mi.Info.MultiFile != (len(tc.opts.Files) > 0) {
				t.Fatalf("MultiFile = %v", mi.Info.MultiFile)
			}
			// The content on disk is what the pieces describe.
			var readers []io.Reader
			var closers []io.Closer
			for _, f := range mi.Info.Files {
				p := filepath.Join(append([]string{dir, mi.Info.Name}, f.Path...)...)
				if !mi.Info.MultiFile {
					p = filepath.Join(dir, mi.Info.Name)
				}
				fh, err := os.Open(p)
				if err != nil {
					t.Fatal(err)
				}
				readers, closers = append(readers, fh), append(closers, fh)
			}
			defer func() {
				for _, c := range closers {
					c.Close()
				}
			}()
			all := io.MultiReader(readers...)
			for i := range mi.Info.NumPieces() {
				piece := make([]byte, mi.Info.PieceLen(i))
				if _, err := io.ReadFull(all, piece); err != nil {
					t.Fatalf("piece %d: %v", i, err)
				}
				if sha1.Sum(piece) != mi.Info.Pieces[i] {
					t.Fatalf("piece %d does not match its hash", i)
				}
			}
			if n, _ := io.Copy(io.Discard, all); n != 0 {
				t.Fatalf("%d bytes beyond the last piece", n)
			}
			// Deterministic: the same seed makes the same torrent, another
			// seed another.
			_, again := MakeTorrent(t, t.TempDir(), tc.opts)
			other := tc.opts
			other.Seed++
			_, different := MakeTorrent(t, t.TempDir(), other)
			if again.InfoHash != mi.InfoHash || different.InfoHash == mi.InfoHash {
				t.Fatalf("info-hashes: %s, same seed %s, other seed %s", mi.InfoHash, again.InfoHash, different.InfoHash)
			}
		})
	}
}

func TestTrackerStartsAndAnswers(t *testing.T) {
	var ih, late metainfo.Hash
	copy(ih[:], "swarmtest-tracker-01")
	copy(late[:], "swarmtest-tracker-02")
	tr := StartTracker(t, ih)
	c := tracker.NewClient(tracker.Options{UDP: tracker.UDPOptions{RetransmitBase: 500 * time.Millisecond}})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), Guard)
	defer cancel()
	for _, url := range []string{tr.HTTPURL(), tr.UDPURL()} {
		req := tracker.AnnounceRequest{InfoHash: ih, Port: 6881, Left: 1}
		copy(req.PeerID[:], "-SWARMTEST-answers--")
		if _, err := c.Announce(ctx, url, req); err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		req.Event = tracker.EventStopped
		if _, err := c.Announce(ctx, url, req); err != nil {
			t.Fatalf("%s: %v", url, err)
		}
	}
	// Not whitelisted yet: refused; after AddInfoHash: accepted.
	if _, err := tr.Peers(ctx, late); err == nil || !strings.Contains(err.Error(), "not authorized") {
		t.Fatalf("announce for a hash off the whitelist: %v, want a refusal", err)
	}
	tr.AddInfoHash(t, late)
	if _, err := tr.Peers(ctx, late); err != nil {
		t.Fatalf("after AddInfoHash: %v", err)
	}
	if _, err := tr.Peers(ctx, ih); err != nil {
		t.Fatalf("the first hash after AddInfoHash: %v", err)
	}
}

func TestAria2SeederRegisters(t *testing.T) {
	dir := t.TempDir()
	tr := StartTracker(t) // the torrent's hash is known only once it is made
	path, mi := MakeTorrent(t, dir, TorrentOptions{Seed: 2, AnnounceList: [][]string{{tr.HTTPURL()}}})
	tr.AddInfoHash(t, mi.InfoHash)
	s := StartAria2Seeder(t, path, dir, "127.0.0.2")
	if s.Addr().Addr().String() != "127.0.0.2" {
		t.Fatalf("seeder address %v", s.Addr())
	}
	tr.WaitForPeer(t, mi.InfoHash, s.Addr())
	conn, err := net.DialTimeout("tcp", s.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatalf("seeder does not accept connections: %v", err)
	}
	conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), Guard)
	defer cancel()
	if n, err := s.UploadLength(ctx); err != nil || n != 0 {
		t.Fatalf("UploadLength before any leecher = %d, %v; want 0", n, err)
	}
	s.Stop()
	if conn, err := net.DialTimeout("tcp", s.Addr().String(), 5*time.Second); err == nil {
		conn.Close()
		t.Fatal("seeder still accepts connections after Stop")
	}
}

func TestAria2LeecherDownloadsFromSeeder(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts TorrentOptions
	}{
		{"single file", TorrentOptions{Seed: 3}},
		{"multi-file", TorrentOptions{Seed: 4, Files: MultiFile, PieceLength: 64 << 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seedDir, leechDir := t.TempDir(), t.TempDir()
			tr := StartTracker(t)
			tc.opts.AnnounceList = [][]string{{tr.HTTPURL()}}
			path, mi := MakeTorrent(t, seedDir, tc.opts)
			tr.AddInfoHash(t, mi.InfoHash)
			s := StartAria2Seeder(t, path, seedDir, "127.0.0.2")
			tr.WaitForPeer(t, mi.InfoHash, s.Addr())
			l := StartAria2Leecher(t, path, leechDir, "127.0.0.3")
			ctx, cancel := context.WithTimeout(context.Background(), 2*Guard)
			defer cancel()
			if err := l.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			for _, f := range mi.Info.Files {
				rel := filepath.Join(f.Path...)
				if mi.Info.MultiFile {
					rel = filepath.Join(mi.Info.Name, rel)
				}
				want, err := os.ReadFile(filepath.Join(seedDir, rel))
				if err != nil {
					t.Fatal(err)
				}
				got, err := os.ReadFile(filepath.Join(leechDir, rel))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("%s: leecher's copy differs", rel)
				}
			}
			up, err := s.UploadLength(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if up < mi.Info.TotalLength {
				t.Fatalf("seeder uploaded %d bytes of %d", up, mi.Info.TotalLength)
			}
			if slices.Contains([]int{s.PID(), l.PID()}, 0) {
				t.Fatal("a PID is 0")
			}
		})
	}
}

func TestTransmissionSeederServes(t *testing.T) {
	dir := t.TempDir()
	tr := StartTracker(t)
	path, mi := MakeTorrent(t, dir, TorrentOptions{Seed: 5, Files: MultiFile, PieceLength: 32 << 10, AnnounceList: [][]string{{tr.HTTPURL()}}})
	tr.AddInfoHash(t, mi.InfoHash)
	s := StartTransmissionSeeder(t, path, dir, "127.0.0.3")
	if s.Addr().Addr().String() != "127.0.0.3" || s.PID() == 0 {
		t.Fatalf("seeder address %v, PID %d", s.Addr(), s.PID())
	}
	tr.WaitForPeer(t, mi.InfoHash, s.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), Guard)
	defer cancel()
	if sc, err := tr.Scrape(ctx, mi.InfoHash); err != nil || sc.Seeders != 1 {
		t.Fatalf("scrape = %+v, %v; want the seeder counted", sc, err)
	}

	// It verified the data: its first word about pieces says it has them all.
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", s.Addr().String())
	if err != nil {
		t.Fatalf("seeder does not accept connections: %v", err)
	}
	defer conn.Close()
	ours := wire.Handshake{InfoHash: mi.InfoHash, PeerID: wire.NewPeerID()}
	ours.Reserved.SetFast()
	if _, err := wire.Initiate(ctx, conn, ours); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	conn.SetReadDeadline(time.Now().Add(Guard))
	r := wire.NewReader(conn, wire.Limits{NumPieces: mi.Info.NumPieces()})
	for {
		m, err := r.ReadMessage()
		if err != nil {
			t.Fatalf("before its pieces: %v", err)
		}
		if m.KeepAlive {
			continue
		}
		if m.ID == wire.HaveAll {
			break
		}
		if m.ID == wire.Bitfield {
			bf, err := bitfield.FromBytes(m.Bitfield, mi.Info.NumPieces())
			if err != nil || bf.Count() != mi.Info.NumPieces() {
				t.Fatalf("bitfield: %v, %v pieces of %d", err, bf, mi.Info.NumPieces())
			}
			break
		}
		if m.ID == wire.HaveNone {
			t.Fatal("seeder says it has no piece")
		}
	}
	s.Stop()
	if conn, err := net.DialTimeout("tcp", s.Addr().String(), 5*time.Second); err == nil {
		conn.Close()
		t.Fatal("seeder still accepts connections after Stop")
	}
}
