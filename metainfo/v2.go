package metainfo

import (
	"bytes"
	"crypto/sha256"
	"strings"
)

// BitTorrent v2 (BEP 52). btfs swarms hybrid torrents through their v1
// info-hash and v1 piece hashes; the v2 fields are only validated, so that
// a torrent whose two halves describe different files is refused rather
// than mounted as whatever its v1 half says.

// ErrV2Only is wrapped by the errors about a v2-only torrent (no v1
// "pieces") and a magnet link with only a v2 info-hash (xt=urn:btmh:).
// errors.Is(err, ErrUnsupported) holds for it too.
var ErrV2Only error = v2OnlyError{}

type v2OnlyError struct{}

func (v2OnlyError) Error() string { return "BitTorrent v2-only torrents are not supported yet" }

func (v2OnlyError) Is(target error) bool { return target == ErrUnsupported }

// v2BlockSize is BEP 52's leaf block: the merkle trees hash 16 KiB blocks,
// and a v2 piece length is a power of two no smaller than it.
const v2BlockSize = 16 << 10

// v2File is one file of a "file tree": its path below the torrent's root
// (for a single-file torrent, [name]), its length and its merkle root (nil
// for an empty file).
type v2File struct {
	path   []string
	length int64
	root   []byte
	node   Value // the file's "" dictionary, for error messages
}

// parseFileTree reads a BEP 52 "file tree": nested dictionaries keyed by
// path component, where a file is a dictionary whose only key is "" and
// whose value holds "length" and, for a non-empty file, a 32-byte
// "pieces root". Files come out in tree order (sorted, as CheckBencode
// guarantees for keys), which is the order of the v1 file list of a hybrid.
// Nesting is bounded by the CheckBencode limits the caller applied.
func parseFileTree(tree Value) ([]v2File, error) {
	var files []v2File
	var walk func(dir Value, path []string) error
	walk = func(dir Value, path []string) error {
		n := 0
		err := dir.Entries(func(key []byte, val Value) error {
			n++
			if len(key) == 0 {
				return fieldErr(dir.Name(), `a file ("" key) among directory entries`)
			}
			comp := string(key)
			if err := checkComponent(comp); err != nil {
				return &FieldError{Field: dir.Name(), Err: err}
			}
			p := append(path[:len(path):len(path)], comp)
			leaf, err := val.Lookup("")
			if err != nil {
				return named(val, err)
			}
			if !leaf.Exists() {
				return walk(val, p)
			}
			entries := 0
			if err := val.Entries(func([]byte, Value) error { entries++; return nil }); err != nil {
				return named(val, err)
			}
			if entries != 1 {
				return fieldErr(val.Name(), `a file ("" key) with other entries beside it`)
			}
			f, err := parseV2File(leaf)
			if err != nil {
				return err
			}
			f.path = p
			files = append(files, f)
			return nil
		})
		if err != nil {
			return named(dir, err)
		}
		if n == 0 {
			return fieldErr(dir.Name(), "empty directory")
		}
		return nil
	}
	if err := walk(tree, nil); err != nil {
		return nil, err
	}
	return files, nil
}

// parseV2File reads the "" dictionary of one file of a "file tree".
func parseV2File(leaf Value) (v2File, error) {
	var f [2]Value
	if err := fields(leaf, f[:], "length", "pieces root"); err != nil {
		return v2File{}, err
	}
	length, root := f[0], f[1]
	file := v2File{node: leaf}
	if !length.Exists() {
		return v2File{}, fieldErr(leaf.Name()+".length", "missing")
	}
	var err error
	if file.length, err = integer(length); err != nil {
		return v2File{}, err
	}
	if file.length < 0 {
		return v2File{}, fieldErr(length.Name(), "negative (%d)", file.length)
	}
	if !root.Exists() {
		if file.length > 0 {
			return v2File{}, fieldErr(leaf.Name()+".pieces root", "missing for a file of %d bytes", file.length)
		}
		return file, nil
	}
	if file.root, err = byteString(root); err != nil {
		return v2File{}, err
	}
	if len(file.root) != sha256.Size {
		return v2File{}, fieldErr(root.Name(), "%d bytes, want %d (SHA-256)", len(file.root), sha256.Size)
	}
	return file, nil
}

