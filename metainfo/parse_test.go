package metainfo

import (
	"bytes"
	"crypto/sha1"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackpal/bencode-go"
)

// singleInfo is the info dict of a 12-byte single-file torrent with 5-byte
// pieces; extra entries are appended (so the result may be non-canonical).
func singleInfo(extra ...kv) dict {
	d := dict{
		{"length", 12},
		{"name", "hello.txt"},
		{"piece length", 5},
		{"pieces", hashes([]byte("hello world!"), 5)},
	}
	return append(d, extra...)
}

// multiInfo is the info dict of a multi-file torrent with the given files
// (each a dict) whose lengths add up to total, with 4-byte pieces.
func multiInfo(total int, files ...any) dict {
	return dict{
		{"files", files},
		{"name", "dir"},
		{"piece length", 4},
		{"pieces", hashes(make([]byte, total), 4)},
	}
}

func file(length int, path ...string) dict {
	return dict{{"length", length}, {"path", path}}
}

func torrent(info any, root ...kv) []byte {
	return enc(append(dict{{"info", info}}, root...))
}

func TestParseValid(t *testing.T) {
	for _, tc := range []struct {
		name  string
		in    []byte
		check func(t *testing.T, mi *MetaInfo)
	}{
		{"single file", torrent(singleInfo(), kv{"announce", "http://127.0.0.1:6969/announce"}), func(t *testing.T, mi *MetaInfo) {
			want := &Info{
				Name:        "hello.txt",
				PieceLength: 5,
				Pieces:      mi.Info.Pieces,
				Files:       []File{{Path: []string{"hello.txt"}, Length: 12}},
				TotalLength: 12,
			}
			if !reflect.DeepEqual(mi.Info, want) {
				t.Errorf("Info = %+v, want %+v", mi.Info, want)
			}
			if mi.Info.NumPieces() != 3 || mi.Info.PieceLen(2) != 2 {
				t.Errorf("NumPieces = %d, PieceLen(2) = %d; want 3, 2", mi.Info.NumPieces(), mi.Info.PieceLen(2))
			}
			if mi.Info.Pieces[1] != sha1.Sum([]byte(" worl")) {
				t.Errorf("piece 1 hash = %s", mi.Info.Pieces[1])
			}
			if mi.Announce != "http://127.0.0.1:6969/announce" {
				t.Errorf("Announce = %q", mi.Announce)
			}
			if got := mi.Trackers(); !reflect.DeepEqual(got, [][]string{{"http://127.0.0.1:6969/announce"}}) {
				t.Errorf("Trackers() = %q", got)
			}
		}},
		{"multi file with offsets and a zero-length file", torrent(multiInfo(10, file(3, "a", "x.bin"), file(0, "empty"), file(7, "b"))), func(t *testing.T, mi *MetaInfo) {
			want := []File{
				{Path: []string{"a", "x.bin"}, Length: 3, Offset: 0},
				{Path: []string{"empty"}, Length: 0, Offset: 3},
				{Path: []string{"b"}, Length: 7, Offset: 3},
			}
			if !reflect.DeepEqual(mi.Info.Files, want) || !mi.Info.MultiFile || mi.Info.TotalLength != 10 || mi.Info.Name != "dir" {
				t.Errorf("Info = %+v, want files %+v", mi.Info, want)
			}
		}},
		{"announce-list and metadata", torrent(singleInfo(),
			kv{"announce", "http://a/ann"},
			kv{"announce-list", []any{[]string{"http://a/ann", ""}, []string{}, []string{"udp://b:1", "udp://c:2"}}},
			kv{"comment", "hi"},
			kv{"created by", "btfs"},
			kv{"creation date", 1700000000},
		), func(t *testing.T, mi *MetaInfo) {
			want := [][]string{{"http://a/ann"}, {"udp://b:1", "udp://c:2"}}
			if !reflect.DeepEqual(mi.AnnounceList, want) || !reflect.DeepEqual(mi.Trackers(), want) {
				t.Errorf("AnnounceList = %q, want %q (empty URLs and tiers dropped)", mi.AnnounceList, want)
			}
			if mi.Comment != "hi" || mi.CreatedBy != "btfs" || !mi.CreationDate.Equal(time.Unix(1700000000, 0)) {
				t.Errorf("Comment %q, CreatedBy %q, CreationDate %v", mi.Comment, mi.CreatedBy, mi.CreationDate)
			}
			mg := mi.Magnet()
			if mg.InfoHash != mi.InfoHash || mg.DisplayName != "hello.txt" || !reflect.DeepEqual(mg.Trackers, []string{"http://a/ann", "udp://b:1", "udp://c:2"}) {
				t.Errorf("Magnet() = %+v", mg)
			}
		}},
		{"url-list as a string", torrent(singleInfo(), kv{"url-list", "http://seed/x"}), func(t *testing.T, mi *MetaInfo) {
			if !reflect.DeepEqual(mi.URLList, []string{"http://seed/x"}) {
				t.Errorf("URLList = %q", mi.URLList)
			}
		}},
		{"url-list as a list", torrent(singleInfo(), kv{"url-list", []string{"http://s1/", "", "http://s2/"}}), func(t *testing.T, mi *MetaInfo) {
			if !reflect.DeepEqual(mi.URLList, []string{"http://s1/", "http://s2/"}) {
				t.Errorf("URLList = %q", mi.URLList)
			}
		}},
		{"empty url-list string", torrent(singleInfo(), kv{"url-list", ""}), func(t *testing.T, mi *MetaInfo) {
			if mi.URLList != nil {
				t.Errorf("URLList = %q, want none", mi.URLList)
			}
		}},
		{"private", torrent(singleInfo(kv{"private", 1})), func(t *testing.T, mi *MetaInfo) {
			if !mi.Info.Private {
				t.Error("Private = false")
			}
		}},
		{"private 0", torrent(singleInfo(kv{"private", 0})), func(t *testing.T, mi *MetaInfo) {
			if mi.Info.Private {
				t.Error("Private = true")
			}
		}},
		{"padding files", torrent(multiInfo(8,
			dict{{"length", 3}, {"path", []string{"a"}}},
			dict{{"attr", "p"}, {"length", 1}, {"path", []string{".pad", "1"}}},
			dict{{"attr", "x"}, {"length", 4}, {"path", []string{"b"}}},
		)), func(t *testing.T, mi *MetaInfo) {
			got := []bool{mi.Info.Files[0].Padding, mi.Info.Files[1].Padding, mi.Info.Files[2].Padding}
			if !reflect.DeepEqual(got, []bool{false, true, false}) || mi.Info.Files[2].Offset != 4 {
				t.Errorf("Padding = %v, Files = %+v", got, mi.Info.Files)
			}
		}},
		{"utf-8 names preferred", torrent(dict{
			{"files", []any{
				dict{{"length", 4}, {"path", []string{"caf\xe9"}}, {"path.utf-8", []string{"café"}}},
				dict{{"length", 4}, {"path", []string{"ok"}}, {"path.utf-8", []string{"bad\xff"}}},
			}},
			{"name", "\xc0dir"},
			{"name.utf-8", "répertoire"},
			{"piece length", 4},
			{"pieces", hashes(make([]byte, 8), 4)},
		}), func(t *testing.T, mi *MetaInfo) {
			if mi.Info.Name != "répertoire" {
				t.Errorf("Name = %q", mi.Info.Name)
			}
			if p0, p1 := mi.Info.Files[0].Path, mi.Info.Files[1].Path; !reflect.DeepEqual(p0, []string{"café"}) || !reflect.DeepEqual(p1, []string{"ok"}) {
				t.Errorf("paths = %q, %q; want café, then ok (invalid path.utf-8 ignored)", p0, p1)
			}
		}},
		{"invalid name.utf-8 falls back to name", torrent(singleInfo(kv{"name.utf-8", "\xff"})), func(t *testing.T, mi *MetaInfo) {
			if mi.Info.Name != "hello.txt" {
				t.Errorf("Name = %q", mi.Info.Name)
			}
		}},
		{"piece length larger than the data", torrent(dict{{"length", 3}, {"name", "x"}, {"piece length", 1 << 20}, {"pieces", hashes([]byte("abc"), 3)}}), func(t *testing.T, mi *MetaInfo) {
			if mi.Info.NumPieces() != 1 || mi.Info.PieceLen(0) != 3 {
				t.Errorf("NumPieces = %d, PieceLen(0) = %d", mi.Info.NumPieces(), mi.Info.PieceLen(0))
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mi, err := Parse(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			start, end, err := DictValueSpan(tc.in, "info")
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(mi.InfoBytes, tc.in[start:end]) || mi.InfoHash != sha1.Sum(tc.in[start:end]) {
				t.Errorf("InfoBytes/InfoHash are not the raw info span")
			}
			info, err := ParseInfo(mi.InfoBytes)
			if err != nil || !reflect.DeepEqual(info, mi.Info) {
				t.Errorf("ParseInfo(InfoBytes) = %+v, %v; want %+v", info, err, mi.Info)
			}
			tc.check(t, mi)
		})
	}
}

// TestInfoHashOfRawBytes parses a torrent whose info dictionary is not
// canonical (keys unsorted): the info-hash must be the SHA-1 of the bytes in
// the file, which differs from the SHA-1 of a canonical re-encoding.
func TestInfoHashOfRawBytes(t *testing.T) {
	info := dict{
		{"piece length", 5},
		{"name", "hello.txt"},
		{"pieces", hashes([]byte("hello world!"), 5)},
		{"length", 12},
	}
	data := torrent(info, kv{"announce", "http://x/"}) // root keys unsorted too
	mi, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	rawInfo := enc(info)
	if !bytes.Equal(mi.InfoBytes, rawInfo) || mi.InfoHash != sha1.Sum(rawInfo) {
		t.Fatalf("InfoHash = %s, want SHA-1 of the raw info bytes %s", mi.InfoHash, Hash(sha1.Sum(rawInfo)))
	}
	generic, err := Decode(rawInfo, TorrentLimits)
	if err != nil {
		t.Fatal(err)
	}
	var canonical bytes.Buffer
	if err := bencode.Marshal(&canonical, generic); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(canonical.Bytes(), rawInfo) {
		t.Fatal("fixture is canonical; the test proves nothing")
	}
	if mi.InfoHash == sha1.Sum(canonical.Bytes()) {
		t.Error("InfoHash is the hash of a re-encoding")
	}
}

func TestParseErrors(t *testing.T) {
	valid := singleInfo()
	for _, tc := range []struct {
		name string
		in   []byte
		want string // substring of the error
		is   error  // when set, errors.Is must hold
	}{
		{"not bencode", []byte("hello"), "bencode: offset 0", nil},
		{"truncated in a string", torrent(valid)[:40], "offset 37: string of declared length 12 exceeds the 0 bytes left", nil},
		{"truncated at the end", torrent(valid)[:len(torrent(valid))-1], "unexpected end of input inside the dictionary opened at offset 0", nil},
		{"trailing garbage", append(torrent(valid), 'x'), "trailing bytes", nil},
		{"not a dictionary", []byte("li1ee"), "the torrent is a list", nil},
		{"declared 10^12-byte string", []byte("d8:announce1000000000000:x"), "exceeds the 1 bytes left", nil},
		{"nesting 10^6 deep", append([]byte("d4:info"), bytes.Repeat([]byte("l"), 1e6)...), "nesting deeper than 100", ErrLimit},
		{"no info", enc(dict{{"announce", "x"}}), "metainfo: info: missing", nil},
		{"info not a dict", torrent("x"), "metainfo: info: want a dictionary, got a string", nil},
		{"wrong type announce", torrent(valid, kv{"announce", 1}), "metainfo: announce: want a string, got an integer", nil},
		{"wrong type announce-list tier", torrent(valid, kv{"announce-list", []any{"x"}}), "metainfo: announce-list[0]: want a list", nil},
		{"wrong type url-list", torrent(valid, kv{"url-list", 1}), "metainfo: url-list: want a list", nil},
		{"wrong type creation date", torrent(valid, kv{"creation date", "today"}), "metainfo: creation date: want an integer", nil},
		{"missing name", torrent(without(valid, "name")), "metainfo: info.name: missing", nil},
		{"empty name", torrent(replace(valid, "name", "")), "metainfo: info.name: empty component", nil},
		{"name ..", torrent(replace(valid, "name", "..")), `metainfo: info.name: component ".." escapes the torrent`, nil},
		{"name with slash", torrent(replace(valid, "name", "a/b")), `metainfo: info.name: component "a/b" contains "/"`, nil},
		{"unsafe name.utf-8", torrent(append(singleInfo(), kv{"name.utf-8", "../x"})), `metainfo: info.name.utf-8: component "../x" contains "/"`, nil},
		{"missing piece length", torrent(without(valid, "piece length")), "metainfo: info.piece length: missing", nil},
		{"zero piece length", torrent(replace(valid, "piece length", 0)), "metainfo: info.piece length: 0 is not in", nil},
		{"negative piece length", torrent(replace(valid, "piece length", -5)), "metainfo: info.piece length: -5 is not in", nil},
		{"huge piece length", torrent(replace(valid, "piece length", int64(1)<<40)), "info.piece length: 1099511627776 is not in", nil},
		{"missing pieces", torrent(without(valid, "pieces")), "metainfo: info.pieces: missing", nil},
		{"pieces not a multiple of 20", torrent(replace(valid, "pieces", "abc")), "metainfo: info.pieces: length 3 is not a multiple of 20", nil},
		{"piece count mismatch", torrent(replace(valid, "pieces", hashes([]byte("hello world!"), 6))), "metainfo: info.pieces: has 2 hashes, but 12 bytes in pieces of 5 need 3", nil},
		{"negative length", torrent(replace(valid, "length", -1)), "metainfo: info.length: negative (-1)", nil},
		{"zero total", torrent(replace(replace(valid, "length", 0), "pieces", "")), "metainfo: info: total length is 0", nil},
		{"both length and files", torrent(append(singleInfo(), kv{"files", []any{file(1, "a")}})), `metainfo: info: has both "length" and "files"`, nil},
		{"neither length nor files", torrent(without(valid, "length")), `metainfo: info: has neither "length" nor "files"`, nil},
		{"v2 only", torrent(dict{{"file tree", dict{}}, {"meta version", 2}, {"name", "x"}, {"piece length", 16384}}), "metainfo: info: BitTorrent v2-only torrents are not supported yet", ErrV2Only},
		{"meta version 3", torrent(singleInfo(kv{"meta version", 3})), "meta version 3", ErrUnsupported},
		{"empty files", torrent(multiInfo(0)), "metainfo: info.files: empty", nil},
		{"files not a list", torrent(replace(multiInfo(4), "files", dict{})), "metainfo: info.files: want a list, got a dictionary", nil},
		{"file not a dict", torrent(multiInfo(4, "x")), "metainfo: info.files[0]: want a dictionary, got a string", nil},
		{"file without length", torrent(multiInfo(4, dict{{"path", []string{"a"}}})), "metainfo: info.files[0].length: missing", nil},
		{"file without path", torrent(multiInfo(4, dict{{"length", 4}})), "metainfo: info.files[0].path: missing", nil},
		{"negative file length", torrent(multiInfo(4, file(5, "a"), file(-1, "b"))), "metainfo: info.files[1].length: negative (-1)", nil},
		{"length sum overflow", torrent(multiInfo(4, dict{{"length", int64(1<<63 - 1)}, {"path", []string{"a"}}}, file(1, "b"))), "metainfo: info.files[1].length: 1 makes the total overflow 64 bits", nil},
		{"path ../../etc/passwd", torrent(multiInfo(4, file(4, "..", "..", "etc", "passwd"))), `metainfo: info.files[0].path: component ".." escapes the torrent`, nil},
		{"path in one string", torrent(multiInfo(4, file(1, "a"), file(3, "../../etc/passwd"))), `metainfo: info.files[1].path: component "../../etc/passwd" contains "/"`, nil},
		{"absolute path", torrent(multiInfo(4, file(4, "/etc/passwd"))), `metainfo: info.files[0].path: component "/etc/passwd" is an absolute path`, nil},
		{"empty path", torrent(multiInfo(4, file(4))), "metainfo: info.files[0].path: empty", nil},
		{"empty component", torrent(multiInfo(4, file(4, "a", ""))), "metainfo: info.files[0].path: empty component", nil},
		{"dot component", torrent(multiInfo(4, file(4, "."))), `metainfo: info.files[0].path: component "." is not a name`, nil},
		{"backslash", torrent(multiInfo(4, file(4, `..\..\x`))), `metainfo: info.files[0].path: component "..\\..\\x" contains "\"`, nil},
		{"NUL", torrent(multiInfo(4, file(4, "a\x00b"))), `metainfo: info.files[0].path: component "a\x00b" contains NUL`, nil},
		{"path component not a string", torrent(multiInfo(4, dict{{"length", 4}, {"path", []any{1}}})), "metainfo: info.files[0].path[0]: want a string, got an integer", nil},
		{"unsafe path.utf-8", torrent(multiInfo(4, dict{{"length", 4}, {"path", []string{"a"}}, {"path.utf-8", []string{".."}}})), `metainfo: info.files[0].path.utf-8: component ".." escapes`, nil},
		{"attr not a string", torrent(multiInfo(4, dict{{"attr", 1}, {"length", 4}, {"path", []string{"a"}}})), "metainfo: info.files[0].attr: want a string", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mi *MetaInfo
			var err error
			n := allocated(func() { mi, err = Parse(tc.in) })
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", mi.Info)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse error = %q, want it to contain %q", err, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tc.is)
			}
			if n > 8<<20 {
				t.Errorf("Parse allocated %d bytes to refuse %d bytes of input", n, len(tc.in))
			}
		})
	}
}

