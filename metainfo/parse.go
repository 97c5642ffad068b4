package metainfo

import (
	"crypto/sha1"
	"fmt"
	"io"
	"math"
	"os"
	"time"
	"unicode/utf8"
)

// MaxPieceLength is the largest piece length Parse accepts (256 MiB). The
// rest of btfs holds whole pieces in memory while assembling and hashing
// them; real torrents use at most tens of MiB.
const MaxPieceLength = 256 << 20

// Load reads and parses a .torrent file. It reads at most
// TorrentLimits.MaxSize bytes, so a huge or endless file (/dev/zero) fails
// quickly instead of filling memory.
func Load(path string) (*MetaInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("metainfo: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, int64(TorrentLimits.MaxSize)+1))
	if err != nil {
		return nil, fmt.Errorf("metainfo: read %s: %w", path, err)
	}
	if len(data) > TorrentLimits.MaxSize {
		return nil, fmt.Errorf("metainfo: %s is larger than %d bytes: %w", path, TorrentLimits.MaxSize, ErrLimit)
	}
	mi, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return mi, nil
}

// Parse parses and validates a .torrent file (BEP 3, with BEP 12
// announce-list, BEP 19 url-list, BEP 27 private, BEP 47 padding files;
// the v1 part of BEP 52 hybrid torrents). The input is checked with
// TorrentLimits first. The info-hash is the SHA-1 of the info dictionary's
// bytes as they stand in data, never of a re-encoding. Every error names
// the field at fault. The result shares no memory with data.
//
// Fields outside the info dictionary are advisory, but a value of the wrong
// type there is still an error: a file that is wrong in one place is
// suspect everywhere. Empty tracker URLs and empty tiers are dropped.
//
// Names: name.utf-8 and path.utf-8 are preferred when they are valid
// UTF-8. Every path component and the name must be non-empty, not "." or
// "..", and free of slash, backslash and NUL; a violation is an error, never
// silently repaired. A torrent whose total length is 0 is refused.
//
// Colliding paths are resolved deterministically: files claim their paths
// in torrent order and a later claimant is renamed with " (1)", " (2)", ...
// before the extension ("a.txt" → "a (1).txt"); when a file holds a name
// that a later file needs as a directory, that directory is renamed the
// same way ("d" and "d/x" become "d" and "d (1)/x", and every later file
// under "d/" follows). Regular files claim names before BEP 47 padding
// files, so padding never pushes a real file aside. Zero-length files are
// kept. Other BEP 47 attributes (x, h, l) are ignored: a symlink entry is
// an empty file.
func Parse(data []byte) (*MetaInfo, error) {
	if err := CheckBencode(data, TorrentLimits); err != nil {
		return nil, fmt.Errorf("metainfo: %w", err)
	}
	root := ValueOf(data)
	if k := root.Kind(); k != KindDict {
		return nil, fmt.Errorf("metainfo: the torrent is %s, want a dictionary", k.article())
	}
	var f [8]Value
	err := fields(root, f[:], "announce", "announce-list", "url-list", "creation date", "comment", "created by", "info", "piece layers")
	if err != nil {
		return nil, err
	}
	announce, announceList, urlList, created, comment, createdBy, info, pieceLayers := f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7]
	mi := &MetaInfo{}
	if !info.Exists() {
		return nil, fieldErr("info", "missing")
	}
	var v2 []v2File
	if mi.Info, v2, err = parseInfo(info); err != nil {
		return nil, err
	}
	if mi.Info.Hybrid {
		if err := checkPieceLayers(pieceLayers, v2, mi.Info.PieceLength); err != nil {
			return nil, err
		}
	}
	mi.InfoBytes = append([]byte(nil), info.Raw()...)
	mi.InfoHash = sha1.Sum(mi.InfoBytes)
	if announce.Exists() {
		if mi.Announce, err = str(announce); err != nil {
			return nil, err
		}
	}
	if announceList.Exists() {
		if mi.AnnounceList, err = parseAnnounceList(announceList); err != nil {
			return nil, err
		}
	}
	if urlList.Exists() {
		if mi.URLList, err = parseURLList(urlList); err != nil {
			return nil, err
		}
	}
	if created.Exists() {
		secs, err := integer(created)
		if err != nil {
			return nil, err
		}
		mi.CreationDate = time.Unix(secs, 0).UTC()
	}
	if comment.Exists() {
		if mi.Comment, err = str(comment); err != nil {
			return nil, err
		}
	}
	if createdBy.Exists() {
		if mi.CreatedBy, err = str(createdBy); err != nil {
			return nil, err
		}
	}
	return mi, nil
}

