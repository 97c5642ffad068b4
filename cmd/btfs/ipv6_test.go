package main

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"btfs/internal/poll"
	"btfs/internal/swarmtest"
)

// TestGetFromIPv6Seeder: btfs get downloads from a libtorrent seeder that
// listens only on ::1, given as -peer [::1]:port and as a magnet link's
// x.pe=[::1]:port (metadata and data over IPv6).
func TestGetFromIPv6Seeder(t *testing.T) {
	dir := t.TempDir()
	torrentPath, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Files: swarmtest.MultiFile, PieceLength: 64 << 10, Seed: 160})
	seeder := swarmtest.StartLibtorrentSeeder(t, torrentPath, dir, "::1")
	s := testSwarm{dir: dir, torrentPath: torrentPath, mi: mi}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"peer", []string{"-peer", seeder.Addr().String(), torrentPath}},
		{"magnet", []string{magnetOf(mi, nil, seeder.Addr())}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			args := append(append([]string{"get", "-listen", "[::1]:0", "-no-trackers", "-no-dht"}, tc.args...), out)
			p := startBtfs(t, args...)
			if err := p.wait(t, 2*time.Minute); err != nil {
				t.Fatalf("btfs get: %v\n%s", err, p.out.String())
			}
			for _, f := range mi.Info.Files {
				got, err := os.ReadFile(filepath.Join(append([]string{out, mi.Info.Name}, f.Path...)...))
				if err != nil || !bytes.Equal(got, s.source(t, f)) {
					t.Fatalf("%s: %d bytes, %v: not the source", filepath.Join(f.Path...), len(got), err)
				}
			}
		})
	}
}

// TestSeedDualStack: `btfs seed -listen :0` binds [::]:port, which a
// libtorrent leecher on ::1 and one on 127.0.0.2 both reach.
func TestSeedDualStack(t *testing.T) {
	dir := t.TempDir()
	torrentPath, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Files: swarmtest.MultiFile, PieceLength: 64 << 10, Seed: 161})
	p := startBtfs(t, "seed", "-listen", ":0", "-no-trackers", "-no-dht", torrentPath, dir)
	var port uint16
	re := regexp.MustCompile(`msg=listening addr=(\S+)`)
	poll.UntilNil(t, time.Minute, "btfs seed to listen", func() error {
		m := re.FindStringSubmatch(p.out.String())
		if m == nil {
			return fmt.Errorf("not yet:\n%s", p.out.String())
		}
		ap, err := netip.ParseAddrPort(m[1])
		if err == nil && !ap.Addr().IsUnspecified() {
			err = fmt.Errorf("listens on %v, want every address", ap)
		}
		port = ap.Port()
		return err
	})
	s := testSwarm{dir: dir, torrentPath: torrentPath, mi: mi}
	for _, tc := range []struct{ ip, dial string }{{"::1", "::1"}, {"127.0.0.2", "127.0.0.1"}} {
		out := t.TempDir()
		leecher := swarmtest.StartLibtorrent(t, torrentPath, out, tc.ip, swarmtest.LibtorrentOptions{Leech: true},
			netip.AddrPortFrom(netip.MustParseAddr(tc.dial), port))
		poll.UntilNil(t, 2*time.Minute, "the leecher on "+tc.ip+" to finish", func() error {
			st, err := leecher.Status()
			if err != nil {
				return err
			}
			if !st.Seeding {
				return fmt.Errorf("has %d of %d bytes; peers %+v", st.Done, mi.Info.TotalLength, st.Peers)
			}
			return nil
		})
		for _, f := range mi.Info.Files {
			got, err := os.ReadFile(filepath.Join(append([]string{out, mi.Info.Name}, f.Path...)...))
			if err != nil || !bytes.Equal(got, s.source(t, f)) {
				t.Fatalf("%s via %s: %d bytes, %v: not the source", filepath.Join(f.Path...), tc.ip, len(got), err)
			}
		}
	}
}
