package metainfo

import (
	"bytes"
	"context"
	"crypto/sha1"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackpal/bencode-go"
)

// writeTree creates files (path with '/' → contents) below a new temp dir.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, data := range files {
		full := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestBuildRoundTrip(t *testing.T) {
	files := map[string]string{
		"a-b":          "0123456789abc", // 13 bytes
		"a/b":          "xyz",
		"a/empty":      "",
		"z/deep/d.txt": "the last file, 27 bytes ok.",
		"m.bin":        "\x00\x01\x02",
		"zzempty":      "",
	}
	// Sorted by path components: a/b < a/empty < a-b < m.bin < z/deep/d.txt < zzempty.
	order := []string{"a/b", "a/empty", "a-b", "m.bin", "z/deep/d.txt", "zzempty"}
	root := writeTree(t, files)
	if err := os.Mkdir(filepath.Join(root, "empty-dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	created := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	opt := BuildOptions{
		PieceLength:  5,
		AnnounceList: [][]string{{"http://127.0.0.1:6969/announce"}, {"udp://127.0.0.1:6969"}},
		WebSeeds:     []string{"http://127.0.0.1:8080/"},
		Private:      true,
		Comment:      "fixture",
		CreatedBy:    "btfs test",
		CreationDate: created,
		Name:         "tree",
	}
	out, err := Build(context.Background(), root, opt)
	if err != nil {
		t.Fatal(err)
	}
	mi, err := Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	var all []byte
	for i, p := range order {
		f := mi.Info.Files[i]
		if strings.Join(f.Path, "/") != p || f.Length != int64(len(files[p])) || f.Offset != int64(len(all)) {
			t.Errorf("file %d = %q (length %d, offset %d), want %q (length %d, offset %d)", i, f.Path, f.Length, f.Offset, p, len(files[p]), len(all))
		}
		all = append(all, files[p]...)
	}
	if len(mi.Info.Files) != len(order) {
		t.Errorf("%d files, want %d", len(mi.Info.Files), len(order))
	}
	if mi.Info.TotalLength != int64(len(all)) || len(all)%5 == 0 {
		t.Fatalf("TotalLength = %d, want %d (and a short last piece)", mi.Info.TotalLength, len(all))
	}
	want := hashes(all, 5)
	for p := range mi.Info.Pieces {
		if !bytes.Equal(mi.Info.Pieces[p][:], want[p*20:p*20+20]) {
			t.Errorf("piece %d hash differs from the data's", p)
		}
		data := all[mi.Info.PieceOffset(p) : mi.Info.PieceOffset(p)+mi.Info.PieceLen(p)]
		if mi.Info.Pieces[p] != sha1.Sum(data) {
			t.Errorf("piece %d: PieceOffset/PieceLen do not cover its bytes", p)
		}
	}
	if len(mi.Info.Pieces)*20 != len(want) {
		t.Errorf("%d pieces, want %d", len(mi.Info.Pieces), len(want)/20)
	}
	if mi.Info.Name != "tree" || !mi.Info.Private || !mi.Info.MultiFile || mi.Info.PieceLength != 5 {
		t.Errorf("Info = %+v", mi.Info)
	}
	if mi.Announce != "http://127.0.0.1:6969/announce" || !reflect.DeepEqual(mi.AnnounceList, opt.AnnounceList) ||
		!reflect.DeepEqual(mi.URLList, opt.WebSeeds) || mi.Comment != "fixture" || mi.CreatedBy != "btfs test" ||
		!mi.CreationDate.Equal(created) {
		t.Errorf("MetaInfo = %+v", mi)
	}
	assertCanonical(t, out)
}

// assertCanonical checks that re-encoding the decoded torrent (which sorts
// every dictionary) gives the same bytes.
func assertCanonical(t *testing.T, data []byte) {
	t.Helper()
	v, err := Decode(data, TorrentLimits)
	if err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	if err := bencode.Marshal(&again, v); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Bytes(), data) {
		t.Errorf("output is not canonical bencode:\n got %q\nwant %q", data, again.Bytes())
	}
}

func TestBuildSingleFile(t *testing.T) {
	root := writeTree(t, map[string]string{"movie.mkv": "0123456789"})
	path := filepath.Join(root, "movie.mkv")
	for _, tc := range []struct {
		name     string
		opt      BuildOptions
		wantName string
		wantPL   int64
		announce string
	}{
		{"defaults", BuildOptions{}, "movie.mkv", 16 << 10, ""},
		{"renamed, one tracker", BuildOptions{Name: "film.mkv", PieceLength: 4, AnnounceList: [][]string{{"http://127.0.0.1:1/a"}}}, "film.mkv", 4, "http://127.0.0.1:1/a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Build(context.Background(), path, tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			mi, err := Parse(out)
			if err != nil {
				t.Fatal(err)
			}
			wantFiles := []File{{Path: []string{tc.wantName}, Length: 10}}
			if mi.Info.Name != tc.wantName || mi.Info.MultiFile || !reflect.DeepEqual(mi.Info.Files, wantFiles) || mi.Info.PieceLength != tc.wantPL {
				t.Errorf("Info = %+v", mi.Info)
			}
			if mi.Announce != tc.announce || mi.AnnounceList != nil || !mi.CreationDate.IsZero() || mi.Info.Private {
				t.Errorf("MetaInfo = %+v", mi)
			}
			if !bytes.Equal(flatten(mi.Info.Pieces), hashes([]byte("0123456789"), int(tc.wantPL))) {
				t.Error("piece hashes differ from the data's")
			}
			assertCanonical(t, out)
		})
	}
}

