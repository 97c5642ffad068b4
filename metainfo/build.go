package metainfo

import (
	"bytes"
	"context"
	"crypto/sha1"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/jackpal/bencode-go"
)

// BuildOptions says how Build makes a torrent. The zero value makes a
// trackerless, public torrent named after root with a chosen piece length.
type BuildOptions struct {
	// PieceLength is the piece size in bytes; 0 chooses a power of two
	// between 16 KiB and 16 MiB giving about 1000 to 2000 pieces. Any
	// positive value up to MaxPieceLength is taken as given (tests use
	// 5-byte pieces to hit every boundary with tiny files).
	PieceLength int64
	// AnnounceList holds tracker tiers (BEP 12). The first URL becomes
	// "announce"; "announce-list" is written when there is more than one URL.
	AnnounceList [][]string
	// WebSeeds are BEP 19 URLs, written as the "url-list" list.
	WebSeeds []string
	// Private sets BEP 27's flag.
	Private bool
	// Comment and CreatedBy are free text, omitted when empty.
	Comment, CreatedBy string
	// CreationDate is written in whole seconds; the zero time (and the Unix
	// epoch itself) omits it, which keeps builds reproducible by default.
	CreationDate time.Time
	// Name is the torrent's name; "" takes the base name of root. It must
	// be a safe single component.
	Name string
}

// Build makes a .torrent of the file or directory at root and returns it,
// canonically bencoded (dictionary keys sorted); parse it with Parse.
//
// A directory's regular files are included in a fixed order, sorted by
// path components, whatever the order on disk; zero-length files are
// kept. Nothing is skipped silently: a symlink, device, socket or pipe
// inside the tree is an error, and so is a name that Parse would reject.
// Empty directories are the one thing left out: the torrent format has no
// way to say them. root itself may be a symlink; it is followed. Files are
// hashed as a stream through a fixed buffer, so memory does not grow with
// their size; a file that changes size during the build is an error. ctx
// cancels the build between reads.
func Build(ctx context.Context, root string, opt BuildOptions) ([]byte, error) {
	st, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("metainfo: build: %w", err)
	}
	name := opt.Name
	if name == "" {
		abs, err := filepath.Abs(root)
		if err != nil {
			return nil, fmt.Errorf("metainfo: build: %w", err)
		}
		name = filepath.Base(abs)
	}
	if err := checkComponent(name); err != nil {
		return nil, fmt.Errorf("metainfo: build: name %q: %w", name, err)
	}

	var files []buildSource
	switch {
	case st.Mode().IsRegular():
		files = []buildSource{{osPath: root, path: []string{name}, size: st.Size()}}
	case st.IsDir():
		if files, err = listTree(ctx, root, nil, files); err != nil {
			return nil, err
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("metainfo: build: %s holds no files", root)
		}
	default:
		return nil, fmt.Errorf("metainfo: build: %s is not a regular file or directory (%s)", root, st.Mode().Type())
	}
	var total int64
	for _, f := range files {
		total += f.size
	}
	if total == 0 {
		return nil, fmt.Errorf("metainfo: build: %s: total length is 0: nothing to share", root)
	}

	pieceLength := opt.PieceLength
	switch {
	case pieceLength == 0:
		pieceLength = choosePieceLength(total)
	case pieceLength < 0 || pieceLength > MaxPieceLength:
		return nil, fmt.Errorf("metainfo: build: piece length %d is not in [1, %d]", pieceLength, MaxPieceLength)
	}
	if n := pieceCount(total, pieceLength); n > int64(TorrentLimits.MaxSize/len(Hash{})/2) {
		return nil, fmt.Errorf("metainfo: build: %d pieces of %d bytes make the torrent too large; use longer pieces", n, pieceLength)
	}
	pieces, err := hashPieces(ctx, files, pieceLength, total)
	if err != nil {
		return nil, err
	}

	t := buildTorrent{
		Comment:   opt.Comment,
		CreatedBy: opt.CreatedBy,
		Info: buildInfo{
			Name:        name,
			PieceLength: pieceLength,
			Pieces:      string(pieces),
		},
		URLList: opt.WebSeeds,
	}
	if !opt.CreationDate.IsZero() {
		t.CreationDate = opt.CreationDate.Unix()
	}
	if opt.Private {
		t.Info.Private = 1
	}
	if st.IsDir() {
		for _, f := range files {
			t.Info.Files = append(t.Info.Files, buildFile{Length: f.size, Path: f.path})
		}
	} else {
		t.Info.Length = total
	}
	if t.Announce, t.AnnounceList, err = announceFields(opt.AnnounceList); err != nil {
		return nil, err
	}
	for i, u := range opt.WebSeeds {
		if u == "" {
			return nil, fmt.Errorf("metainfo: build: WebSeeds[%d] is empty", i)
		}
	}
	var out bytes.Buffer
	if err := bencode.Marshal(&out, t); err != nil {
		return nil, fmt.Errorf("metainfo: build: encode: %w", err)
	}
	return out.Bytes(), nil
}

// buildTorrent and friends are the encoded form; jackpal/bencode-go writes
// struct fields sorted by key, which is canonical bencode.
type buildTorrent struct {
	// Announce is the first tracker URL.
	Announce string `bencode:"announce,omitempty"`
	// AnnounceList is written only when there is more than one URL.
	AnnounceList [][]string `bencode:"announce-list,omitempty"`
	// Comment is free text.
	Comment string `bencode:"comment,omitempty"`
	// CreatedBy names the program.
	CreatedBy string `bencode:"created by,omitempty"`
	// CreationDate is in Unix seconds.
	CreationDate int64 `bencode:"creation date,omitempty"`
	// Info is the info dictionary.
	Info buildInfo `bencode:"info"`
	// URLList holds web seeds.
	URLList []string `bencode:"url-list,omitempty"`
}