// checkHybrid holds the v2 half of a hybrid info dictionary to its v1
// half: a v2 piece length (a power of two, 16 KiB at least); the same
// files, in the same order, with the same paths and lengths, once the v1
// padding files (BEP 47) are left out; and every non-empty file starting
// on a piece boundary in the v1 data, so that v1 and v2 pieces cover the
// same bytes. v1Files are the v1 files before paths are deduplicated.
func checkHybrid(info *Info, v1Files []File, n, pieceLength, tree Value) ([]v2File, error) {
	if !tree.Exists() {
		return nil, fieldErr(n.Name()+".file tree", `missing ("meta version" 2 with v1 "pieces": a hybrid torrent needs both)`)
	}
	if p := info.PieceLength; p < v2BlockSize || p&(p-1) != 0 {
		return nil, fieldErr(pieceLength.Name(), "%d is not a power of two of at least %d, as a v2 (BEP 52) torrent needs", p, v2BlockSize)
	}
	v2, err := parseFileTree(tree)
	if err != nil {
		return nil, err
	}
	i := 0
	for _, f := range v1Files {
		if f.Padding {
			continue
		}
		name := strings.Join(f.Path, "/")
		if i == len(v2) {
			return nil, fieldErr(tree.Name(), "has %d files, the v1 file list more (first missing: %q)", len(v2), name)
		}
		g := v2[i]
		i++
		if gname := strings.Join(g.path, "/"); gname != name || g.length != f.Length {
			return nil, fieldErr(g.node.Name(), "is %q of %d bytes, but the v1 file at its place is %q of %d bytes", gname, g.length, name, f.Length)
		}
		if f.Length > 0 && f.Offset%info.PieceLength != 0 {
			return nil, fieldErr(g.node.Name(), "file %q starts at byte %d of the v1 data, not on a piece boundary (a hybrid pads files with BEP 47 padding files)", name, f.Offset)
		}
	}
	if i != len(v2) {
		return nil, fieldErr(tree.Name(), "has %d files, the v1 file list %d", len(v2), i)
	}
	return v2, nil
}

// checkPieceLayers checks the top-level "piece layers" of a hybrid
// torrent: every file longer than a piece has its layer, keyed by its
// pieces root, one SHA-256 per piece, and the layer hashes up to that root
// (BEP 52: the layer padded to a power of two with the hash of a piece of
// zero leaves).
func checkPieceLayers(layers Value, files []v2File, pieceLength int64) error {
	var pad [sha256.Size]byte // the root of one piece of zero leaves
	for n := pieceLength / v2BlockSize; n > 1; n /= 2 {
		pad = sha256.Sum256(append(pad[:], pad[:]...))
	}
	for _, f := range files {
		if f.length <= pieceLength {
			continue // the root covers the file's blocks: nothing to check it against
		}
		if !layers.Exists() {
			return fieldErr("piece layers", "missing (file %q has %d bytes, more than a piece)", strings.Join(f.path, "/"), f.length)
		}
		layer, err := layers.Lookup(string(f.root))
		if err != nil {
			return named(layers, err)
		}
		if !layer.Exists() {
			return fieldErr("piece layers", "no layer for file %q (pieces root %x)", strings.Join(f.path, "/"), f.root)
		}
		b, err := byteString(layer)
		if err != nil {
			return err
		}
		want := pieceCount(f.length, pieceLength) * sha256.Size
		if int64(len(b)) != want {
			return fieldErr(layer.Name(), "the layer of file %q has %d bytes, want %d (one SHA-256 per piece)", strings.Join(f.path, "/"), len(b), want)
		}
		if root := merkleRoot(b, pad); !bytes.Equal(root[:], f.root) {
			return fieldErr(layer.Name(), "the layer of file %q hashes to %x, not its pieces root %x", strings.Join(f.path, "/"), root, f.root)
		}
	}
	return nil
}

// merkleRoot is the root of the SHA-256 tree over the concatenated hashes
// of layer, padded to a power of two with pad.
func merkleRoot(layer []byte, pad [sha256.Size]byte) [sha256.Size]byte {
	level := make([][sha256.Size]byte, 0, len(layer)/sha256.Size)
	for off := 0; off < len(layer); off += sha256.Size {
		level = append(level, [sha256.Size]byte(layer[off:off+sha256.Size]))
	}
	var buf [2 * sha256.Size]byte
	for len(level) > 1 {
		if len(level)%2 != 0 {
			level = append(level, pad)
		}
		next := level[:0]
		for i := 0; i < len(level); i += 2 {
			copy(buf[:], level[i][:])
			copy(buf[sha256.Size:], level[i+1][:])
			next = append(next, sha256.Sum256(buf[:]))
		}
		level = next
		pad = sha256.Sum256(append(pad[:], pad[:]...))
	}
	return level[0]
}