func flatten(hs []Hash) []byte {
	var out []byte
	for _, h := range hs {
		out = append(out, h[:]...)
	}
	return out
}

func TestBuildDeterministic(t *testing.T) {
	root := writeTree(t, map[string]string{"b": "1", "a/c": "22", "a/a": "333"})
	first, err := Build(context.Background(), root, BuildOptions{Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	second, err := Build(context.Background(), root, BuildOptions{Name: "x"})
	if err != nil || !bytes.Equal(first, second) {
		t.Errorf("two builds differ (err %v)", err)
	}
}

func TestBuildErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) string
		opt   BuildOptions
		want  string
	}{
		{"missing root", func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") }, BuildOptions{}, "no such file"},
		{"symlink inside", func(t *testing.T) string {
			root := writeTree(t, map[string]string{"f": "x"})
			if err := os.Symlink("f", filepath.Join(root, "link")); err != nil {
				t.Fatal(err)
			}
			return root
		}, BuildOptions{}, "link: L--------- is not supported"},
		{"fifo inside", func(t *testing.T) string {
			root := writeTree(t, map[string]string{"f": "x"})
			if err := syscall.Mkfifo(filepath.Join(root, "pipe"), 0o644); err != nil {
				t.Fatal(err)
			}
			return root
		}, BuildOptions{}, "pipe: p--------- is not supported"},
		{"fifo root", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "pipe")
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}, BuildOptions{}, "is not a regular file or directory"},
		{"backslash in a name", func(t *testing.T) string { return writeTree(t, map[string]string{`a\b`: "x"}) }, BuildOptions{}, `contains "\"`},
		{"empty directory", func(t *testing.T) string { return t.TempDir() }, BuildOptions{}, "holds no files"},
		{"only empty files", func(t *testing.T) string { return writeTree(t, map[string]string{"a": "", "b/c": ""}) }, BuildOptions{}, "total length is 0"},
		{"unsafe name", func(t *testing.T) string { return writeTree(t, map[string]string{"a": "x"}) }, BuildOptions{Name: ".."}, "escapes the torrent"},
		{"negative piece length", func(t *testing.T) string { return writeTree(t, map[string]string{"a": "x"}) }, BuildOptions{PieceLength: -1}, "piece length -1"},
		{"too many pieces", func(t *testing.T) string {
			root := t.TempDir()
			if err := os.Truncate(mustCreate(t, filepath.Join(root, "big")), 1<<40); err != nil {
				t.Skip("sparse files unsupported:", err)
			}
			return root
		}, BuildOptions{PieceLength: 1}, "make the torrent too large"},
		{"empty tier", func(t *testing.T) string { return writeTree(t, map[string]string{"a": "x"}) }, BuildOptions{AnnounceList: [][]string{{}}}, "AnnounceList[0] is an empty tier"},
		{"empty tracker", func(t *testing.T) string { return writeTree(t, map[string]string{"a": "x"}) }, BuildOptions{AnnounceList: [][]string{{"http://a/", ""}}}, "AnnounceList[0][1] is empty"},
		{"empty web seed", func(t *testing.T) string { return writeTree(t, map[string]string{"a": "x"}) }, BuildOptions{WebSeeds: []string{""}}, "WebSeeds[0] is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Build(context.Background(), tc.setup(t), tc.opt)
			if err == nil {
				t.Fatalf("Build succeeded (%d bytes)", len(out))
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Build error = %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func mustCreate(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	return p
}

func TestBuildCancelled(t *testing.T) {
	root := writeTree(t, map[string]string{"a": "x"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Build(ctx, root, BuildOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Build with a cancelled context = %v", err)
	}
}

// TestBuildStreams hashes an 8 MiB file and checks that memory stays far
// below its size: hashing goes through a fixed buffer.
func TestBuildStreams(t *testing.T) {
	root := t.TempDir()
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<19) // 8 MiB
	if err := os.WriteFile(filepath.Join(root, "f"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	var out []byte
	var err error
	n := allocated(func() { out, err = Build(context.Background(), root, BuildOptions{PieceLength: 1 << 20}) })
	if err != nil {
		t.Fatal(err)
	}
	if n > 2<<20 {
		t.Errorf("Build of an 8 MiB file with 1 MiB pieces allocated %d bytes, want < 2 MiB", n)
	}
	mi, err := Parse(out)
	if err != nil || !bytes.Equal(flatten(mi.Info.Pieces), hashes(data, 1<<20)) {
		t.Errorf("Parse = %v; pieces match: %v", err, err == nil && bytes.Equal(flatten(mi.Info.Pieces), hashes(data, 1<<20)))
	}
}

func TestChoosePieceLength(t *testing.T) {
	for _, tc := range []struct{ total, want int64 }{
		{1, 16 << 10},
		{2000 * 16 << 10, 16 << 10},
		{2000*16<<10 + 1, 32 << 10},
		{700 << 20, 512 << 10},    // 1400 pieces
		{4 << 30, 4 << 20},        // 1024 pieces
		{1 << 40, 16 << 20},       // capped: 65536 pieces
		{1<<62 + 12345, 16 << 20}, // no overflow
	} {
		got := choosePieceLength(tc.total)
		if got != tc.want {
			t.Errorf("choosePieceLength(%d) = %d, want %d", tc.total, got, tc.want)
		}
		if n := (tc.total + got - 1) / got; got > 16<<10 && got < 16<<20 && (n < 1000 || n > 2000) {
			t.Errorf("choosePieceLength(%d) gives %d pieces, want 1000..2000", tc.total, n)
		}
	}
}