func TestDuplicatePaths(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files []any
		want  [][]string
	}{
		{"same file twice", []any{file(1, "a.txt"), file(1, "a.txt"), file(1, "a.txt")},
			[][]string{{"a.txt"}, {"a (1).txt"}, {"a (2).txt"}}},
		{"no extension and dotfile", []any{file(1, "x"), file(1, "x"), file(1, ".rc"), file(1, ".rc")},
			[][]string{{"x"}, {"x (1)"}, {".rc"}, {".rc (1)"}}},
		{"suffix already taken", []any{file(1, "a"), file(1, "a (1)"), file(1, "a")},
			[][]string{{"a"}, {"a (1)"}, {"a (2)"}}},
		{"file then directory of the same name", []any{file(1, "d"), file(1, "d", "x"), file(1, "d", "y")},
			[][]string{{"d"}, {"d (1)", "x"}, {"d (1)", "y"}}},
		{"directory then file of the same name", []any{file(1, "d", "x"), file(1, "d")},
			[][]string{{"d", "x"}, {"d (1)"}}},
		{"nested", []any{file(1, "a", "b", "c"), file(1, "a", "b"), file(1, "a", "b", "c", "d")},
			[][]string{{"a", "b", "c"}, {"a", "b (1)"}, {"a", "b", "c (1)", "d"}}},
		{"padding never displaces a file", []any{
			dict{{"attr", "p"}, {"length", 1}, {"path", []string{".pad", "1"}}},
			file(1, ".pad", "1"),
			dict{{"attr", "p"}, {"length", 1}, {"path", []string{".pad", "1"}}},
		}, [][]string{{".pad", "1 (1)"}, {".pad", "1"}, {".pad", "1 (2)"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mi, err := Parse(torrent(multiInfo(len(tc.files), tc.files...)))
			if err != nil {
				t.Fatal(err)
			}
			var got [][]string
			for _, f := range mi.Info.Files {
				got = append(got, f.Path)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("paths = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestManyDuplicatePaths checks that n copies of one name are renamed in
// linear, not quadratic, work: the test would time out otherwise.
func TestManyDuplicatePaths(t *testing.T) {
	const n = 20000
	files := make([]any, n)
	for i := range files {
		files[i] = file(1, "same")
	}
	mi, err := Parse(torrent(multiInfo(n, files...)))
	if err != nil {
		t.Fatal(err)
	}
	if got := mi.Info.Files[n-1].Path[0]; got != "same (19999)" {
		t.Errorf("last path = %q", got)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.torrent")
	if err := os.WriteFile(good, torrent(singleInfo()), 0o644); err != nil {
		t.Fatal(err)
	}
	mi, err := Load(good)
	if err != nil || mi.Info.Name != "hello.txt" {
		t.Fatalf("Load = %v, %v", mi, err)
	}
	bad := filepath.Join(dir, "bad.torrent")
	if err := os.WriteFile(bad, []byte("d4:infoi1ee"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad); err == nil || !strings.Contains(err.Error(), "bad.torrent") {
		t.Errorf("Load(bad) = %v, want an error naming the file", err)
	}
	if _, err := Load(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v", err)
	}

	saved := TorrentLimits
	t.Cleanup(func() { TorrentLimits = saved })
	TorrentLimits.MaxSize = 100
	big := filepath.Join(dir, "big.torrent")
	if err := os.WriteFile(big, bytes.Repeat([]byte("x"), 101), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); !errors.Is(err, ErrLimit) {
		t.Errorf("Load(big) = %v, want ErrLimit", err)
	}
	if _, err := Load("/dev/zero"); !errors.Is(err, ErrLimit) {
		t.Errorf("Load(/dev/zero) = %v, want ErrLimit", err)
	}
}

func TestPieceRanges(t *testing.T) {
	// 5-byte pieces over files of 3, 0, 7, 5 and 0 bytes: 15 bytes, 3 pieces.
	mi, err := Parse(torrent(dict{
		{"files", []any{file(3, "a"), file(0, "b"), file(7, "c"), file(5, "d"), file(0, "e")}},
		{"name", "t"},
		{"piece length", 5},
		{"pieces", hashes(make([]byte, 15), 5)},
	}))
	if err != nil {
		t.Fatal(err)
	}
	info := mi.Info
	for _, tc := range []struct {
		file        int
		first, end  int
		offset, len int64
	}{
		{0, 0, 1, 0, 3},
		{1, 0, 0, 3, 0},
		{2, 0, 2, 3, 7},
		{3, 2, 3, 10, 5},
		{4, 3, 3, 15, 0},
	} {
		first, end := info.FileRange(tc.file)
		f := info.Files[tc.file]
		if first != tc.first || end != tc.end || f.Offset != tc.offset || f.Length != tc.len {
			t.Errorf("file %d: FileRange = [%d,%d), offset %d, length %d; want [%d,%d), %d, %d",
				tc.file, first, end, f.Offset, f.Length, tc.first, tc.end, tc.offset, tc.len)
		}
	}
	for _, tc := range []struct {
		off, n     int64
		first, end int
	}{
		{0, 1, 0, 1},
		{0, 5, 0, 1},
		{0, 6, 0, 2},
		{4, 2, 0, 2},
		{14, 1, 2, 3},
		{14, 100, 2, 3},
		{15, 1, 3, 3},
		{100, 1, 3, 3},
		{-5, 6, 0, 1},
		{3, 0, 0, 0},
		{3, -1, 0, 0},
		{0, 1 << 62, 0, 3},
		{1 << 62, 1 << 62, 3, 3},
	} {
		if first, end := info.PiecesFor(tc.off, tc.n); first != tc.first || end != tc.end {
			t.Errorf("PiecesFor(%d, %d) = [%d,%d), want [%d,%d)", tc.off, tc.n, first, end, tc.first, tc.end)
		}
	}
}

// TestDuplicatePathsRandom parses many torrents whose paths are drawn from
// a few colliding names (including names that look like renamed ones) and
// checks that the result is always a valid tree.
func TestDuplicatePathsRandom(t *testing.T) {
	names := []string{"a", "b", "a (1)", "a.txt", "a (1).txt", ".pad"}
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 300; round++ {
		n := 1 + rng.IntN(12)
		files := make([]any, n)
		for i := range files {
			path := make([]string, 1+rng.IntN(3))
			for j := range path {
				path[j] = names[rng.IntN(len(names))]
			}
			f := dict{{"length", 1}, {"path", path}}
			if rng.IntN(4) == 0 {
				f = append(dict{{"attr", "p"}}, f...)
			}
			files[i] = f
		}
		data := torrent(multiInfo(n, files...))
		mi, err := Parse(data)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		checkInfoInvariants(t, mi.Info)
		again, err := Parse(data)
		if err != nil || !reflect.DeepEqual(again.Info, mi.Info) {
			t.Fatalf("round %d: a second parse differs", round)
		}
	}
}
