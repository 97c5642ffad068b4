package metainfo

import (
	"errors"
	"strings"
	"testing"
)

// Hand-made BEP 52 hybrids: the v2 half against the v1 half, one fault at
// a time. The libtorrent-made torrents (libtorrent_test.go) cover real
// piece layers and merkle roots.

const v2Piece = 16 << 10

// v2Leaf is a file of a "file tree": {"": {"length": n, "pieces root": r}}.
func v2Leaf(length int, root string) dict {
	d := dict{{"length", length}}
	if root != "" {
		d = append(d, kv{"pieces root", root})
	}
	return dict{{"", d}}
}

var root32 = strings.Repeat("r", 32)

// hybridTree is the file tree of hybridInfo.
func hybridTree() dict {
	return dict{{"a", v2Leaf(100, root32)}, {"e", v2Leaf(0, "")}, {"sub", dict{{"b", v2Leaf(50, root32)}}}}
}

// hybridInfo is a multi-file hybrid as libtorrent lays it out: a (100
// bytes), a padding file to the next piece, the empty e, sub/b (50 bytes);
// files is the v1 list, tree the v2 one.
func hybridInfo(files []any, tree any, extra ...kv) dict {
	total := 0
	for _, f := range files {
		for _, e := range f.(dict) {
			if e.k == "length" {
				total += e.v.(int)
			}
		}
	}
	d := dict{
		{"file tree", tree},
		{"files", files},
		{"meta version", 2},
		{"name", "dir"},
		{"piece length", v2Piece},
		{"pieces", hashes(make([]byte, total), v2Piece)},
	}
	return append(d, extra...)
}

func padFile(length int) dict {
	return dict{{"attr", "p"}, {"length", length}, {"path", []string{".pad", "x"}}}
}

func hybridFiles() []any {
	return []any{file(100, "a"), padFile(v2Piece - 100), file(0, "e"), file(50, "sub", "b")}
}

func TestParseHybrid(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"multi-file", torrent(hybridInfo(hybridFiles(), hybridTree()))},
		{"single file", torrent(dict{
			{"file tree", dict{{"hello.txt", v2Leaf(12, root32)}}},
			{"length", 12},
			{"meta version", 2},
			{"name", "hello.txt"},
			{"piece length", v2Piece},
			{"pieces", hashes([]byte("hello world!"), v2Piece)},
		})},
		{"tail padding", torrent(hybridInfo(append(hybridFiles(), padFile(v2Piece-50)), hybridTree()))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mi, err := Parse(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !mi.Info.Hybrid || mi.Info.Version() != "hybrid v1+v2" {
				t.Errorf("Hybrid = %v, Version() = %q", mi.Info.Hybrid, mi.Info.Version())
			}
			info, err := ParseInfo(mi.InfoBytes)
			if err != nil || !info.Hybrid {
				t.Errorf("ParseInfo: %+v, %v", info, err)
			}
			checkInfoInvariants(t, mi.Info)
		})
	}
	mi, err := Parse(torrent(singleInfo()))
	if err != nil || mi.Info.Hybrid || mi.Info.Version() != "v1" {
		t.Errorf("v1 torrent: %+v, %v", mi, err)
	}
}