// ParseInfo parses and validates a bare info dictionary, such as the
// metadata fetched from peers with BEP 9 (the caller checks that its SHA-1
// is the info-hash it asked for). It applies TorrentLimits and the same
// rules as Parse.
func ParseInfo(infoBytes []byte) (*Info, error) {
	if err := CheckBencode(infoBytes, TorrentLimits); err != nil {
		return nil, fmt.Errorf("metainfo: info: %w", err)
	}
	info, _, err := parseInfo(valueOf(infoBytes, "info"))
	return info, err
}

// parseAnnounceList reads BEP 12 tiers, dropping empty URLs and tiers.
func parseAnnounceList(n Value) ([][]string, error) {
	var tiers [][]string
	err := each(n, func(tier Value) error {
		var urls []string
		err := each(tier, func(u Value) error {
			s, err := str(u)
			if s != "" {
				urls = append(urls, s)
			}
			return err
		})
		if len(urls) > 0 {
			tiers = append(tiers, urls)
		}
		return err
	})
	return tiers, err
}

// parseURLList reads BEP 19 web seeds: a single string or a list of them.
func parseURLList(n Value) ([]string, error) {
	if n.Kind() == KindString {
		s, err := str(n)
		if s == "" {
			return nil, err
		}
		return []string{s}, err
	}
	var urls []string
	err := each(n, func(u Value) error {
		s, err := str(u)
		if s != "" {
			urls = append(urls, s)
		}
		return err
	})
	return urls, err
}

// parseInfo validates the info dictionary n.
//
// A torrent whose total length is 0 (only empty files) is rejected: it has
// no pieces to share, and the rest of btfs may count on NumPieces() ≥ 1.
func parseInfo(n Value) (*Info, []v2File, error) {
	var f [9]Value
	err := fields(n, f[:], "name", "name.utf-8", "piece length", "pieces", "private", "length", "files", "meta version", "file tree")
	if err != nil {
		return nil, nil, err
	}
	name, nameUTF8, pieceLength, pieces, private, length, files, metaVersion, fileTree := f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8]
	info := &Info{}

	hybrid := false
	if metaVersion.Exists() {
		v, err := integer(metaVersion)
		if err != nil {
			return nil, nil, err
		}
		switch {
		case v == 2 && !pieces.Exists():
			return nil, nil, &FieldError{Field: n.Name(), Err: fmt.Errorf(`%w (BEP 52 "meta version" 2 without v1 "pieces")`, ErrV2Only)}
		case v == 2:
			hybrid = true
		case v != 1:
			return nil, nil, &FieldError{Field: metaVersion.Name(), Err: fmt.Errorf("meta version %d: %w", v, ErrUnsupported)}
		}
	}

	if info.Name, err = pickName(n, name, nameUTF8); err != nil {
		return nil, nil, err
	}

	if !pieceLength.Exists() {
		return nil, nil, fieldErr(n.Name()+".piece length", "missing")
	}
	if info.PieceLength, err = integer(pieceLength); err != nil {
		return nil, nil, err
	}
	if info.PieceLength <= 0 || info.PieceLength > MaxPieceLength {
		return nil, nil, fieldErr(pieceLength.Name(), "%d is not in [1, %d]", info.PieceLength, MaxPieceLength)
	}

	if private.Exists() {
		p, err := integer(private)
		if err != nil {
			return nil, nil, err
		}
		info.Private = p != 0 // anything but 0 errs on the side of privacy
	}

	switch {
	case length.Exists() && files.Exists():
		return nil, nil, fieldErr(n.Name(), `has both "length" and "files"`)
	case length.Exists():
		l, err := integer(length)
		if err != nil {
			return nil, nil, err
		}
		if l < 0 {
			return nil, nil, fieldErr(length.Name(), "negative (%d)", l)
		}
		info.Files = []File{{Path: []string{info.Name}, Length: l}}
		info.TotalLength = l
	case files.Exists():
		info.MultiFile = true
		if info.Files, info.TotalLength, err = parseFiles(files); err != nil {
			return nil, nil, err
		}
	default:
		return nil, nil, fieldErr(n.Name(), `has neither "length" nor "files"`)
	}
	if info.TotalLength == 0 {
		return nil, nil, fieldErr(n.Name(), "total length is 0: nothing to share")
	}

	if !pieces.Exists() {
		return nil, nil, fieldErr(n.Name()+".pieces", "missing")
	}
	raw, err := byteString(pieces)
	if err != nil {
		return nil, nil, err
	}
	if len(raw)%len(Hash{}) != 0 {
		return nil, nil, fieldErr(pieces.Name(), "length %d is not a multiple of 20", len(raw))
	}
	want := pieceCount(info.TotalLength, info.PieceLength)
	if got := int64(len(raw) / len(Hash{})); got != want {
		return nil, nil, fieldErr(pieces.Name(), "has %d hashes, but %d bytes in pieces of %d need %d", got, info.TotalLength, info.PieceLength, want)
	}
	info.Pieces = make([]Hash, want)
	for i := range info.Pieces {
		copy(info.Pieces[i][:], raw[i*len(Hash{}):])
	}
	var v2 []v2File
	if hybrid {
		if v2, err = checkHybrid(info, info.Files, n, pieceLength, fileTree); err != nil {
			return nil, nil, err
		}
		info.Hybrid = true
	}
	if info.MultiFile {
		dedupePaths(info.Files)
	}
	return info, v2, nil
}

