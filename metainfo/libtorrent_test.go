package metainfo_test

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/jackpal/bencode-go"

	"btfs/internal/swarmtest"
	"btfs/metainfo"
)

// TestLibtorrentTorrents parses torrents that python3-libtorrent 2.0 makes
// at test time, v1-only, hybrid and v2-only, single- and multi-file: the
// hybrids parse with libtorrent's v1 info-hash, their real files (padding
// left out) and web seeds; the v2-only ones, and the magnet link
// libtorrent gives them, are refused as v2-only. It skips without
// python3-libtorrent unless BTFS_REQUIRE_PEERS=1.
func TestLibtorrentTorrents(t *testing.T) {
	swarmtest.RequireLibtorrent(t)
	const seed = "http://127.0.0.1:1/webseed/"
	for _, layout := range []struct {
		name string
		opts swarmtest.TorrentOptions
		want []string // the real files, '/'-joined, below the name
	}{
		{"single", swarmtest.TorrentOptions{Name: "one.bin", Size: 100_000, PieceLength: 16 << 10}, []string{"one.bin"}},
		{"multi", swarmtest.TorrentOptions{Name: "dir", PieceLength: 32 << 10, Files: []swarmtest.FileSpec{
			{Path: "a.bin", Size: 100_000}, {Path: "sub/b.bin", Size: 40_000}, {Path: "sub/empty"}, {Path: "z.txt", Size: 7},
		}}, []string{"a.bin", "sub/b.bin", "sub/empty", "z.txt"}},
	} {
		for _, version := range []swarmtest.TorrentVersion{swarmtest.V1Only, swarmtest.Hybrid, swarmtest.V2Only} {
			t.Run(layout.name+"/"+string(version), func(t *testing.T) {
				lt := swarmtest.MakeLibtorrentTorrent(t, t.TempDir(), layout.opts, version, seed)
				mi, err := metainfo.Load(lt.Path)
				if version == swarmtest.V2Only {
					if !errors.Is(err, metainfo.ErrV2Only) || !strings.Contains(err.Error(), "BitTorrent v2-only torrents are not supported yet") {
						t.Fatalf("Load(v2-only) = %v, want ErrV2Only", err)
					}
					if _, err := metainfo.ParseMagnet(lt.Magnet); !errors.Is(err, metainfo.ErrV2Only) {
						t.Errorf("ParseMagnet(%q) = %v, want ErrV2Only", lt.Magnet, err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if mi.InfoHash.String() != lt.V1 {
					t.Errorf("info-hash %s, libtorrent's v1 %s", mi.InfoHash, lt.V1)
				}
				if hybrid := version == swarmtest.Hybrid; mi.Info.Hybrid != hybrid {
					t.Errorf("Hybrid = %v, want %v", mi.Info.Hybrid, hybrid)
				}
				var got []string
				for _, f := range mi.Info.Files {
					if !f.Padding {
						got = append(got, strings.Join(f.Path, "/"))
					}
				}
				slices.Sort(got) // a v1 torrent keeps libtorrent's directory order
				if !reflect.DeepEqual(got, layout.want) {
					t.Errorf("files %q, want %q", got, layout.want)
				}
				if !reflect.DeepEqual(mi.URLList, []string{seed}) {
					t.Errorf("URLList = %q", mi.URLList)
				}
				m, err := metainfo.ParseMagnet(lt.Magnet)
				if err != nil || m.InfoHash != mi.InfoHash {
					t.Errorf("ParseMagnet(%q) = %+v, %v; want info-hash %s", lt.Magnet, m, err, mi.InfoHash)
				}
				if version == swarmtest.Hybrid && layout.name == "multi" {
					checkTampered(t, lt.Path)
				}
			})
		}
	}
}

// checkTampered breaks a libtorrent hybrid's piece layers, one way at a
// time, and wants each refused.
func checkTampered(t *testing.T, path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	start, end, err := metainfo.DictValueSpan(data, "piece layers")
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(data)
	flipped[end-2]++ // the last byte of the last layer
	v, err := metainfo.Decode(data, metainfo.TorrentLimits)
	if err != nil {
		t.Fatal(err)
	}
	top := v.(map[string]any)
	delete(top, "piece layers")
	var noLayers bytes.Buffer
	if err := bencode.Marshal(&noLayers, top); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"flipped layer byte", flipped, "hashes to"},
		{"no piece layers", noLayers.Bytes(), "piece layers: missing"},
		{"piece layers cut", append(append(bytes.Clone(data[:start]), "de"...), data[end:]...), "piece layers: no layer for file"},
	} {
		if _, err := metainfo.Parse(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Parse = %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}
