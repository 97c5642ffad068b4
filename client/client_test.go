package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"btfs/engine/transport"
	"btfs/internal/leakcheck"
	"btfs/internal/swarmtest"
	"btfs/metainfo"
	"btfs/picker"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// seedClient is a Client that seeds the torrents under dir on one port.
func seedClient(t *testing.T, policy transport.Policy, dir string, mis ...*metainfo.MetaInfo) *Client {
	t.Helper()
	c, err := New(context.Background(), Config{Listen: "127.0.0.1:0", Trackers: [][]string{}, Policy: policy})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	for _, mi := range mis {
		tor, err := c.Add(context.Background(), Source{MetaInfo: mi}, AddOptions{FilesDir: dir, ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		waitRunning(t, tor)
	}
	return c
}

func waitRunning(t *testing.T, tor *Torrent) {
	t.Helper()
	select {
	case <-tor.Running():
	case <-tor.Done():
		t.Fatalf("%s stopped: %v", tor.Name(), tor.Err())
	case <-time.After(time.Minute):
		t.Fatalf("%s not running after a minute", tor.Name())
	}
}

// TestOneListenerManyTorrents: a client seeds three torrents on one port;
// another client downloads all three from that one address, plain and
// encrypted (MSE's SKEY names the torrent among all the seeder serves),
// into its cache; a torrent removed at runtime stops being served, and an
// unknown info-hash is refused.
func TestOneListenerManyTorrents(t *testing.T) {
	for _, policy := range []transport.Policy{transport.Off, transport.Require} {
		t.Run(policy.String(), func(t *testing.T) {
			dir := t.TempDir()
			var mis []*metainfo.MetaInfo
			for i := range 3 {
				_, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Name: fmt.Sprintf("t%d.bin", i), Size: 100<<10 + int64(i), PieceLength: 16 << 10, Seed: uint64(300 + i)})
				mis = append(mis, mi)
			}
			seeder := seedClient(t, policy, dir, mis...)
			leecher, err := New(context.Background(), Config{
				CacheDir: t.TempDir(), Listen: "127.0.0.1:0", Trackers: [][]string{}, Policy: policy,
				Peers: []netip.AddrPort{seeder.ListenAddr()}, Mode: picker.FetchAll,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer leecher.Close()
			for _, mi := range mis {
				tor, err := leecher.Add(context.Background(), Source{MetaInfo: mi}, AddOptions{})
				if err != nil {
					t.Fatal(err)
				}
				waitRunning(t, tor)
				select {
				case <-tor.Engine().Complete():
				case <-time.After(time.Minute):
					t.Fatalf("%s incomplete after a minute", mi.Info.Name)
				}
				want, err := os.ReadFile(filepath.Join(dir, mi.Info.Name))
				if err != nil {
					t.Fatal(err)
				}
				got := make([]byte, len(want))
				if _, err := tor.Data().ReadAt(context.Background(), got, 0); err != nil || !bytes.Equal(got, want) {
					t.Fatalf("%s: read %v, same bytes %v", mi.Info.Name, err, bytes.Equal(got, want))
				}
			}
			if got := len(leecher.List()); got != 3 {
				t.Errorf("List: %d torrents", got)
			}
			if _, err := leecher.Add(context.Background(), Source{MetaInfo: mis[0]}, AddOptions{}); !errors.Is(err, ErrExists) {
				t.Errorf("adding a torrent twice: %v", err)
			}

			// Removed from the seeder: a new leecher of it finds nobody.
			if err := seeder.Remove(context.Background(), mis[1].InfoHash); err != nil {
				t.Fatal(err)
			}
			if err := seeder.Remove(context.Background(), mis[1].InfoHash); !errors.Is(err, ErrUnknown) {
				t.Errorf("removing twice: %v", err)
			}
			other, err := New(context.Background(), Config{CacheDir: t.TempDir(), Trackers: [][]string{}, Policy: policy, Peers: []netip.AddrPort{seeder.ListenAddr()}})
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			gone, err := other.Add(context.Background(), Source{MetaInfo: mis[1]}, AddOptions{})
			if err != nil {
				t.Fatal(err)
			}
			kept, err := other.Add(context.Background(), Source{MetaInfo: mis[2]}, AddOptions{})
			if err != nil {
				t.Fatal(err)
			}
			waitRunning(t, kept)
			waitRunning(t, gone)
			select {
			case <-kept.Engine().Complete():
			case <-time.After(time.Minute):
				t.Fatal("the torrent still served is incomplete after a minute")
			}
			// Both dialled the seeder's one address at the same time: the
			// served one is complete, the removed one got nothing.
			if st, err := gone.Engine().Stats(context.Background()); err != nil || st.Peers != 0 || st.VerifiedBytes != 0 {
				t.Errorf("the torrent removed from the seeder: %d peers, %d bytes verified, %v", st.Peers, st.VerifiedBytes, err)
			}
		})
	}
}

// TestCloseStopsEverything: a Client with a torrent waiting for its
// metadata (a magnet link nobody serves) closes at once, leak-free (the
// package's TestMain checks the goroutines).
func TestCloseStopsEverything(t *testing.T) {
	c, err := New(context.Background(), Config{CacheDir: t.TempDir(), Listen: "127.0.0.1:0", UTP: true, Trackers: [][]string{}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := metainfo.ParseMagnet("magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567&dn=nobody")
	if err != nil {
		t.Fatal(err)
	}
	tor, err := c.Add(context.Background(), Source{Magnet: m}, AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if tor.Name() != "nobody" || tor.MetaInfo() != nil {
		t.Errorf("a magnet before its metadata: name %q, metainfo %v", tor.Name(), tor.MetaInfo())
	}
	if st, _ := tor.Stats(context.Background()); st.State != "metadata" {
		t.Errorf("state %q, want metadata", st.State)
	}
	done := make(chan struct{})
	go func() { c.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Close still waits after 30 s")
	}
	if _, err := c.Add(context.Background(), Source{Magnet: m}, AddOptions{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Add after Close: %v", err)
	}
}

// TestMagnetAcceptsDuringMetadata: a magnet link that knows no peer, no
// tracker and no DHT gets its metadata, then its data, from a seeder that
// dials it: the client's listener hands the incoming connection (plain,
// or MSE, whose SKEY must find the magnet's info-hash) to the torrent's
// engine while it has no info yet, and that one connection goes on into
// the download.
func TestMagnetAcceptsDuringMetadata(t *testing.T) {
	for i, policy := range []transport.Policy{transport.Off, transport.Require} {
		t.Run(policy.String(), func(t *testing.T) {
			dir := t.TempDir()
			_, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Name: "m.bin", Size: 200<<10 + 7, PieceLength: 16 << 10, Seed: uint64(320 + i)})
			leecher, err := New(context.Background(), Config{CacheDir: t.TempDir(), Listen: "127.0.0.1:0", Trackers: [][]string{}, Policy: policy, Mode: picker.FetchAll})
			if err != nil {
				t.Fatal(err)
			}
			defer leecher.Close()
			m, err := metainfo.ParseMagnet("magnet:?xt=urn:btih:" + mi.InfoHash.String())
			if err != nil {
				t.Fatal(err)
			}
			tor, err := leecher.Add(context.Background(), Source{Magnet: m}, AddOptions{})
			if err != nil {
				t.Fatal(err)
			}
			waitRunning(t, tor) // the engine runs before the metadata is in
			if tor.MetaInfo() != nil {
				t.Fatal("a magnet nobody served has its metadata")
			}

			seeder, err := New(context.Background(), Config{Trackers: [][]string{}, Policy: policy, Peers: []netip.AddrPort{leecher.ListenAddr()}})
			if err != nil {
				t.Fatal(err)
			}
			defer seeder.Close()
			if _, err := seeder.Add(context.Background(), Source{MetaInfo: mi}, AddOptions{FilesDir: dir, ReadOnly: true}); err != nil {
				t.Fatal(err)
			}
			select {
			case <-tor.Attached():
			case <-tor.Done():
				t.Fatalf("stopped: %v", tor.Err())
			case <-time.After(time.Minute):
				t.Fatal("no metadata after a minute")
			}
			if tor.MetaInfo().Info.Name != "m.bin" {
				t.Errorf("name %q", tor.MetaInfo().Info.Name)
			}
			select {
			case <-tor.Engine().Complete():
			case <-time.After(time.Minute):
				t.Fatal("incomplete after a minute")
			}
			want, err := os.ReadFile(filepath.Join(dir, "m.bin"))
			if err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(want))
			if _, err := tor.Data().ReadAt(context.Background(), got, 0); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("read %v, same bytes %v", err, bytes.Equal(got, want))
			}
			st, err := tor.Engine().Stats(context.Background())
			if err != nil || st.Connections != 1 {
				t.Errorf("connections made or accepted: %d (%v), want the seeder's one", st.Connections, err)
			}
			// Its metadata is in the cache now: the magnet added again
			// to another client is attached at once, with no peer.
			leecher.Close()
			again, err := New(context.Background(), Config{CacheDir: leecher.cfg.CacheDir, Trackers: [][]string{}})
			if err != nil {
				t.Fatal(err)
			}
			defer again.Close()
			tor2, err := again.Add(context.Background(), Source{Magnet: m}, AddOptions{})
			if err != nil {
				t.Fatal(err)
			}
			select {
			case <-tor2.Attached():
			case <-tor2.Done():
				t.Fatalf("stopped: %v", tor2.Err())
			case <-time.After(time.Minute):
				t.Fatal("the cached metadata not attached after a minute")
			}
			if _, err := tor2.Data().ReadAt(context.Background(), got, 0); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("read from the cache: %v, same bytes %v", err, bytes.Equal(got, want))
			}
		})
	}
}