func TestParseHybridErrors(t *testing.T) {
	files := hybridFiles()
	big := []any{file(v2Piece+1, "a")}
	bigTree := dict{{"a", v2Leaf(v2Piece+1, root32)}}
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"no file tree", torrent(without(hybridInfo(files, nil), "file tree")), "info.file tree: missing"},
		{"piece length not a power of two", torrent(replace(hybridInfo([]any{file(100, "a")}, dict{{"a", v2Leaf(100, root32)}}), "piece length", 20000)), "info.piece length: 20000 is not a power of two"},
		{"piece length below 16 KiB", torrent(replace(hybridInfo([]any{file(100, "a")}, dict{{"a", v2Leaf(100, root32)}}), "piece length", 8192)), "info.piece length: 8192 is not a power of two of at least 16384"},
		{"file tree not a dict", torrent(hybridInfo(files, []any{})), "info.file tree: want a dictionary"},
		{"empty file tree", torrent(hybridInfo(files, dict{})), "info.file tree: empty directory"},
		{"empty directory", torrent(hybridInfo(files, dict{{"a", v2Leaf(100, root32)}, {"e", v2Leaf(0, "")}, {"sub", dict{}}})), "info.file tree.sub: empty directory"},
		{"length differs", torrent(hybridInfo(files, dict{{"a", v2Leaf(101, root32)}, {"e", v2Leaf(0, "")}, {"sub", dict{{"b", v2Leaf(50, root32)}}}})), `is "a" of 101 bytes, but the v1 file at its place is "a" of 100 bytes`},
		{"path differs", torrent(hybridInfo(files, dict{{"a", v2Leaf(100, root32)}, {"e", v2Leaf(0, "")}, {"sub", dict{{"c", v2Leaf(50, root32)}}}})), `is "sub/c" of 50 bytes, but the v1 file at its place is "sub/b"`},
		{"file missing from the tree", torrent(hybridInfo(files, dict{{"a", v2Leaf(100, root32)}, {"e", v2Leaf(0, "")}})), `info.file tree: has 2 files, the v1 file list more (first missing: "sub/b")`},
		{"extra file in the tree", torrent(hybridInfo(files, append(hybridTree(), kv{"z", v2Leaf(1, root32)}))), "info.file tree: has 4 files, the v1 file list 3"},
		{"not piece-aligned", torrent(hybridInfo([]any{file(100, "a"), file(50, "b")}, dict{{"a", v2Leaf(100, root32)}, {"b", v2Leaf(50, root32)}})), `file "b" starts at byte 100 of the v1 data, not on a piece boundary`},
		{"pieces root of 31 bytes", torrent(hybridInfo(files, dict{{"a", v2Leaf(100, root32[1:])}, {"e", v2Leaf(0, "")}, {"sub", dict{{"b", v2Leaf(50, root32)}}}})), "info.file tree.a..pieces root: 31 bytes, want 32"},
		{"pieces root missing", torrent(hybridInfo(files, dict{{"a", v2Leaf(100, "")}, {"e", v2Leaf(0, "")}, {"sub", dict{{"b", v2Leaf(50, root32)}}}})), "info.file tree.a..pieces root: missing for a file of 100 bytes"},
		{"negative length", torrent(hybridInfo(files, dict{{"a", v2Leaf(-1, root32)}})), "info.file tree.a..length: negative"},
		{"file beside entries", torrent(hybridInfo(files, dict{{"a", append(v2Leaf(100, root32), kv{"x", v2Leaf(1, root32)})}})), `info.file tree.a: a file ("" key) with other entries beside it`},
		{"unsafe component", torrent(hybridInfo(files, dict{{"..", v2Leaf(100, root32)}})), `info.file tree: component ".." escapes the torrent`},
		{"piece layers missing", torrent(hybridInfo(big, bigTree)), `piece layers: missing (file "a" has 16385 bytes, more than a piece)`},
		{"layer missing", torrent(hybridInfo(big, bigTree), kv{"piece layers", dict{}}), `piece layers: no layer for file "a"`},
		{"layer of the wrong length", torrent(hybridInfo(big, bigTree), kv{"piece layers", dict{{root32, strings.Repeat("h", 32)}}}), `the layer of file "a" has 32 bytes, want 64`},
		{"layer not matching the root", torrent(hybridInfo(big, bigTree), kv{"piece layers", dict{{root32, strings.Repeat("h", 64)}}}), `the layer of file "a" hashes to`},
		{"piece layers not a dict", torrent(hybridInfo(big, bigTree), kv{"piece layers", "x"}), "piece layers: want a dictionary"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mi, err := Parse(tc.in)
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", mi.Info)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse error = %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestParseV2Only(t *testing.T) {
	in := torrent(dict{{"file tree", dict{{"x", v2Leaf(5, root32)}}}, {"meta version", 2}, {"name", "x"}, {"piece length", v2Piece}})
	for name, parse := range map[string]func() error{
		"Parse": func() error { _, err := Parse(in); return err },
		"ParseInfo": func() error {
			_, err := ParseInfo(enc(dict{{"file tree", dict{}}, {"meta version", 2}, {"name", "x"}, {"piece length", v2Piece}}))
			return err
		},
		"ParseMagnet": func() error {
			_, err := ParseMagnet("magnet:?xt=urn:btmh:1220" + strings.Repeat("ab", 32))
			return err
		},
	} {
		err := parse()
		if err == nil || !strings.Contains(err.Error(), "BitTorrent v2-only torrents are not supported yet") || !errors.Is(err, ErrV2Only) || !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: error %v, want ErrV2Only", name, err)
		}
	}
}