type buildInfo struct {
	// Files is set for a directory.
	Files []buildFile `bencode:"files,omitempty"`
	// Length is set for a single file (never 0: empty torrents are refused).
	Length int64 `bencode:"length,omitempty"`
	// Name is the torrent's name.
	Name string `bencode:"name"`
	// PieceLength is the piece size.
	PieceLength int64 `bencode:"piece length"`
	// Pieces is the concatenated SHA-1s.
	Pieces string `bencode:"pieces"`
	// Private is 1 for BEP 27 private torrents.
	Private int `bencode:"private,omitempty"`
}

type buildFile struct {
	// Length may be 0.
	Length int64 `bencode:"length"`
	// Path is below the torrent's directory.
	Path []string `bencode:"path"`
}

// buildSource is one file to put in the torrent.
type buildSource struct {
	// osPath is where to read it.
	osPath string
	// path is its path in the torrent (for a directory, below the name).
	path []string
	// size is its length when listed; it must not change.
	size int64
}

// listTree appends the regular files below dir, depth first with each
// directory's entries sorted by name, which is the order of their path
// component lists.
func listTree(ctx context.Context, dir string, prefix []string, files []buildSource) ([]buildSource, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("metainfo: build: %w", err)
	}
	entries, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		return nil, fmt.Errorf("metainfo: build: %w", err)
	}
	for _, e := range entries {
		osPath := filepath.Join(dir, e.Name())
		if err := checkComponent(e.Name()); err != nil {
			return nil, fmt.Errorf("metainfo: build: %s: %w", osPath, err)
		}
		p := append(append([]string(nil), prefix...), e.Name())
		info, err := e.Info() // lstat: symlinks are not followed
		if err != nil {
			return nil, fmt.Errorf("metainfo: build: %w", err)
		}
		switch mode := info.Mode(); {
		case mode.IsDir():
			if files, err = listTree(ctx, osPath, p, files); err != nil {
				return nil, err
			}
		case mode.IsRegular():
			files = append(files, buildSource{osPath: osPath, path: p, size: info.Size()})
		default:
			return nil, fmt.Errorf("metainfo: build: %s: %s is not supported (only regular files and directories)", osPath, mode.Type())
		}
	}
	return files, nil
}

// hashPieces reads the files as one stream and returns the concatenated
// piece hashes.
func hashPieces(ctx context.Context, files []buildSource, pieceLength, total int64) ([]byte, error) {
	pieces := make([]byte, 0, pieceCount(total, pieceLength)*int64(len(Hash{})))
	h := sha1.New()
	var inPiece int64
	buf := make([]byte, 256<<10)
	for _, src := range files {
		err := func() error {
			f, err := os.Open(src.osPath)
			if err != nil {
				return err
			}
			defer f.Close()
			if st, err := f.Stat(); err != nil {
				return err
			} else if !st.Mode().IsRegular() || st.Size() != src.size {
				return fmt.Errorf("%s changed during the build", src.osPath)
			}
			for left := src.size; left > 0; {
				if err := ctx.Err(); err != nil {
					return err
				}
				chunk := buf[:min(int64(len(buf)), left)]
				if _, err := io.ReadFull(f, chunk); err != nil {
					return fmt.Errorf("%s changed during the build: %w", src.osPath, err)
				}
				left -= int64(len(chunk))
				for len(chunk) > 0 {
					k := min(int64(len(chunk)), pieceLength-inPiece)
					h.Write(chunk[:k])
					inPiece += k
					chunk = chunk[k:]
					if inPiece == pieceLength {
						pieces = h.Sum(pieces)
						h.Reset()
						inPiece = 0
					}
				}
			}
			return nil
		}()
		if err != nil {
			return nil, fmt.Errorf("metainfo: build: %w", err)
		}
	}
	if inPiece > 0 {
		pieces = h.Sum(pieces)
	}
	return pieces, nil
}

// choosePieceLength picks the smallest power of two from 16 KiB to 16 MiB
// that keeps the piece count at 2000 or less: about 1000 to 2000 pieces
// between the bounds. Fewer pieces mean a smaller torrent and bitfield;
// more mean finer streaming and less waste when a piece fails.
func choosePieceLength(total int64) int64 {
	pl := int64(16 << 10)
	for pl < 16<<20 && pieceCount(total, pl) > 2000 {
		pl *= 2
	}
	return pl
}

// announceFields turns tiers into "announce" and, when there is more than
// one URL, "announce-list".
func announceFields(tiers [][]string) (string, [][]string, error) {
	n := 0
	for i, tier := range tiers {
		if len(tier) == 0 {
			return "", nil, fmt.Errorf("metainfo: build: AnnounceList[%d] is an empty tier", i)
		}
		for j, u := range tier {
			if u == "" {
				return "", nil, fmt.Errorf("metainfo: build: AnnounceList[%d][%d] is empty", i, j)
			}
			n++
		}
	}
	switch n {
	case 0:
		return "", nil, nil
	case 1:
		return tiers[0][0], nil, nil
	}
	return tiers[0][0], tiers, nil
}

// pieceCount is ceil(total/pieceLength), without overflow.
func pieceCount(total, pieceLength int64) int64 {
	n := total / pieceLength
	if total%pieceLength != 0 {
		n++
	}
	return n
}
