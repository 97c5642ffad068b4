package swarmtest

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"testing"

	"btfs/metainfo"
)

// FileSpec is one file of a multi-file torrent made by MakeTorrent.
type FileSpec struct {
	// Path is the file's path below the torrent's root, '/'-separated.
	Path string
	// Size is the file's length in bytes; 0 makes an empty file.
	Size int64
}

// TorrentOptions say what MakeTorrent makes; the zero value is a
// single-file torrent of DefaultSize bytes in DefaultPieceLength pieces,
// without trackers.
type TorrentOptions struct {
	// Name is the torrent's name: the file's name, or the directory's for
	// a multi-file torrent. Default "data.bin" or "data".
	Name string
	// Size is a single-file torrent's length. Default DefaultSize.
	Size int64
	// Files, when not empty, makes a multi-file torrent of these files
	// instead (Size is then ignored).
	Files []FileSpec
	// PieceLength is the piece size. Default DefaultPieceLength.
	PieceLength int64
	// Seed selects the pseudo-random content: the same seed and sizes give
	// the same bytes, and so the same info-hash.
	Seed uint64
	// AnnounceList holds the tracker tiers (BEP 12), e.g.
	// [][]string{{tr.HTTPURL()}}.
	AnnounceList [][]string
	// WebSeeds are BEP 19 url-list URLs.
	WebSeeds []string
}

const (
	// DefaultSize is a few MiB and deliberately not a multiple of the
	// piece length, so that the last piece is short.
	DefaultSize = 3<<20 + 12345
	// DefaultPieceLength is a common real piece size.
	DefaultPieceLength = 256 << 10
)

// MultiFile is a multi-file layout that crosses piece boundaries inside
// and between files, with a nested directory and an empty file.
var MultiFile = []FileSpec{
	{Path: "a.bin", Size: 1<<20 + 7},
	{Path: "sub/b.bin", Size: 2<<20 - 3},
	{Path: "sub/empty", Size: 0},
	{Path: "sub/deeper/c.txt", Size: 1000},
	{Path: "z.bin", Size: 300 << 10},
}

// MakeTorrent writes pseudo-random content into dir (the file or directory
// opts.Name) and a torrent of it beside it (dir/NAME.torrent), and returns
// the torrent's path and parsed metainfo. dir is then the download
// directory to give a seeder: aria2c finds the content at dir/NAME.
func MakeTorrent(t testing.TB, dir string, opts TorrentOptions) (torrentPath string, mi *metainfo.MetaInfo) {
	t.Helper()
	root := writeContent(t, dir, &opts)
	data, err := metainfo.Build(context.Background(), root, metainfo.BuildOptions{
		Name:         opts.Name,
		PieceLength:  opts.PieceLength,
		AnnounceList: opts.AnnounceList,
		WebSeeds:     opts.WebSeeds,
		CreatedBy:    "btfs swarmtest",
	})
	if err != nil {
		t.Fatalf("swarmtest: build torrent: %v", err)
	}
	mi, err = metainfo.Parse(data)
	if err != nil {
		t.Fatalf("swarmtest: parse the torrent just built: %v", err)
	}
	torrentPath = root + ".torrent"
	if err := os.WriteFile(torrentPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return torrentPath, mi
}

// writeContent writes MakeTorrent's content for opts into dir, filling in
// opts' defaults, and returns the path of the file or directory.
func writeContent(t testing.TB, dir string, opts *TorrentOptions) string {
	t.Helper()
	if opts.PieceLength == 0 {
		opts.PieceLength = DefaultPieceLength
	}
	if opts.Name == "" {
		opts.Name = "data.bin"
		if len(opts.Files) > 0 {
			opts.Name = "data"
		}
	}
	root := filepath.Join(dir, opts.Name)
	if len(opts.Files) == 0 {
		if opts.Size == 0 {
			opts.Size = DefaultSize
		}
		if err := writeRandom(root, opts.Size, opts.Seed, 0); err != nil {
			t.Fatal(err)
		}
	} else {
		for i, f := range opts.Files {
			p := path.Clean(f.Path)
			if !filepath.IsLocal(filepath.FromSlash(p)) {
				t.Fatalf("swarmtest: file path %q escapes the torrent", f.Path)
			}
			if err := writeRandom(filepath.Join(root, filepath.FromSlash(p)), f.Size, opts.Seed, uint64(i)+1); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

// writeRandom writes size deterministic pseudo-random bytes, a function of
// (seed, stream), to name, creating its directory.
func writeRandom(name string, size int64, seed, stream uint64) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return fmt.Errorf("swarmtest: %w", err)
	}
	f, err := os.Create(name)
	if err != nil {
		return fmt.Errorf("swarmtest: %w", err)
	}
	src := rand.NewChaCha8(seedBytes(seed, stream))
	w := bufio.NewWriterSize(f, 64<<10)
	buf := make([]byte, 64<<10)
	for left := size; left > 0; {
		n := int(min(left, int64(len(buf))))
		src.Read(buf[:n])
		if _, err := w.Write(buf[:n]); err != nil {
			f.Close()
			return fmt.Errorf("swarmtest: write %s: %w", name, err)
		}
		left -= int64(n)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("swarmtest: write %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("swarmtest: write %s: %w", name, err)
	}
	return nil
}

// seedBytes makes a ChaCha8 key from a seed and a stream number.
func seedBytes(seed, stream uint64) [32]byte {
	var k [32]byte
	for i := range 8 {
		k[i] = byte(seed >> (8 * i))
		k[8+i] = byte(stream >> (8 * i))
	}
	return k
}