// pickName prefers name.utf-8 when it is valid UTF-8 and falls back to
// name; the one chosen must be a safe single component.
func pickName(info, name, nameUTF8 Value) (string, error) {
	if nameUTF8.Exists() {
		s, err := str(nameUTF8)
		if err != nil {
			return "", err
		}
		if utf8.ValidString(s) {
			if err := checkComponent(s); err != nil {
				return "", &FieldError{Field: nameUTF8.Name(), Err: err}
			}
			return s, nil
		}
	}
	if !name.Exists() {
		return "", fieldErr(info.Name()+".name", "missing")
	}
	s, err := str(name)
	if err != nil {
		return "", err
	}
	if err := checkComponent(s); err != nil {
		return "", &FieldError{Field: name.Name(), Err: err}
	}
	return s, nil
}

// parseFiles reads a multi-file list: lengths, offsets, safe and distinct
// paths (not yet deduplicated), padding marks.
func parseFiles(n Value) ([]File, int64, error) {
	var files []File
	var total int64
	err := each(n, func(fn Value) error {
		var f [4]Value
		err := fields(fn, f[:], "length", "path", "path.utf-8", "attr")
		if err != nil {
			return err
		}
		length, p, pUTF8, attr := f[0], f[1], f[2], f[3]
		var file File
		if !length.Exists() {
			return fieldErr(fn.Name()+".length", "missing")
		}
		if file.Length, err = integer(length); err != nil {
			return err
		}
		if file.Length < 0 {
			return fieldErr(length.Name(), "negative (%d)", file.Length)
		}
		if file.Length > math.MaxInt64-total {
			return fieldErr(length.Name(), "%d makes the total overflow 64 bits", file.Length)
		}
		file.Offset = total
		total += file.Length
		if file.Path, err = pickPath(fn, p, pUTF8); err != nil {
			return err
		}
		if attr.Exists() {
			a, err := byteString(attr)
			if err != nil {
				return err
			}
			for _, c := range a {
				if c == 'p' {
					file.Padding = true
				}
			}
		}
		files = append(files, file)
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	if len(files) == 0 {
		return nil, 0, fieldErr(n.Name(), "empty")
	}
	return files, total, nil // parseInfo dedupes, after the hybrid check
}

// pickPath prefers path.utf-8 when all its components are valid UTF-8 and
// falls back to path; the one chosen must be non-empty and safe.
func pickPath(file, p, pUTF8 Value) ([]string, error) {
	if pUTF8.Exists() {
		comps, err := readPath(pUTF8)
		if err != nil {
			return nil, err
		}
		valid := true
		for _, c := range comps {
			valid = valid && utf8.ValidString(c)
		}
		if valid {
			return comps, checkPath(pUTF8, comps)
		}
	}
	if !p.Exists() {
		return nil, fieldErr(file.Name()+".path", "missing")
	}
	comps, err := readPath(p)
	if err != nil {
		return nil, err
	}
	return comps, checkPath(p, comps)
}

func readPath(n Value) ([]string, error) {
	var comps []string
	err := each(n, func(c Value) error {
		s, err := str(c)
		comps = append(comps, s)
		return err
	})
	return comps, err
}

func checkPath(n Value, comps []string) error {
	if len(comps) == 0 {
		return fieldErr(n.Name(), "empty")
	}
	for _, c := range comps {
		if err := checkComponent(c); err != nil {
			return &FieldError{Field: n.Name(), Err: err}
		}
	}
	return nil
}
